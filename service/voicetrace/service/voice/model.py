"""The Gemini Live adapter: the only module in the project that imports `google-genai`.

`GeminiLive` owns one live conversation. It turns every server message into the SDK-independent
events of `service.voice.events`, and hides the connection's life: when the server says `goAway`
or the socket drops, it reconnects with the last session-resumption handle (the conversation
survives) and reports `Reconnected`; sends issued meanwhile wait for the new session. Failures
that cannot be retried end the stream with a `ModelError` carrying the WebSocket close code —
no SDK exception ever escapes `events()`.

The same code talks to real Gemini and to the local emulator: a plain `genai.Client()` reads
`GEMINI_API_KEY`, `GOOGLE_GEMINI_BASE_URL` and `SSL_CERT_FILE` from the environment.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import websockets
from google import genai
from google.genai import errors, types
from google.genai._base_url import get_base_url  # the SDK's own base-URL resolution
from google.genai.live import AsyncSession
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.tools import FunctionSpec

log = logging.getLogger(__name__)

# Close codes after which a reconnect can succeed: normal close (e.g. after goAway), going
# away, abnormal drop, service restart, try again later. 1007 (invalid argument), 1008 (auth,
# policy, unknown model) and 1011 (internal error) fail again the same way.
RETRYABLE_CLOSE_CODES = frozenset({1000, 1001, 1006, 1012, 1013})
_INPUT_MIME = "audio/pcm;rate=16000"
_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
_BAD_MESSAGES_TOLERATED = 3
_MAX_UNCONFIRMED = 8  # text turns kept for replay after a reconnect
_BACKOFF_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class LiveModelConfig:
    """Everything that shapes one Live session (the setup message), SDK-independent."""

    model: str = "gemini-3.8-live"
    voice: str | None = "Puck"
    system_prompt: str | None = None
    tools: Sequence[FunctionSpec] = ()
    input_transcription: bool = True
    output_transcription: bool = True
    resumption: bool = True
    automatic_activity_detection: bool = True
    silence_duration_ms: int | None = None
    api_key: str | None = None  # None → the SDK's own env handling (GEMINI_API_KEY)
    connect_timeout_s: float = 10.0
    max_reconnects: int = 3

    def __post_init__(self) -> None:
        if not self.model or not self.model.strip():
            raise ValueError("model must be a model name such as 'gemini-3.8-live'")
        if self.connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be positive")
        if self.max_reconnects < 0:
            raise ValueError("max_reconnects must be >= 0")
        if self.silence_duration_ms is not None and self.silence_duration_ms <= 0:
            raise ValueError("silence_duration_ms must be positive")

    def __repr__(self) -> str:  # the API key never reaches logs or spans
        key = "set" if self.api_key else None
        return f"LiveModelConfig(model={self.model!r}, voice={self.voice!r}, api_key={key})"


class LiveModelError(Exception):
    """A live-session failure with the WebSocket close code (or None) and the server's reason."""

    def __init__(self, code: int | None, reason: str, retryable: bool = False) -> None:
        super().__init__(f"{code}: {reason}" if code is not None else reason)
        self.code = code
        self.reason = reason
        self.retryable = retryable


class ModelConnectError(LiveModelError):
    """Opening the Live session failed (bad key, unknown model, unreachable, timeout…)."""


# -- SDK → events ---------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _sample_rate(mime_type: str | None) -> int:
    """`audio/pcm;rate=24000` → 24000 (the Live default when the rate is missing)."""
    for part in (mime_type or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "rate" and value.isdigit():
            return int(value)
    return 24_000


def _seconds(duration: str | None) -> float:
    """A protobuf Duration in JSON (`"5s"`, `"0.250s"`) as seconds."""
    try:
        return float((duration or "0s").rstrip("s") or 0)
    except ValueError:
        return 0.0


def _modalities(details: list[types.ModalityTokenCount] | None) -> tuple[ev.ModalityCount, ...]:
    out = []
    for d in details or ():
        modality = d.modality.value if d.modality is not None else "TEXT"
        if modality in ("TEXT", "AUDIO", "IMAGE", "VIDEO", "DOCUMENT"):
            out.append(ev.ModalityCount(modality, d.token_count or 0))  # type: ignore[arg-type]
    return tuple(out)


def _usage(u: types.UsageMetadata) -> ev.Usage:
    return ev.Usage(
        prompt_token_count=u.prompt_token_count or 0,
        cached_content_token_count=u.cached_content_token_count or 0,
        response_token_count=u.response_token_count or 0,
        tool_use_prompt_token_count=u.tool_use_prompt_token_count or 0,
        thoughts_token_count=u.thoughts_token_count or 0,
        total_token_count=u.total_token_count or 0,
        prompt_tokens_details=_modalities(u.prompt_tokens_details),
        cache_tokens_details=_modalities(u.cache_tokens_details),
        response_tokens_details=_modalities(u.response_tokens_details),
        tool_use_prompt_tokens_details=_modalities(u.tool_use_prompt_tokens_details),
    )


def map_message(msg: types.LiveServerMessage) -> Iterator[ev.ModelEvent]:
    """One server message → events, in the order the bridge and the tracer rely on.

    Usage comes before TurnComplete (Gemini sends both in one message): the turn's billable
    snapshot must be known when the turn closes.
    """
    content = msg.server_content
    if content is not None:
        if content.input_transcription is not None and content.input_transcription.text:
            t = content.input_transcription
            yield ev.InputTranscript(t.text or "", bool(t.finished))
        if content.output_transcription is not None and content.output_transcription.text:
            t = content.output_transcription
            yield ev.OutputTranscript(t.text or "", bool(t.finished))
        if content.model_turn is not None:
            for part in content.model_turn.parts or ():
                blob = part.inline_data
                if blob is not None and blob.data:
                    yield ev.AudioOut(blob.data, _sample_rate(blob.mime_type))
                elif part.text:
                    yield ev.TextOut(part.text, thought=bool(part.thought))
    if msg.tool_call is not None and msg.tool_call.function_calls:
        calls = tuple(
            ev.FunctionCall(fc.id or "", fc.name or "", dict(fc.args or {}))
            for fc in msg.tool_call.function_calls
        )
        yield ev.ToolCall(calls)
    if msg.tool_call_cancellation is not None and msg.tool_call_cancellation.ids:
        yield ev.ToolCallCancellation(tuple(msg.tool_call_cancellation.ids))
    if content is not None:
        if content.interrupted:
            yield ev.Interrupted()
        if content.generation_complete:
            yield ev.GenerationComplete()
    if msg.usage_metadata is not None:
        yield _usage(msg.usage_metadata)
    if content is not None and content.turn_complete:
        yield ev.TurnComplete()
    if msg.go_away is not None:
        yield ev.GoAway(_seconds(msg.go_away.time_left))
    update = msg.session_resumption_update
    if update is not None and update.new_handle:
        yield ev.ResumptionHandle(update.new_handle, update.resumable is not False)


# -- events/specs → SDK ---------------------------------------------------------------------------


def function_declaration(spec: FunctionSpec) -> types.FunctionDeclaration:
    """FunctionSpec → SDK declaration. The behaviour is always explicit: an unset behaviour means
    NON_BLOCKING on gemini-3.8-live but BLOCKING on older models."""
    try:
        schema = types.Schema.model_validate(spec.parameters) if spec.parameters else None
    except ValueError as exc:
        raise ValueError(
            f"tool {spec.name!r}: parameters are not a valid Gemini schema: {exc}"
        ) from exc
    behavior = types.Behavior.NON_BLOCKING if spec.non_blocking else types.Behavior.BLOCKING
    return types.FunctionDeclaration(
        name=spec.name, description=spec.description, parameters=schema, behavior=behavior
    )


def function_response(result: ev.ToolResult) -> types.FunctionResponse:
    scheduling = types.FunctionResponseScheduling(result.scheduling) if result.scheduling else None
    return types.FunctionResponse(
        id=result.id, name=result.name, response=result.response, scheduling=scheduling
    )


def _close_info(exc: BaseException) -> tuple[int | None, str]:
    """(close code, reason) from whatever the SDK or websockets raised."""
    if isinstance(exc, errors.APIError):
        # Live errors: code = close code, details = the close reason, message = None.
        details = exc.details
        if isinstance(details, dict):
            reason = str(details.get("message") or details.get("error") or details)
        else:
            reason = str(details or exc.message or "")
        return exc.code, reason
    if isinstance(exc, websockets.ConnectionClosed):
        frame = exc.rcvd
        return (frame.code, frame.reason) if frame else (1006, "connection lost")
    if isinstance(exc, websockets.InvalidStatus):
        # The HTTP upgrade was refused (a proxy, or a server that rejects before upgrading).
        return exc.response.status_code, f"HTTP {exc.response.status_code} on connect"
    if isinstance(exc, TimeoutError):
        return None, "timed out"
    return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retryable(code: int | None, exc: BaseException) -> bool:
    if code in RETRYABLE_CLOSE_CODES:
        return True
    # No close code at all: the network, not the server, failed (refused, reset, TLS, timeout).
    return code is None and isinstance(exc, OSError | TimeoutError | websockets.ConnectionClosed)


# -- the session ----------------------------------------------------------------------------------


class GeminiLive:
    """One live conversation; reconnects transparently with the last resumption handle."""

    def __init__(self, config: LiveModelConfig, client: genai.Client | None = None) -> None:
        self.config = config
        self._client = client
        self._owns_client = client is None
        # Validate the tool schemas now: a bad declaration is a startup error, not a 1007 later.
        self._declarations = [function_declaration(s) for s in config.tools]
        self._session: AsyncSession | None = None
        self._session_cm: contextlib.AbstractAsyncContextManager[AsyncSession] | None = None
        self._ready = asyncio.Event()  # set while a session is live; cleared while reconnecting
        self._closed = False
        self._handle: str | None = None
        self._go_away = False
        self._fast_audio: Callable[[str], Awaitable[None]] | None = None
        # Text turns written since the last resumption handle, with the session they went to:
        # a socket can die with them unread, and the handle's state does not include them.
        self._unconfirmed: list[tuple[AsyncSession, types.Content]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> tuple[str, int]:
        """Host and port of the Live server, resolved as the SDK does (for `server.*` spans)."""
        base = get_base_url(False, None) or _DEFAULT_BASE_URL
        parts = urlsplit(base)
        return parts.hostname or "", parts.port or 443

    @property
    def resumption_handle(self) -> str | None:
        """The latest resumable handle the server gave us (what a reconnect resumes from)."""
        return self._handle

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the Live session; raises `ModelConnectError(code, reason)` (1008 for a bad key
        or unknown model, 1007 for an invalid setup, None for network failures)."""
        if self._closed:
            raise ModelConnectError(None, "this GeminiLive was closed; create a new one")
        if self._session is not None:
            raise RuntimeError("connect() was already called")
        self._install(*await self._open(handle=None))
        self._ready.set()

    async def close(self) -> None:
        """End the conversation: closes the socket, ends `events()`, releases waiting senders.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._ready.set()  # wake senders waiting for a reconnect; they see `_closed` and return
        await self._drop_session()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.aio.aclose()
            with contextlib.suppress(Exception):
                client.close()

    async def _make_client(self) -> genai.Client:
        # Building a client loads CA bundles (~40 ms): do it off the event loop.
        key = self.config.api_key
        try:
            return await asyncio.to_thread(
                lambda: genai.Client(api_key=key) if key else genai.Client()
            )
        except ValueError as exc:  # e.g. no API key anywhere in the environment
            raise ModelConnectError(None, f"cannot create the Gemini client: {exc}") from None

    async def _open(
        self, handle: str | None
    ) -> tuple[AsyncSession, contextlib.AbstractAsyncContextManager[AsyncSession]]:
        if self._client is None:
            self._client = await self._make_client()
        cm = self._client.aio.live.connect(
            model=self.config.model, config=self._live_config(handle)
        )
        try:
            session = await asyncio.wait_for(cm.__aenter__(), self.config.connect_timeout_s)
        except TimeoutError:
            raise ModelConnectError(
                None, f"no setupComplete within {self.config.connect_timeout_s:g} s", True
            ) from None
        except Exception as exc:
            code, reason = _close_info(exc)
            raise ModelConnectError(
                code, reason or "connect failed", _retryable(code, exc)
            ) from exc
        return session, cm

    def _install(
        self, session: AsyncSession, cm: contextlib.AbstractAsyncContextManager[AsyncSession]
    ) -> None:
        self._session, self._session_cm = session, cm
        ws = getattr(session, "_ws", None)
        # Hot path: 50 audio chunks/s per session. The SDK's send_realtime_input costs ~30 µs of
        # pydantic work per chunk; writing the identical JSON ourselves costs ~1 µs.
        self._fast_audio = (
            ws.send if ws is not None and callable(getattr(ws, "send", None)) else None
        )

    async def _drop_session(self) -> None:
        cm, self._session_cm = self._session_cm, None
        self._fast_audio = None
        if cm is not None:
            # A dead peer must not hold us up: websockets would wait for the close handshake.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cm.__aexit__(None, None, None), 2.0)

    def _live_config(self, handle: str | None) -> types.LiveConnectConfig:
        c = self.config
        speech = None
        if c.voice:
            voice = types.PrebuiltVoiceConfig(voice_name=c.voice)
            speech = types.SpeechConfig(voice_config=types.VoiceConfig(prebuilt_voice_config=voice))
        vad = types.AutomaticActivityDetection(
            disabled=not c.automatic_activity_detection, silence_duration_ms=c.silence_duration_ms
        )
        return types.LiveConnectConfig(
            response_modalities=[types.Modality.AUDIO],  # 3.x Live models reject TEXT (1007)
            speech_config=speech,
            system_instruction=c.system_prompt or None,
            tools=[types.Tool(function_declarations=self._declarations)]
            if self._declarations
            else None,
            input_audio_transcription=types.AudioTranscriptionConfig()
            if c.input_transcription
            else None,
            output_audio_transcription=types.AudioTranscriptionConfig()
            if c.output_transcription
            else None,
            session_resumption=types.SessionResumptionConfig(handle=handle)
            if c.resumption
            else None,
            realtime_input_config=types.RealtimeInputConfig(automatic_activity_detection=vad),
        )

    # -- receiving ------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[ev.ModelEvent]:
        """Every event of the conversation, across turns and reconnects, until `close()` or an
        unrecoverable failure (reported as a final `ModelError`)."""
        if self._session is None and not self._closed:
            raise RuntimeError("call connect() before events()")
        failures = 0  # consecutive reconnects that produced no message
        bad_messages = 0
        while not self._closed:
            session = self._session
            assert session is not None
            try:
                # receive() yields one turn and stops after turnComplete: loop across turns.
                async with contextlib.aclosing(session.receive()) as turn:
                    async for msg in turn:
                        failures = bad_messages = 0
                        for event in map_message(msg):
                            if isinstance(event, ev.GoAway):
                                self._go_away = True
                            elif isinstance(event, ev.ResumptionHandle) and event.resumable:
                                self._handle = event.handle
                                self._unconfirmed.clear()
                            elif isinstance(event, ev.TurnComplete) and not self.config.resumption:
                                self._unconfirmed.clear()
                            yield event
                continue
            except (errors.APIError, websockets.ConnectionClosed, OSError) as exc:
                lost = exc
            except Exception as exc:  # a message the SDK cannot parse; the socket is still fine
                if self._closed:
                    return
                bad_messages += 1
                log.warning("unparseable Live message (%s)", type(exc).__name__)
                if bad_messages < _BAD_MESSAGES_TOLERATED:
                    continue
                yield ev.ModelError(None, f"invalid messages from the model: {exc}", False)
                await self.close()
                return
            if self._closed:
                return  # our own close() ended the socket
            code, reason = _close_info(lost)
            if not _retryable(code, lost):
                yield ev.ModelError(code, reason, False)
                await self.close()
                return
            outcome = await self._reconnect(session, failures)
            if isinstance(outcome, ev.ModelError):
                yield outcome
                await self.close()
                return
            if outcome is not None:
                failures += 1
                yield outcome

    async def _reconnect(
        self, lost: AsyncSession, failures: int
    ) -> ev.Reconnected | ev.ModelError | None:
        """Replace the dead session, resuming from the last handle. None if closed meanwhile."""
        started = time.monotonic()
        reason = "go_away" if self._go_away else "connection_lost"
        if self._session is lost:
            self._ready.clear()  # senders now wait for the new session
        await self._drop_session()
        last: LiveModelError | None = None
        attempt = failures
        handle = self._handle if self.config.resumption else None
        while attempt < self.config.max_reconnects and not self._closed:
            await asyncio.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1
            try:
                opened = await self._open(handle)
            except ModelConnectError as exc:
                last = exc
                log.info("Live reconnect %d failed: %s", attempt, exc.code)
                if exc.retryable:
                    continue
                if handle is None:
                    break
                # The handle was refused (expired, unknown): a fresh session loses the context
                # but keeps the user talking. A bad key fails again and ends it.
                handle = None
                continue
            if self._closed:  # close() raced with the reconnect: do not leak the new socket
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(opened[1].__aexit__(None, None, None), 2.0)
                return None
            self._install(*opened)
            self._go_away = False
            await self._replay(lost)  # before waiting senders go: the user's order is kept
            self._ready.set()
            downtime = time.monotonic() - started
            return ev.Reconnected(reason, downtime, resumed=handle is not None)  # type: ignore[arg-type]
        if self._closed:
            return None
        if last is None:
            return ev.ModelError(None, f"{reason}: gave up after {attempt} reconnects", True)
        return ev.ModelError(last.code, last.reason, last.retryable)

    async def _replay(self, lost: AsyncSession) -> None:
        """Re-send the text turns the dead session may never have read (best effort: a turn the
        server consumed just before issuing the handle we resumed from could be answered twice)."""
        session = self._session
        assert session is not None
        pending = [content for s, content in self._unconfirmed if s is lost]
        self._unconfirmed = [(s, c) for s, c in self._unconfirmed if s is not lost]
        for content in pending:
            with contextlib.suppress(websockets.ConnectionClosed, errors.APIError):
                await session.send_client_content(turns=content, turn_complete=True)
                self._unconfirmed.append((session, content))

    # -- sending --------------------------------------------------------------------------------

    async def _live_session(self) -> AsyncSession | None:
        """The live session, waiting (bounded) through a reconnect; None once closed."""
        if not self._ready.is_set():
            if self._session is None and not self._closed:
                raise RuntimeError("call connect() before sending")
            try:
                await asyncio.wait_for(self._ready.wait(), self.config.connect_timeout_s)
            except TimeoutError:
                log.warning("Live reconnect still pending; input dropped")
                return None
        return None if self._closed else self._session

    async def _send(self, op: Callable[[AsyncSession], Awaitable[None]]) -> None:
        session = await self._live_session()
        if session is None:
            return  # closed: events() has already reported why
        try:
            await op(session)
        except (websockets.ConnectionClosed, errors.APIError):
            # The socket died under us; events() notices too and reconnects. Retry once there.
            if self._session is session:
                self._ready.clear()
            session = await self._live_session()
            if session is not None:
                with contextlib.suppress(websockets.ConnectionClosed, errors.APIError):
                    await op(session)

    async def send_audio(self, pcm16_16k: bytes) -> None:
        """Stream user audio: PCM16 LE mono at 16 kHz (any chunk size)."""
        if not isinstance(pcm16_16k, bytes | bytearray) or len(pcm16_16k) % 2:
            raise ValueError("audio must be PCM16 bytes (an even number of bytes)")
        send = self._fast_audio
        if send is not None and self._ready.is_set():
            # Exactly what the SDK would send (URL-safe base64, snake_case mime_type).
            b64 = base64.urlsafe_b64encode(pcm16_16k).decode("ascii")
            try:
                await send(
                    '{"realtime_input": {"audio": {"data": "' + b64
                    + '", "mime_type": "' + _INPUT_MIME + '"}}}'
                )  # fmt: skip
                return
            except websockets.ConnectionClosed:
                pass  # fall through to the waiting path
        blob = types.Blob(data=pcm16_16k, mime_type=_INPUT_MIME)
        await self._send(lambda s: s.send_realtime_input(audio=blob))

    async def send_text(self, text: str) -> None:
        """A complete user turn in text (client_content with turn_complete)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        content = types.Content(role="user", parts=[types.Part(text=text)])

        async def op(session: AsyncSession) -> None:
            await session.send_client_content(turns=content, turn_complete=True)
            del self._unconfirmed[: -_MAX_UNCONFIRMED + 1]
            self._unconfirmed.append((session, content))

        await self._send(op)

    async def send_audio_end(self) -> None:
        """The microphone stopped: the server flushes VAD and ends the user's speech."""
        await self._send(lambda s: s.send_realtime_input(audio_stream_end=True))

    async def send_activity_start(self) -> None:
        """Manual turn-taking (automatic activity detection off): the user starts speaking."""
        await self._send(lambda s: s.send_realtime_input(activity_start=types.ActivityStart()))

    async def send_activity_end(self) -> None:
        await self._send(lambda s: s.send_realtime_input(activity_end=types.ActivityEnd()))

    async def send_tool_results(self, results: Sequence[ev.ToolResult]) -> None:
        """Answer function calls; `scheduling` applies to NON_BLOCKING functions only."""
        if not results:
            return
        responses = [function_response(r) for r in results]
        await self._send(lambda s: s.send_tool_response(function_responses=responses))
