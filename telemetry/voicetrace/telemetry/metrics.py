"""OTel metrics: the GenAI semconv histograms plus voicetrace's `voice.*` instruments.

Histograms use the semconv-recommended bucket boundaries through
`explicit_bucket_boundaries_advisory` (the semconv helper functions do not set them). Metric
attributes are low-cardinality only (provider, model, modality, phase, tool name, status):
never session or user ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.usage import MODALITIES

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
        self._by_model: dict[tuple[str, str], ModelMetrics] = {}
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

    def for_model(self, provider: str, model: str) -> ModelMetrics:
        """The recording helpers for one (provider, model), built once and shared by sessions."""
        key = (provider, model)
        found = self._by_model.get(key)
        if found is None:
            found = self._by_model.setdefault(key, ModelMetrics(self, provider, model))
        return found


_PHASES = ("user_speech", "endpointing", "response", "total")
_TOOL_STATUSES = ("ok", "error")
# `Usage.by_modality()` keys: input/output per modality, plus reasoning output.
_TOKEN_KEYS = (
    *(f"input_{m}" for m in MODALITIES),
    *(f"output_{m}" for m in MODALITIES),
    "output_reasoning",
)
_CACHE_CAP = 256  # tool names / end reasons per model: bounded even with odd callers


class ModelMetrics:
    """Records a session's metrics with attribute sets built once per (provider, model), so a
    turn's ~15 instrument calls build no dicts. Used on the emitter thread."""

    def __init__(self, m: VoiceMetrics, provider: str, model: str) -> None:
        self.m = m
        base = {k.PROVIDER_NAME: provider, k.REQUEST_MODEL: model}
        chat = {**base, k.OPERATION_NAME: k.OP_CHAT}
        self.base, self.chat_attrs = base, chat
        self._phases = tuple((p, {**base, "voice.turn.phase": p}) for p in _PHASES)
        self._token_in = {**chat, k.TOKEN_TYPE: "input"}
        self._token_out = {**chat, k.TOKEN_TYPE: "output"}
        self._by_reason: dict[str, dict[str, Any]] = {}
        self._by_modality: dict[str, dict[str, Any]] = {}
        self._by_tool: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._initialise()

    def _initialise(self) -> None:
        """Export every counter series this model can produce at 0 before its first event.

        Prometheus's rate()/increase() only count increments between two samples: a series whose
        first sample is already 1 (the first barge-in, the first cent) is missed. So the
        (provider, model) counters whose label values are known in advance start at 0 here —
        turns by every end reason, interruptions, audio, cost and tokens by direction and
        modality. Tool names are not known in advance (a tool's statuses start at 0 when it is
        first seen, in `tool`); histograms cannot be zeroed without a fake observation: both are
        born with their first event.
        """
        m = self.m
        for reason in sorted(k.END_REASONS):
            m.turns.add(0, self._cached(self._by_reason, reason, self._reason, reason))
        for counter in (m.interruptions, m.audio_in, m.audio_out, m.audio_unheard, m.cost):
            counter.add(0, self.base)
        for key in _TOKEN_KEYS:
            m.tokens.add(0, self._cached(self._by_modality, key, self._modality, key))

    @staticmethod
    def _cached(cache: dict[Any, Any], key: Any, make: Callable[..., Any], *args: Any) -> Any:
        found = cache.get(key)
        if found is None:
            found = make(*args)
            if len(cache) < _CACHE_CAP:
                cache[key] = found
        return found

    def turn(self, phases_s: Iterable[float], end_reason: str, interrupted: bool) -> None:
        """One finished turn: its four phases (seconds, in _PHASES order) and end reason."""
        m = self.m
        m.turns.add(1, self._cached(self._by_reason, end_reason, self._reason, end_reason))
        for (_, attrs), seconds in zip(self._phases, phases_s, strict=True):
            m.phase.record(seconds, attrs)
        if interrupted:
            m.interruptions.add(1, self.base)

    def audio(self, in_s: float, out_s: float) -> None:
        if in_s > 0:
            self.m.audio_in.add(in_s, self.base)
        if out_s > 0:
            self.m.audio_out.add(out_s, self.base)

    def chat(
        self,
        input_tokens: int,
        output_tokens: int,
        by_modality: Mapping[str, int],
        duration_s: float | None,
        ttfc_s: float | None,
        cost_usd: float | None,
        unheard_s: float,
    ) -> None:
        m = self.m
        m.token_usage.record(input_tokens, self._token_in)
        m.token_usage.record(output_tokens, self._token_out)
        for key, n in by_modality.items():
            if n:
                m.tokens.add(n, self._cached(self._by_modality, key, self._modality, key))
        if duration_s is not None:
            m.operation_duration.record(duration_s, self.chat_attrs)
        if ttfc_s is not None:
            m.ttfc.record(ttfc_s, self.chat_attrs)
        if cost_usd is not None:
            m.cost.add(cost_usd, self.base)
        if unheard_s > 0:
            m.audio_unheard.add(unheard_s, self.base)

    def _reason(self, end_reason: str) -> dict[str, Any]:
        return {**self.base, k.TURN_END_REASON: end_reason}

    def _modality(self, key: str) -> dict[str, Any]:
        direction, modality = key.split("_", 1)
        return {**self.base, k.TOKEN_TYPE: direction, "voice.modality": modality}

    def tool(self, name: str, status: str) -> None:
        """A tool call that got a result (ok | error)."""
        if (name, status) not in self._by_tool and len(self._by_tool) < _CACHE_CAP:
            # First sight of this tool: its other status starts at 0, so that (say) its first
            # error after a success is seen by rate(). Its very first call cannot be.
            for other in _TOOL_STATUSES:
                attrs, _ = self._cached(self._by_tool, (name, other), self._tool, name, other)
                self.m.tool_calls.add(0, attrs)
        calls, errors = self._cached(self._by_tool, (name, status), self._tool, name, status)
        self.m.tool_calls.add(1, calls)
        if status == "error":
            self.m.tool_errors.add(1, errors)

    def _tool(self, name: str, status: str) -> tuple[dict[str, Any], dict[str, Any]]:
        return {**self.base, k.TOOL_NAME: name, k.TOOL_STATUS: status}, {
            **self.base,
            k.TOOL_NAME: name,
        }

    def perceived(self, seconds: float) -> None:
        self.m.perceived.record(seconds, self.base)
