"""Export setup from the standard environment: OTLP (HTTP or gRPC), console, direct Langfuse,
sampling.

`targets.plan_exports` reads and checks the exporter variables (`OTEL_TRACES_EXPORTER`,
`OTEL_METRICS_EXPORTER`, `OTEL_EXPORTER_OTLP_[{SIGNAL}_]PROTOCOL/ENDPOINT/INSECURE`, Langfuse
keys) into an `ExportPlan`; `configure_providers` builds exactly that plan. Also honoured:
`OTEL_SDK_DISABLED`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
and what the SDK exporters read themselves (headers, compression, certificates, timeouts).
Direct Langfuse export when `LANGFUSE_PUBLIC_KEY`/`LANGFUSE_SECRET_KEY` are set is a second,
plain OTLP exporter (the Langfuse SDK's own processor costs ~5x per span). Secrets are never
logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NoOpTracerProvider, TracerProvider
from voicetrace.telemetry.content import capture_from_env
from voicetrace.telemetry.core import VoiceTelemetry
from voicetrace.telemetry.export import CountingSpanExporter, ErrorKeepingProcessor, ExportProcessor
from voicetrace.telemetry.health import TelemetryHealth
from voicetrace.telemetry.keys import LF_RELEASE
from voicetrace.telemetry.langfuse_export import LangfuseSpanExporter
from voicetrace.telemetry.media import MediaUploader, api_upload
from voicetrace.telemetry.prices import PriceTable
from voicetrace.telemetry.sampling import RecordAllSampler
from voicetrace.telemetry.scores import SCORES_ENV, LangfuseScoreSink, ScoreProcessor
from voicetrace.telemetry.targets import (
    ConsoleTarget,
    ExportPlan,
    MetricTarget,
    OtlpTarget,
    SpanTarget,
    TelemetryConfigError,
    plan_exports,
)

__all__ = [
    "MEDIA_ENV",
    "TelemetryConfigError",  # defined in targets, where the variables are read
    "TelemetryProviders",
    "configure_providers",
    "configure_telemetry",
    "langfuse_exporter",
    "prometheus_reader",
    "sampler_from_env",
]

log = logging.getLogger(__name__)


@dataclass
class TelemetryProviders:
    """What `configure_providers` built; `export_processors` feed `health()` queue sizes."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    health: TelemetryHealth
    export_processors: list[ExportProcessor] = field(default_factory=list)
    plan: ExportPlan = field(default_factory=ExportPlan)  # what was built (endpoints, protocols)
    media: MediaUploader | None = None  # turn audio to Langfuse (content capture + consent)
    # Only push readers need a flush; flushing a Prometheus (pull) reader queues an extra
    # snapshot and the next scrape repeats every series (exporter-prometheus 0.66b2).
    flush_metrics: bool = True
    span_processors: list[SpanProcessor] = field(default_factory=list)  # all, in order


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """`RecordAllSampler(ParentBased(root))` (the SDK's AlwaysRecordSampler, fixed to keep
    attributes): processors (usage ledger, metrics, error keeping) see 100 % of spans, exporters
    only the sampled sessions. The decision is taken once per session, at its root span."""
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    base = name.removeprefix("parentbased_")
    if base == "always_on":
        root: Sampler = ALWAYS_ON
    elif base == "always_off":
        root = ALWAYS_OFF
    elif base == "traceidratio":
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            rate = float(raw)
        except ValueError:
            raise TelemetryConfigError(
                f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a number in [0, 1]"
            ) from None
        if not 0.0 <= rate <= 1.0:
            raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} must be in [0, 1]")
        root = TraceIdRatioBased(rate)
    else:
        raise TelemetryConfigError(
            f"OTEL_TRACES_SAMPLER={name!r} is not supported (use always_on, always_off, "
            "traceidratio or their parentbased_ forms)"
        )
    return RecordAllSampler(ParentBased(root))


LANGFUSE_TIMEOUT_S = 5.0  # our own Langfuse exporter reads no OTEL_* timeout variable


def langfuse_exporter(
    public_key: str, secret_key: str, host: str, timeout_s: float = LANGFUSE_TIMEOUT_S
) -> SpanExporter:
    """OTLP/HTTP to Langfuse with only its own headers (see telemetry.langfuse_export)."""
    return LangfuseSpanExporter(public_key, secret_key, host, timeout_s=timeout_s)


def configure_providers(
    service_name: str = "voicetrace",
    *,
    env: Mapping[str, str] | None = None,
    plan: ExportPlan | None = None,
    extra_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    resource_attributes: Mapping[str, Any] | None = None,
    export_timeout_s: float | None = None,
    max_queue_size: int = 2048,
    schedule_delay_ms: float = 500,
    keep_error_traces: bool = True,
    langfuse_scores: bool | None = None,
    langfuse_media: bool | None = None,
) -> TelemetryProviders:
    """Build tracer and meter providers from the environment (`env` defaults to os.environ).

    `plan` (from `targets.plan_exports(env)`) is what to export; by default it is read from
    `env`. Pass it when the caller also shows it (the demo's "exported to" line), so what is
    shown is what was built. With Langfuse credentials, voice KPIs also go to Langfuse as
    scores (telemetry.scores) unless `langfuse_scores=False` or
    `VOICETRACE_LANGFUSE_SCORES=false`.

    `export_timeout_s=None` (the default) leaves each OTLP exporter its own timeout, which the
    SDK reads from `OTEL_EXPORTER_OTLP_[{SIGNAL}_]TIMEOUT` (10 s when unset); a value given
    here wins over those variables. Langfuse's exporter and scores use it too, else 5 s."""
    env = os.environ if env is None else env
    plan = plan_exports(env) if plan is None else plan
    health = TelemetryHealth()
    if plan.disabled:
        return TelemetryProviders(NoOpTracerProvider(), NoOpMeterProvider(), health, plan=plan)

    resource = Resource.create(_resource_attributes(env, service_name, resource_attributes))

    tracer_provider = SdkTracerProvider(resource=resource, sampler=sampler_from_env(env))
    for processor in extra_processors:
        tracer_provider.add_span_processor(processor)

    exporters = [(t, _span_exporter(t, export_timeout_s)) for t in plan.traces]
    scores: SpanProcessor | None = None
    media: MediaUploader | None = None
    if (lf := plan.langfuse) is not None:
        if _scores_enabled(env, langfuse_scores):
            scores = _score_processor(
                lf.public_key,
                lf.secret_key,
                lf.host,
                health,
                export_timeout_s or LANGFUSE_TIMEOUT_S,
            )
        if langfuse_media if langfuse_media is not None else not _flag_off(env, MEDIA_ENV):
            media = _media_uploader(lf.public_key, lf.secret_key, lf.host, health)

    processors = [
        ExportProcessor(
            CountingSpanExporter(exp, health, target.kind),
            health,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_ms,
        )
        for target, exp in exporters
    ]
    for processor in processors:
        tracer_provider.add_span_processor(processor)
    if processors and keep_error_traces:
        tracer_provider.add_span_processor(ErrorKeepingProcessor(processors, health))
    if scores is not None:  # after the exporters: a flush serves the spans first
        tracer_provider.add_span_processor(scores)
    health.gauge("queue_size", lambda: sum(p.queue_size() for p in processors))
    log.info("telemetry export: %s", plan.describe())  # endpoints only, never keys

    readers = [*metric_readers, *(_metric_reader(t, export_timeout_s) for t in plan.metrics)]
    # With no reader no measurement can ever be seen (an SDK meter provider takes no readers
    # later), yet each would still cost ~2.5 µs of CPU: no readers, no SDK meter provider.
    meter_provider: MeterProvider = (
        SdkMeterProvider(resource=resource, metric_readers=readers)
        if readers
        else NoOpMeterProvider()
    )
    return TelemetryProviders(
        tracer_provider,
        meter_provider,
        health,
        processors,
        plan,
        media,
        flush_metrics=any(isinstance(r, PeriodicExportingMetricReader) for r in readers),
        span_processors=[*extra_processors, *processors],
    )


def _span_exporter(target: SpanTarget, timeout_s: float | None) -> SpanExporter:
    if isinstance(target, OtlpTarget):
        return target.span_exporter(timeout_s)
    if isinstance(target, ConsoleTarget):
        return ConsoleSpanExporter()
    return langfuse_exporter(
        target.public_key, target.secret_key, target.host, timeout_s or LANGFUSE_TIMEOUT_S
    )


def _metric_reader(target: MetricTarget, timeout_s: float | None) -> MetricReader:
    """Push readers export every OTEL_METRIC_EXPORT_INTERVAL (the SDK reads it; 60 s)."""
    if isinstance(target, OtlpTarget):
        return PeriodicExportingMetricReader(target.metric_exporter(timeout_s))
    if isinstance(target, ConsoleTarget):
        return PeriodicExportingMetricReader(ConsoleMetricExporter())
    return prometheus_reader()


MEDIA_ENV = "VOICETRACE_LANGFUSE_MEDIA"  # "false": no turn audio to Langfuse, even with consent


def _flag_off(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("false", "0", "no", "off")


def _media_uploader(
    public: str, secret: str, host: str, health: TelemetryHealth
) -> MediaUploader | None:
    """Turn audio needs the optional `langfuse` package; without it spans still go out."""
    try:
        return MediaUploader(api_upload(public, secret, host), health)
    except ImportError:
        log.warning("Langfuse media disabled: install the `langfuse` extra")
        return None


def _scores_enabled(env: Mapping[str, str], explicit: bool | None) -> bool:
    if explicit is not None:
        return explicit
    raw = env.get(SCORES_ENV, "true").strip().lower()
    if raw in ("true", "1", "yes", "on", ""):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise TelemetryConfigError(f"{SCORES_ENV}={raw!r} must be true or false")


def _score_processor(
    public: str, secret: str, host: str, health: TelemetryHealth, timeout_s: float
) -> SpanProcessor | None:
    """Scores need the optional `langfuse` package; without it spans still go out."""
    try:
        sink = LangfuseScoreSink(public, secret, host, health, timeout_s=timeout_s)
    except ImportError:
        log.warning(
            "Langfuse scores disabled: install the `langfuse` extra "
            "(pip install 'voicetrace[langfuse]') or set %s=false",
            SCORES_ENV,
        )
        return None
    log.info("sending voice KPIs as scores to langfuse %s", host)
    return ScoreProcessor(sink, health)


def _resource_attributes(
    env: Mapping[str, str], service_name: str, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME (else our default), LANGFUSE_RELEASE, `extra`.
    Read from `env` (not only os.environ) so a given mapping fully describes the setup."""
    attrs: dict[str, Any] = {}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            attrs[key.strip()] = unquote(value.strip())
    attrs["service.name"] = (
        env.get("OTEL_SERVICE_NAME") or attrs.get("service.name") or service_name
    )
    # Langfuse reads the release from the span, then the resource; on the resource a child's
    # trace update cannot null it (the Langfuse SDK's own variable name).
    if release := env.get("LANGFUSE_RELEASE", "").strip():
        attrs[LF_RELEASE] = release
    attrs.update(extra or {})
    return attrs


def prometheus_reader() -> MetricReader:
    """A Prometheus pull reader (needs the `prometheus` extra; imported only when asked)."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
    except ImportError as exc:
        raise TelemetryConfigError(
            "Prometheus metrics need opentelemetry-exporter-prometheus "
            "(pip install 'voicetrace[prometheus]')"
        ) from exc
    return PrometheusMetricReader()


def configure_telemetry(
    service_name: str = "voicetrace",
    *,
    pricing: PriceTable | None = None,
    capture_content: bool | None = None,
    usage_wait_s: float = 2.0,
    max_content_chars: int = 4000,
    env: Mapping[str, str] | None = None,
    **provider_options: Any,
) -> VoiceTelemetry:
    """Providers from the environment + a `VoiceTelemetry` that owns (and shuts down) them."""
    providers = configure_providers(service_name, env=env, **provider_options)
    if capture_content is None:
        capture_content = capture_from_env(env)
    return VoiceTelemetry(
        providers.tracer_provider,
        providers.meter_provider,
        pricing=pricing,
        capture_content=capture_content,
        usage_wait_s=usage_wait_s,
        max_content_chars=max_content_chars,
        health=providers.health,
        owns_providers=True,
        media=providers.media,
        flush_metrics=providers.flush_metrics,
        recovery_processors=providers.span_processors,
    )
