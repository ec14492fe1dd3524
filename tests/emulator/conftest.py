"""Fixtures for the emulator's tests: a running emulator, and the real SDK pointed at it only
through the standard environment variables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from google import genai
from voicetrace.emulator import Emulator, Scenario

from tests.emulator.helpers import FAST

StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def start_emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StartEmulator]:
    """Factory: `emu = await start_emulator(Scenario(...))`; sets the SDK's env vars to it."""
    async with AsyncExitStack() as stack:

        async def start(scenario: Scenario | None = None, **kwargs: Any) -> Emulator:
            emu = await stack.enter_async_context(
                Emulator(scenario=scenario or Scenario(**FAST), **kwargs)
            )
            for name, value in emu.env().items():
                monkeypatch.setenv(name, value)
            return emu

        yield start


@pytest.fixture
async def emu(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()


@pytest.fixture
def client(emu: Emulator) -> genai.Client:
    """A plain `genai.Client()`: configured by nothing but the environment."""
    return genai.Client()
