"""OTel metrics: the GenAI semconv histograms plus voicetrace's `voice.*` instruments.

Histograms use the semconv-recommended bucket boundaries through
`explicit_bucket_boundaries_advisory` (the semconv helper functions do not set them). Metric
attributes are low-cardinality only (provider, model, modality, phase, tool name, status):
never session or user ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm

from telemetry import keys as k
from telemetry.health import TelemetryHealth

TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

# voice.* metric names (documented in docs/telemetry.md)
TURN_PHASE_DURATION = "voice.turn.phase.duration"
TURN_PERCEIVED_LATENCY = "voice.turn.perceived_latency"
TURN_INTERRUPTIONS = "voice.turn.interruptions"
TURNS = "voice.turns"
AUDIO_INPUT = "voice.audio.input.duration"
AUDIO_OUTPUT = "voice.audio.output.duration"
AUDIO_UNHEARD = "voice.audio.unheard.duration"
SESSIONS_ACTIVE = "voice.sessions.active"
TOOL_CALLS = "voice.tool.calls"
TOOL_ERRORS = "voice.tool.errors"
TOKENS = "voice.tokens"
COST = "voice.cost"
TELEMETRY_SPANS = "voice.telemetry.spans"
TELEMETRY_ERRORS = "voice.telemetry.errors"
TELEMETRY_QUEUE = "voice.telemetry.queue.size"


class VoiceMetrics:
    """All instruments, created once per `VoiceTelemetry` from its meter provider."""

    def __init__(self, meter_provider: MeterProvider, health: TelemetryHealth) -> None:
        meter: Meter = meter_provider.get_meter("voicetrace.telemetry", "0.1.0")
        self._health = health
        self.token_usage = meter.create_histogram(
            gm.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Tokens used per model response, by token type",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            gm.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="Model response duration (end of user speech to last output)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.ttfc = meter.create_histogram(
            gm.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="End of user speech to first model output (TTFA)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.phase = meter.create_histogram(
            TURN_PHASE_DURATION,
            unit="s",
            description="Turn latency phases (user_speech, endpointing, response, total)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.perceived = meter.create_histogram(
            TURN_PERCEIVED_LATENCY,
            unit="s",
            description="End of user speech to the client starting playback",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.turns = meter.create_counter(TURNS, unit="{turn}", description="Finished turns")
        self.interruptions = meter.create_counter(
            TURN_INTERRUPTIONS, unit="{turn}", description="Turns interrupted by the user"
        )
        self.audio_in = meter.create_counter(AUDIO_INPUT, unit="s", description="User audio")
        self.audio_out = meter.create_counter(AUDIO_OUTPUT, unit="s", description="Model audio")
        self.audio_unheard = meter.create_counter(
            AUDIO_UNHEARD, unit="s", description="Model audio generated but never heard"
        )
        self.sessions = meter.create_up_down_counter(
            SESSIONS_ACTIVE, unit="{session}", description="Voice sessions in progress"
        )
        self.tool_calls = meter.create_counter(TOOL_CALLS, unit="{call}", description="Tool calls")
        self.tool_errors = meter.create_counter(
            TOOL_ERRORS, unit="{call}", description="Tool calls that failed"
        )
        self.tokens = meter.create_counter(
            TOKENS, unit="{token}", description="Billable tokens by direction and modality"
        )
        self.cost = meter.create_counter(COST, unit="USD", description="Cost of model usage")
        meter.create_observable_counter(
            TELEMETRY_SPANS,
            callbacks=[self._spans],
            unit="{span}",
            description="Telemetry self-health: spans started/exported/dropped",
        )
        meter.create_observable_counter(
            TELEMETRY_ERRORS,
            callbacks=[self._errors],
            unit="{error}",
            description="Telemetry self-health: contained tracer errors and export failures",
        )
        meter.create_observable_gauge(
            TELEMETRY_QUEUE,
            callbacks=[self._queue],
            unit="{span}",
            description="Spans waiting in the export queues",
        )

    # -- observable callbacks (run on the metric reader's thread) -------------------------------
    def _spans(self, _options: CallbackOptions) -> Iterable[Observation]:
        snap = self._health.snapshot()
        for state in ("started", "exported", "dropped"):
            yield Observation(snap.get(f"spans_{state}", 0), {"state": state})

    def _errors(self, _options: CallbackOptions) -> Iterable[Observation]:
        snap = self._health.snapshot()
        yield Observation(snap.get("tracer_errors", 0), {"kind": "tracer"})
        yield Observation(snap.get("export_failures", 0), {"kind": "export"})

    def _queue(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(max(self._health.snapshot().get("queue_size", 0), 0))

    # -- recording helpers ---------------------------------------------------------------------
    def record_turn(
        self,
        base: Mapping[str, Any],
        phases_ms: Mapping[str, float],
        end_reason: str,
        interrupted: bool,
    ) -> None:
        attrs = {**base, k.TURN_END_REASON: end_reason}
        self.turns.add(1, attrs)
        for phase, ms in phases_ms.items():
            self.phase.record(ms / 1000.0, {**base, "voice.turn.phase": phase})
        if interrupted:
            self.interruptions.add(1, base)

    def record_chat(
        self,
        base: Mapping[str, Any],
        input_tokens: int,
        output_tokens: int,
        by_modality: Mapping[str, int],
        duration_s: float | None,
        ttfc_s: float | None,
        cost_usd: float | None,
    ) -> None:
        chat = {**base, k.OPERATION_NAME: k.OP_CHAT}
        self.token_usage.record(input_tokens, {**chat, k.TOKEN_TYPE: "input"})
        self.token_usage.record(output_tokens, {**chat, k.TOKEN_TYPE: "output"})
        for key, n in by_modality.items():
            if n:
                direction, modality = key.split("_", 1)
                self.tokens.add(n, {**base, k.TOKEN_TYPE: direction, "voice.modality": modality})
        if duration_s is not None:
            self.operation_duration.record(duration_s, chat)
        if ttfc_s is not None:
            self.ttfc.record(ttfc_s, chat)
        if cost_usd is not None:
            self.cost.add(cost_usd, base)
