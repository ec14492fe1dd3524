"""Fixtures for the model adapter: the emulator on a real TLS socket, and live sessions on it.

The adapter is exercised only through the network: the real `google-genai` client, configured by
the emulator's environment (base URL, CA file, key), talks to the emulator over `wss://`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import pytest
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.voice import events as ev
from voicetrace.service.voice.gemini import GeminiLive
from voicetrace.service.voice.live_model import LiveModelConfig

E = TypeVar("E")

INPUT_RATE = 16_000


def speech(seconds: float, amplitude: int = 8_000) -> bytes:
    """A loud 220 Hz tone: what the emulator's VAD counts as speech."""
    n = int(seconds * INPUT_RATE)
    return struct.pack(
        f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * 220 * i / INPUT_RATE)) for i in range(n))
    )


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * INPUT_RATE))


def chunks(pcm: bytes, ms: int = 20) -> list[bytes]:
    size = 2 * INPUT_RATE * ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


class Recorder:
    """Consumes `events()` in a background task so a test can send and wait at the same time."""

    def __init__(self, live: GeminiLive) -> None:
        self.live = live
        self.events: list[ev.ModelEvent] = []
        self.ended = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._consume(), name="recorder")

    async def _consume(self) -> None:
        try:
            async for event in self.live.events():
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        finally:
            self.ended.set()
            async with self._changed:
                self._changed.notify_all()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[E], count: int = 1, within: float = 5.0) -> list[E]:
        """Wait until `count` events of `kind` arrived; fail with what did arrive otherwise."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: len(self.of(kind)) >= count or self.ended.is_set()
                )

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reached(), within)
        found = self.of(kind)
        assert len(found) >= count, (
            f"expected {count} {kind.__name__}, got {len(found)}; "
            f"events: {[type(e).__name__ for e in self.events]}"
        )
        return found

    def since(self, index: int) -> list[ev.ModelEvent]:
        return self.events[index:]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


StartEmulator = Callable[..., Awaitable[Emulator]]
OpenLive = Callable[..., Awaitable[tuple[GeminiLive, Recorder]]]


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


@pytest.fixture
def start_emulator(stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch) -> StartEmulator:
    """`emu = await start_emulator(Scenario(...))`: running, and the SDK env points at it."""

    async def start(scenario: Scenario | None = None, **kwargs: Any) -> Emulator:
        emu = await stack.enter_async_context(Emulator(scenario=scenario, **kwargs))
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        for name, value in emu.env().items():
            monkeypatch.setenv(name, value)
        return emu

    return start


@pytest.fixture
def open_live(stack: AsyncExitStack) -> OpenLive:
    """`live, rec = await open_live(**config)`: connected, with its events being recorded.

    Teardown closes the session and checks the event stream really ended.
    """

    async def open_(**config: Any) -> tuple[GeminiLive, Recorder]:
        config.setdefault("silence_duration_ms", 200)
        config.setdefault("connect_timeout_s", 5.0)
        live = GeminiLive(LiveModelConfig(**config))
        await live.connect()
        recorder = Recorder(live)

        async def teardown() -> None:
            await live.close()
            try:
                await asyncio.wait_for(recorder.ended.wait(), 3.0)
            finally:
                await recorder.stop()

        stack.push_async_callback(teardown)
        return live, recorder

    return open_
