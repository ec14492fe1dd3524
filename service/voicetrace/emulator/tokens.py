"""Ephemeral auth tokens (`POST /v1alpha/auth_tokens`) and the constraints they put on a setup.

Body (what `client.aio.auth_tokens.create` sends): `uses` (default 1, 0 = unlimited; resuming a
session is not a use), `expireTime` (default +30 min: no connection after it),
`newSessionExpireTime` (default +60 s: no *new* session after it), `bidiGenerateContentSetup`
(the `liveConnectConstraints` as a setup) and `fieldMask` (from `lockAdditionalFields`).

Locking: with constraints but no field mask the token's setup is the whole setup (the client's
fields are ignored, except its `sessionResumption`, which is per connection); with a field mask
only the listed fields are forced from the token (or removed, when the token leaves them unset)
and the client's other fields stand.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from voicetrace.emulator.protocol import CloseError, camel, pick, snake

DEFAULT_TTL = timedelta(minutes=30)
DEFAULT_NEW_SESSION_TTL = timedelta(seconds=60)
PREFIX = "auth_tokens/"
MAX_TOKENS = 10_000  # tokens kept at most; the oldest go first
EXPIRED_KEPT = timedelta(hours=1)  # how long an expired token is still recognised

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class EphemeralToken:
    name: str
    uses: int
    expire_time: datetime
    new_session_expire_time: datetime
    setup: dict[str, Any] | None
    field_mask: list[str] | None
    used: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expireTime": _rfc3339(self.expire_time),
            "newSessionExpireTime": _rfc3339(self.new_session_expire_time),
            "uses": self.uses,
        }


class TokenStore:
    """The tokens one emulator has minted, and their remaining uses."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock
        self._tokens: dict[str, EphemeralToken] = {}

    def create(self, body: dict[str, Any]) -> EphemeralToken:
        """Mint a token from a request body; `ValueError` for a malformed one (HTTP 400)."""
        if not isinstance(body, dict):
            raise ValueError("request body must be a JSON object")
        now = self.clock()
        uses = pick(body, "uses", 1)
        if not isinstance(uses, int) or isinstance(uses, bool) or uses < 0:
            raise ValueError("uses must be a non-negative integer")
        setup = pick(body, "bidiGenerateContentSetup")
        if setup is not None and not isinstance(setup, dict):
            raise ValueError("bidiGenerateContentSetup must be an object")
        mask = pick(body, "fieldMask")
        if isinstance(mask, str):
            mask = [f.strip() for f in mask.split(",") if f.strip()]
        elif mask is not None and not isinstance(mask, list):
            raise ValueError("fieldMask must be a comma-separated string")
        token = EphemeralToken(
            name=PREFIX + secrets.token_urlsafe(24),
            uses=uses,
            expire_time=_parse_time(pick(body, "expireTime"), now + DEFAULT_TTL),
            new_session_expire_time=_parse_time(
                pick(body, "newSessionExpireTime"), now + DEFAULT_NEW_SESSION_TTL
            ),
            setup=setup,
            field_mask=mask,
        )
        self._tokens[token.name] = token
        self._prune(now)
        return token

    def _prune(self, now: datetime) -> None:
        """Forget tokens expired for a while (a just-expired one still gets its clear "expired"
        refusal), then the oldest beyond `MAX_TOKENS` (bounded memory)."""
        for name in [n for n, t in self._tokens.items() if now >= t.expire_time + EXPIRED_KEPT]:
            del self._tokens[name]
        while len(self._tokens) > MAX_TOKENS:
            del self._tokens[next(iter(self._tokens))]

    def __len__(self) -> int:
        return len(self._tokens)

    def authorize(self, name: str, *, resuming: bool) -> EphemeralToken:
        """Check a token for a connection and spend a use (resumption is free)."""
        token = self._tokens.get(name)
        if token is None:
            raise CloseError(1008, "Unauthenticated: the auth token is not valid.")
        now = self.clock()
        if now >= token.expire_time:
            raise CloseError(1008, "Unauthenticated: the auth token has expired.")
        if resuming:
            return token
        if now >= token.new_session_expire_time:
            raise CloseError(1008, "Unauthenticated: the auth token no longer opens new sessions.")
        if token.uses and token.used >= token.uses:
            raise CloseError(1008, "Unauthenticated: the auth token has no uses left.")
        token.used += 1
        return token


def constrain(setup: dict[str, Any], token: EphemeralToken) -> dict[str, Any]:
    """The effective setup of a connection opened with `token`."""
    if token.setup is None:
        return setup
    if token.field_mask is None:
        forced = copy.deepcopy(token.setup)
        if pick(forced, "model") is None and pick(setup, "model") is not None:
            forced["model"] = pick(setup, "model")
        if pick(setup, "sessionResumption") is not None:
            forced["sessionResumption"] = pick(setup, "sessionResumption")
        return forced
    effective = copy.deepcopy(setup)
    for path in token.field_mask:
        _force(effective, token.setup, path.split("."))
    return effective


def _force(target: dict[str, Any], source: Any, path: list[str]) -> None:
    head, rest = path[0], path[1:]
    value = pick(source, head)
    existing = next((k for k in (head, snake(head), camel(head)) if k in target), None)
    if not rest:
        if existing is not None:
            del target[existing]
        if value is not None:
            target[head] = copy.deepcopy(value)
        return
    key = existing or head
    child = target.get(key)
    if not isinstance(child, dict):
        child = {}
        target[key] = child
    _force(child, value if isinstance(value, dict) else {}, rest)


def _parse_time(raw: Any, default: datetime) -> datetime:
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise ValueError("times must be RFC 3339 strings")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"invalid RFC 3339 time {raw!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
