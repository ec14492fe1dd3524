"""Numeric voice KPIs as Langfuse scores: filterable (`ttfa_ms > 800`) and chartable.

Langfuse keeps metadata as strings (its filter offers =, contains…, never > or <) and its OTLP
endpoint creates no scores; numeric scores come only through its public API. So:

- `ScoreProcessor` is a `SpanProcessor` that reads the KPIs off finished spans — the same
  numbers, the same trace and observation ids Langfuse gets over OTLP — and queues scores. It
  runs where spans end (our emitter thread, never the voice path), only for sampled spans
  (a score for a trace Langfuse never receives would dangle), and costs a few dict reads.
- `LangfuseScoreSink` owns a bounded queue and one daemon thread that sends batches through
  the `langfuse` package's public API (`langfuse.api.LangfuseAPI(...).scores.create`, i.e.
  `POST /api/public/scores` with a JSON list — what `Langfuse.create_score` itself uses in 5.x).
  We use the API client, not `Langfuse()`: the latter starts its own OTel tracer provider.
  Fail-open and counted: `scores_queued`, `scores_sent`, `scores_dropped`, `score_failures`.
  `langfuse` is an optional extra, imported only when a sink is built.

Per turn (observation = the `invoke_agent` turn span): `ttfa_ms`, `perceived_latency_ms`,
`endpointing_ms`. Per session (trace): `turns`, `interruption_rate`, `p95_ttfa_ms`, `cost_usd`,
`unheard_audio_share` (unheard / generated audio ms). Score ids are derived from trace,
observation and name, so a re-sent batch updates instead of duplicating.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.health import TelemetryHealth

log = logging.getLogger(__name__)

SCORES_ENV: Final = "VOICETRACE_LANGFUSE_SCORES"  # "false"/"0"/"off" turns scores off
TURN_SCORES: Final = {
    "ttfa_ms": k.TURN_TTFA_MS,
    "perceived_latency_ms": k.TURN_PERCEIVED_LATENCY_MS,
    "endpointing_ms": k.TURN_ENDPOINTING_MS,
}
SESSION_SCORES: Final = (
    "turns",
    "interruption_rate",
    "p95_ttfa_ms",
    "cost_usd",
    "unheard_audio_share",
)
_ENV_OK = re.compile(r"[a-z0-9_-]{1,40}")
_MAX_TRACES = 1024  # sessions whose per-turn numbers are kept until their root ends
_MAX_TTFA = 10_000  # TTFA samples kept per session (p95 of the first 10 000 turns)


@dataclass(frozen=True, slots=True)
class Score:
    """One numeric score on a trace (and optionally one of its observations)."""

    name: str
    value: float
    trace_id: str  # 32 hex, the OTel trace id
    observation_id: str | None = None  # 16 hex, the OTel span id
    environment: str | None = None

    @property
    def id(self) -> str:
        return f"{self.trace_id}-{self.observation_id or 'trace'}-{self.name}"


class ScoreSink(Protocol):
    def add(self, score: Score) -> None: ...
    def flush(self, timeout_s: float) -> bool: ...
    def shutdown(self, timeout_s: float) -> None: ...


def p95(values: Sequence[float]) -> float | None:
    """Nearest-rank 95th percentile (an observed value, never interpolated)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


@dataclass(slots=True)
class _SessionNumbers:
    ttfa: list[float] = field(default_factory=list)
    output_ms: float = 0.0
    unheard_ms: float = 0.0


class ScoreProcessor(SpanProcessor):
    """Finished spans → scores for the sink (turn KPIs at once, session KPIs at the root)."""

    def __init__(self, sink: ScoreSink, health: TelemetryHealth) -> None:
        self.sink, self.health = sink, health
        self._lock = threading.Lock()
        self._sessions: OrderedDict[int, _SessionNumbers] = OrderedDict()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._on_end(span)
        except Exception as exc:  # fail-open: a processor must never raise into the SDK
            self.health.error("scores", exc)

    def _on_end(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None or not ctx.trace_flags.sampled or span.attributes is None:
            return
        a = span.attributes
        kind = a.get(k.LF_OBSERVATION_TYPE)
        trace_id = f"{ctx.trace_id:032x}"
        env = _environment(a.get(k.LF_ENVIRONMENT))
        if span.parent is None:
            with self._lock:
                numbers = self._sessions.pop(ctx.trace_id, None) or _SessionNumbers()
            self._session(a, numbers, trace_id, env)
        elif kind == k.OBS_AGENT:
            span_id = f"{ctx.span_id:016x}"
            for name, key in TURN_SCORES.items():
                value = a.get(key)
                if isinstance(value, int | float):
                    self.sink.add(Score(name, float(value), trace_id, span_id, env))
            ttfa = a.get(k.TURN_TTFA_MS)
            if isinstance(ttfa, int | float):
                numbers = self._numbers(ctx.trace_id)
                if len(numbers.ttfa) < _MAX_TTFA:
                    numbers.ttfa.append(float(ttfa))
        elif kind == k.OBS_GENERATION:
            out, unheard = a.get(k.AUDIO_OUT_MS), a.get(k.AUDIO_UNHEARD_MS)
            if isinstance(out, int | float) and isinstance(unheard, int | float):
                numbers = self._numbers(ctx.trace_id)
                numbers.output_ms += float(out)
                numbers.unheard_ms += float(unheard)

    def _numbers(self, trace_id: int) -> _SessionNumbers:
        with self._lock:
            numbers = self._sessions.get(trace_id)
            if numbers is None:
                while len(self._sessions) >= _MAX_TRACES:
                    self._sessions.popitem(last=False)
                    self.health.add("scores_dropped")
                numbers = self._sessions[trace_id] = _SessionNumbers()
            return numbers

    def _session(self, a: Any, numbers: _SessionNumbers, trace_id: str, env: str | None) -> None:
        turns = a.get(k.SESSION_TURNS)
        if not isinstance(turns, int):
            return  # a root that never got its totals (should not happen): nothing to score
        values: dict[str, float | None] = {
            "turns": float(turns),
            "interruption_rate": (a.get(k.SESSION_INTERRUPTIONS, 0) / turns if turns else None),
            "p95_ttfa_ms": p95(numbers.ttfa),
            "cost_usd": a.get(k.SESSION_COST_USD),
            "unheard_audio_share": (
                numbers.unheard_ms / numbers.output_ms if numbers.output_ms > 0 else None
            ),
        }
        for name in SESSION_SCORES:
            value = values[name]
            if isinstance(value, int | float):
                self.sink.add(Score(name, float(value), trace_id, None, env))

    def shutdown(self) -> None:
        self.sink.shutdown(2.0)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.sink.flush(timeout_millis / 1000.0)


def _environment(value: Any) -> str | None:
    """Langfuse's environment rule (lower case, [a-z0-9-_], ≤ 40, not 'langfuse…')."""
    if not isinstance(value, str):
        return None
    env = value.lower()
    return env if _ENV_OK.fullmatch(env) and not env.startswith("langfuse") else None


class LangfuseScoreSink:
    """A bounded queue of scores and one daemon thread that posts them in batches."""

    def __init__(
        self,
        public_key: str,
        secret_key: str,
        host: str,
        health: TelemetryHealth,
        *,
        max_queue: int = 10_000,
        batch_size: int = 100,
        flush_interval_s: float = 1.0,
        timeout_s: float = 5.0,
        max_retries: int = 2,
        send: Callable[[list[Score]], None] | None = None,
    ) -> None:
        self.health = health
        self.max_queue, self.batch_size = max_queue, batch_size
        self.flush_interval_s = flush_interval_s
        self._queue: deque[Score] = deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._sending = 0
        self._stop = False
        self._send = send or _api_sender(public_key, secret_key, host, timeout_s, max_retries)
        self._thread = threading.Thread(target=self._run, name="voicetrace-scores", daemon=True)
        self._thread.start()
        health.gauge("score_queue_size", lambda: len(self._queue))

    # -- producer side (the emitter thread) -----------------------------------------------------
    def add(self, score: Score) -> None:
        if self._stop or len(self._queue) >= self.max_queue:
            self.health.add("scores_dropped")
            return
        self._queue.append(score)
        self.health.add("scores_queued")
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Send what is queued; True when it was sent (or dropped) within `timeout_s`."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        self._wake.set()
        with self._idle:
            while self._queue or self._sending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.05))
                self._wake.set()
        return True

    def shutdown(self, timeout_s: float) -> None:
        self.flush(timeout_s)
        self._stop = True
        self._wake.set()

    # -- the sender thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while not (self._stop and not self._queue):
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            while self._queue:
                batch: list[Score] = []
                with self._idle:
                    while self._queue and len(batch) < self.batch_size:
                        batch.append(self._queue.popleft())
                    self._sending = len(batch)
                try:
                    self._send(batch)
                    self.health.add("scores_sent", len(batch))
                except Exception as exc:  # fail-open: counted, never raised
                    self.health.add("score_failures")
                    self.health.add("scores_dropped", len(batch))
                    log.warning("Langfuse scores: a batch of %d failed (%s)", len(batch), _why(exc))
                finally:
                    with self._idle:
                        self._sending = 0
                        self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()


def _why(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status is not None else type(exc).__name__


def _api_sender(
    public_key: str, secret_key: str, host: str, timeout_s: float, max_retries: int
) -> Callable[[list[Score]], None]:
    """`scores.create` of the `langfuse` package's API client (imported here, lazily). Its HTTP
    client retries 408/409/429/5xx with backoff; `max_retries` bounds that."""
    from langfuse.api import LangfuseAPI
    from langfuse.api.commons import ScoreDataType
    from langfuse.api.scores import CreateScoreRequest

    api = LangfuseAPI(
        base_url=host.rstrip("/"),
        username=public_key,
        password=secret_key,
        x_langfuse_public_key=public_key,
        x_langfuse_sdk_name="voicetrace-telemetry",
        timeout=timeout_s,
    )
    options: Any = {"max_retries": max_retries, "timeout_in_seconds": timeout_s}

    numeric: Any = ScoreDataType.NUMERIC  # typed `str` by the package's enum stubs

    def request(s: Score) -> Any:
        # Unset, not null: a session score has no observation.
        optional: dict[str, Any] = {
            "observation_id": s.observation_id,
            "environment": s.environment,
        }
        return CreateScoreRequest(
            id=s.id,
            trace_id=s.trace_id,
            name=s.name,
            value=s.value,
            data_type=numeric,
            **{key: v for key, v in optional.items() if v is not None},
        )

    def send(batch: list[Score]) -> None:
        api.scores.create(request=[request(s) for s in batch], request_options=options)

    return send
