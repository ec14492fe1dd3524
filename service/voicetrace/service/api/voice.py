"""`/v1/voice/{session_id}`: authenticate, find the caller's session, hand the socket to a bridge.

Browsers cannot set headers on a WebSocket, so the bearer token comes either as a subprotocol
(`Sec-WebSocket-Protocol: voicetrace.v1, bearer.<jwt>`) or as a `token` query parameter. The
handshake is always accepted first so that refusals carry a real close code (1008) and reason
instead of an anonymous HTTP 403; no audio is read before the checks pass.
"""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, WebSocket
from voicetrace.service.api.auth import AuthError, verify_token
from voicetrace.service.sessions.errors import NotFound, SessionError
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import CONNECT_TIMEOUT_REASON
from voicetrace.service.voice.deps import BridgeDeps
from voicetrace.service.voice.outcome import CLOSE_POLICY
from voicetrace.service.voice.protocol import BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL
from voicetrace.service.voice.start import serve_voice_session

router = APIRouter(tags=["voice"])


def _token_and_subprotocol(ws: WebSocket) -> tuple[str | None, str | None]:
    offered = [
        p.strip()
        for header in ws.headers.getlist("sec-websocket-protocol")
        for p in header.split(",")
        if p.strip()
    ]
    token = next(
        (
            p[len(BEARER_SUBPROTOCOL_PREFIX) :]
            for p in offered
            if p.startswith(BEARER_SUBPROTOCOL_PREFIX)
        ),
        None,
    )
    # Never echo the bearer subprotocol back: the response must name one the client offered, and
    # only `voicetrace.v1` carries no secret.
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    return token or ws.query_params.get("token"), chosen


@router.websocket("/v1/voice/{session_id}")
async def voice_session(ws: WebSocket, session_id: str) -> None:
    deps: BridgeDeps = ws.app.state.bridge_deps
    token, subprotocol = _token_and_subprotocol(ws)
    await ws.accept(subprotocol=subprotocol)
    if not token:
        await ws.close(CLOSE_POLICY, "missing bearer token")
        return
    try:
        user_id = verify_token(token, deps.settings.jwt_secret.get_secret_value())
    except AuthError as exc:
        await ws.close(CLOSE_POLICY, f"invalid token: {exc}"[:120])
        return
    try:
        session = await deps.store.get(session_id, user_id)
    except NotFound:
        await ws.close(CLOSE_POLICY, "unknown session")
        return
    if session.state != SessionState.CONNECTING or deps.hub.find(session_id) is not None:
        await ws.close(CLOSE_POLICY, f"session is {session.state.value}, not CONNECTING")
        return
    if deps.store.connect_expired(session):
        with contextlib.suppress(SessionError):
            await deps.store.end(session_id, user_id, reason=CONNECT_TIMEOUT_REASON)
        await ws.close(CLOSE_POLICY, "session expired before it was connected (connect_timeout)")
        return
    if session.budget_exhausted is not None:
        await ws.close(CLOSE_POLICY, f"budget exhausted: {session.budget_exhausted}")
        return
    try:
        await serve_voice_session(ws, session, deps)
    except SessionError as exc:
        # The store refused to hand the session to this bridge (per-user live cap, a budget or
        # the connect timeout, decided atomically): nothing has started, say why.
        with contextlib.suppress(Exception):
            await ws.close(CLOSE_POLICY, _close_reason(exc.message))


def _close_reason(message: str) -> str:
    """A close reason must fit in 123 bytes (RFC 6455 §5.5)."""
    encoded = message.encode()
    return message if len(encoded) <= 120 else encoded[:117].decode(errors="ignore") + "..."
