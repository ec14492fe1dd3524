"""Voice KPIs as Langfuse scores, sent by the `langfuse` package's API client to a local server
that enforces Langfuse's scores route (POST /api/public/scores, a JSON list of scores)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from voicetrace.telemetry import PriceTable, UsageSnapshot, VoiceTelemetry
from voicetrace.telemetry.scores import Score, p95
from voicetrace.telemetry.setup import TelemetryConfigError, configure_telemetry

from tests.langfuse_server import OTEL_PATH, SCORES_PATH, LangfuseServer
from tests.telemetry.conftest import session_info


@pytest.fixture
def made() -> Iterator[list[VoiceTelemetry]]:
    tels: list[VoiceTelemetry] = []
    yield tels
    for tel in tels:
        tel.shutdown(1.0)


def _tel(made: list[VoiceTelemetry], lf: LangfuseServer, **env: str) -> VoiceTelemetry:
    tel = configure_telemetry(
        "voicetrace-test",
        env={"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **lf.env(), **env},
        pricing=PriceTable.load(None),
        usage_wait_s=0.1,
        schedule_delay_ms=20,
    )
    made.append(tel)
    return tel


def _two_turns(tel: VoiceTelemetry) -> None:
    s = tel.start_session(session_info(environment="Staging"))
    s.user_text("hello")
    time.sleep(0.01)
    s.model_audio(9600)
    s.playback(1, "started", 0.0)
    s.usage(UsageSnapshot(prompt=100, response=20))
    s.turn_complete()
    s.user_text("tell me more")
    time.sleep(0.02)
    s.model_audio(48000)  # 1 s of audio…
    time.sleep(0.05)
    s.interrupted()  # …cut after ~50 ms: most of it unheard
    s.usage(UsageSnapshot(prompt=200, response=100))
    s.turn_complete()
    s.end()


def test_turn_and_session_kpis_arrive_as_scores_keyed_by_the_exported_span_ids(
    made: list[VoiceTelemetry],
) -> None:
    with LangfuseServer() as lf:
        tel = _tel(made, lf)
        _two_turns(tel)
        assert tel.force_flush(5.0)
        lf.wait("spans", 6)
        assert lf.wait("scores", 3 + 2 + 5) == 10
    assert lf.violations == []
    spans = lf.spans
    (root,) = [s for s in spans if not s.parent_span_id]
    turns = {s.span_id: s for s in spans if s.name.startswith("invoke_agent")}
    chats = [s for s in spans if s.name.startswith("chat")]
    assert all(score["traceId"] == root.trace_id for score in lf.scores)
    assert all(score["dataType"] == "NUMERIC" for score in lf.scores)
    assert {score["environment"] for score in lf.scores} == {"staging"}
    per_turn = [s for s in lf.scores if "observationId" in s]
    # Every turn score names an exported turn span and carries that span's own number.
    keys = {"ttfa_ms": "voice.turn.ttfa_ms", "endpointing_ms": "voice.turn.endpointing_ms"}
    keys["perceived_latency_ms"] = "voice.turn.perceived_latency_ms"
    for score in per_turn:
        turn = turns[score["observationId"]]
        assert score["value"] == turn.attributes[keys[score["name"]]], score
    assert sorted(s["name"] for s in per_turn) == sorted(
        ["ttfa_ms", "endpointing_ms", "perceived_latency_ms", "ttfa_ms", "endpointing_ms"]
    )
    session = {s["name"]: s["value"] for s in lf.scores if "observationId" not in s}
    a = root.attributes
    ttfas = [t.attributes["voice.turn.ttfa_ms"] for t in turns.values()]
    out = sum(c.attributes["voice.audio.output_ms"] for c in chats)
    unheard = sum(c.attributes["voice.audio.unheard_ms"] for c in chats)
    assert session == {
        "turns": 2.0,
        "interruption_rate": 0.5,
        "p95_ttfa_ms": max(ttfas),
        "cost_usd": a["voice.session.cost_usd"],
        "unheard_audio_share": pytest.approx(unheard / out),
    }
    assert 0.5 < session["unheard_audio_share"] < 1.0
    # One batch, not one request per score; ids are stable (a re-send updates, not duplicates).
    assert len(lf.of(SCORES_PATH)) == 1
    assert len({s["id"] for s in lf.scores}) == 10
    health = tel.health()
    assert health["scores_sent"] == 10 and health.get("scores_dropped", 0) == 0


def test_scores_are_off_with_the_switch_and_spans_still_go_out(
    made: list[VoiceTelemetry],
) -> None:
    with LangfuseServer() as lf:
        tel = _tel(made, lf, VOICETRACE_LANGFUSE_SCORES="false")
        _two_turns(tel)
        assert tel.force_flush(5.0)
        assert lf.wait("spans", 6) >= 6
    assert lf.of(SCORES_PATH) == [] and lf.of(OTEL_PATH)
    assert "scores_queued" not in tel.health()


def test_a_bad_switch_value_is_a_clear_config_error() -> None:
    with pytest.raises(TelemetryConfigError, match="VOICETRACE_LANGFUSE_SCORES"):
        configure_telemetry(
            env={
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRICS_EXPORTER": "none",
                "LANGFUSE_PUBLIC_KEY": "pk",
                "LANGFUSE_SECRET_KEY": "sk",
                "VOICETRACE_LANGFUSE_SCORES": "maybe",
            }
        )


def test_a_refused_score_batch_is_counted_and_the_next_one_still_goes(
    made: list[VoiceTelemetry],
) -> None:
    with LangfuseServer() as lf:
        lf.script[SCORES_PATH] = [400]  # a client error: not retried
        tel = _tel(made, lf)
        _two_turns(tel)
        assert tel.force_flush(5.0)
        _two_turns(tel)
        assert tel.force_flush(5.0)
        assert lf.wait("scores", 10) == 10
    health = tel.health()
    assert health["score_failures"] == 1 and health["scores_dropped"] == 10
    assert health["scores_sent"] == 10


def test_a_hanging_score_api_never_blocks_the_caller_and_flush_is_bounded(
    made: list[VoiceTelemetry],
) -> None:
    with LangfuseServer() as lf:
        lf.hang[SCORES_PATH] = 30.0
        tel = _tel(made, lf)
        _two_turns(tel)
        tel.force_flush(1.0)
        assert lf.wait("requests", 1) and lf.wait("spans", 6) >= 6
        assert len(lf.of(SCORES_PATH)) == 1  # in flight, hanging
        started = time.perf_counter()
        _two_turns(tel)  # recording never waits for the score sender
        caller_s = time.perf_counter() - started
        flushed_at = time.perf_counter()
        assert tel.force_flush(0.5) is False  # the scores cannot be sent: reported, bounded
        assert time.perf_counter() - flushed_at < 1.5
        assert lf.scores == []  # (leaving the server releases the hung request)
    assert caller_s < 0.5  # the two turns sleep 0.08 s themselves


def test_p95_is_the_nearest_rank_observed_value() -> None:
    assert p95([]) is None
    assert p95([5.0]) == 5.0
    assert p95([float(v) for v in range(1, 101)]) == 95.0
    assert p95([3.0, 1.0, 2.0]) == 3.0


def test_score_ids_are_stable_per_trace_observation_and_name() -> None:
    a: dict[str, Any] = {"name": "ttfa_ms", "value": 1.0, "trace_id": "a" * 32}
    assert Score(**a, observation_id="b" * 16).id == Score(**a, observation_id="b" * 16).id
    assert Score(**a).id != Score(**a, observation_id="b" * 16).id
