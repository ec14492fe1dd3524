"""The Google ADK and Pipecat examples, traced by one line, against the emulator.

Each framework runs in a throwaway venv of its own (`framework_env`: the framework pins
google-genai 2.x) with the local `telemetry/` distribution, as a subprocess exporting OTLP/HTTP
to a receiver here. The exported trace must satisfy the span contract of docs/telemetry.md,
match the voicetrace service's trace for the same turns (tree, turn triggers and end reasons,
tools, output usage, the session's end reason), bill exactly what the emulator billed, at the
price table's cost; and the app must receive the same events with and without tracing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.trace import StatusCode
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.client import VoiceClient
from voicetrace.telemetry import PriceTable

from examples import raw_sdk
from tests.instrumentation.conftest import shape
from tests.instrumentation.framework_env import FRAMEWORKS, ROOT, FrameworkEnv, framework_env
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.service.otlp_helpers import (
    assert_trace_contract,
    expected_cost,
    expected_usage,
    wire_usage_by_turn,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

MODEL = raw_sdk.MODEL
# The turns both examples say: typed, 0.8 s spoken, typed (the agent calls search_nearby).
TEXTS = ("Hello there!", "Find coffee near me")
# Depend on what the app sends — its framework's system prompt, its tool's result (which the
# model then talks about) — so checked against the emulator's billing instead of the service's
# run (whose prompt and demo tools are the service's own).
APP_KEYS = {
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "langfuse.observation.usage_details",
    "langfuse.observation.cost_details",
    "voice.cost.usd",
    "voice.cost.usd_decimal",
    "voice.session.input_tokens",
    "voice.session.output_tokens",
    "voice.session.cost_usd",
    "gen_ai.agent.name",  # the service's agent vs the instrumentor's default
}


@dataclass(frozen=True)
class Example:
    framework: str
    module: str
    end_reason: str  # how the framework ends its Live session (see examples/README.md)


EXAMPLES = {
    # ADK: closing the LiveRequestQueue closes the connection and leaves connect() normally.
    "adk": Example("adk", "examples.adk_live", "completed"),
    # Pipecat: an EndFrame cancels the task that holds connect(), like a user leaving.
    "pipecat": Example("pipecat", "examples.pipecat_live", "client_disconnect"),
}


@pytest.fixture(scope="session", params=sorted(EXAMPLES))
def framework(request: pytest.FixtureRequest) -> tuple[Example, FrameworkEnv]:
    example = EXAMPLES[request.param]
    cache = request.config.cache
    root = cache.mkdir("framework-venvs") if cache is not None else ROOT / ".framework-venvs"
    env = framework_env(example.framework, root)
    print(f"\n{example.framework} venv: {env.python.parent.parent} (built in {env.build_s} s)")
    return example, env


class SpanView:
    """An exported span as `shape()` reads an SDK span (ids, parent, events, status)."""

    def __init__(self, s: ReceivedSpan) -> None:
        self.name, self.attributes = s.name, s.attributes
        self.context = SimpleNamespace(span_id=s.span_id, trace_id=s.trace_id)
        self.parent = SimpleNamespace(span_id=s.parent_span_id) if s.parent_span_id else None
        self.events = [SimpleNamespace(name=name) for name, _ in s.events]
        self.status = SimpleNamespace(status_code=StatusCode(s.status_code))


def without_app_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_app_keys(v) for k, v in value.items() if k not in APP_KEYS}
    if isinstance(value, list):
        return [without_app_keys(v) for v in value]
    return value


def in_order(received: list[Any]) -> list[Any]:
    """What arrives in a fixed order: all of it, but Pipecat's system frames (which skip the
    queue, so their place among the others is the scheduler's)."""
    return [r for r in received if not (isinstance(r, dict) and r.get("system"))]


async def service_shape(start_service: Any, *, end_reason: str) -> dict[str, Any]:
    """The same three turns through the voicetrace service; its trace's shape."""
    svc = await start_service(scenario=Scenario())
    created = await svc.create_session("alice")
    async with VoiceClient.connect(svc.ws_url(created["id"]), svc.token("alice")) as client:
        await client.wait_for("session_started")
        await client.send("text", text=TEXTS[0])
        await client.wait_for("turn_complete", count=1)
        await client.say(raw_sdk.speech(0.8) + bytes(2 * 16_000 * 6 // 10))
        await client.wait_for("turn_complete", count=2)
        await client.send("text", text=TEXTS[1])
        await client.wait_for("turn_complete", count=3)
        if end_reason == "completed":
            await client.send("end")
            await client.wait_for("session_ended")
    # else: the user just leaves (closes the socket)
    for _ in range(100):
        spans = svc.finished_spans()
        if any(s.name == "voice_session" for s in spans):
            return shape(spans)
        await asyncio.sleep(0.05)
    raise AssertionError("the service never ended the session")


async def run_example(
    example: Example, env: FrameworkEnv, emulator: Emulator, out: Path, otlp: OtlpReceiver | None
) -> list[Any]:
    """Run the example as its own process; what the app received (its JSON)."""
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GOOGLE_", "GEMINI_"))
    }
    child_env.update(emulator.env())
    child_env.update(PYTHONPATH=str(ROOT), OTEL_METRICS_EXPORTER="none")
    args = ["--out", str(out)]
    if otlp is None:
        args.append("--untraced")
    else:
        child_env.update(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp.traces_url,
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
        )
    proc = await asyncio.create_subprocess_exec(
        str(env.python),
        "-m",
        example.module,
        *args,
        cwd=ROOT,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=180)
    tail = stderr.decode(errors="replace")[-4000:]
    assert proc.returncode == 0, f"{example.module} failed:\n{tail}"
    return list(json.loads(await asyncio.to_thread(out.read_text)))


async def test_the_framework_example_traced_by_one_line_matches_the_service_contract(
    framework: tuple[Example, FrameworkEnv], start_service: Any, tmp_path: Path
) -> None:
    example, env = framework
    expected = await service_shape(start_service, end_reason=example.end_reason)

    with OtlpReceiver() as otlp:
        async with Emulator(scenario=Scenario()) as emu:
            await run_example(example, env, emu, tmp_path / "traced.json", otlp)
            billed = wire_usage_by_turn(emu)
        spans = otlp.spans

    [root] = [s for s in spans if s.name == "voice_session"]
    tree = assert_trace_contract(
        spans,
        session_id=root.attributes["session.id"],
        user_id="anonymous",
        model=MODEL,
        environment="dev",
        agent="genai-live",  # the instrumentor's default agent name
    )
    got = shape([SpanView(s) for s in spans])  # type: ignore[misc]
    triggers = [t["turn"]["voice.turn.trigger"] for t in got["turns"]]
    assert triggers == ["user_text", "user_audio", "user_text"]
    assert got["root"]["voice.session.end_reason"] == example.end_reason
    assert [dict(t) for t in got["turns"][2]["tools"]] == [
        {
            "langfuse.observation.type": "tool",
            "gen_ai.tool.name": "search_nearby",
            "voice.tool.status": "ok",
        }
    ]
    for mine, theirs in zip(got["turns"], expected["turns"], strict=True):
        assert without_app_keys(mine) == without_app_keys(theirs)
    assert without_app_keys(got) == without_app_keys(expected)

    # Usage exactly as the emulator billed it, at the price table's cost.
    prices = PriceTable.load(None)
    assert len(billed) == 3
    total = Decimal(0)
    for number, meta in enumerate(billed, start=1):
        chat = tree.chats[number].attributes
        usage = expected_usage(meta)
        assert json.loads(chat["langfuse.observation.usage_details"]) == usage, number
        cost = expected_cost(usage, prices, MODEL)
        assert Decimal(chat["voice.cost.usd_decimal"]) == cost["total"], number
        total += cost["total"]
    assert root.attributes["voice.session.cost_usd"] == pytest.approx(float(total))


async def test_the_framework_app_receives_the_same_with_and_without_tracing(
    framework: tuple[Example, FrameworkEnv], tmp_path: Path
) -> None:
    example, env = framework
    async with Emulator(scenario=Scenario()) as emu:
        plain = await run_example(example, env, emu, tmp_path / "plain.json", None)
    with OtlpReceiver() as otlp:
        async with Emulator(scenario=Scenario()) as emu:
            traced = await run_example(example, env, emu, tmp_path / "traced.json", otlp)
        spans = otlp.spans
    assert len(plain) > 50  # audio chunks, transcriptions, the tool call, the turn ends
    assert in_order(traced) == in_order(plain)
    assert sorted(map(repr, traced)) == sorted(map(repr, plain))
    assert len([s for s in spans if s.name.startswith("invoke_agent")]) == 3
    assert sys.executable != str(env.python)  # the example ran in the framework's own venv


def test_a_framework_that_cannot_be_installed_skips_with_pips_error_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-framework")  # a local path: no registry is asked
    monkeypatch.setitem(FRAMEWORKS, "missing", (missing,))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"missing cannot be installed here: .*ERROR"):
        framework_env("missing", tmp_path / "venvs")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing cannot be installed here"):
        framework_env("missing", tmp_path / "venvs")
    assert not list((tmp_path / "venvs").glob("missing-*/bin"))  # no half-built venv kept


def test_a_framework_install_that_stalls_past_its_timeout_skips_and_keeps_no_venv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tests.instrumentation.framework_env as fe

    monkeypatch.setitem(FRAMEWORKS, "stalled", (str(tmp_path / "no-such-framework"),))
    monkeypatch.setattr(fe, "INSTALL_TIMEOUT_S", 0.01)  # pip cannot even start in that time
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"stalled cannot be installed here: .*took"):
        framework_env("stalled", tmp_path / "venvs")
    assert not list((tmp_path / "venvs").glob("stalled-*/bin"))
