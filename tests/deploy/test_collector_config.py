"""otel-collector.yaml (and its overlays) checked offline against the components' schemas and
the rules of DESIGN §8: memory_limiter first, traces only and unsampled to Langfuse, Langfuse's
headers, persistent queue, pinned span-metrics unit, `$$` for literal dollars."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.deploy.collector_schema import SECTION_CLASS, SchemaStore, merge, split_id
from tests.deploy.collector_schema import validate_config as schema_errors
from tests.deploy.conftest import COLLECTOR_CONFIG, DEPLOY, load_yaml

LANGFUSE = "otlp_http/langfuse"
OVERLAYS = sorted(p.stem for p in (DEPLOY / "collector").glob("*.yaml"))
# Processors that drop or sample spans: none may sit in front of Langfuse (cost totals are sums
# over the spans Langfuse receives).
SAMPLING_PROCESSORS = {"tail_sampling", "probabilistic_sampler", "filter", "batch"}


def with_overlay(base: dict[str, Any], overlay: str | None) -> dict[str, Any]:
    if overlay is None:
        return copy.deepcopy(base)
    return merge(copy.deepcopy(base), load_yaml(DEPLOY / "collector" / f"{overlay}.yaml"))


def pipeline_errors(config: dict[str, Any]) -> list[str]:
    """References between pipelines, components and extensions, as the collector checks them."""
    errors: list[str] = []
    service = config.get("service") or {}
    defined = {section: set(config.get(section) or {}) for section in SECTION_CLASS}
    connectors = defined["connectors"]
    used_as = {"receiver": set(), "exporter": set()}
    for name, pipeline in (service.get("pipelines") or {}).items():
        signal = name.split("/")[0]
        if signal not in ("traces", "metrics", "logs", "profiles"):
            errors.append(f"pipeline {name}: unknown signal {signal!r}")
        if not pipeline.get("receivers") or not pipeline.get("exporters"):
            errors.append(f"pipeline {name}: needs receivers and exporters")
        for role, section in (
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ):
            for cid in pipeline.get(role) or []:
                if role != "processors" and cid in connectors:
                    used_as[role[:-1]].add(cid)
                elif cid not in defined[section]:
                    errors.append(f"pipeline {name}: {role[:-1]} {cid!r} is not defined")
    for cid in connectors:
        if cid not in used_as["receiver"] or cid not in used_as["exporter"]:
            errors.append(
                f"connector {cid!r} must be an exporter in one pipeline and a receiver in another"
            )
    for ext in service.get("extensions") or []:
        if ext not in defined["extensions"]:
            errors.append(f"service.extensions: {ext!r} is not defined")
    for section in ("exporters",):
        for cid, body in (config.get(section) or {}).items():
            storage = ((body or {}).get("sending_queue") or {}).get("storage")
            if storage and storage not in (service.get("extensions") or []):
                errors.append(f"{section}.{cid}: storage {storage!r} is not in service.extensions")
    return errors


def pipelines_with(config: dict[str, Any], exporter: str) -> dict[str, dict[str, Any]]:
    return {
        name: p
        for name, p in config["service"]["pipelines"].items()
        if exporter in (p.get("exporters") or [])
    }


# -- schemas --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [None, *OVERLAYS])
def test_every_component_key_matches_its_upstream_schema(
    collector_config: dict[str, Any], schema_store: SchemaStore, overlay: str | None
) -> None:
    assert schema_errors(with_overlay(collector_config, overlay), schema_store) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("processors", "memory_limiter", "check_intervall"), "1s", "unknown key"),
        (("receivers", "otlp", "protocols", "http", "endpoint"), 4318, "expected a string"),
        (
            ("exporters", LANGFUSE, "sending_queue", "batch", "flush_timeout"),
            "1 second",
            "not a Go duration",
        ),
        (("exporters", LANGFUSE, "retry_on_failure", "enabled"), "yes", "expected true/false"),
        (("exporters", LANGFUSE, "tls", "insecure_skip_verfy"), True, "unknown key"),
        (("connectors", "span_metrics", "dimensions"), {"name": "x"}, "expected a list"),
        (("extensions", "file_storage/queue", "directoy"), "/tmp", "unknown key"),
        (("extensions", "health_check", "check_collector_pipeline", "enable"), True, "unknown"),
    ],
)
def test_schema_check_rejects_misspelled_and_mistyped_keys(
    collector_config: dict[str, Any],
    schema_store: SchemaStore,
    path: tuple[str, ...],
    value: Any,
    expected: str,
) -> None:
    config = copy.deepcopy(collector_config)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    errors = schema_errors(config, schema_store)
    assert len(errors) == 1 and expected in errors[0], errors


@pytest.mark.parametrize(
    ("section", "old", "new"),
    [("exporters", "otlphttp", "otlp_http"), ("connectors", "spanmetrics", "span_metrics")],
)
def test_deprecated_component_type_names_are_rejected(
    collector_config: dict[str, Any], schema_store: SchemaStore, section: str, old: str, new: str
) -> None:
    config = copy.deepcopy(collector_config)
    config[section][f"{old}/x"] = {}
    assert schema_errors(config, schema_store) == [
        f"{section}.{old}/x: deprecated type, use {new!r}"
    ]


def test_http_clients_avoid_options_removed_in_v0_165(collector_config: dict[str, Any]) -> None:
    removed = {"idle_conn_timeout", "max_idle_conns", "max_idle_conns_per_host"}
    removed.add("disable_keep_alives")
    for cid, body in collector_config["exporters"].items():
        assert not removed & set(body or {}), cid


# -- pipelines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", [None, *OVERLAYS])
def test_pipelines_reference_defined_components(
    collector_config: dict[str, Any], overlay: str | None
) -> None:
    assert pipeline_errors(with_overlay(collector_config, overlay)) == []


def test_pipeline_check_catches_an_undefined_exporter(collector_config: dict[str, Any]) -> None:
    config = copy.deepcopy(collector_config)
    config["service"]["pipelines"]["traces/langfuse"]["exporters"].append("otlp_http/nowhere")
    config["service"]["extensions"].remove("file_storage/queue")
    errors = pipeline_errors(config)
    assert "pipeline traces/langfuse: exporter 'otlp_http/nowhere' is not defined" in errors
    assert any("not in service.extensions" in e for e in errors)


def test_every_defined_component_is_used_by_some_configuration(
    collector_config: dict[str, Any],
) -> None:
    """Unused components are legal but usually a mistake; the Tempo exporter is the one that is
    only used once its overlay is merged."""
    used: set[str] = set()
    for overlay in (None, *OVERLAYS):
        config = with_overlay(collector_config, overlay)
        for pipeline in config["service"]["pipelines"].values():
            for role in ("receivers", "processors", "exporters"):
                used.update(pipeline.get(role) or [])
        used.update(config["service"].get("extensions") or [])
    defined = {cid for section in SECTION_CLASS for cid in collector_config.get(section) or {}}
    assert defined - used == set()


@pytest.mark.parametrize("overlay", [None, *OVERLAYS])
def test_memory_limiter_comes_first_in_every_pipeline(
    collector_config: dict[str, Any], overlay: str | None
) -> None:
    config = with_overlay(collector_config, overlay)
    for name, pipeline in config["service"]["pipelines"].items():
        assert (pipeline.get("processors") or [None])[0] == "memory_limiter", name
    assert config["processors"]["memory_limiter"]["check_interval"]


@pytest.mark.parametrize("overlay", [None, *OVERLAYS])
def test_langfuse_gets_traces_only_redacted_and_never_sampled(
    collector_config: dict[str, Any], overlay: str | None
) -> None:
    config = with_overlay(collector_config, overlay)
    feeding = pipelines_with(config, LANGFUSE)
    assert feeding, "no pipeline exports to Langfuse"
    for name, pipeline in feeding.items():
        assert name.split("/")[0] == "traces", f"{name} sends non-trace data to Langfuse"
        processors = pipeline["processors"]
        assert "redaction" in processors
        assert not {split_id(p)[0] for p in processors} & SAMPLING_PROCESSORS, name
        assert all(r == "otlp" for r in pipeline["receivers"]), "Langfuse must see every span"


def test_no_batch_processor_batching_happens_in_the_exporters(
    collector_config: dict[str, Any],
) -> None:
    assert not any(split_id(p)[0] == "batch" for p in collector_config["processors"])
    assert collector_config["exporters"][LANGFUSE]["sending_queue"]["batch"]


def test_span_metrics_feed_prometheus_with_a_pinned_unit_and_voice_dimensions(
    collector_config: dict[str, Any],
) -> None:
    span_metrics = collector_config["connectors"]["span_metrics"]
    assert span_metrics["histogram"]["unit"] == "s"
    assert [d["name"] for d in span_metrics["dimensions"]] == [
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "voice.turn.end_reason",
    ]
    metrics = collector_config["service"]["pipelines"]["metrics"]
    assert {"otlp", "span_metrics"} <= set(metrics["receivers"])
    assert metrics["exporters"] == ["prometheus"]
    exporter = collector_config["exporters"]["prometheus"]
    assert exporter["translation_strategy"] == "UnderscoreEscapingWithSuffixes"


# -- the Langfuse exporter and receivers ----------------------------------------------------------


def test_langfuse_exporter_sends_basic_auth_ingestion_v4_gzip_proto(
    collector_config: dict[str, Any],
) -> None:
    langfuse = collector_config["exporters"][LANGFUSE]
    assert langfuse["endpoint"] == "${env:LANGFUSE_HOST}/api/public/otel"
    headers = {k.lower(): v for k, v in langfuse["headers"].items()}
    assert re.fullmatch(r"Basic \$\{env:[A-Z0-9_]+\}", headers["authorization"])
    # a string: the collector's header values are strings; a YAML int would be rejected
    assert headers["x-langfuse-ingestion-version"] == "4"
    assert langfuse["compression"] == "gzip"
    assert langfuse["encoding"] == "proto"
    assert langfuse["retry_on_failure"]["enabled"] is True
    queue = langfuse["sending_queue"]
    assert queue["enabled"] is True
    assert split_id(queue["storage"])[0] == "file_storage"
    assert queue["storage"] in collector_config["extensions"]


def test_receivers_listen_on_all_interfaces_on_the_standard_ports(
    collector_config: dict[str, Any],
) -> None:
    protocols = collector_config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert collector_config["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("source", ["otel-collector.yaml", *(f"{o}.yaml" for o in OVERLAYS)])
def test_every_dollar_is_an_env_reference_or_escaped(source: str) -> None:
    """The collector expands `${env:…}` in values and turns `$$` into `$`; any other `$` (say
    an RE2 end anchor) would be taken for a variable."""
    path = COLLECTOR_CONFIG if source == COLLECTOR_CONFIG.name else DEPLOY / "collector" / source
    env_or_escaped = re.compile(r"\$\$|\$\{env:[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
    lone = [s for s in _strings(load_yaml(path)) if "$" in env_or_escaped.sub("", s)]
    assert lone == []


# -- redaction ------------------------------------------------------------------------------------


def _blocked(config: dict[str, Any]) -> list[re.Pattern[str]]:
    # The collector unescapes `$$` before RE2 sees the pattern; these patterns use only syntax
    # that RE2 and Python's `re` share.
    return [
        re.compile(p.replace("$$", "$"))
        for p in config["processors"]["redaction"]["blocked_values"]
    ]


@pytest.mark.parametrize(
    "secret",
    [
        "key AIzaSyA-1234567890abcdefghijklmnopqrstu",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl",
        "Basic cGstbGYtMTIzOnNrLWxmLTQ1Ng==",
        "langfuse secret sk-lf-0c5e9f3a-1b2c-4d5e",
        "my e-mail is jane.doe+voice@example.co.uk",
        "card 4111 1111 1111 1111 exp 12/29",
        "card 5500-0000-0000-0004",
        "api_key=abcdef123456",
        'password: "hunter2hunter2"',
    ],
)
def test_redaction_patterns_catch_secrets_and_pii(
    collector_config: dict[str, Any], secret: str
) -> None:
    assert any(p.search(secret) for p in _blocked(collector_config))


@pytest.mark.parametrize(
    "benign",
    [
        "gemini-3.8-live",
        "invoke_agent voicetrace",
        "2026-11-21T10:15:30.123456+00:00",
        "sess-2f1c9a7e-4b1d-4c55-9e0a-6f1f0d2a9b11",
        '{"input_text_tokens":120,"input_audio_tokens":3400,"output_audio_tokens":5120,"total":8640}',
        "Turn ended: interrupted after 1234 ms",
        "max_tokens=1024",
    ],
)
def test_redaction_patterns_leave_ordinary_attributes_alone(
    collector_config: dict[str, Any], benign: str
) -> None:
    assert not [p.pattern for p in _blocked(collector_config) if p.search(benign)]


def test_langfuse_json_and_ids_bypass_redaction(collector_config: dict[str, Any]) -> None:
    """Float costs are long digit runs the card pattern would mangle (pinned here), so the JSON
    keys Langfuse reads usage and cost from are exempt; so are the ids it groups by."""
    cost_json = '{"input_audio":0.0001234567890123,"total":0.0009876543210987}'
    assert any(p.search(cost_json) for p in _blocked(collector_config))
    redaction = collector_config["processors"]["redaction"]
    assert redaction["allow_all_keys"] is True
    assert {
        "langfuse.observation.usage_details",
        "langfuse.observation.cost_details",
        "session.id",
        "user.id",
    } <= set(redaction["ignored_keys"])
