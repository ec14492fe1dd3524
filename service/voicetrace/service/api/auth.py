"""Bearer tokens: HS256 JWTs whose `sub` is the user id — the only source of a request's owner.

Error messages say what is wrong with a token (expired, bad signature, …) but never echo the token
or the secret, so they are safe to return to clients and to log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
MAX_USER_ID_LENGTH = 255
# Tolerated clock skew between the replica that minted a token and the one checking it.
LEEWAY_S = 10
ADMIN_ROLE = "admin"  # in the token's `roles` claim: sees every user's costs, sets budgets


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for: the user id (`sub`) and its `roles` claim."""

    user_id: str
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class AuthError(Exception):
    """The token is missing, malformed, forged, expired or has no subject."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def mint_token(
    user_id: str,
    secret: str,
    ttl_s: int = 3600,
    now: datetime | None = None,
    roles: Iterable[str] = (),
) -> str:
    """A signed token for `user_id`, valid for `ttl_s` seconds from `now` (default: the clock),
    with a `roles` claim when `roles` are given."""
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("user_id must be a non-empty string")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ValueError(f"user_id must be at most {MAX_USER_ID_LENGTH} characters")
    if not secret:
        raise ValueError("secret must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_s),
    }
    if roles:
        claims["roles"] = sorted(set(roles))
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> str:
    """The user id (`sub`) of a valid token; `AuthError` for anything else.

    Only HS256 is accepted (no `alg: none`, no algorithm confusion); `sub`, `iat` and `exp` are
    required.
    """
    return verify_principal(token, secret).user_id


def verify_principal(token: str, secret: str) -> Principal:
    """`verify_token`, plus the `roles` claim (a list of strings; anything else is no role)."""
    if not token:
        raise AuthError("missing token")
    if not secret:
        raise AuthError("server has no token secret configured")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "iat", "exp"]},
            leeway=LEEWAY_S,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("invalid token signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token has no '{exc.claim}' claim") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(f"token algorithm not allowed (only {ALGORITHM})") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token not valid yet") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"malformed token: {type(exc).__name__}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_USER_ID_LENGTH:
        raise AuthError("token subject is not a valid user id")
    raw_roles = claims.get("roles")
    roles = (
        frozenset(r for r in raw_roles if isinstance(r, str))
        if isinstance(raw_roles, list)
        else frozenset()
    )
    return Principal(subject, roles)
