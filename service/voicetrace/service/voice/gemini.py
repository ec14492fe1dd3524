"""The Gemini Live adapter: with `gemini_events`, the only code that imports `google-genai`.

`GeminiLive` owns one live conversation (it is a `LiveModel`). Server messages become the
SDK-independent events of `voice.events` (mapped by `voice.gemini_events`); it hides the
connection's life: when the server says `goAway` or the socket drops, it reconnects with the
last session-resumption handle (the conversation survives) and reports `Reconnected`; sends
issued meanwhile wait for the new session. Failures that cannot be retried end the stream with
a `ModelError` carrying the WebSocket close code — no SDK exception ever escapes `events()`.

The same code talks to real Gemini and to the local emulator: a plain `genai.Client()` reads
`GEMINI_API_KEY`, `GOOGLE_GEMINI_BASE_URL` and `SSL_CERT_FILE` from the environment.

Long because: receiving, reconnecting and sending share one piece of state — the live session
that a reconnect replaces under the senders — and belong in one class.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self, cast
from urllib.parse import urlsplit

import websockets
from google import genai
from google.genai import errors, types
from google.genai._base_url import get_base_url  # the SDK's own base-URL resolution
from google.genai.live import AsyncSession
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.gemini_events import function_declaration, function_response
from voicetrace.service.voice.gemini_frames import decode_frame
from voicetrace.service.voice.live_model import LiveModelConfig, LiveModelError, ModelConnectError
from voicetrace.telemetry.instrumentation.genai_mapping import close_info, is_retryable, map_message

log = logging.getLogger(__name__)

_INPUT_MIME = "audio/pcm;rate=16000"
_DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
_BAD_MESSAGES_TOLERATED = 3
_MAX_UNCONFIRMED = 8  # text turns kept for replay after a reconnect
_BACKOFF_S = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
_MEDIA_RESOLUTION = {
    "low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
    "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
    "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH,
}
_IMAGE_MIMES = ("image/jpeg", "image/png")


def live_base_url() -> str:
    """The Gemini API base URL as the SDK itself resolves it (`GOOGLE_GEMINI_BASE_URL`, …)."""
    return get_base_url(False, None) or _DEFAULT_BASE_URL


def live_endpoint() -> tuple[str, int]:
    """Host and port of the Live server (for the `server.*` span attributes)."""
    parts = urlsplit(live_base_url())
    return parts.hostname or "", parts.port or 443


def live_connect_config(
    c: LiveModelConfig,
    declarations: Sequence[types.FunctionDeclaration],
    handle: str | None = None,
) -> types.LiveConnectConfig:
    """The session setup: what a proxied session sends and an ephemeral token locks."""
    speech = None
    if c.voice:
        voice = types.PrebuiltVoiceConfig(voice_name=c.voice)
        speech = types.SpeechConfig(voice_config=types.VoiceConfig(prebuilt_voice_config=voice))
    vad = types.AutomaticActivityDetection(
        disabled=not c.automatic_activity_detection, silence_duration_ms=c.silence_duration_ms
    )
    transcription = types.AudioTranscriptionConfig
    resolution = _MEDIA_RESOLUTION[c.media_resolution] if c.media_resolution else None
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],  # 3.x Live models reject TEXT (1007)
        speech_config=speech,
        system_instruction=c.system_prompt or None,
        tools=[types.Tool(function_declarations=list(declarations))] if declarations else None,
        input_audio_transcription=transcription() if c.input_transcription else None,
        output_audio_transcription=transcription() if c.output_transcription else None,
        session_resumption=types.SessionResumptionConfig(handle=handle) if c.resumption else None,
        realtime_input_config=types.RealtimeInputConfig(automatic_activity_detection=vad),
        media_resolution=resolution,  # setup.generationConfig.mediaResolution on the wire
    )


def realtime_audio_json(pcm16_16k: bytes) -> str:
    """Exactly what `send_realtime_input(audio=…)` sends (URL-safe base64, snake_case mime type;
    pinned by tests/voice/test_sdk_seams.py), without its per-chunk pydantic work."""
    b64 = base64.urlsafe_b64encode(pcm16_16k).decode("ascii")
    return (
        '{"realtime_input": {"audio": {"data": "' + b64 + '", "mime_type": "' + _INPUT_MIME + '"}}}'
    )


class GeminiClients:
    """One `genai.Client` for the whole process: building one costs ~25 ms of CPU and ~0.7 MB
    (CA bundles), so sessions share it. Made on first use, off the event loop."""

    def __init__(self, api_key: str | None = None, *, compression: bool = False) -> None:
        self._api_key = api_key
        self._compression = compression
        self._client: genai.Client | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> genai.Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await _make_client(self._api_key, self._compression)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close_client(client)


async def _make_client(api_key: str | None, compression: bool = False) -> genai.Client:
    """A client; without `compression` its Live socket offers no permessage-deflate (PCM hardly
    compresses, ~3 %, and deflate was the largest CPU cost per session). The SDK passes
    `async_client_args` on to `websockets.connect` and filters them out of the REST client's
    arguments (pinned by tests/voice/test_sdk_seams.py)."""
    options = types.HttpOptions(async_client_args={} if compression else {"compression": None})
    # Building a client loads CA bundles (~40 ms): do it off the event loop.
    try:
        return await asyncio.to_thread(
            lambda: genai.Client(api_key=api_key or None, http_options=options)
        )
    except ValueError as exc:  # e.g. no API key anywhere in the environment
        raise ModelConnectError(None, f"cannot create the Gemini client: {exc}") from None


async def _close_client(client: genai.Client) -> None:
    with contextlib.suppress(Exception):
        await client.aio.aclose()
    with contextlib.suppress(Exception):
        client.close()


class GeminiLive:
    """One live conversation; reconnects transparently with the last resumption handle.

    Pass `clients` to share the process's `genai.Client`; without it the session makes (and
    closes) its own."""

    def __init__(self, config: LiveModelConfig, clients: GeminiClients | None = None) -> None:
        self.config = config
        self._clients = clients
        self._client: genai.Client | None = None
        # Validate the tool schemas now: a bad declaration is a startup error, not a 1007 later.
        self._declarations = [function_declaration(s) for s in config.tools]
        self._session: AsyncSession | None = None
        self._session_cm: contextlib.AbstractAsyncContextManager[AsyncSession] | None = None
        self._ready = asyncio.Event()  # set while a session is live; cleared while reconnecting
        self._closed = False
        self._handle: str | None = None
        self._go_away = False
        self._fast_audio: Callable[[str], Awaitable[None]] | None = None
        self._raw_recv: Callable[[], Awaitable[bytes | str]] | None = None
        # Text turns written since the last resumption handle, with the session they went to:
        # a socket can die with them unread, and the handle's state does not include them.
        self._unconfirmed: list[tuple[AsyncSession, types.Content]] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> tuple[str, int]:
        """Host and port of the Live server, resolved as the SDK does (for `server.*` spans)."""
        return live_endpoint()

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
        if self._clients is None and self._client is not None:
            client, self._client = self._client, None
            await _close_client(client)

    async def _open(
        self, handle: str | None
    ) -> tuple[AsyncSession, contextlib.AbstractAsyncContextManager[AsyncSession]]:
        if self._client is None:
            self._client = await (
                self._clients.get() if self._clients else _make_client(self.config.api_key)
            )
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
            code, reason = close_info(exc)
            raise ModelConnectError(
                code, reason or "connect failed", is_retryable(code, exc)
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
        # And 25 audio chunks/s the other way: read raw frames (see `gemini_frames`).
        recv = getattr(ws, "recv", None)
        vertex = self._client is not None and self._client.vertexai
        self._raw_recv = (
            functools.partial(recv, decode=False) if callable(recv) and not vertex else None
        )

    async def _drop_session(self) -> None:
        cm, self._session_cm = self._session_cm, None
        self._fast_audio = None
        self._raw_recv = None
        if cm is not None:
            # A dead peer must not hold us up: websockets would wait for the close handshake.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cm.__aexit__(None, None, None), 2.0)

    def _live_config(self, handle: str | None) -> types.LiveConnectConfig:
        return live_connect_config(self.config, self._declarations, handle)

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
                async for event in self._session_events(session):
                    failures = bad_messages = 0
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
            code, reason = close_info(lost)
            if not is_retryable(code, lost):
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

    async def _session_events(self, session: AsyncSession) -> AsyncIterator[ev.ModelEvent]:
        """The events of one connection until its socket fails (raises what the socket or the
        SDK raised). Raw frames are decoded by `gemini_frames` (fast path for audio); where the
        pinned seam is missing (another SDK, Vertex AI) the SDK's own `receive()` is used."""
        recv = self._raw_recv
        if recv is not None:
            while True:
                for event in decode_frame(await recv()):
                    yield event
        while True:
            # receive() yields one turn and stops after turnComplete: loop across turns.
            turn_messages = cast(
                "AsyncGenerator[types.LiveServerMessage, None]", session.receive()
            )  # an async generator at run time; typed as an iterator by the SDK
            async with contextlib.aclosing(turn_messages) as turn:
                async for msg in turn:
                    for event in map_message(msg):
                        yield event

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
            try:
                await send(realtime_audio_json(pcm16_16k))
                return
            except websockets.ConnectionClosed:
                pass  # fall through to the waiting path
        blob = types.Blob(data=pcm16_16k, mime_type=_INPUT_MIME)
        await self._send(lambda s: s.send_realtime_input(audio=blob))

    async def send_video(self, image: bytes, mime_type: str) -> None:
        """One camera or screen frame as realtime video (`realtimeInput.video`); about 1 fps is
        what Gemini Live samples. Frames are not replayed after a reconnect (the next one is)."""
        if not isinstance(image, bytes | bytearray) or not image:
            raise ValueError("a video frame must be non-empty image bytes")
        if mime_type not in _IMAGE_MIMES:
            raise ValueError(f"video frames must be one of {', '.join(_IMAGE_MIMES)}")
        blob = types.Blob(data=bytes(image), mime_type=mime_type)
        await self._send(lambda s: s.send_realtime_input(video=blob))

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
