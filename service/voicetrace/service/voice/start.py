"""Claiming a session for a socket: CONNECTING → LIVE, then its model, trace and bridge."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket
from voicetrace.service.sessions.errors import InvalidTransition
from voicetrace.service.sessions.schemas import LiveSession
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.settings import Settings
from voicetrace.service.voice.bridge import VoiceBridge
from voicetrace.service.voice.deps import BridgeDeps
from voicetrace.service.voice.hub import BUDGET_EXHAUSTED
from voicetrace.service.voice.live_model import LiveModelConfig
from voicetrace.service.voice.outcome import CLOSE_POLICY
from voicetrace.service.voice.protocol import server_message
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import SessionInfo

log = logging.getLogger(__name__)


async def serve_voice_session(ws: WebSocket, session: LiveSession, deps: BridgeDeps) -> None:
    """Claim `session` for this socket and run it to the end (the socket is accepted)."""
    if await _refused_for_budget(ws, session, deps):
        return
    try:
        await deps.store.transition(
            session.id, session.user_id, SessionState.LIVE, only_from={SessionState.CONNECTING}
        )
    except InvalidTransition as exc:  # another connection won the race for this session
        await ws.close(CLOSE_POLICY, f"session is {exc.current.value}, not CONNECTING")
        return
    settings = deps.settings
    model = deps.model_factory(model_config(settings, deps.tools))
    host, port = model.endpoint
    bridge = VoiceBridge(ws, session, deps, model)
    bridge.trace = deps.telemetry.start_session(
        SessionInfo(
            session_id=session.id,
            user_id=session.user_id,
            model=settings.model,
            agent_name=settings.agent_name,
            recording_consent=session.recording_consent,
            secrets_blurred=tuple(session.secrets_blurred),
            system_prompt=settings.system_prompt,
            tags=(f"mode:{session.mode}",) if session.mode else (),
            environment=settings.environment,
            server_address=host,
            server_port=port,
        ),
        on_turn_settled=bridge.reports.settled_threadsafe,
    )
    root = bridge.trace.root_context
    if root is not None:  # so the trace can be closed if this process dies
        try:
            await asyncio.shield(deps.store.record_root(session.id, root))
        except Exception:
            log.exception("could not store the root span of session %s", session.id)
    await bridge.run()


async def _refused_for_budget(ws: WebSocket, session: LiveSession, deps: BridgeDeps) -> bool:
    """A user whose daily budget is used up gets no new session: an `error` frame naming the
    budget, the session ENDED (`budget_exhausted`) and a 1008 close."""
    if deps.budgets is None:
        return False
    check = (await deps.budgets.status(session.user_id, session.budgets)).exhausted()
    if check is None:
        return False
    message = f"daily budget {check.name} is used up for today; new sessions are refused"
    with contextlib.suppress(Exception):  # the client may already be gone
        await ws.send_text(
            server_message("error", code=BUDGET_EXHAUSTED, message=message, budget=check.to_json())
        )
    try:
        await deps.store.end(session.id, session.user_id, reason=BUDGET_EXHAUSTED)
    except InvalidTransition:
        pass  # ended meanwhile (REST)
    except Exception:
        log.exception("could not store the budget refusal of %s", session.id)
    with contextlib.suppress(Exception):
        await ws.close(CLOSE_POLICY, f"budget exhausted: {check.name}")
    return True


def model_config(settings: Settings, tools: ToolRegistry) -> LiveModelConfig:
    return LiveModelConfig(
        model=settings.model,
        voice=settings.voice,
        system_prompt=settings.system_prompt,
        tools=tuple(tools.specs()),
        silence_duration_ms=settings.silence_duration_ms,
        automatic_activity_detection=settings.automatic_activity_detection,
        media_resolution=settings.media_resolution,
        api_key=settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else None,
        connect_timeout_s=settings.model_connect_timeout_s,
    )
