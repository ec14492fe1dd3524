"""Where telemetry goes: the standard environment read once into a typed `ExportPlan`.

`plan_exports(env)` validates every exporter variable up front (a `TelemetryConfigError` names
the variable) and resolves what the OTLP exporters will really use, per signal, by the rules of
the OTel specification (protocol/exporter.md):

- protocol: `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
  `http/protobuf`. `grpc` needs `opentelemetry-exporter-otlp-proto-grpc` (imported only when
  asked for); `http/json` is refused because the Python SDK ships no JSON exporter;
- endpoint, HTTP: the signal variable as is; else the generic one + `/v1/{signal}`; else
  `http://localhost:4318/v1/{signal}`. gRPC: the signal or the generic variable, else
  `http://localhost:4317`; an `http(s)://` URL is reduced to `scheme://host:port` (the SDK
  dials its netloc and ignores a path, so it is dropped here too), any other form the gRPC
  client accepts (`host:port`, `unix:///path`, `dns:///host:port`) is passed through as is;
- gRPC transport security: `https://` → TLS, `http://` → plaintext, anything else →
  `OTEL_EXPORTER_OTLP_[{SIGNAL}_]INSECURE` (only `true` means plaintext; the default is TLS).

An empty value is the same as an unset one (the spec's rule for every OTEL_* variable).
The plan holds the resolved endpoint and security and hands them to the SDK exporter
explicitly, so the plan's `describe()` (the startup log line, the demo's "exported to" line)
is what the exporter does. Headers, compression, certificates and timeouts
(`OTEL_EXPORTER_OTLP_[{SIGNAL}_]TIMEOUT`, unless the caller passes one) are left to the SDK
exporters, which read them from `os.environ` themselves.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter
from voicetrace.telemetry.langfuse_export import LANGFUSE_DEFAULT_HOST

log = logging.getLogger(__name__)

Signal = Literal["traces", "metrics"]
OtlpProtocol = Literal["http/protobuf", "grpc"]
GRPC_EXPORTER_MODULE: Final = "opentelemetry.exporter.otlp.proto.grpc.exporter"  # imports grpcio
HTTP_DEFAULT: Final = "http://localhost:4318"
GRPC_DEFAULT: Final = "http://localhost:4317"


class TelemetryConfigError(ValueError):
    """A telemetry environment variable has a value we cannot honour."""


@dataclass(frozen=True)
class OtlpTarget:
    """One signal's OTLP exporter, as the SDK exporter will be built."""

    signal: Signal
    protocol: OtlpProtocol
    endpoint: str  # HTTP: the full URL with its path; gRPC: scheme://host:port or host:port
    insecure: bool = False  # gRPC only: plaintext instead of TLS

    kind: ClassVar[str] = "otlp"  # the health counters' exporter label

    def describe(self) -> str:
        if self.protocol == "grpc":
            return f"OTLP/gRPC {self.endpoint} ({'plaintext' if self.insecure else 'TLS'})"
        return f"OTLP/HTTP {self.endpoint}"

    def span_exporter(self, timeout_s: float | None = None) -> SpanExporter:
        """`timeout_s=None`: the SDK exporter's own (the `…_TIMEOUT` variables, else 10 s)."""
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            return GrpcSpanExporter(
                endpoint=self.endpoint, insecure=self.insecure, timeout=timeout_s
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=self.endpoint, timeout=timeout_s)

    def metric_exporter(self, timeout_s: float | None = None) -> MetricExporter:
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            return GrpcMetricExporter(
                endpoint=self.endpoint, insecure=self.insecure, timeout=timeout_s
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=self.endpoint, timeout=timeout_s)


@dataclass(frozen=True)
class ConsoleTarget:
    """The SDK's console exporter (stdout)."""

    kind: ClassVar[str] = "console"  # the health counters' exporter label

    def describe(self) -> str:
        return "console (stdout)"


@dataclass(frozen=True)
class PrometheusTarget:
    """A Prometheus pull reader: scraped from the service's `/metrics`."""

    kind: ClassVar[str] = "prometheus"  # the health counters' exporter label

    def describe(self) -> str:
        return "Prometheus (scrape /metrics)"


@dataclass(frozen=True)
class LangfuseTarget:
    """Direct span export to Langfuse's OTLP endpoint (telemetry.langfuse_export)."""

    host: str
    public_key: str = field(repr=False)
    secret_key: str = field(repr=False)  # never in a repr, a log line or a description

    kind: ClassVar[str] = "langfuse"  # the health counters' exporter label

    def describe(self) -> str:
        return f"Langfuse {self.host.rstrip('/')}"


SpanTarget = OtlpTarget | ConsoleTarget | LangfuseTarget
MetricTarget = OtlpTarget | ConsoleTarget | PrometheusTarget


@dataclass(frozen=True)
class ExportPlan:
    """Every exporter the environment asks for; the providers are built from exactly this."""

    traces: tuple[SpanTarget, ...] = ()
    metrics: tuple[MetricTarget, ...] = ()
    disabled: bool = False  # OTEL_SDK_DISABLED: no-op providers, nothing recorded or exported

    @property
    def langfuse(self) -> LangfuseTarget | None:
        return next((t for t in self.traces if isinstance(t, LangfuseTarget)), None)

    def describe(self) -> str:
        """One line, endpoints only: e.g. `traces → OTLP/HTTP http://c:4318/v1/traces;
        metrics → none`."""
        if self.disabled:
            return "nothing (OTEL_SDK_DISABLED=true)"
        traces = ", ".join(t.describe() for t in self.traces) or "none"
        metrics = ", ".join(t.describe() for t in self.metrics) or "none"
        return f"traces → {traces}; metrics → {metrics}"


def plan_exports(env: Mapping[str, str]) -> ExportPlan:
    """Read and check the exporter variables of `env` (the spec's defaults where unset)."""
    if _true(env, "OTEL_SDK_DISABLED"):
        return ExportPlan(disabled=True)
    traces: list[SpanTarget] = []
    for name in _names(env, "OTEL_TRACES_EXPORTER"):
        if name == "otlp":
            traces.append(otlp_target(env, "traces"))
        elif name == "console":
            traces.append(ConsoleTarget())
        else:
            raise TelemetryConfigError(
                f"OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console or none)"
            )
    public, secret = env.get("LANGFUSE_PUBLIC_KEY"), env.get("LANGFUSE_SECRET_KEY")
    if public and secret:
        host = env.get("LANGFUSE_HOST") or env.get("LANGFUSE_BASE_URL") or LANGFUSE_DEFAULT_HOST
        traces.append(LangfuseTarget(host, public, secret))
    elif public or secret:
        log.warning(
            "Langfuse export disabled: set both LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY"
        )
    metrics: list[MetricTarget] = []
    for name in _names(env, "OTEL_METRICS_EXPORTER"):
        if name == "otlp":
            metrics.append(otlp_target(env, "metrics"))
        elif name == "prometheus":
            _require(
                "opentelemetry.exporter.prometheus",
                "OTEL_METRICS_EXPORTER=prometheus needs opentelemetry-exporter-prometheus "
                "(pip install 'voicetrace[prometheus]')",
            )
            metrics.append(PrometheusTarget())
        elif name == "console":
            metrics.append(ConsoleTarget())
        else:
            raise TelemetryConfigError(
                f"OTEL_METRICS_EXPORTER={name!r} is not supported (otlp, prometheus, console, none)"
            )
    return ExportPlan(tuple(traces), tuple(metrics))


def otlp_target(env: Mapping[str, str], signal: Signal) -> OtlpTarget:
    """The OTLP exporter of one signal, resolved by the specification's rules."""
    upper = signal.upper()
    var = f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL"
    raw = _value(env, var) or _value(env, "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    protocol = raw.lower()
    named = var if _value(env, var) else "OTEL_EXPORTER_OTLP_PROTOCOL"
    specific = _value(env, f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    generic = _value(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol == "http/protobuf":
        if specific:  # the signal's own URL is used as given, path and all
            return OtlpTarget(signal, "http/protobuf", specific)
        base = (generic or HTTP_DEFAULT).rstrip("/")
        return OtlpTarget(signal, "http/protobuf", f"{base}/v1/{signal}")
    if protocol == "grpc":
        _require(
            GRPC_EXPORTER_MODULE,
            f"{named}=grpc needs opentelemetry-exporter-otlp-proto-grpc "
            "(pip install 'voicetrace-telemetry[grpc]'; the voicetrace product includes it)",
        )
        endpoint = _grpc_endpoint(specific or generic or GRPC_DEFAULT)
        scheme = _url_scheme(endpoint)
        if scheme == "https":
            insecure = False
        elif scheme == "http":
            insecure = True
        else:  # host:port, unix:, dns: …: the INSECURE variables decide (default: TLS)
            own = f"OTEL_EXPORTER_OTLP_{upper}_INSECURE"
            insecure = _true(env, own if _value(env, own) else "OTEL_EXPORTER_OTLP_INSECURE")
        return OtlpTarget(signal, "grpc", endpoint, insecure)
    if protocol == "http/json":
        raise TelemetryConfigError(
            f"{named}=http/json is not supported: the OpenTelemetry Python SDK has no OTLP/JSON "
            "exporter; use http/protobuf (the default) or grpc"
        )
    raise TelemetryConfigError(f"{named}={raw!r} is not an OTLP protocol (http/protobuf or grpc)")


def _url_scheme(endpoint: str) -> str:
    """`http`/`https` for a URL of that scheme, else "" (host:port has no scheme; `c:4317`
    would otherwise parse as scheme `c`)."""
    scheme = urlsplit(endpoint).scheme.lower() if "://" in endpoint else ""
    return scheme if scheme in ("http", "https") else ""


def _grpc_endpoint(raw: str) -> str:
    """Only an `http(s)://` URL is rewritten, as the SDK does (it dials the URL's netloc and
    drops any path; the plan does too, and says so, keeping its description what is dialled).
    Every other form the gRPC client accepts (`host:port`, `unix:///tmp/s`,
    `dns:///host:port`) has no netloc and goes to the exporter unchanged."""
    if not _url_scheme(raw):
        return raw
    parts = urlsplit(raw)
    if parts.path.strip("/"):
        log.warning("OTLP/gRPC endpoint %s: the path is ignored (gRPC has none)", raw)
    return f"{parts.scheme}://{parts.netloc}"


def _require(module: str, message: str) -> None:
    """Optional exporters are imported only when asked for; missing, the plan says which."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise TelemetryConfigError(message) from exc


def _names(env: Mapping[str, str], variable: str) -> list[str]:
    """A comma list of exporter names; `none` (or nothing) in it contributes nothing."""
    names = (n.strip().lower() for n in (_value(env, variable) or "otlp").split(","))
    return [n for n in names if n not in ("", "none")]


def _true(env: Mapping[str, str], name: str) -> bool:
    """The spec's booleans: only `true` (any case) is true; a value that is neither true nor
    false is false too, with a warning."""
    raw = _value(env, name).lower()
    if raw not in ("", "true", "false"):
        log.warning("%s=%r is not true or false: taken as false", name, raw)
    return raw == "true"


def _value(env: Mapping[str, str], name: str) -> str:
    """The variable's value, stripped; "" when unset — an empty value means unset (spec)."""
    return env.get(name, "").strip()


def offline_defaults(env: Mapping[str, str]) -> dict[str, str]:
    """For the local tools (`voicetrace demo`, `voicetrace dev`): a signal is exported only
    where the environment says — an endpoint for it, or its exporter named — never to the
    spec's default localhost port (offline that would only be a stream of connection errors)."""
    out = dict(env)
    generic = _value(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    for signal in ("TRACES", "METRICS"):
        if not _value(env, f"OTEL_{signal}_EXPORTER") and not (
            generic or _value(env, f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
        ):
            out[f"OTEL_{signal}_EXPORTER"] = "none"
    return out
