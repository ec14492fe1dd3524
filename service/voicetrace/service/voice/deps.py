"""What every voice bridge of one app shares, built once by the app factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voicetrace.service.sessions.store import SessionStore
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget_policy import BudgetPolicy
from voicetrace.service.voice.hub import VoiceHub
from voicetrace.service.voice.live_model import LiveModel, LiveModelConfig
from voicetrace.service.voice.tools import ToolRegistry
from voicetrace.telemetry import VoiceTelemetry

ModelFactory = Callable[[LiveModelConfig], LiveModel]


@dataclass(frozen=True, slots=True)
class BridgeDeps:
    """The app-wide parts of a voice session; `model_factory` opens one live model."""

    settings: Settings
    store: SessionStore
    telemetry: VoiceTelemetry
    tools: ToolRegistry
    hub: VoiceHub
    model_factory: ModelFactory
    budgets: BudgetPolicy | None = None  # the usage ledger and daily budgets (None: neither)
