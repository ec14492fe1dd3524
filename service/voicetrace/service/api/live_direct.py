"""Client-direct sessions: the browser talks to Gemini Live itself; the service traces it.

- `POST /api/live/token` creates a live session (same store and state machine as a proxied one)
  and mints a one-use Gemini **ephemeral token** through google-genai's `auth_tokens`, with the
  setup locked to the service's model, voice, system prompt and tools.
- `POST /api/live/trace/event` takes batches of what the client saw (the same signals the proxied
  bridge reads from the SDK) and feeds them to the session's `SessionTrace`, so the spans follow
  the same contract. Events carry a client sequence number: a retried batch is not counted twice
  and batches that arrive out of order are applied in order. `204`, fire-and-forget.
- `POST /api/live/trace/end` ends the session and returns its summary.
- Sessions with no events for `direct_orphan_timeout_s` are ended (`end_reason` = `orphaned`).

Memory per open session is bounded: at most `MAX_PENDING` out-of-order events wait for a gap
to fill (each event's text is capped at 8000 characters, every batch at `MAX_BATCH_BYTES`, so a
few MB in the worst case and a few KB in practice), plus the trace's own bounded turn window.
Events that arrive after their gap was given up on are counted as duplicates and dropped.

Timing: event times are the client's (`at_ms`, mapped to the server clock with the batch's
`sent_at_ms`) where the telemetry takes a timestamp (audio, text, playback); the other signals
are stamped on arrival, so clients should post often (the page posts every 200 ms).

Long because: the open sessions, their sequencing and budgets, and the four routes share one
lock and one set of state; the event schemas live in `live_direct_schemas`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from voicetrace.service.api.deps import CurrentUser, Store, ensure_daily_budget
from voicetrace.service.api.errors import UNAUTHORIZED
from voicetrace.service.api.live_direct_schemas import (
    AnyEvent,
    EndRequest,
    EventBatch,
    GoAway,
    InputTranscript,
    ModelAudio,
    ModelError,
    OutputTranscript,
    Playback,
    Signal,
    TokenResponse,
    ToolCall,
    ToolCallRequest,
    ToolCallResponse,
    ToolResult,
    UsageEvent,
    UserAudio,
    UserText,
)
from voicetrace.service.sessions.errors import InvalidTransition, NotFound, SessionError
from voicetrace.service.sessions.schemas import SessionCreate
from voicetrace.service.sessions.state import SessionState, StateReason
from voicetrace.service.sessions.store import SessionStore
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget import BudgetTracker, most_urgent
from voicetrace.service.voice.budget_policy import BudgetPolicy, SessionAccounts
from voicetrace.service.voice.events import FunctionCall
from voicetrace.service.voice.gemini import live_endpoint
from voicetrace.service.voice.gemini_tokens import (
    EphemeralToken,
    constrained_ws_url,
    mint_ephemeral_token,
)
from voicetrace.service.voice.start import model_config
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import EndReason, SessionInfo, SessionTrace, TurnSummary, VoiceTelemetry

log = logging.getLogger(__name__)

ORPHANED = EndReason.ORPHANED
MAX_BATCH_BYTES = 256 * 1024
MAX_PENDING = 256  # out-of-order events held per session while a gap fills
BATCHES_PER_S = 20.0  # per session, with a burst of twice that
MAX_EVENT_AGE_NS = 120 * 10**9  # older client timestamps are clamped (a broken client clock)
TOKEN_TTL = dt.timedelta(minutes=30)
NEW_SESSION_TTL = dt.timedelta(minutes=1)  # the token must open its session soon after minting

# -- the open sessions -------------------------------------------------------------------------


@dataclass
class DirectSession:
    """One open direct session: its trace and the client's sequence bookkeeping."""

    session_id: str
    user_id: str
    trace: SessionTrace
    budget: BudgetTracker
    accounts: SessionAccounts | None = None  # the usage ledger and daily budgets
    next_seq: int = 1
    # Turns the telemetry settled (any thread hands them over here, on the loop), not yet
    # counted toward the budgets: counted when the next batch is answered.
    settled: list[TurnSummary] = field(default_factory=list)
    paused: bool = False
    # seq → (event, clock skew of its batch), held until the events before it arrive
    pending: dict[int, tuple[AnyEvent, int]] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    duplicates: int = 0
    _allowance: float = 2 * BATCHES_PER_S
    _refilled: float = field(default_factory=time.monotonic)

    def take_batch(self) -> bool:
        """Token bucket: BATCHES_PER_S per second, bursts of twice that."""
        now = time.monotonic()
        self._allowance = min(
            2 * BATCHES_PER_S, self._allowance + (now - self._refilled) * BATCHES_PER_S
        )
        self._refilled = now
        if self._allowance < 1:
            return False
        self._allowance -= 1
        return True

    def accept(self, events: list[AnyEvent], skew_ns: int) -> None:
        """Apply new events in sequence order; duplicates (seq already seen) are dropped."""
        self.last_seen = time.monotonic()
        for event in events:
            if event.seq < self.next_seq or event.seq in self.pending:
                self.duplicates += 1
                continue
            self.pending[event.seq] = (event, skew_ns)
        while self.next_seq in self.pending:
            self._apply(*self.pending.pop(self.next_seq))
            self.next_seq += 1
        if len(self.pending) > MAX_PENDING:  # a gap that never fills: stop waiting for it
            self.drain()

    def drain(self) -> None:
        """Apply every held event in order, skipping the gaps (end, orphan, overflow)."""
        for seq in sorted(self.pending):
            self._apply(*self.pending.pop(seq))
            self.next_seq = seq + 1

    def _apply(self, event: AnyEvent, skew_ns: int) -> None:
        trace = self.trace
        now = time.time_ns()
        at = None
        if event.at_ms is not None:  # the client's clock, mapped to ours; never in the future
            at = max(min(int(event.at_ms * 1e6) + skew_ns, now), now - MAX_EVENT_AGE_NS)
        match event:
            case UserAudio(duration_ms=ms, voiced=voiced):
                trace.user_audio(ms / 1000.0, voiced, at_ns=at)
            case UserText(text=text):
                trace.user_text(text, at_ns=at)
            case InputTranscript(text=text, finished=finished):
                trace.input_transcript(text, finished)
            case ModelAudio(duration_ms=ms):
                trace.model_audio(round(ms * 24) * 2, 24_000, at_ns=at)  # PCM16 at 24 kHz
            case OutputTranscript(text=text):
                trace.output_transcript(text)
            case ToolCall(call_id=call_id, name=name, args=args):
                trace.tool_call(call_id, name, args)
            case ToolResult(call_id=call_id, ok=ok, error=error, duration_ms=ms):
                seconds = ms / 1000.0 if ms is not None else None
                trace.tool_result(call_id, {}, None if ok else (error or "error"), seconds)
            case Signal(type="interrupted"):
                trace.interrupted()
            case Signal(type="generation_complete"):
                trace.generation_complete()
            case Signal(type="turn_complete"):
                trace.turn_complete()
            case UsageEvent(usage_metadata=meta):
                trace.usage(meta.to_usage())
            case Playback(turn=turn, event=kind, played_ms=played):
                trace.playback(turn, kind, played, at_ns=at)
            case GoAway(time_left_s=left):
                trace.go_away(left)
            case ModelError(code=code, reason=reason):
                trace.model_error(code, reason)


class DirectSessions:
    """The open direct sessions of one app, their orphan sweeper and the token minter."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        telemetry: VoiceTelemetry,
        tools: ToolRegistry,
        orphan_timeout_s: float,
    ) -> None:
        self.settings, self.store, self.telemetry, self.tools = settings, store, telemetry, tools
        self.orphan_timeout_s = orphan_timeout_s
        self.open: dict[str, DirectSession] = {}
        self.lock = asyncio.Lock()  # one batch at a time, so each session's order holds
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self, reason: str = "server_shutdown") -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session_id in list(self.open):
            await self.end(session_id, reason)

    async def _sweep_forever(self) -> None:
        period = max(min(self.orphan_timeout_s / 4, 30.0), 0.05)
        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - self.orphan_timeout_s
            for session_id, s in list(self.open.items()):
                if s.last_seen < cutoff:
                    log.info("ending orphaned direct session", extra={"session_id": session_id})
                    with contextlib.suppress(Exception):
                        await self.end(session_id, ORPHANED)

    async def end(self, session_id: str, reason: str) -> dict[str, Any]:
        async with self.lock:
            s = self.open.pop(session_id, None)
            if s is None:
                raise NotFound()
            s.drain()
            ended = s.trace.end(reason)
        with contextlib.suppress(InvalidTransition, NotFound):
            await self.store.end(session_id, s.user_id, reason=reason)
        if ended is not None:
            try:
                await self.store.record_summary(session_id, ended)
            except Exception:
                log.exception("could not store the summary of session %s", session_id)
        self.telemetry.flush_soon(self.settings.flush_timeout_s)
        return ended.to_json() if ended is not None else {}

    async def mint(self) -> EphemeralToken:
        """A one-use token locked to the setup a proxied session of this service sends."""
        return await mint_ephemeral_token(
            model_config(self.settings, self.tools), ttl=TOKEN_TTL, new_session_ttl=NEW_SESSION_TTL
        )


# -- routes ------------------------------------------------------------------------------------


async def limit_body_size(request: Request) -> None:
    """413 before parsing when the declared body is over the batch limit."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BATCH_BYTES:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail={"code": "too_large", "message": f"batches are at most {MAX_BATCH_BYTES} bytes"},
        )


router = APIRouter(
    prefix="/api/live",
    tags=["live-direct"],
    responses=UNAUTHORIZED,
    dependencies=[Depends(limit_body_size)],
)


def _sessions(request: Request) -> DirectSessions:
    direct: DirectSessions = request.app.state.direct_sessions
    return direct


def _owned(direct: DirectSessions, session_id: str, user: str) -> DirectSession:
    s = direct.open.get(session_id)
    if s is None or s.user_id != user:  # another user's session looks like no session
        raise NotFound()
    return s


@router.post("/token", response_model=TokenResponse, summary="Start a direct session")
async def create_token(
    body: SessionCreate, user: CurrentUser, store: Store, request: Request
) -> TokenResponse:
    direct = _sessions(request)
    await ensure_daily_budget(request, user, body.budgets)  # an exhausted user gets no token
    try:
        minted = await direct.mint()
        token, expires = minted.name, minted.expires_at
    except Exception as exc:  # the model provider, not the client, failed
        log.warning("minting an ephemeral token failed: %s", type(exc).__name__)
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY,
            detail={"code": "token_unavailable", "message": "could not mint a Gemini token"},
        ) from None
    session = await store.create(user, body)
    session = await store.transition(
        session.id, user, SessionState.LIVE, reason=StateReason.DIRECT_TOKEN
    )
    settings = direct.settings
    host, port = live_endpoint()
    policy: BudgetPolicy | None = getattr(request.app.state, "budgets", None)
    accounts = policy.for_session(session, settings.model) if policy is not None else None
    tracker = BudgetTracker.for_budgets(session.budgets, settings.budget_warn_ratio)
    pending: list[TurnSummary] = []
    loop = asyncio.get_running_loop()

    def settled(summary: TurnSummary) -> None:  # any thread: the ledger entry, on the loop
        loop.call_soon_threadsafe(pending.append, summary)
        if accounts is not None:
            loop.call_soon_threadsafe(accounts.record, summary)

    trace = direct.telemetry.start_session(
        SessionInfo(
            session_id=session.id,
            user_id=user,
            model=settings.model,
            agent_name=settings.agent_name,
            recording_consent=session.recording_consent,
            secrets_blurred=tuple(session.secrets_blurred),
            system_prompt=settings.system_prompt,
            tags=(f"mode:{session.mode}", "direct"),
            environment=settings.environment,
            server_address=host,
            server_port=port,
        ),
        on_turn_settled=settled,
    )
    # The browser connects itself: the connect span covers minting up to the first event.
    trace.connect_started()
    trace.connect_finished()
    direct.open[session.id] = DirectSession(
        session.id, user, trace, tracker, accounts, settled=pending
    )
    return TokenResponse(
        sessionId=session.id,
        token=token,
        expiresAt=expires,
        model=settings.model,
        wsUrl=constrained_ws_url(),
    )


@router.post(
    "/trace/event",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Post a batch of client-observed events (fire-and-forget)",
    responses={
        200: {
            "description": "The batch was accepted, and a budget says something: "
            '`{"type": "budget_warning" | "session_paused", "reason": "budget_exhausted", '
            '"budget": {...}}`. After `session_paused` stop the Live session; no new token is '
            "minted until the budget has room."
        }
    },
)
async def post_events(body: EventBatch, user: CurrentUser, request: Request) -> Response:
    direct = _sessions(request)
    received_ns = time.time_ns()
    async with direct.lock:
        s = _owned(direct, body.sessionId, user)
        if not s.take_batch():
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail={"code": "rate_limited", "message": f"over {BATCHES_PER_S:g} batches/s"},
                headers={"Retry-After": "1"},
            )
        skew = 0 if body.sent_at_ms is None else received_ns - int(body.sent_at_ms * 1e6)
        s.accept(body.events, skew)
    await asyncio.sleep(0)  # settlements of this batch reach the session
    told = await _budget_news(direct, s)
    if told is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return JSONResponse(told)


async def _budget_news(direct: DirectSessions, s: DirectSession) -> dict[str, Any] | None:
    """Count the turns settled since the last batch toward the session's and the user's daily
    budgets; what the client must hear (a warning, or the pause), if anything."""
    settled, s.settled[:] = list(s.settled), []
    check = None
    for summary in settled:
        check = most_urgent(check, s.budget.add_turn(summary))
    if s.accounts is not None and settled:
        check = most_urgent(check, await s.accounts.check())
    if check is None or s.paused:
        return None
    if check.exhausted:
        s.paused = True
        with contextlib.suppress(SessionError):
            await direct.store.pause_for_budget(s.session_id, s.user_id, check.name)
        s.trace.budget(True, **check.to_json())
        return {"type": "session_paused", "reason": "budget_exhausted", "budget": check.to_json()}
    s.trace.budget(False, **check.to_json())
    return {"type": "budget_warning", "budget": check.to_json()}


@router.post(
    "/tools/call",
    response_model=ToolCallResponse,
    summary="Run one of the service's tools for a direct session",
    description="The browser relays Gemini's function call here and sends the `response` back "
    "to Gemini itself. Not traced here: the client reports tool_call/tool_result events.",
)
async def call_tool(body: ToolCallRequest, user: CurrentUser, request: Request) -> ToolCallResponse:
    direct = _sessions(request)
    s = _owned(direct, body.sessionId, user)
    s.last_seen = time.monotonic()
    outcome = await direct.tools.run(FunctionCall(body.call_id, body.name, body.args))
    result = direct.tools.result_for(outcome)
    return ToolCallResponse(
        response=result.response,
        scheduling=result.scheduling,
        ok=outcome.ok,
        error=outcome.error,
        duration_ms=outcome.duration_s * 1000,
    )


@router.post("/trace/end", summary="End a direct session; returns its summary")
async def end_trace(body: EndRequest, user: CurrentUser, request: Request) -> dict[str, Any]:
    direct = _sessions(request)
    _owned(direct, body.sessionId, user)
    return await direct.end(body.sessionId, body.reason)
