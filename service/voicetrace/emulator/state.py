"""State shared by the Live connections of one emulator, and what one turn keeps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voicetrace.emulator.resumption import Conversation, ResumptionStore
from voicetrace.emulator.scenario import Scenario, ScriptedTurn
from voicetrace.emulator.tokens import TokenStore
from voicetrace.emulator.usage import TurnUsage
from voicetrace.emulator.wire import WireLog

__all__ = ["Conversation", "EmulatorState", "ToolGroup", "Turn"]

if TYPE_CHECKING:
    from voicetrace.emulator.session import LiveSession


@dataclass
class EmulatorState:
    """Everything the connections of one emulator share."""

    scenario: Scenario
    api_key: str
    wire: WireLog
    tokens: TokenStore
    resumptions: ResumptionStore = field(default_factory=ResumptionStore)
    sessions: set[LiveSession] = field(default_factory=set)
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
