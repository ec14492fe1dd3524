"""Reading the standard exporter variables into an `ExportPlan`, by the OTel specification's rules
(protocol/exporter.md): protocols per signal, endpoints per protocol, gRPC transport security,
the default exporters, and clear errors for what cannot be honoured."""

from __future__ import annotations

import sys

import pytest
from voicetrace.telemetry.targets import (
    ConsoleTarget,
    LangfuseTarget,
    OtlpTarget,
    PrometheusTarget,
    TelemetryConfigError,
    offline_defaults,
    otlp_target,
    plan_exports,
)


def test_with_nothing_set_both_signals_go_over_otlp_http_to_the_spec_default_port() -> None:
    plan = plan_exports({})
    assert plan.traces == (
        OtlpTarget("traces", "http/protobuf", "http://localhost:4318/v1/traces"),
    )
    # OTEL_METRICS_EXPORTER's default is `otlp` in the specification, and here.
    assert plan.metrics == (
        OtlpTarget("metrics", "http/protobuf", "http://localhost:4318/v1/metrics"),
    )


@pytest.mark.parametrize("base", ["http://collector:4318", "http://collector:4318/"])
def test_the_generic_http_endpoint_gets_each_signals_path(base: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": base}
    assert otlp_target(env, "traces").endpoint == "http://collector:4318/v1/traces"
    assert otlp_target(env, "metrics").endpoint == "http://collector:4318/v1/metrics"


def test_a_signal_specific_http_endpoint_is_used_as_given_and_only_for_its_signal() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/custom/path",
    }
    assert otlp_target(env, "traces").endpoint == "https://traces.example/custom/path"
    assert otlp_target(env, "metrics").endpoint == "http://collector:4318/v1/metrics"


def test_the_protocol_is_chosen_per_signal_with_the_generic_one_as_fallback() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
    }
    assert otlp_target(env, "traces").protocol == "grpc"
    assert otlp_target(env, "metrics").protocol == "http/protobuf"
    env = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": " GRPC "}
    assert otlp_target(env, "traces").protocol == "grpc"
    assert otlp_target(env, "metrics").protocol == "http/protobuf"


@pytest.mark.parametrize(
    ("env", "endpoint", "insecure"),
    [
        ({}, "http://localhost:4317", True),  # the spec default is an http:// URL: plaintext
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317"}, "https://c:4317", False),
        # the scheme decides over OTEL_EXPORTER_OTLP_INSECURE …
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            },
            "https://c:4317",
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "http://c:4317", True),
        # … which applies to a scheme-less host:port, TLS unless it says true
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317"}, "c:4317", False),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317", "OTEL_EXPORTER_OTLP_INSECURE": "TRUE"},
            "c:4317",
            True,
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false",  # the signal's own wins
            },
            "c:4317",
            False,
        ),
        # a gRPC endpoint has no path: the generic one gets none appended, a given one is dropped
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317/v1/traces"}, "http://c:4317", True),
        # any other form the gRPC client accepts goes through unchanged, INSECURE deciding
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "unix:///tmp/otel.sock"}, "unix:///tmp/otel.sock", False),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "unix:///tmp/s", "OTEL_EXPORTER_OTLP_INSECURE": "true"},
            "unix:///tmp/s",
            True,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "dns:///c:4317"}, "dns:///c:4317", False),
        # an empty signal-specific INSECURE is unset: the generic one still decides
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "",
            },
            "c:4317",
            True,
        ),
    ],
)
def test_grpc_endpoints_and_transport_security_follow_the_spec(
    env: dict[str, str], endpoint: str, insecure: bool
) -> None:
    target = otlp_target({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", **env}, "traces")
    assert (target.protocol, target.endpoint, target.insecure) == ("grpc", endpoint, insecure)
    assert target.describe() == f"OTLP/gRPC {endpoint} ({'plaintext' if insecure else 'TLS'})"


def test_a_grpc_endpoint_without_a_netloc_is_not_warned_about_a_path(caplog) -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "unix:///tmp/s"}
    otlp_target(env, "traces")
    assert "path is ignored" not in caplog.text


def test_a_value_that_is_neither_true_nor_false_is_false_with_a_warning(caplog) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317",
        "OTEL_EXPORTER_OTLP_INSECURE": "yes",
    }
    assert otlp_target(env, "traces").insecure is False
    assert "OTEL_EXPORTER_OTLP_INSECURE" in caplog.text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "no OTLP/JSON exporter"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}, "not an OTLP protocol"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        ({"OTEL_METRICS_EXPORTER": "statsd"}, "OTEL_METRICS_EXPORTER='statsd'"),
    ],
)
def test_what_cannot_be_honoured_is_a_clear_error_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(TelemetryConfigError, match=message):
        plan_exports(env)


def test_http_json_for_metrics_only_names_the_metrics_variable() -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json", "OTEL_TRACES_EXPORTER": "none"}
    with pytest.raises(TelemetryConfigError, match="OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"):
        plan_exports(env)


def test_grpc_asked_for_without_its_exporter_package_says_which_extra_to_install(
    monkeypatch,
) -> None:
    # What a telemetry-only install sees: the module cannot be imported (None in sys.modules
    # makes `import` raise ImportError, as when the package is absent).
    package = "opentelemetry.exporter.otlp.proto.grpc"
    for name in [package, *(m for m in sys.modules if m.startswith(package + "."))]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(TelemetryConfigError, match=r"voicetrace-telemetry\[grpc\]"):
        plan_exports({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    # …and http/protobuf still works without it.
    assert plan_exports({}).traces[0].protocol == "http/protobuf"


def test_exporter_lists_combine_and_none_contributes_nothing() -> None:
    plan = plan_exports(
        {"OTEL_TRACES_EXPORTER": "console, none", "OTEL_METRICS_EXPORTER": "prometheus,console"}
    )
    assert plan.traces == (ConsoleTarget(),)
    assert plan.metrics == (PrometheusTarget(), ConsoleTarget())


def test_an_empty_variable_is_the_same_as_an_unset_one() -> None:
    # The spec: "an environment variable set to the empty string is treated as unset".
    assert plan_exports({"OTEL_TRACES_EXPORTER": "", "OTEL_METRICS_EXPORTER": ""}) == plan_exports(
        {}
    )
    empty = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": " ",
        "OTEL_SDK_DISABLED": "",
    }
    assert plan_exports(empty) == plan_exports({})
    assert offline_defaults({"OTEL_TRACES_EXPORTER": ""})["OTEL_TRACES_EXPORTER"] == "none"


def test_langfuse_keys_add_a_span_target_whose_description_and_repr_hold_no_secret() -> None:
    plan = plan_exports(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "LANGFUSE_PUBLIC_KEY": "pk-lf-1",
            "LANGFUSE_SECRET_KEY": "sk-lf-topsecret",
            "LANGFUSE_HOST": "http://langfuse.local:3000/",
        }
    )
    assert plan.traces == (
        LangfuseTarget("http://langfuse.local:3000/", "pk-lf-1", "sk-lf-topsecret"),
    )
    assert plan.langfuse is plan.traces[0]
    assert "sk-lf-topsecret" not in plan.describe() + repr(plan)
    assert plan.describe() == (
        "traces → Langfuse http://langfuse.local:3000; metrics → OTLP/HTTP "
        "http://localhost:4318/v1/metrics"
    )


def test_sdk_disabled_plans_nothing_whatever_else_is_set() -> None:
    plan = plan_exports({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert plan.disabled and plan.traces == () and plan.metrics == ()
    assert plan_exports({"OTEL_SDK_DISABLED": " TRUE "}).disabled


@pytest.mark.parametrize("value", ["1", "yes", "on", "false", ""])
def test_sdk_disabled_is_a_spec_boolean_only_true_disables(value: str) -> None:
    assert not plan_exports({"OTEL_SDK_DISABLED": value}).disabled


@pytest.mark.parametrize(
    ("env", "traces", "metrics"),
    [
        ({}, "none", "none"),  # offline: never the default localhost port
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None, None),  # both, to that endpoint
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"}, None, "none"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c/v1/metrics"}, "none", None),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console", "none"),  # named: kept
        ({"OTEL_METRICS_EXPORTER": "otlp"}, "none", "otlp"),  # asked for the default port
    ],
)
def test_the_local_tools_export_a_signal_only_where_told(
    env: dict[str, str], traces: str | None, metrics: str | None
) -> None:
    out = offline_defaults(env)
    assert out.get("OTEL_TRACES_EXPORTER") == traces
    assert out.get("OTEL_METRICS_EXPORTER") == metrics
