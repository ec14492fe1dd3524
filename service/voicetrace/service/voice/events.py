"""SDK-independent events of a live model session, and what the service sends back.

The model events (`AudioOut` … `ModelError`, `ModelEvent`) live in the telemetry library
(`voicetrace.telemetry.instrumentation.events`) since the drop-in google-genai instrumentor maps
server messages through the same code as this service; they are re-exported here unchanged.
The model adapter (`voice.gemini`, `voice.gemini_events`) is the only service code that sees
`google-genai`; the bridge and the telemetry only ever see these events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from voicetrace.telemetry.instrumentation.events import (
    AudioOut,
    FunctionCall,
    GenerationComplete,
    GoAway,
    InputTranscript,
    Interrupted,
    ModelError,
    ModelEvent,
    OutputTranscript,
    Reconnected,
    ResumptionHandle,
    TextOut,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
)

__all__ = [
    "AudioOut",
    "FunctionCall",
    "GenerationComplete",
    "GoAway",
    "InputTranscript",
    "Interrupted",
    "ModelError",
    "ModelEvent",
    "OutputTranscript",
    "Reconnected",
    "ResumptionHandle",
    "Scheduling",
    "TextOut",
    "ToolCall",
    "ToolCallCancellation",
    "ToolResult",
    "TurnComplete",
]

# -- what the service sends back to the model -------------------------------------------------

Scheduling = Literal["WHEN_IDLE", "INTERRUPT", "SILENT"]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one function call, sent back to the model.

    `response` is the JSON object the model sees; errors are sent as `{"error": "..."}` so the
    model can recover (a tool never raises into the session). `scheduling` only matters for
    NON_BLOCKING functions.
    """

    id: str
    name: str
    response: dict[str, Any]
    scheduling: Scheduling | None = None
