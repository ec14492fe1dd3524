"""State shared by the Live connections of one emulator, and what one turn keeps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.websockets import WebSocket
from voicetrace.emulator.resumption import Conversation, ResumptionStore
from voicetrace.emulator.scenario import Scenario, ScriptedTurn
from voicetrace.emulator.setup import LiveSetup
from voicetrace.emulator.tokens import TokenStore
from voicetrace.emulator.usage import TurnUsage
from voicetrace.emulator.wire import WireLog

__all__ = ["Conversation", "EmulatorState", "LiveConnection", "ToolGroup", "Turn"]


class LiveConnection(Protocol):
    """What the emulator's controls (stop, goAway, drop) need of an open Live connection.

    A protocol, not the session class itself: the session module builds on this one, so naming
    it here would make an import cycle."""

    ws: WebSocket
    setup: LiveSetup | None  # None until the setup message was accepted
    closed: bool

    async def close(self, code: int, reason: str = "") -> None: ...

    def go_away(self, time_left_s: float) -> None: ...


@dataclass
class EmulatorState:
    """Everything the connections of one emulator share."""

    scenario: Scenario
    api_key: str
    wire: WireLog
    tokens: TokenStore
    resumptions: ResumptionStore = field(default_factory=ResumptionStore)
    sessions: set[LiveConnection] = field(default_factory=set)
    connections: int = 0
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


@dataclass
class Turn:
    number: int
    script: ScriptedTurn
    usage: TurnUsage
    user_text: str = ""
    spoken: bool = False
    results: list[tuple[str, Any]] = field(default_factory=list)  # for tool-result turns
    had_calls: bool = False
    finishing: bool = False


@dataclass
class ToolGroup:
    """Non-blocking calls of one `toolCall`: spoken about together once all are answered."""

    waiting: set[str]
    results: list[tuple[str, Any]] = field(default_factory=list)
    tokens: int = 0
