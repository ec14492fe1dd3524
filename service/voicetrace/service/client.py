"""A small Python client for the voicetrace WebSocket protocol (demo, tests, scripts).

It behaves like a well-mannered app: it plays model audio (instantly, by default) and reports
`playback` marks, so the service can measure perceived latency and heard audio.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from voicetrace.service.voice.audio import frames, pcm16_duration_s
from voicetrace.service.voice.protocol import (
    BEARER_SUBPROTOCOL_PREFIX,
    OUTPUT_SAMPLE_RATE,
    SUBPROTOCOL,
)
from websockets.asyncio.client import ClientConnection


@dataclass
class TurnAudio:
    bytes_received: int = 0
    playing: bool = False
    started_at: float = 0.0

    def played_ms(self, now: float) -> float:
        """What a real-time player has played by `now`: it cannot run ahead of the audio."""
        return min(self.ms, 1000 * (now - self.started_at))

    @property
    def ms(self) -> float:
        return 1000 * pcm16_duration_s(self.bytes_received, OUTPUT_SAMPLE_RATE)


@dataclass
class VoiceClient:
    """Connect with `async with VoiceClient.connect(url, token) as client:`."""

    ws: ClientConnection
    on_message: Callable[[dict[str, Any]], None] | None = None
    send_playback: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)  # control messages we sent
    audio: dict[int, TurnAudio] = field(default_factory=dict)
    close_code: int | None = None
    close_reason: str = ""
    _current_turn: int | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, token: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        ws = await websockets.connect(
            url,
            subprotocols=[SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX + token],  # type: ignore[list-item]
            max_size=None,
        )
        client = cls(ws, **kwargs)
        client._reader = asyncio.create_task(client._read())
        try:
            yield client
        finally:
            await ws.close()
            with contextlib.suppress(asyncio.CancelledError):
                await client._reader

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, type_: str, **fields: Any) -> None:
        message = {"type": type_, **fields}
        self.sent.append(message)
        await self.ws.send(json.dumps(message))

    async def send_frame(self, source: str, image: bytes, mime_type: str = "image/jpeg") -> None:
        """One camera or screen frame (`video_frame`, base64 in JSON)."""
        data = base64.b64encode(image).decode("ascii")
        await self.send("video_frame", source=source, mime_type=mime_type, data=data)

    async def say(self, pcm16_16k: bytes, frame_ms: int = 20, pace_s: float = 0.0) -> None:
        """Stream audio as the microphone would, `frame_ms` per frame (unpaced by default)."""
        for frame in frames(pcm16_16k, frame_ms):
            await self.ws.send(frame)
            await asyncio.sleep(pace_s)

    # -- receiving --------------------------------------------------------------------------------

    async def wait_for(
        self,
        type_: str,
        *,
        count: int = 1,
        timeout: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Wait until `count` messages of `type_` (matching `where`) arrived; return the last."""

        def matching() -> list[dict[str, Any]]:
            return [m for m in self.messages if m["type"] == type_ and (where is None or where(m))]

        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(matching()) >= count or self.closed)
        found = matching()
        if len(found) < count:
            raise ConnectionError(f"closed ({self.close_code} {self.close_reason}) before {type_}")
        return found[count - 1]

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.closed)
        return self.close_code

    @property
    def closed(self) -> bool:
        return (self._reader is not None and self._reader.done()) or self.close_code is not None

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    await self._on_audio(frame)
                else:
                    await self._on_message(json.loads(frame))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006
            self.close_reason = self.ws.close_reason or ""
            async with self._arrived:
                self._arrived.notify_all()

    async def _on_audio(self, frame: bytes) -> None:
        turn = self._current_turn or 0
        audio = self.audio.setdefault(turn, TurnAudio())
        if not audio.playing and self.send_playback and turn:
            audio.playing = True
            audio.started_at = asyncio.get_running_loop().time()
            await self.send("playback", event="started", turn=turn, played_ms=0)
        audio.bytes_received += len(frame)

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "response_started":
            self._current_turn = message["turn"]
        elif kind in ("interrupted", "turn_complete"):
            turn = message.get("turn") or message.get("number")
            audio = self.audio.get(turn) if turn else None
            if audio is not None and audio.playing and self.send_playback:
                audio.playing = False
                now = asyncio.get_running_loop().time()
                # An interrupted turn stops where the player was; a finished one plays out fully.
                played = audio.played_ms(now) if kind == "interrupted" else audio.ms
                await self.send("playback", event="stopped", turn=turn, played_ms=round(played, 1))
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)
        async with self._arrived:
            self._arrived.notify_all()
