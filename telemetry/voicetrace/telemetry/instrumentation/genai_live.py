"""Drop-in OpenTelemetry instrumentor for google-genai's async Live API (2.x and 3.x).

```python
from voicetrace.telemetry.instrumentation.genai_live import GenAILiveInstrumentor

GenAILiveInstrumentor().instrument()  # or: opentelemetry-instrument python app.py
```

It wraps `AsyncLive.connect` (an async context manager) and the `AsyncSession` methods
`send_realtime_input`, `send_client_content`, `send_tool_response`, `send`, `receive` and
`close`, and reports what passes through them to a `VoiceTelemetry` — the same span contract as the
voicetrace service (docs/telemetry.md): one `voice_session` per conversation (a reconnect that
resumes from the session's handle continues it, with a `model.connect` span and a
`model.reconnected` event), turns from Gemini's own signals, `chat` generations with usage and
cost, `execute_tool` spans, barge-in, go-away, and content only with consent.

Rules: the app receives exactly what the SDK returns (the same objects, the same exceptions);
nothing of ours ever raises into it — an error in tracing is counted
(`VoiceTelemetry.health()["tracer_errors"]`) and swallowed; `uninstrument()` puts every
original method back. google-genai is imported by `instrument()`, never by importing this module
(an `opentelemetry-instrument` run without google-genai skips it).

`instrument()` options: `telemetry` (a `VoiceTelemetry`; else one is made over `tracer_provider`
/ `meter_provider` or the global ones, with the packaged prices), `user_id`, `agent_name`,
`recording_consent`, `tags`, `environment`, `resume_grace_s` (how long a conversation lost to
goAway or a drop waits for the app to reconnect with its handle; 30 s). Per session, wrap the
connect in `session_context(session_id=..., user_id=...)` to name it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import os
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from voicetrace.telemetry.core import VoiceTelemetry
from voicetrace.telemetry.prices import PriceTable
from voicetrace.telemetry.records import EndReason, SessionInfo

if TYPE_CHECKING:
    from voicetrace.telemetry.instrumentation.genai_session import LiveTrace

# google-genai 2.x and 3.x: the Live API surface wrapped here is the same in both.
_INSTRUMENTS = ("google-genai >= 2.0, < 4",)
_SESSION_METHODS = ("send_realtime_input", "send_client_content", "send_tool_response", "send")
_DEFAULT_HOST = "generativelanguage.googleapis.com"
_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "voicetrace_genai_live_session", default=None
)


@contextlib.contextmanager
def session_context(**fields: Any) -> Iterator[None]:
    """`SessionInfo` fields (session_id, user_id, recording_consent, tags, …) for the Live
    sessions connected inside this block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class GenAILiveInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every google-genai async Live session as a voicetrace `voice_session`."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    @property
    def telemetry(self) -> VoiceTelemetry | None:
        """The `VoiceTelemetry` sessions are reported to (None before `instrument()`)."""
        return getattr(self, "_telemetry", None)

    def _instrument(self, **kwargs: Any) -> None:
        from google.genai import live  # the SDK only now: instrumenting means it is used

        telemetry = kwargs.get("telemetry")
        if telemetry is None:
            telemetry = VoiceTelemetry(
                kwargs.get("tracer_provider"),
                kwargs.get("meter_provider"),
                pricing=kwargs.get("pricing") or PriceTable.load(None),
            )
        self._telemetry: VoiceTelemetry = telemetry
        self._defaults = {
            name: kwargs[name]
            for name in ("user_id", "agent_name", "recording_consent", "tags", "environment")
            if name in kwargs
        }
        self._grace_s = float(kwargs.get("resume_grace_s", 30.0))
        self._sessions: weakref.WeakKeyDictionary[Any, LiveTrace] = weakref.WeakKeyDictionary()
        self._parked: dict[str, tuple[LiveTrace, asyncio.TimerHandle | None]] = {}
        # Connections the app closed itself (ADK and Pipecat call `close()` while their receive
        # loop runs): the close that loop then sees is the app's, not a model error.
        self._closed: weakref.WeakSet[Any] = weakref.WeakSet()
        self._originals: list[tuple[type, str, Any]] = []
        self._patch(live.AsyncLive, "connect", self._wrap_connect)
        self._patch(live.AsyncSession, "receive", self._wrap_receive)
        self._patch(live.AsyncSession, "close", self._wrap_close)
        for name in _SESSION_METHODS:
            self._patch(live.AsyncSession, name, self._wrap_send(name))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
        for handle in list(self._parked):
            self._expire(handle)
        self._telemetry.flush_soon()

    # -- patching ---------------------------------------------------------------------------
    def _patch(self, owner: type, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        wrapper = make(original)
        functools.update_wrapper(wrapper, original)
        wrapper.__voicetrace_original__ = original
        self._originals.append((owner, name, original))
        setattr(owner, name, wrapper)

    def _guarded(self, where: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run tracing work fail-open: count and swallow anything it raises."""
        try:
            return fn(*args)
        except Exception as exc:
            self._telemetry.counters.error(f"genai_live.{where}", exc)
            return None

    def _wrap_connect(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def connect(live_self: Any, *args: Any, **kwargs: Any) -> Any:
            cm = original(live_self, *args, **kwargs)
            return _TracedConnect(self, cm, kwargs.get("model"), kwargs.get("config"))

        return connect

    def _wrap_receive(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def receive(session: Any, *args: Any, **kwargs: Any) -> Any:
            messages = original(session, *args, **kwargs)
            state = self._sessions.get(session)
            return messages if state is None else self._traced_receive(messages, state, session)

        return receive

    async def _traced_receive(self, messages: Any, state: LiveTrace, session: Any) -> Any:
        from voicetrace.telemetry.instrumentation.genai_session import CONNECTION_ERRORS

        async with contextlib.aclosing(messages):
            while True:
                try:
                    msg = await messages.__anext__()
                except StopAsyncIteration:
                    return
                except CONNECTION_ERRORS as exc:
                    # Not an old connection already replaced, nor one the app closed.
                    if state.current is session and session not in self._closed:
                        self._guarded("receive", state.on_receive_error, exc)
                    raise
                try:
                    state.on_message(msg)
                except Exception as exc:
                    self._telemetry.counters.error("genai_live.receive", exc)
                yield msg

    def _wrap_close(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def close(session: Any, *args: Any, **kwargs: Any) -> Any:
            self._guarded("close", self._closed.add, session)
            return await original(session, *args, **kwargs)

        return close

    def _wrap_send(self, name: str) -> Callable[[Any], Any]:
        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            async def send(session: Any, *args: Any, **kwargs: Any) -> Any:
                at_ns = time.time_ns()
                result = await original(session, *args, **kwargs)
                state = self._sessions.get(session)
                if state is not None:  # recorded once the SDK accepted and sent it
                    self._guarded(name, self._record_send, state, name, kwargs, at_ns)
                return result

            return send

        return make

    @staticmethod
    def _record_send(state: LiveTrace, name: str, kwargs: dict[str, Any], at_ns: int) -> None:
        if name == "send_realtime_input":
            state.on_realtime_input(kwargs, at_ns)
        elif name == "send_client_content":
            # The SDK's default is turn_complete=True.
            state.on_client_content(
                kwargs.get("turns"), kwargs.get("turn_complete", True) is not False, at_ns
            )
        elif name == "send_tool_response":
            state.on_tool_response(kwargs.get("function_responses"))
        else:
            state.on_send(kwargs.get("input"), bool(kwargs.get("end_of_turn")), at_ns)

    # -- sessions -----------------------------------------------------------------------------
    def _begin(self, model: object, config: object) -> LiveTrace:
        """Before the socket opens: the conversation this connect continues, or a new one."""
        from voicetrace.telemetry.instrumentation.genai_session import (
            LiveTrace,
            resumption_handle,
            system_prompt,
        )

        handle = resumption_handle(config)
        if handle is not None and handle in self._parked:
            state, timer = self._parked.pop(handle)
            if timer is not None:
                timer.cancel()
            return state
        if handle is not None:  # resuming before leaving the old connection (goAway handling)
            for live_state in set(self._sessions.values()):
                if live_state.handle == handle:
                    return live_state
        name = str(model or "unknown").removeprefix("models/")
        host, port = _endpoint()
        fields: dict[str, Any] = {
            "session_id": uuid.uuid4().hex,
            "user_id": "anonymous",
            "model": name,
            "agent_name": "genai-live",
            "system_prompt": system_prompt(config),
            "server_address": host,
            "server_port": port,
            **self._defaults,
            **(_context.get() or {}),
        }
        if isinstance(fields.get("tags"), list):
            fields["tags"] = tuple(fields["tags"])
        allowed = {f.name for f in dataclasses.fields(SessionInfo)}
        info = SessionInfo(**{k: v for k, v in fields.items() if k in allowed})
        state = LiveTrace(self._telemetry.start_session(info), config, name)
        state.trace.connect_started()
        return state

    def _connected(self, state: LiveTrace, session: Any, resuming: bool) -> None:
        self._sessions[session] = state
        state.current = session
        state.connections += 1
        if resuming:
            state.resumed(resumed=True)
        else:
            state.trace.connect_finished()

    def _connect_failed(self, state: LiveTrace, exc: BaseException, resuming: bool) -> None:
        from voicetrace.telemetry.instrumentation.genai_mapping import close_info

        if resuming:  # the app may try again: keep waiting for it, within the grace period
            if state.connections == 0:
                self._park(state)
            return
        code, reason = close_info(exc)
        state.trace.connect_finished(error=f"{code}: {reason}" if code else reason)
        self._end(state, EndReason.MODEL_ERROR)

    def _finished(self, state: LiveTrace, session: Any, exc: BaseException | None) -> None:
        """The app left `connect()`: end the conversation, or wait for its resumption."""
        if self._sessions.pop(session, None) is not None:
            state.connections -= 1
        if state.current is session:
            state.current = None
        if state.connections > 0:
            return  # a newer connection continues the conversation
        if state.resumable:
            self._park(state)
        else:
            self._end(state, state.end_reason(exc))

    def _park(self, state: LiveTrace) -> None:
        handle = state.handle
        assert handle is not None
        try:
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = loop.call_later(
                self._grace_s, self._guarded, "expire", self._expire, handle
            )
        except RuntimeError:
            timer = None
        self._parked[handle] = (state, timer)

    def _expire(self, handle: str) -> None:
        """Nobody resumed within the grace period: the conversation is over."""
        parked = self._parked.pop(handle, None)
        if parked is not None:
            state, timer = parked
            if timer is not None:
                timer.cancel()
            self._end(state, state.end_reason(None))

    def _end(self, state: LiveTrace, reason: EndReason) -> None:
        state.trace.end(reason)
        self._telemetry.flush_soon()


class _TracedConnect(contextlib.AbstractAsyncContextManager[Any]):
    """`AsyncLive.connect(...)`'s context manager, reporting the connection's life around it."""

    def __init__(
        self, instrumentor: GenAILiveInstrumentor, cm: Any, model: object, config: object
    ) -> None:
        self._i, self._cm, self._model, self._config = instrumentor, cm, model, config
        self._state: LiveTrace | None = None
        self._session: Any = None
        self._resuming = False

    async def __aenter__(self) -> Any:
        i = self._i
        self._state = state = i._guarded("connect", i._begin, self._model, self._config)
        # A known conversation: parked after its connection ended, or still connected.
        self._resuming = state is not None and (state.lost is not None or state.connections > 0)
        try:
            session = await self._cm.__aenter__()
        except BaseException as exc:
            if state is not None:
                i._guarded("connect", i._connect_failed, state, exc, self._resuming)
            raise
        if state is not None:
            self._session = session
            i._guarded("connect", i._connected, state, session, self._resuming)
        return session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            suppressed: bool | None = await self._cm.__aexit__(exc_type, exc, tb)
        except BaseException as raised:
            self._finish(raised)
            raise
        self._finish(exc)
        return suppressed

    def _finish(self, exc: BaseException | None) -> None:
        state, self._state = self._state, None
        if state is not None:
            self._i._guarded("finish", self._i._finished, state, self._session, exc)


def _endpoint() -> tuple[str, int]:
    """Host and port of the Live server as the SDK resolves its base URL (env overrides)."""
    base = os.environ.get("GOOGLE_GEMINI_BASE_URL") or f"https://{_DEFAULT_HOST}"
    try:
        parts = urlsplit(base)
        return parts.hostname or _DEFAULT_HOST, parts.port or 443
    except ValueError:
        return _DEFAULT_HOST, 443
