"""The plain data a turn accumulates while it runs, and the arithmetic done when it closes.

Recording is cheap (attribute assignments on a slotted object); nothing here touches OTel. The
spans are built from these records once the turn is finished, on the emitter thread
(voicetrace.telemetry.spans); the caller only computes the `TurnSummary` it needs at once.

Timeline of a turn (all epoch ns):
    t0 start            first user activity (or the model's own first output)
    t1 user_end         last voiced frame / text sent / activity end   (≥ t0)
    t2 response_start   first model activity: audio, text or tool call (≥ t1)
    t3 response_end     last model audio/text or tool result           (≥ t2)
Phases user_speech = t1-t0, endpointing = t2-t1, response = t3-t2 are contiguous, so their sum
is the total by construction. TTFA is first audio/text output − t1 (tool time may precede it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry.context import Context
from voicetrace.telemetry.frames import split_image_tokens
from voicetrace.telemetry.records import TurnSummary, UsageSnapshot
from voicetrace.telemetry.usage import UsageBreakdown

NS_PER_MS = 1_000_000


@dataclass(slots=True)
class ToolRecord:
    call_id: str
    name: str
    args: Any
    non_blocking: bool
    start_ns: int
    turn: TurnRecord
    end_ns: int | None = None
    duration_s: float | None = None
    response: Any = None
    error: str | None = None  # as reported; redacted when its span is built
    status: str | None = None  # ok | error | cancelled | abandoned
    emitted: bool = False

    @property
    def done(self) -> bool:
        return self.status is not None

    def duration_ms(self) -> float:
        if self.duration_s is not None:
            return self.duration_s * 1000.0
        if self.end_ns is None:
            return 0.0
        return (self.end_ns - self.start_ns) / NS_PER_MS


MAX_TURN_EVENTS = 64


@dataclass(slots=True)
class TurnRecord:
    number: int
    trigger: str  # user_audio | user_text | activity | transcript | model
    start_ns: int
    speech_start_ns: int | None = None
    user_end_ns: int | None = None
    response_start_ns: int | None = None
    first_output_ns: int | None = None
    last_output_ns: int | None = None
    close_ns: int | None = None
    cut_ns: int | None = None  # barge-in or interruption: when the user stopped listening
    end_reason: str | None = None
    interrupted: bool = False
    generation_complete: bool = False
    audio_in_s: float = 0.0
    audio_out_ms: float = 0.0
    camera_frames: int = 0  # frames forwarded while this turn was open
    screen_frames: int = 0
    # the session's frames forwarded (camera, screen) when the turn's usage arrived (or, with
    # none, when it closed): the context Gemini re-bills, and so the split of its image tokens
    frames_seen: tuple[int, int] = (0, 0)
    frame_tokens_seen: int = 0  # and their prompt tokens (`SessionTrace.video_frame`'s count)
    user_text: list[str] = field(default_factory=list)
    # Text tokens at the documented ~4 characters each, counted per piece (typed inputs, the
    # model's text parts; never transcripts), kept even without content capture: they are
    # numbers, not content, and feed `estimates.estimate_usage` when Gemini reports no usage.
    text_in_tokens: int = 0
    text_out_tokens: int = 0
    output_text: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    tools: list[ToolRecord] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    events_dropped: int = 0

    def add_event(self, name: str, attrs: dict[str, Any], at_ns: int) -> None:
        """Span events of this turn, capped: a client repeating a control frame must not grow
        memory (the SDK would cut at 128 on export anyway; this bounds what we keep)."""
        if len(self.events) < MAX_TURN_EVENTS:
            self.events.append((name, attrs, at_ns))
        else:
            self.events_dropped += 1

    usage: UsageSnapshot | None = None
    usage_late: bool = False
    usage_estimated: bool = False  # `usage` is `estimates.estimate_usage`'s, not Gemini's
    playback_start_ns: int | None = None
    heard_ms: float | None = None
    # lifecycle (decided on the caller's thread): open → finished → emitted (turn span handed
    # to the emitter) → chat_emitted (generation handed over, with usage or given up on it)
    state: str = "open"
    deadline_ns: int = 0
    chat_emitted: bool = False
    # set by the emitter thread once the turn span exists: the parent of its chat and tools
    ctx: Context | None = None
    summary: TurnSummary | None = None
    # caches: usage split (per snapshot object) and redacted (user, model) text
    _split: tuple[UsageSnapshot, UsageBreakdown] | None = None
    redacted: tuple[str | None, str | None] | None = None

    @property
    def responding(self) -> bool:
        return self.response_start_ns is not None

    def mark_output(self, now: int, audible: bool) -> None:
        if self.response_start_ns is None:
            self.response_start_ns = now
        if audible and self.first_output_ns is None:
            self.first_output_ns = now
        if self.last_output_ns is None or now > self.last_output_ns:
            self.last_output_ns = now

    def timeline(self) -> tuple[int, int, int, int]:
        """(t0, t1, t2, t3), monotonic even with out-of-order caller timestamps."""
        t0 = self.start_ns
        t1 = max(self.user_end_ns or t0, t0)
        end_ref = self.close_ns or self.cut_ns or t1
        if self.response_start_ns is None:
            t2 = t3 = max(end_ref, t1)
        else:
            t2 = max(self.response_start_ns, t1)
            last = self.last_output_ns or t2
            for tool in self.tools:
                if tool.end_ns is not None and tool.status in ("ok", "error"):
                    last = max(last, tool.end_ns)
            t3 = max(last, t2)
        return t0, t1, t2, t3

    def phases_ms(self) -> dict[str, float]:
        t0, t1, t2, t3 = self.timeline()
        speech = (t1 - t0) / NS_PER_MS
        endpointing = (t2 - t1) / NS_PER_MS
        response = (t3 - t2) / NS_PER_MS
        return {
            "user_speech": speech,
            "endpointing": endpointing,
            "response": response,
            "total": speech + endpointing + response,
        }

    def ttfa_ms(self) -> float | None:
        if self.first_output_ns is None:
            return None
        _, t1, _, _ = self.timeline()
        return max(self.first_output_ns - t1, 0) / NS_PER_MS

    def tool_ms(self) -> float:
        return sum(t.duration_ms() for t in self.tools if t.status in ("ok", "error"))

    def heard(self) -> tuple[float, str]:
        """(heard ms, source): the client's playback mark when it came, else a server estimate:
        audio plays in real time, so a cut turn was heard from first audio until the cut."""
        if self.heard_ms is not None:
            return min(self.heard_ms, self.audio_out_ms), "playback"
        if self.cut_ns is not None and self.first_output_ns is not None:
            played = max(self.cut_ns - self.first_output_ns, 0) / NS_PER_MS
            return min(played, self.audio_out_ms), "estimate"
        return self.audio_out_ms, "estimate"

    def perceived_latency_ms(self) -> float | None:
        if self.playback_start_ns is None:
            return None
        _, t1, _, _ = self.timeline()
        return max(self.playback_start_ns - t1, 0) / NS_PER_MS

    def breakdown(self) -> UsageBreakdown | None:
        """The usage split, computed once per snapshot (the last snapshot wins)."""
        if self.usage is None:
            return None
        if self._split is None or self._split[0] is not self.usage:
            self._split = (self.usage, UsageBreakdown.from_snapshot(self.usage))
        return self._split[1]

    def image_split(self) -> tuple[int, int]:
        """(camera, screen) tokens of this turn's image input (0, 0 without usage)."""
        usage = self.breakdown()
        if usage is None:
            return 0, 0
        image = usage.input_uncached["image"] + usage.input_cached["image"]
        image += usage.input_tool_use["image"]
        return split_image_tokens(image, *self.frames_seen)

    @property
    def awaiting_playback(self) -> bool:
        """Cut while the client was playing it, and the client has not said how much it heard:
        its `playback stopped` mark is one round trip away (worth a short wait for the
        generation, whose unheard-audio numbers need it)."""
        return self.interrupted and self.playback_start_ns is not None and self.heard_ms is None

    def make_summary(self, cost_usd: Decimal | None) -> TurnSummary:
        """The caller's numbers, computed once at close from one timeline."""
        t0, t1, t2, t3 = self.timeline()
        speech = (t1 - t0) / NS_PER_MS
        endpointing = (t2 - t1) / NS_PER_MS
        response = (t3 - t2) / NS_PER_MS
        first = self.first_output_ns
        usage = self.breakdown()
        camera, screen = self.image_split()
        return TurnSummary(
            number=self.number,
            end_reason=self.end_reason or "completed",
            trigger=self.trigger,
            user_speech_ms=speech,
            endpointing_ms=endpointing,
            response_ms=response,
            total_ms=speech + endpointing + response,
            ttfa_ms=None if first is None else max(first - t1, 0) / NS_PER_MS,
            tool_ms=self.tool_ms(),
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            tokens_by_modality=usage.by_modality() if usage else {},
            cost_usd=cost_usd,
            audio_in_ms=self.audio_in_s * 1000.0,
            audio_out_ms=self.audio_out_ms,
            heard_ms=self.heard_ms,
            interrupted=self.interrupted,
            usage_received=self.usage is not None and not self.usage_estimated,
            usage_estimated=self.usage_estimated,
            camera_tokens=camera,
            screen_tokens=screen,
            camera_frames=self.camera_frames,
            screen_frames=self.screen_frames,
        )
