"""What Langfuse would build from our spans, decoded from real OTLP protobuf on the wire."""

from __future__ import annotations

import json
import time

import pytest
from voicetrace.telemetry import ModalityTokens, PriceTable, UsageSnapshot
from voicetrace.telemetry.setup import configure_telemetry

from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.telemetry.conftest import session_info
from tests.telemetry.langfuse_mapping import (
    DroppedObservation,
    Observation,
    to_observation,
    to_trace,
)

USAGE = UsageSnapshot(
    prompt=900,
    cached=100,
    response=300,
    tool_use_prompt=30,
    thoughts=12,
    prompt_details=(ModalityTokens("TEXT", 300), ModalityTokens("AUDIO", 600)),
    cache_details=(ModalityTokens("TEXT", 100),),
    response_details=(ModalityTokens("AUDIO", 300),),
)


@pytest.fixture(scope="module")
def wire() -> list[ReceivedSpan]:
    """One realistic session exported through the real OTLP exporter, decoded from protobuf."""
    with OtlpReceiver("ok") as rx:
        tel = configure_telemetry(
            env={
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": rx.traces_url,
            },
            pricing=PriceTable.load(None),
            capture_content=True,
            schedule_delay_ms=20,
        )
        s = tel.start_session(
            session_info(
                tags=("mode:test", "beta"),
                environment="Staging",
                recording_consent=True,
                system_prompt="You are a helpful voice assistant.",
            )
        )
        s.connect_started()
        s.connect_finished()
        s.user_audio(0.02, voiced=True)
        s.input_transcript("find coffee near me", finished=True)
        s.tool_call("c1", "search_nearby", {"q": "coffee"})
        time.sleep(0.005)
        s.tool_result("c1", {"places": ["Kaffe"]})
        s.model_audio(9600)
        s.output_transcript("Kaffe is close.")
        s.usage(USAGE)
        s.turn_complete()
        s.go_away(4.5)
        s.reconnected("go_away", 0.2, resumed=True)
        s.user_text("and now?")
        s.model_audio(960)
        s.interrupted()
        s.turn_complete()
        s.end("client_disconnect")
        tel.force_flush(3.0)
        spans = rx.wait_for_spans(11)
        tel.shutdown(1.0)
    return spans


def _obs(wire: list[ReceivedSpan]) -> dict[str, list[Observation]]:
    out: dict[str, list[Observation]] = {}
    for span in wire:
        o = to_observation(span)
        out.setdefault(o.type, []).append(o)
    return out


def test_observation_types_are_the_intended_ones(wire) -> None:
    obs = _obs(wire)
    assert sorted(o.name for o in obs["span"]) == [
        "model.connect",
        "model.connect",
        "voice_session",
    ]
    assert len(obs["agent"]) == 2 and len(obs["generation"]) == 2
    assert [o.name for o in obs["tool"]] == ["search_nearby"]
    assert sorted(o.name for o in obs["event"]) == [
        "model.go_away",
        "model.interrupted",
        "model.reconnected",
    ]
    assert set(obs) == {"span", "agent", "generation", "tool", "event"}


def test_every_level_is_valid_so_no_observation_is_dropped(wire) -> None:
    for span in wire:
        to_observation(span)  # raises DroppedObservation on an invalid level


def test_mapping_drops_an_invalid_level() -> None:
    span = ReceivedSpan(
        "x", "t", "s", "", 1, 0, 1, {"langfuse.observation.level": "warn"}, {}, 0, ""
    )
    with pytest.raises(DroppedObservation):
        to_observation(span)


def test_usage_and_cost_only_on_generations_and_usage_is_not_doubled(wire) -> None:
    obs = _obs(wire)
    for kind in ("span", "agent", "tool"):
        assert all(o.usage == {} and o.cost == {} for o in obs[kind]), kind
    full, cut = sorted(obs["generation"], key=lambda o: o.level != "DEFAULT")
    # Langfuse takes usage_details as is (it replaces gen_ai.usage.*): no audio double count
    assert full.usage["total"] == 900 + 30 + 300 + 12
    assert full.usage["total"] == sum(v for key, v in full.usage.items() if key != "total")
    assert full.usage["input_audio_tokens"] == 600 and full.usage["input_cached_tokens"] == 100
    assert full.cost["total"] == pytest.approx(
        sum(v for key, v in full.cost.items() if key != "total")
    )
    assert full.model == "gemini-3.8-live"
    assert full.completion_start_time is not None
    # The interrupted turn came without usage: it is estimated (a WARNING), from the context
    # the first turn left (text: 300 prompt + 30 tool use; audio: 600 prompt + 300 answer),
    # "and now?" (2 text tokens) and 20 ms of audio out (1 token, rounded up).
    assert cut.level == "WARNING" and cut.status_message == "usage not received; estimated"
    assert cut.usage["input_text_tokens"] == 330 + 2 and cut.usage["input_audio_tokens"] == 900
    assert cut.usage["output_audio_tokens"] == 1
    assert cut.usage["total"] == 1233
    sessions_cost = sum(o.cost.get("total", 0.0) for o in obs["generation"])
    assert sessions_cost == pytest.approx(full.cost["total"] + cut.cost["total"])


def test_agent_observations_have_no_model(wire) -> None:
    assert all(o.model is None for o in _obs(wire)["agent"])


def test_trace_fields_come_out_right(wire) -> None:
    trace = to_trace(wire)
    assert trace.name == "voice_session"
    assert trace.user_id == "alice" and trace.session_id == "sess-1"
    assert trace.tags == ("mode:test", "beta")
    assert trace.environment == "staging"
    assert trace.release is None
    assert trace.metadata["turns"] == 2 and trace.metadata["end_reason"] == "client_disconnect"


def test_turns_stay_attributed_without_the_root(wire) -> None:
    """A crash that loses the root still leaves turns grouped under user and session."""
    trace = to_trace([s for s in wire if s.parent_span_id])
    assert trace.user_id == "alice" and trace.session_id == "sess-1"


def test_kpis_are_filterable_metadata(wire) -> None:
    agents = _obs(wire)["agent"]
    interrupted = next(o for o in agents if o.metadata["interrupted"])
    assert interrupted.metadata["end_reason"] == "interrupted"
    assert {"turn", "total_ms", "end_reason"} <= set(agents[0].metadata)


def test_content_maps_to_input_and_output(wire) -> None:
    obs = _obs(wire)
    first = next(o for o in obs["agent"] if o.metadata["turn"] == 1)
    assert first.input == "find coffee near me" and first.output == "Kaffe is close."
    assert obs["tool"][0].input == '{"q":"coffee"}'


def test_every_observation_row_carries_the_trace_name_tags_user_and_session(wire) -> None:
    for span in wire:
        o = to_observation(span)
        assert (o.trace_name, o.trace_tags) == ("voice_session", ("mode:test", "beta")), span.name
        assert span.attributes["user.id"] == "alice", span.name
        assert span.attributes["session.id"] == "sess-1", span.name
        assert span.attributes["langfuse.environment"] == "Staging", span.name
        # release/version never on a span: a child's trace update would null the release
        assert not {"langfuse.release", "langfuse.version"} & set(span.attributes), span.name


def test_a_session_without_its_root_is_still_a_named_tagged_trace(wire) -> None:
    trace = to_trace([s for s in wire if s.parent_span_id])
    assert trace.name == "voice_session" and trace.tags == ("mode:test", "beta")
    assert trace.input == "find coffee near me"  # the first turn said it at once


def test_generations_show_chatml_with_system_prompt_tool_call_and_result(wire) -> None:
    first, second = sorted(_obs(wire)["generation"], key=lambda o: o.completion_start_time or "")
    assert json.loads(first.input) == [
        {"role": "system", "content": "You are a helpful voice assistant."},
        {"role": "user", "content": "find coffee near me"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "search_nearby", "arguments": '{"q":"coffee"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "name": "search_nearby",
            "content": '{"places":["Kaffe"]}',
        },
    ]
    assert json.loads(first.output) == [{"role": "assistant", "content": "Kaffe is close."}]
    # every message's content is a plain string: rendered by every Langfuse chat adapter
    assert all(isinstance(m["content"], str) for m in json.loads(second.input))
    assert json.loads(second.input)[-1] == {"role": "user", "content": "and now?"}
    assert second.output is None  # the model said nothing in words before it was cut


def test_trace_input_and_output_are_the_first_utterance_and_last_reply(wire) -> None:
    trace = to_trace(wire)
    assert trace.input == "find coffee near me"
    assert trace.output == "Kaffe is close."


def test_voice_events_are_zero_length_event_observations_under_turn_or_session(wire) -> None:
    by_id = {s.span_id: s for s in wire}
    events = {s.name: s for s in wire if s.attributes["langfuse.observation.type"] == "event"}
    root = next(s for s in wire if not s.parent_span_id)
    for name, span in events.items():
        assert span.start_ns == span.end_ns, name
        assert to_observation(span).level == "DEFAULT", name
    interrupted = events["model.interrupted"]
    turn = by_id[interrupted.parent_span_id]
    assert turn.name.startswith("invoke_agent") and turn.attributes["voice.turn.number"] == 2
    assert interrupted.attributes["langfuse.observation.metadata.turn"] == 2
    assert events["model.go_away"].parent_span_id == root.span_id
    assert events["model.go_away"].attributes["langfuse.observation.metadata.time_left_s"] == 4.5
    reconnected = events["model.reconnected"].attributes
    assert reconnected["langfuse.observation.metadata.resumed"] is True
    assert reconnected["langfuse.observation.metadata.reason"] == "go_away"
    # the span events stay, for other backends
    assert [n for n, _ in root.events if n == "model.go_away"] == ["model.go_away"]
    assert "model.interrupted" in [n for n, _ in turn.events]


def test_budget_warning_and_pause_become_warning_level_event_observations(traced) -> None:
    s = traced.tel.start_session(session_info())
    budget = {"metric": "usd", "used": 0.8, "limit": 1.0, "ratio": 0.8}
    s.budget(False, **budget)
    s.budget(True, **{**budget, "used": 1.0, "ratio": 1.0})
    s.end("budget_exhausted")
    spans = traced.spans()
    root = next(sp for sp in spans if sp.parent is None)
    events = {sp.name: sp for sp in spans if sp.attributes["langfuse.observation.type"] == "event"}
    assert set(events) == {"voice.budget.warning", "voice.budget.paused"}
    for name, span in events.items():
        assert span.parent.span_id == root.context.span_id, name
        assert span.start_time == span.end_time, name
        assert span.attributes["langfuse.observation.level"] == "WARNING"
        assert span.attributes["langfuse.observation.metadata.metric"] == "usd"
        assert "langfuse.observation.metadata.note" not in span.attributes  # None is dropped
    assert events["voice.budget.paused"].attributes["langfuse.observation.metadata.ratio"] == 1.0
    assert [e.name for e in root.events] == ["voice.budget.warning", "voice.budget.paused"]
