"""voicetrace telemetry: voice sessions as OpenTelemetry GenAI spans, ready for Langfuse.

Usable by any Python voice app (Pipecat, LiveKit, your own): it imports nothing from the
voicetrace service. Start with `voicetrace.telemetry.setup.configure_telemetry()` or build a
`VoiceTelemetry` over your own providers; see docs/telemetry.md.
"""

from voicetrace.telemetry.core import VoiceTelemetry
from voicetrace.telemetry.prices import Cost, ModelPrice, PriceTable
from voicetrace.telemetry.records import (
    EndReason,
    ModalityTokens,
    SessionInfo,
    SessionSummary,
    TurnSettled,
    TurnSummary,
    UsageSnapshot,
)
from voicetrace.telemetry.session import SessionTrace

__all__ = [
    "Cost",
    "EndReason",
    "ModalityTokens",
    "ModelPrice",
    "PriceTable",
    "SessionInfo",
    "SessionSummary",
    "SessionTrace",
    "TurnSettled",
    "TurnSummary",
    "UsageSnapshot",
    "VoiceTelemetry",
]
