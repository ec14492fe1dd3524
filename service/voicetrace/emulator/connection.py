"""One Live connection's socket side: framing, the wire log, close, goAway and background tasks.

The behaviour of a session is layered on this class: `generation` (the model's output for a
turn), `tool_responses` and `user_input` (client messages), then `session` (setup and the read
loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from voicetrace.emulator.protocol import CloseError, duration_json
from voicetrace.emulator.setup import LiveSetup
from voicetrace.emulator.state import Conversation, EmulatorState
from voicetrace.emulator.wire import Kind

log = logging.getLogger(__name__)


class Connection:
    def __init__(self, ws: WebSocket, state: EmulatorState, version: str, method: str) -> None:
        self.ws = ws
        self.state = state
        self.scenario = state.scenario
        self.version = version
        self.constrained = method.endswith("Constrained")
        self.number = next(state.ids)
        self.conv = Conversation(id=self.number)
        self.setup: LiveSetup | None = None
        self.closed = False
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- close and goAway ----------------------------------------------------------------------

    async def close(self, code: int, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.state.wire.record(self.number, "out", "close", None, 0, code, reason)
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    def go_away(self, time_left_s: float) -> None:
        """Announce the end of this connection, and close it (1000) once the time is up."""
        self._spawn(self._go_away(time_left_s))

    async def _go_away(self, time_left_s: float) -> None:
        await self.send({"goAway": {"timeLeft": duration_json(time_left_s)}})
        await asyncio.sleep(time_left_s)
        await self.close(1000, "The session was closed after goAway.")

    async def _go_away_at(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        if not self.closed:
            await self._go_away(self.scenario.go_away_time_left_s)

    # -- background tasks ----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, WebSocketDisconnect):  # the client left mid-turn: expected
            log.debug("emulator task ended by a disconnect: %r", exc)
        else:  # a bug in a scripted turn must not look like a silent stall
            log.warning("emulator task failed", exc_info=exc)

    # -- frames --------------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise WebSocketDisconnect(1006)
        data = json.dumps(message).encode()
        # The real service sends JSON as binary frames; the SDK decodes both.
        self.state.wire.record(self.number, "out", "binary", message, len(data))
        async with self._send_lock:
            await self.ws.send_bytes(data)

    async def _receive(self) -> dict[str, Any]:
        frame = await self.ws.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        text: str | None = frame.get("text")
        raw: str | bytes
        kind: Kind
        if text is not None:
            raw, kind = text, "text"
        else:
            raw, kind = frame.get("bytes") or b"", "binary"
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            message = None
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if not isinstance(message, dict):
            self.state.wire.record(self.number, "in", kind, None, size)
            raise CloseError(1007, "Invalid JSON payload received.")
        self.state.wire.record(self.number, "in", kind, message, size)
        return message
