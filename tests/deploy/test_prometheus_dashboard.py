"""Every Grafana dashboard query, evaluated by a real Prometheus scraping a real `voicetrace serve`.

The stack, all real processes on loopback: the Gemini Live emulator (in this process), `voicetrace
serve --tools voicetrace.demo.tools:demo_registry` (a subprocess with OTEL_METRICS_EXPORTER=
prometheus, its spans exported over OTLP to a local receiver) and Debian's `prometheus` scraping
the service's /metrics every 0.5 s. Scripted sessions then run through the service's WebSocket:
a warm-up turn, a spoken barge-in, tool calls (one succeeds, one fails), a model error (the
emulator closes 1011), and one session left open. Each query of
deploy/grafana/dashboards/voicetrace.json is sent to Prometheus's HTTP API with Grafana's
`$__rate_interval` replaced, and must give usable (non-empty, finite, labelled) and sensible
values. Panels marked collector-only have series only the OpenTelemetry Collector produces:
- span metrics: made here from the spans the service really exported, the way the collector's
  span_metrics connector makes them (tests/deploy/span_metrics.py, with the connector's config
  from otel-collector.yaml), and scraped by the same Prometheus: judged like the others;
- the collector's own `otelcol_*` telemetry: the queries must run in Prometheus and return
  nothing here; their names are checked against the collector's metadata by test_dashboard.py.

The service is scraped directly, not through the collector: the collector's prometheus exporter
names the same OTLP metrics the same way (test_dashboard.py cross-checks the naming).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families
from voicetrace.emulator import Emulator, Scenario, ScriptedTurn
from voicetrace.service.api.auth import mint_token
from voicetrace.service.client import VoiceClient
from voicetrace.service.voice.audio import silence, speech_like

from tests.conftest import JWT_SECRET
from tests.deploy.conftest import DEPLOY, REPO, require_binary
from tests.deploy.prom import QueryError, RealPrometheus, Sample, free_port, spawn, usable
from tests.deploy.promnames import parse_query
from tests.deploy.span_metrics import SpanMetrics, SpanMetricsEndpoint
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.asyncio(loop_scope="module")

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "voicetrace.json"
VOICETRACE = Path(sys.executable).with_name("voicetrace")
COLLECTOR_ONLY = "Collector-only:"  # how a panel's description marks series the service lacks
# Two demo tools, one fails: "Atlantis" is not a place of the demo town.
ASK_TOOLS = "Find a coffee place nearby and give me walking directions to Atlantis"
MODEL_ERROR_TURN = 3  # the emulator closes 1011 when a conversation reaches this turn


@dataclass(frozen=True)
class Query:
    panel: str
    legend: str
    expr: str
    collector_only: bool

    @property
    def id(self) -> str:
        return f"{self.panel} / {self.legend}"

    @property
    def fed(self) -> bool:
        """Collector-only, but fed here the way the collector would (span metrics)."""
        return "traces_span_metrics_" in self.expr

    @property
    def judged(self) -> bool:
        return not self.collector_only or self.fed


def dashboard_queries() -> list[Query]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        Query(
            panel["title"],
            target.get("legendFormat", target["refId"]),
            target["expr"],
            panel.get("description", "").startswith(COLLECTOR_ONLY),
        )
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


# -- the running stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    prom: RealPrometheus
    service_url: str


def spoken(seconds: float) -> bytes:
    return speech_like(seconds) + silence(0.6)


async def _serve(emulator: Emulator, tmp: Path, port: int, otlp: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VOICETRACE_"))}
    env.update(
        emulator.env(),
        VOICETRACE_JWT_SECRET=JWT_SECRET,
        VOICETRACE_SQLITE_PATH=str(tmp / "serve.db"),
        OTEL_METRICS_EXPORTER="prometheus",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
    )
    tools = "voicetrace.demo.tools:demo_registry"
    command = [str(VOICETRACE), "serve", "--port", str(port), "--tools", tools]
    proc = await asyncio.to_thread(spawn, command, tmp / "serve.log", env)
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            assert proc.poll() is None, (tmp / "serve.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return proc
            await asyncio.sleep(0.1)
    raise TimeoutError("voicetrace serve did not become healthy")


class Sessions:
    """Voice sessions against the service subprocess, as a browser client would run them."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = mint_token("ops", JWT_SECRET)

    async def open(self) -> contextlib.AbstractAsyncContextManager[VoiceClient]:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{self.base}/live-sessions",
                json={"mode": "test"},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        assert r.status_code == 201, r.text
        url = self.base.replace("http", "ws", 1) + f"/v1/voice/{r.json()['id']}"
        return VoiceClient.connect(url, self.token)

    async def typed(self, *texts: str) -> VoiceClient:
        async with await self.open() as client:
            await client.wait_for("session_started")
            for n, text in enumerate(texts, 1):
                await client.send("text", text=text)
                await client.wait_for("turn_complete", count=n, timeout=20)
            await client.send("end")
            await client.wait_for("session_ended")
        return client

    async def barge_in(self) -> VoiceClient:
        async with await self.open() as client:
            await client.wait_for("session_started")
            await client.say(spoken(0.8))
            await client.wait_for("transcript", where=lambda m: m["role"] == "model")
            await client.say(spoken(0.5))
            await client.wait_for("interrupted")
            await client.wait_for("turn_complete", where=lambda m: m["number"] == 2, timeout=20)
            await client.send("end")
            await client.wait_for("session_ended")
        return client

    async def model_error(self) -> VoiceClient:
        async with await self.open() as client:
            await client.wait_for("session_started")
            for n in range(1, MODEL_ERROR_TURN):
                await client.send("text", text=f"Hello {n}")
                await client.wait_for("turn_complete", count=n, timeout=20)
            await client.send("text", text="This one fails")
            # The model's 1011 ends the session: the service reports it and closes 1011 too.
            assert await client.wait_closed(timeout=30) == 1011
        return client


async def scraped_value(prom: RealPrometheus, service_url: str, metric: str) -> None:
    """Wait until Prometheus holds what the service's /metrics shows now for `metric`."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{service_url}/metrics")).text
    # Keyed by labels: after a telemetry flush one scrape repeats each series (see
    # tests/ops/test_prometheus_flush.py); Prometheus keeps one sample per series.
    latest = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric
    }
    expected = sum(latest.values())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = await prom.query(f"sum({metric})")
        if got and got[0].value >= expected > 0:
            return
        await asyncio.sleep(0.2)
    health = await prom.target_health()
    raise TimeoutError(f"prometheus never scraped {metric} = {expected} (targets: {health})")


async def spans_scraped(prom: RealPrometheus, receiver: OtlpReceiver) -> None:
    """Wait until the service's exports settle and Prometheus holds a span metric per span."""
    deadline = time.monotonic() + 20
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(receiver.spans)
        if count != seen:
            seen, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since > 1.5:
            got = await prom.query("sum(traces_span_metrics_calls_total)")
            if got and got[0].value == count > 0:
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"prometheus never held span metrics for the {seen} spans received")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    binary = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus-e2e")
    scenario = Scenario(
        user_says=["Tell me a very long story about the lighthouse and the harbour.", "Stop."],
        turns={MODEL_ERROR_TURN: ScriptedTurn(close_code=1011, close_reason="Internal error.")},
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with contextlib.AsyncExitStack() as stack:
        emulator = await stack.enter_async_context(Emulator(scenario=scenario))
        receiver = stack.enter_context(OtlpReceiver())
        connector = yaml.safe_load((REPO / "otel-collector.yaml").read_text())["connectors"]
        span_metrics = stack.enter_context(
            SpanMetricsEndpoint(SpanMetrics(receiver, connector["span_metrics"]))
        )
        proc = await _serve(emulator, tmp, port, receiver.base_url)
        stack.callback(_stop, proc)
        targets = [f"127.0.0.1:{port}", f"127.0.0.1:{span_metrics.port}"]
        prom = await stack.enter_async_context(RealPrometheus(binary, targets, tmp, scrape_s=0.5))
        sessions = Sessions(base)
        # Warm-up: creates this model's series (counters at 0, histograms and each tool's
        # series at their first event, which rate() cannot see) and lets Prometheus scrape them
        # before the events that must be counted.
        await sessions.typed("Hello there", ASK_TOOLS)
        await sessions.model_error()
        await scraped_value(prom, base, "voice_turns_total")
        await spans_scraped(prom, receiver)
        await sessions.barge_in()
        await sessions.typed(ASK_TOOLS, "Thanks, and how do I get to the City Library?")
        await sessions.model_error()
        idle = await stack.enter_async_context(await sessions.open())  # open during the queries
        await idle.wait_for("session_started")
        await scraped_value(prom, base, "voice_turns_total")
        await scraped_value(prom, base, "voice_tool_calls_total")
        await spans_scraped(prom, receiver)
        await asyncio.sleep(1.0)  # one more scrape for the gauges and the telemetry counters
        assert await prom.target_health() == ["up", "up"]
        yield Stack(prom, base)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- what a sensible value is, per query -----------------------------------------------------------


def _by(label: str, samples: list[Sample]) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples}


def _all(check: Callable[[float], bool]) -> Callable[[list[Sample]], bool]:
    return lambda samples: all(check(s.value) for s in samples)


def _seconds(samples: list[Sample]) -> bool:
    return all(0 < s.value < 60 for s in samples)


def _phases(samples: list[Sample]) -> bool:
    return {"user_speech", "endpointing", "response", "total"} <= set(
        _by("voice_turn_phase", samples)
    ) and _seconds([s for s in samples if s.labels["voice_turn_phase"] != "user_speech"])


def _turn_reasons(samples: list[Sample]) -> bool:
    reasons = _by("voice_turn_end_reason", samples)
    return all(reasons.get(r, 0) > 0 for r in ("completed", "interrupted", "model_error"))


def _tools(samples: list[Sample]) -> bool:
    rates = {
        (s.labels["gen_ai_tool_name"], s.labels["voice_tool_status"]): s.value for s in samples
    }
    counted = (("search_nearby", "ok"), ("navigate_to_location", "error"))
    return all(rates.get(pair, 0) > 0 for pair in counted) and min(rates.values()) >= 0


def _tokens(samples: list[Sample]) -> bool:
    by = {(s.labels["gen_ai_token_type"], s.labels["voice_modality"]): s.value for s in samples}
    return by.get(("input", "text"), 0) > 0 and by.get(("output", "audio"), 0) > 0


def _telemetry_spans(samples: list[Sample]) -> bool:
    by = _by("state", samples)
    return by.get("started", 0) > 0 and by.get("exported", 0) > 0 and by.get("dropped", -1) == 0


def _agent_turns(samples: list[Sample]) -> bool:
    reasons = _by("voice_turn_end_reason", samples)
    return reasons.get("completed", 0) > 0 and {"interrupted", "model_error"} <= set(reasons)


def _error_spans(samples: list[Sample]) -> bool:
    rates = _by("span_name", samples)
    return rates.get("voice_session", 0) > 0 and all(v >= 0 for v in rates.values())


SENSIBLE: dict[str, Callable[[list[Sample]], bool]] = {
    # span metrics, fed the way the collector's connector makes them
    "Model response duration p95 (span metrics, chat spans) / {{gen_ai_request_model}}": (_seconds),
    "Agent turns by end reason (span metrics) / {{voice_turn_end_reason}}": _agent_turns,
    "Spans ending in error per minute (span metrics) / {{span_name}}": _error_spans,
    "Turn latency p95 by phase / p95 {{voice_turn_phase}}": _phases,
    "Turn latency p95 by phase / p50 total": _seconds,
    "Time to first audio (TTFA) / p50 {{gen_ai_request_model}}": _seconds,
    "Time to first audio (TTFA) / p95 {{gen_ai_request_model}}": _seconds,
    "Perceived latency (client playback start) / p50 {{gen_ai_request_model}}": _seconds,
    "Perceived latency (client playback start) / p95 {{gen_ai_request_model}}": _seconds,
    "Mean latency per phase / {{voice_turn_phase}}": _phases,
    "Turns per minute by end reason / {{voice_turn_end_reason}}": _turn_reasons,
    "Barge-in ratio (interrupted turns / turns) / interrupted": _all(lambda v: 0 < v <= 1),
    "Active voice sessions / {{gen_ai_provider_name}}": _all(lambda v: v >= 1),
    "Tool calls per minute by tool and status / {{gen_ai_tool_name}} {{voice_tool_status}}": _tools,
    "Cost (USD per hour) by model / {{gen_ai_request_model}}": _all(lambda v: v > 0),
    "Cost in the last 24 h / USD": _all(lambda v: v > 0),
    "Tokens per second by direction and modality / {{gen_ai_token_type}} {{voice_modality}}": (
        _tokens
    ),
    "Audio minutes per hour / user audio": _all(lambda v: v > 0),
    "Audio minutes per hour / model audio": _all(lambda v: v > 0),
    "Audio minutes per hour / model audio never heard": _all(lambda v: v > 0),
    "Token usage per response p95 (gen_ai.client.token.usage) / {{gen_ai_token_type}}": _all(
        lambda v: v >= 1
    ),
    "Service spans (started / exported / dropped) per second / {{state}}": _telemetry_spans,
}

QUERIES = dashboard_queries()


@pytest.mark.parametrize("query", [q for q in QUERIES if q.judged], ids=Query.id.fget)
async def test_every_service_query_gives_sensible_values_in_real_prometheus(
    stack: Stack, query: Query
) -> None:
    samples = await usable(stack.prom, query.expr)
    check = SENSIBLE.get(query.id)
    assert check is not None, f"say what normal looks like for {query.id!r} (and in the guide)"
    assert check(samples), f"{query.id}: {[(s.labels, s.value) for s in samples]}"


@pytest.mark.parametrize("query", [q for q in QUERIES if not q.judged], ids=Query.id.fget)
async def test_collector_telemetry_queries_run_in_real_prometheus(
    stack: Stack, query: Query
) -> None:
    """Their series (otelcol_*) come from the collector itself, never from the service:
    Prometheus must accept the query, and the service must not be the one producing them."""
    samples = await stack.prom.query(query.expr.replace("$__rate_interval", "1m"))
    assert samples == [], f"the service now produces {query.id}: drop the collector-only mark"


async def test_every_query_is_judged_and_only_span_metric_and_collector_panels_are_collector_only():
    judged = {q.id for q in QUERIES if q.judged}
    assert judged == set(SENSIBLE), "SENSIBLE and the dashboard disagree"
    for query in QUERIES:
        from_collector = "traces_span_metrics_" in query.expr or "otelcol_" in query.expr
        assert query.collector_only == from_collector, query.id


async def test_the_check_fails_for_a_metric_or_label_that_does_not_exist(stack: Stack) -> None:
    good = await usable(stack.prom, "sum by (voice_turn_end_reason) (voice_turns_total)")
    assert good
    broken = [
        "sum(rate(voice_turn_total[$__rate_interval]))",  # metric renamed
        "sum by (voice_turn_reason) (rate(voice_turns_total[$__rate_interval]))",  # label renamed
        'sum(rate(voice_turns_total{voice_turn_end_reason="finished"}[$__rate_interval]))',
        "histogram_quantile(0.95, sum by (le) (rate(voice_turns_total[$__rate_interval])))",
        "sum(rate(voice_turns_total[$__rate_interval])",  # does not parse
        # a span-metrics dimension the collector's connector is not configured with
        "sum by (gen_ai_provider_name) (rate(traces_span_metrics_calls_total[$__rate_interval]))",
    ]
    for expr in broken:
        with pytest.raises(QueryError):
            await usable(stack.prom, expr)


async def test_service_alert_rules_run_on_series_the_service_really_produces(stack: Stack) -> None:
    """The alert rules' expressions run in Prometheus, and every metric the service-side ones
    name has series (a renamed metric would make an alert silently never fire)."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            await stack.prom.query(rule["expr"])  # QueryError if Prometheus refuses it
            if group["name"] != "voicetrace-service":
                continue
            for metric in parse_query(rule["expr"])[0]:
                assert await stack.prom.query(f"count({metric})"), (rule["alert"], metric)
