"""The SDK-independent events of a live model session (Gemini Live today).

One server message becomes one or more of these plain, frozen dataclasses
(`instrumentation.genai_mapping.map_message`); `instrumentation.record.record_event` turns each
into the `SessionTrace` call it means. The service's model adapter and the drop-in
`GenAILiveInstrumentor` both go through these two functions, so a session traced either way has
the same spans. Usage is the telemetry's own `UsageSnapshot`: one usage type from the wire to
the span. No google-genai here: a recorded session (or another provider) can be replayed
through the same code. (Moved from `voicetrace.service.voice.events`, which re-exports them.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from voicetrace.telemetry.records import UsageSnapshot


@dataclass(frozen=True, slots=True)
class AudioOut:
    """A chunk of model speech: PCM16 little-endian mono at `sample_rate` Hz."""

    data: bytes
    sample_rate: int = 24_000


@dataclass(frozen=True, slots=True)
class TextOut:
    """Model text output (text response modality, or thoughts when `thought` is true)."""

    text: str
    thought: bool = False


@dataclass(frozen=True, slots=True)
class InputTranscript:
    """What the server heard the user say (incremental; `finished` marks the last piece)."""

    text: str
    finished: bool = False


@dataclass(frozen=True, slots=True)
class OutputTranscript:
    """Transcription of the model's own speech (incremental)."""

    text: str
    finished: bool = False


@dataclass(frozen=True, slots=True)
class FunctionCall:
    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for one or more function calls."""

    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True)
class ToolCallCancellation:
    """The model cancelled pending calls (barge-in): their results must not be sent."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The user barged in; the model stopped generating. A `TurnComplete` follows."""


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    """The model finished generating this turn (not sent when interrupted)."""


@dataclass(frozen=True, slots=True)
class TurnComplete:
    """The server closed the turn."""


@dataclass(frozen=True, slots=True)
class GoAway:
    """The server will close the connection in `time_left_s` seconds."""

    time_left_s: float


@dataclass(frozen=True, slots=True)
class ResumptionHandle:
    handle: str
    resumable: bool = True


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The adapter reconnected (after go-away or a dropped connection) with a resumption handle.

    `downtime_s` is the time between losing the old connection and the new setup completing.
    """

    reason: Literal["go_away", "connection_lost"]
    downtime_s: float
    resumed: bool


@dataclass(frozen=True, slots=True)
class ModelError:
    """The live session failed and could not be recovered.

    `code` is the WebSocket close code (1007 invalid argument, 1008 policy/auth, 1011 internal…)
    or an HTTP status for REST-like failures; `reason` is the server's text.
    """

    code: int | None
    reason: str
    retryable: bool = False


ModelEvent = (
    AudioOut
    | TextOut
    | InputTranscript
    | OutputTranscript
    | ToolCall
    | ToolCallCancellation
    | Interrupted
    | GenerationComplete
    | TurnComplete
    | UsageSnapshot  # one `usageMetadata` as reported; the last of a turn is billable
    | GoAway
    | ResumptionHandle
    | Reconnected
    | ModelError
)
