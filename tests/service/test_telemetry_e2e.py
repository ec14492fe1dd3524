"""End to end: real sessions through the service and the Gemini Live emulator, with the spans
exported over real OTLP/HTTP (protobuf decoded by a local receiver) and checked against the
contract of docs/telemetry.md, Langfuse's mapping rules and the emulator's own wire log."""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import time
import wave
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from typing import Any

import pytest
from voicetrace.emulator import Scenario, ScriptedTurn
from voicetrace.service.client import VoiceClient
from voicetrace.service.voice.audio import silence, speech_like
from voicetrace.telemetry import PriceTable
from voicetrace.telemetry.keys import CONTENT_KEYS
from voicetrace.telemetry.setup import configure_telemetry

from tests.conftest import JWT_SECRET, RunningService
from tests.langfuse_server import SCORES_PATH, LangfuseServer
from tests.otlp_receiver import ReceivedSpan
from tests.service.otlp_helpers import (
    Exported,
    Tree,
    assert_same_as_recorded,
    assert_trace_contract,
    events,
    expected_cost,
    expected_usage,
    exporting_telemetry,
    json_attr,
    wire_usage_by_turn,
)
from tests.telemetry.langfuse_mapping import to_observation, to_trace

MODEL = "gemini-3.8-live"
Traced = Callable[..., Awaitable[tuple[RunningService, Exported]]]


@pytest.fixture
def exported() -> Iterator[Callable[..., Exported]]:
    """Receiver + telemetry factory; torn down after the service (requested before it)."""
    with ExitStack() as stack:
        yield lambda **kw: stack.enter_context(exporting_telemetry(**kw))


@pytest.fixture
def traced(exported: Callable[..., Exported], start_service: Any) -> Traced:
    async def start(
        scenario: Scenario | None = None, *, capture: bool = False, **overrides: Any
    ) -> tuple[RunningService, Exported]:
        exp = exported(capture=capture)
        svc = await start_service(scenario=scenario, telemetry=exp.telemetry, **overrides)
        return svc, exp

    return start


async def connect(svc: RunningService, user: str, **session: Any) -> tuple[str, Any]:
    created = await svc.create_session(user, **session)
    return created["id"], VoiceClient.connect(svc.ws_url(created["id"]), svc.token(user))


def exported_tree(exp: Exported, session_id: str, user: str, consent: bool = False) -> Tree:
    spans = exp.spans(session_id)
    tree = assert_trace_contract(
        spans, session_id=session_id, user_id=user, model=MODEL, consent=consent
    )
    assert_same_as_recorded(spans, exp.recorded(session_id))
    assert_langfuse_view(spans, tree, session_id, user)
    return tree


def assert_langfuse_view(spans: list[ReceivedSpan], tree: Tree, session_id: str, user: str) -> None:
    """What Langfuse builds from these spans (its documented OTel mapping rules)."""
    observations = {s.span_id: to_observation(s) for s in spans}  # raises if one would drop
    types = {span_id: o.type for span_id, o in observations.items()}
    assert types[tree.root.span_id] == "span"
    assert {types[c.span_id] for c in tree.connects} == {"span"}
    assert {types[t.span_id] for t in tree.turns} == {"agent"}
    assert {types[c.span_id] for c in tree.chats.values()} <= {"generation"}
    for tools in tree.tools.values():
        for tool in tools:
            assert types[tool.span_id] == "tool"
            assert observations[tool.span_id].name == tool.attributes["gen_ai.tool.name"]
    generations = [o for o in observations.values() if o.type == "generation"]
    assert len(generations) == len(tree.chats)
    for o in observations.values():
        if o.type != "generation":
            assert (o.usage, o.cost, o.model) == ({}, {}, None), (o.name, o.usage, o.cost)
    for number, chat in tree.chats.items():
        o = observations[chat.span_id]
        assert o.model == MODEL and o.metadata["turn"] == number
        if "langfuse.observation.usage_details" in chat.attributes:  # reported or estimated
            assert o.usage == json_attr(chat, "langfuse.observation.usage_details")
            assert o.cost["total"] == chat.attributes["voice.cost.usd"]
    trace = to_trace(spans)
    assert (trace.name, trace.user_id, trace.session_id) == ("voice_session", user, session_id)
    assert trace.tags == ("mode:test",) and trace.environment == "development"
    assert trace.release is None
    assert trace.metadata["end_reason"] == tree.root.attributes["voice.session.end_reason"]
    assert trace.metadata["turns"] == len(tree.turns)


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `check` (cheap, in-process state) until true; fail the test after `timeout_s`."""
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return True
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {timeout_s} s")


async def timed_turn(client: VoiceClient, text: str, count: int) -> tuple[dict[str, Any], float]:
    """Send a typed turn; (its turn_complete, client-measured ms from send to turn_complete)."""
    sent = time.monotonic()
    await client.send("text", text=text)
    done = await client.wait_for("turn_complete", count=count)
    return done, (time.monotonic() - sent) * 1000


# -- 1. tree shape, attributes, ids, levels, phases ----------------------------------------------


async def test_typed_turn_exports_one_trace_that_meets_the_span_contract(traced: Traced) -> None:
    svc, exp = await traced()
    session_id, connecting = await connect(svc, "alice")
    async with connecting as client:
        await client.wait_for("session_started")
        done, client_ms = await timed_turn(client, "Hello there, what can you do?", 1)
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "alice")
    assert len(tree.connects) == 1 and [*tree.chats] == [1] and tree.tools == {1: []}
    turn, chat = tree.turn(1), tree.chats[1]
    a = turn.attributes
    assert a["voice.turn.trigger"] == "user_text" and a["voice.turn.end_reason"] == "completed"
    assert a["voice.turn.user_speech_ms"] == 0.0  # typed: the text is sent in one go
    assert a["voice.audio.input_ms"] == 0.0 and a["voice.audio.output_ms"] > 0
    assert a["voice.turn.ttfa_ms"] > 0
    # The client waited for everything the server measured, and a bit more (the socket).
    assert a["voice.turn.total_ms"] <= client_ms
    assert a["voice.turn.total_ms"] == done["total_ms"]
    # The client plays audio and reports it: perceived latency lands on the open turn.
    names = [n for n, _ in turn.events]
    assert names[0] == "client.playback.started"
    # The "stopped" mark comes after turn_complete: on the span only if it beat the emission.
    if names[1:] == ["client.playback.stopped"]:
        assert a["voice.audio.heard_source"] == "playback"
        # What the client said it played (all the audio it had counted for this turn).
        assert a["voice.audio.heard_ms"] == pytest.approx(client.audio[1].ms, abs=0.05)
    else:
        assert names == ["client.playback.started"]
        assert a["voice.audio.heard_source"] == "estimate"
    assert a["voice.turn.perceived_latency_ms"] >= a["voice.turn.ttfa_ms"]
    assert chat.attributes["gen_ai.output.type"] == "speech"
    root = tree.root.attributes
    assert root["voice.session.end_reason"] == "completed" and root["voice.session.turns"] == 1
    assert root["voice.session.audio_out_s"] * 1000 == pytest.approx(a["voice.audio.output_ms"])
    assert tree.root.status_code == 0 and tree.root.resource["service.name"] == "voicetrace-e2e"
    # One trace, exported as it ended: the root ends last and encloses its children.
    assert all(
        tree.root.start_ns <= s.start_ns and s.end_ns <= tree.root.end_ns for s in (turn, chat)
    )


async def test_paced_spoken_turns_are_timed_from_our_audio_and_ended_by_server_vad(
    traced: Traced,
) -> None:
    svc, exp = await traced(Scenario(user_says=["Tell me about the old town.", "Thanks!"]))
    session_id, connecting = await connect(svc, "bob")
    first_audio = speech_like(1.0) + silence(0.6)
    second_audio = speech_like(0.4) + silence(0.6)
    async with connecting as client:
        await client.wait_for("session_started")
        await client.say(first_audio, pace_s=0.02)  # a microphone: 20 ms frames in real time
        await client.wait_for("turn_complete")
        await client.say(second_audio, pace_s=0.02)
        await client.wait_for("turn_complete", count=2)
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "bob")
    assert len(tree.turns) == 2
    for turn, speech_s in zip(tree.turns, (1.0, 0.4), strict=True):
        a = turn.attributes
        assert a["voice.turn.trigger"] == "user_audio"
        # Measured on our side from voiced frames, paced in real time: the speech's duration.
        assert speech_s * 1000 - 60 <= a["voice.turn.user_speech_ms"] <= speech_s * 1000 + 250
        assert a["voice.turn.endpointing_ms"] > 0  # the server's VAD waits for silence
        assert a["voice.audio.input_ms"] > speech_s * 1000
        names = [n for n, _ in turn.events]
        assert names[0] == "user.speech.started" and "user.speech.ended" in names
    sent_s = (len(first_audio) + len(second_audio)) / 32_000
    assert tree.root.attributes["voice.session.audio_in_s"] == pytest.approx(sent_s, abs=1e-9)
    # Gemini billed the audio it heard: the prompt of each turn has audio tokens.
    assert all(c.attributes["gen_ai.usage.audio.input_tokens"] > 0 for c in tree.chats.values())


async def test_two_tool_calls_become_tool_observations_inside_their_turn(traced: Traced) -> None:
    svc, exp = await traced()
    session_id, connecting = await connect(svc, "carol")
    async with connecting as client:
        await client.wait_for("session_started")
        await client.send(
            "text", text="Find a coffee place nearby and give me directions to the harbour"
        )
        await client.wait_for("turn_complete")
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "carol")
    tools = tree.tools[1]
    calls = {m["call_id"]: m for m in client.of_type("tool_call")}
    assert {
        t.attributes["gen_ai.tool.call.id"]: t.attributes["gen_ai.tool.name"] for t in tools
    } == {call_id: m["name"] for call_id, m in calls.items()}
    assert {t.attributes["voice.tool.status"] for t in tools} == {"ok"}
    turn = tree.turn(1).attributes
    assert turn["voice.turn.tool_ms"] == pytest.approx(
        sum(t.attributes["voice.tool.duration_ms"] for t in tools)
    )
    # Tool time is inside the response phase, between the request and the spoken answer (the
    # two calls run concurrently: each one, not their sum, precedes the first audio).
    longest = max(t.attributes["voice.tool.duration_ms"] for t in tools)
    assert turn["voice.turn.response_ms"] >= longest
    assert turn["voice.turn.ttfa_ms"] >= longest
    chat = tree.chats[1]
    assert all(chat.start_ns <= t.start_ns and t.end_ns <= chat.end_ns for t in tools)
    assert tree.root.attributes["voice.session.tool_calls"] == 2


async def test_barge_in_cuts_the_turn_which_stays_a_default_level_observation(
    traced: Traced,
) -> None:
    svc, exp = await traced(
        Scenario(
            user_says=["Tell me a very long story about the lighthouse and the harbour.", "Stop."]
        )
    )
    session_id, connecting = await connect(svc, "dave")
    async with connecting as client:
        await client.wait_for("session_started")
        await client.say(speech_like(0.8) + silence(0.6))
        await client.wait_for("transcript", where=lambda m: m["role"] == "model")
        await client.say(speech_like(0.5) + silence(0.6))
        await client.wait_for("interrupted")
        await client.wait_for("turn_complete", where=lambda m: m["number"] == 2)
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "dave")
    first, second = tree.turn(1), tree.turn(2)
    assert first.attributes["voice.turn.end_reason"] == "interrupted"
    assert first.attributes["voice.turn.interrupted"] is True
    assert first.attributes["langfuse.observation.level"] == "DEFAULT"  # normal conversation
    assert first.attributes["langfuse.observation.metadata.interrupted"] is True
    # Our own audio saw the user talk over the model before Gemini's `interrupted` came.
    assert "user.barge_in" in [n for n, _ in first.events]
    # …and, since Langfuse drops span events, as a zero-length EVENT observation under turn 1.
    (barge_in,) = tree.event_spans("user.barge_in")
    assert barge_in.parent_span_id == first.span_id
    assert to_observation(barge_in).type == "event"
    assert barge_in.attributes["langfuse.observation.metadata.turn"] == 1
    assert tree.chats[1].attributes["gen_ai.response.finish_reasons"] == ("interrupted",)
    assert second.attributes["voice.turn.end_reason"] == "completed"
    assert tree.root.attributes["voice.session.interruptions"] == 1
    # The user stopped listening at the cut: less was heard than generated.
    chat = tree.chats[1].attributes
    assert chat["voice.audio.heard_ms"] < chat["voice.audio.output_ms"]
    assert chat["voice.audio.unheard_cost_usd"] > 0


@pytest.mark.parametrize("how", ["scenario", "injected"])
async def test_go_away_reconnects_with_resumption_and_turn_numbers_continue(
    traced: Traced, how: str
) -> None:
    scenario = Scenario(
        go_away_after_turn=1 if how == "scenario" else None, go_away_time_left_s=0.2
    )
    svc, exp = await traced(scenario)
    session_id, connecting = await connect(svc, "erin")
    async with connecting as client:
        await client.wait_for("session_started")
        await timed_turn(client, "Hello there.", 1)
        if how == "injected":
            assert svc.emulator.go_away(0.2) == 1
        await until(lambda: svc.emulator.connections == 2 and svc.emulator.active_connections == 1)
        second, _ = await timed_turn(client, "Are you still there?", 2)
        await client.send("end")
        await client.wait_for("session_ended")
    assert second["number"] == 2
    tree = exported_tree(exp, session_id, "erin")
    assert [t.attributes["voice.turn.number"] for t in tree.turns] == [1, 2]
    assert {t.attributes["voice.turn.end_reason"] for t in tree.turns} == {"completed"}
    first, resumed = tree.connects
    assert resumed.attributes["voice.connect.resumed"] is True
    assert resumed.attributes["voice.connect.reconnect_reason"] == "go_away"
    assert "voice.connect.reconnect_reason" not in first.attributes
    root = tree.root
    (go_away,) = events(root, "model.go_away")
    assert go_away == {"time_left_s": 0.2}
    # The go-away and the reconnect are EVENT observations in Langfuse's timeline, too.
    (go_away_obs,) = tree.event_spans("model.go_away")
    assert go_away_obs.parent_span_id == root.span_id
    assert to_observation(go_away_obs).type == "event"
    assert go_away_obs.attributes["langfuse.observation.metadata.time_left_s"] == 0.2
    (reconnect_obs,) = tree.event_spans("model.reconnected")
    assert reconnect_obs.attributes["langfuse.observation.metadata.resumed"] is True
    assert reconnect_obs.attributes["langfuse.observation.metadata.reason"] == "go_away"
    assert events(root, "model.resumption_update")
    assert all(e == {"resumable": True} for e in events(root, "model.resumption_update"))
    (reconnected,) = events(root, "model.reconnected")
    assert reconnected["reason"] == "go_away" and reconnected["resumed"] is True
    assert 0 < reconnected["downtime_s"] < 2
    # The reconnect span covers exactly the downtime.
    assert (resumed.end_ns - resumed.start_ns) / 1e9 == pytest.approx(
        reconnected["downtime_s"], abs=1e-6
    )
    assert root.attributes["voice.session.reconnects"] == 1
    assert root.attributes["voice.session.end_reason"] == "completed"
    # Resumption handles are credentials: that one came is recorded, never its value.
    handles = [
        e.message["sessionResumptionUpdate"]["newHandle"]
        for e in svc.emulator.wire.select(direction="out", key="sessionResumptionUpdate")
    ]
    assert len(handles) >= 2 and not any(h.encode() in exp.receiver.raw() for h in handles)
    # The conversation survived: the resumed connection re-bills turn 1 as context.
    usage = wire_usage_by_turn(svc.emulator)
    assert usage[1]["promptTokenCount"] > usage[0]["promptTokenCount"]


# -- 1b. every span ends on every path -------------------------------------------------------------


async def test_model_error_marks_the_open_turn_and_the_session_as_errors(traced: Traced) -> None:
    svc, exp = await traced(Scenario(turns={1: ScriptedTurn(close_code=1011)}))
    session_id, connecting = await connect(svc, "frank")
    async with connecting as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello?")
        ended = await client.wait_for("session_ended")
    assert ended["reason"] == "model_error"
    tree = exported_tree(exp, session_id, "frank")
    turn = tree.turn(1)
    assert turn.attributes["voice.turn.end_reason"] == "model_error"
    assert turn.attributes["error.type"] == "model_error" and turn.status_code == 2
    assert tree.chats == {}  # nothing generated and nothing billed: no generation
    root = tree.root
    assert root.status_code == 2 and root.attributes["error.type"] == "model_error"
    assert root.attributes["langfuse.observation.level"] == "ERROR"
    (error,) = events(root, "model.error")
    assert error["code"] == 1011 and "Internal error encountered" in error["reason"]
    (error_obs,) = tree.event_spans("model.error")
    observation = to_observation(error_obs)
    assert (observation.type, observation.level) == ("event", "ERROR")
    assert "Internal error encountered" in (observation.status_message or "")
    assert "1011" in root.attributes["langfuse.observation.status_message"]


async def test_client_disconnect_mid_response_ends_every_span_as_a_warning(traced: Traced) -> None:
    scenario = Scenario(user_says=["Tell me a long story about the harbour."], realtime=True)
    svc, exp = await traced(scenario)
    session_id, connecting = await connect(svc, "gina")
    async with connecting as client:
        await client.wait_for("session_started")
        await client.say(speech_like(0.6) + silence(0.6))
        await client.wait_for("transcript", where=lambda m: m["role"] == "model")
        client.ws.transport.abort()  # vanish without a close frame
    assert await until(lambda: svc.server.app.state.bridge_deps.hub.find(session_id) is None)
    assert (await svc.get_session(session_id, "gina"))["state"] == "ENDED"
    tree = exported_tree(exp, session_id, "gina")
    turn, chat = tree.turn(1), tree.chats[1]
    assert turn.attributes["voice.turn.end_reason"] == "client_disconnect"
    assert turn.attributes["langfuse.observation.level"] == "WARNING"
    assert chat.attributes["voice.usage.missing"] is True  # the model never reported it...
    assert chat.attributes["voice.usage.estimated"] is True  # ...so it is estimated
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0  # from the audio streamed
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("client_disconnect",)
    assert tree.root.attributes["voice.session.end_reason"] == "client_disconnect"
    assert tree.root.attributes["langfuse.observation.level"] == "WARNING"
    assert tree.root.status_code == 0


async def test_server_shutdown_mid_response_ends_every_span_and_exports_them(
    traced: Traced,
) -> None:
    scenario = Scenario(user_says=["Tell me a long story about the harbour."], realtime=True)
    svc, exp = await traced(scenario)
    session_id, connecting = await connect(svc, "hal")
    async with connecting as client:
        await client.wait_for("session_started")
        await client.say(speech_like(0.6) + silence(0.6))
        await client.wait_for("transcript", where=lambda m: m["role"] == "model")
        svc.server.should_exit = True
        ended = await client.wait_for("session_ended")
        assert await client.wait_closed() == 1001
    assert ended["reason"] == "server_shutdown"
    tree = exported_tree(exp, session_id, "hal")
    assert tree.turn(1).attributes["voice.turn.end_reason"] == "server_shutdown"
    assert tree.turn(1).attributes["langfuse.observation.level"] == "WARNING"
    assert tree.chats[1].attributes["gen_ai.response.finish_reasons"] == ("server_shutdown",)
    assert tree.root.attributes["voice.session.end_reason"] == "server_shutdown"


# -- 2. usage and cost, exactly as the model reported them -----------------------------------------


async def test_usage_and_cost_equal_the_last_usage_metadata_of_each_turn(traced: Traced) -> None:
    scripted = ScriptedTurn(thoughts_tokens=37, tool_use_prompt_tokens=123)
    svc, exp = await traced(Scenario(user_says=["What is on today?"], turns={1: scripted}))
    session_id, connecting = await connect(svc, "ivy")
    async with connecting as client:
        await client.wait_for("session_started")
        await timed_turn(client, "Find a coffee place nearby and directions to the harbour", 1)
        await client.say(speech_like(0.5) + silence(0.6))  # turn 2: spoken
        await client.wait_for("turn_complete", count=2)
        await timed_turn(client, "Thank you, that is all.", 3)
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "ivy")
    wire = wire_usage_by_turn(svc.emulator)
    assert len(wire) == len(tree.turns) == 3
    assert wire[0]["thoughtsTokenCount"] == 37 and wire[0]["toolUsePromptTokenCount"] == 123
    assert any(d["modality"] == "AUDIO" for d in wire[1]["promptTokensDetails"])
    prices = PriceTable.load(None)
    session_cost = Decimal(0)
    for number, meta in enumerate(wire, start=1):
        chat = tree.chats[number].attributes
        usage = expected_usage(meta)
        # Non-overlapping buckets add up to Gemini's own total.
        assert usage["total"] == meta["totalTokenCount"]
        assert json.loads(chat["langfuse.observation.usage_details"]) == usage, number
        prompt = meta["promptTokenCount"]
        tool_use = meta.get("toolUsePromptTokenCount", 0)
        thoughts = meta.get("thoughtsTokenCount", 0)
        modality = {d["modality"]: d["tokenCount"] for d in meta["promptTokensDetails"]}
        response = {d["modality"]: d["tokenCount"] for d in meta["responseTokensDetails"]}
        expected_attrs = {
            "gen_ai.usage.input_tokens": prompt + tool_use,
            "gen_ai.usage.output_tokens": meta["responseTokenCount"] + thoughts,
            "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.reasoning.output_tokens": thoughts,
            "voice.usage.tool_use_prompt_tokens": tool_use,
            "voice.usage.reported_total_tokens": meta["totalTokenCount"],
            # Aggregates include their parts: tool-use prompt tokens are (TEXT) input.
            "gen_ai.usage.text.input_tokens": modality.get("TEXT", 0) + tool_use,
            "gen_ai.usage.audio.input_tokens": modality.get("AUDIO"),
            "gen_ai.usage.audio.output_tokens": response.get("AUDIO"),
            "gen_ai.usage.text.output_tokens": response.get("TEXT"),
        }
        got = {key: chat.get(key) for key in expected_attrs}
        assert got == expected_attrs, number
        cost = expected_cost(usage, prices, MODEL)
        assert Decimal(chat["voice.cost.usd_decimal"]) == cost["total"], number
        assert chat["voice.cost.usd"] == float(cost["total"])
        assert json.loads(chat["langfuse.observation.cost_details"]) == {
            key: float(v) for key, v in cost.items()
        }
        assert chat["voice.cost.price_model"] == MODEL
        session_cost += cost["total"]
    root = tree.root.attributes
    assert root["voice.session.cost_usd"] == float(session_cost)
    # Prompt tokens are the whole context re-billed each turn: the session sums them.
    assert root["voice.session.input_tokens"] == sum(
        m["promptTokenCount"] + m.get("toolUsePromptTokenCount", 0) for m in wire
    )


# -- 3. content policy -----------------------------------------------------------------------------

# The keys docs/telemetry.md marks as content (S); telemetry.keys.CONTENT_KEYS must agree.
DOC_CONTENT_KEYS = frozenset(
    {
        "gen_ai.system_instructions",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "langfuse.observation.input",
        "langfuse.observation.output",
        "langfuse.trace.input",
        "langfuse.trace.output",
        "voice.content.thoughts",
    }
)
SECRET = "Crimson-Falcon-42"
PII = {
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
    "phone": "+1 415 555 0100",
    "secret": SECRET,
}
SAID = (
    f"Mail me at {PII['email']}, my card is {PII['card']}, call me on {PII['phone']}. "
    f"The vault code is {SECRET}."
)


def forbidden(svc: RunningService, user: str) -> list[str]:
    """Strings that must never reach a backend: the PII said in the session and credentials."""
    return [
        *PII.values(),
        PII["card"].replace(" ", ""),
        "415 555 0100",
        svc.token(user),
        JWT_SECRET,
        svc.emulator.api_key,
    ]


def assert_nowhere(exp: Exported, spans: list[ReceivedSpan], needles: list[str]) -> None:
    raw = exp.receiver.raw().lower()
    for needle in needles:
        leaked = needle.lower().encode() in raw
        assert not leaked, f"{needle!r} is in the exported bytes"
        for span in spans:
            values = [*span.attributes.values(), span.status_message, *span.resource.values()]
            values += [v for _, attrs in span.events for v in attrs.values()]
            assert not any(needle.lower() in str(v).lower() for v in values), (span.name, needle)


async def content_session(svc: RunningService, user: str, consent: bool) -> str:
    session_id, connecting = await connect(
        svc, user, recording_consent=consent, secrets_blurred=[SECRET]
    )
    async with connecting as client:
        await client.wait_for("session_started")
        await timed_turn(client, SAID + f" Authorization: Bearer {svc.token(user)}", 1)
        # Tool arguments carry a phone number; navigating there fails, so does its error text.
        await timed_turn(
            client, "Find coffee near me and give me directions to 415 555 0100 now", 2
        )
        await client.send("end")
        await client.wait_for("session_ended")
    return session_id


async def test_without_consent_no_content_is_exported_even_with_capture_on(traced: Traced) -> None:
    svc, exp = await traced(capture=True)
    assert exp.telemetry.capture_content is True  # from OTEL_INSTRUMENTATION_GENAI_CAPTURE_…
    session_id = await content_session(svc, "judy", consent=False)
    spans = exp.spans(session_id)
    assert_trace_contract(spans, session_id=session_id, user_id="judy", model=MODEL)
    assert CONTENT_KEYS == DOC_CONTENT_KEYS
    assert not [k for s in spans for k in s.attributes if k in DOC_CONTENT_KEYS]
    assert len(spans) == 1 + 1 + 2 * 2 + 2  # root, connect, 2 × (turn, chat), 2 tools
    # Not even redacted text, under any key: nothing the user or the model said is exported.
    assert_nowhere(exp, spans, [*forbidden(svc, "judy"), "vault code", "you said", "coffee"])


async def test_with_consent_content_is_exported_redacted(traced: Traced) -> None:
    svc, exp = await traced(capture=True)
    session_id = await content_session(svc, "kim", consent=True)
    spans = exp.spans(session_id)
    tree = assert_trace_contract(
        spans, session_id=session_id, user_id="kim", model=MODEL, consent=True
    )
    assert_nowhere(exp, spans, forbidden(svc, "kim"))
    said = tree.turn(1).attributes["langfuse.observation.input"]
    for marker in ("[EMAIL]", "[CARD]", "[PHONE]", "[REDACTED]", "[JWT]"):
        assert marker in said, (marker, said)
    assert said.startswith("Mail me at [EMAIL], my card is [CARD], call me on [PHONE].")
    answer = tree.turn(1).attributes["langfuse.observation.output"]
    assert "[EMAIL]" in answer and "[CARD]" in answer  # the model echoed it; redacted too
    chat = tree.chats[1].attributes
    assert json_attr(tree.chats[1], "gen_ai.input.messages")[0]["parts"][0]["content"] == said
    assert json.loads(chat["gen_ai.output.messages"])[0]["role"] == "assistant"
    root = tree.root.attributes
    assert "voice assistant" in json.loads(root["gen_ai.system_instructions"])[0]["content"]
    tools = {t.attributes["gen_ai.tool.name"]: t.attributes for t in tree.tools[2]}
    assert json.loads(tools["search_nearby"]["gen_ai.tool.call.arguments"])["query"] == "coffee"
    assert "results" in json.loads(tools["search_nearby"]["gen_ai.tool.call.result"])["result"]
    navigate = json.loads(tools["navigate_to_location"]["gen_ai.tool.call.arguments"])
    assert navigate["destination"] == "[PHONE]"
    assert "[PHONE]" in tools["navigate_to_location"]["gen_ai.tool.call.result"]
    assert tools["navigate_to_location"]["voice.tool.status"] == "error"
    assert "[PHONE]" in tools["navigate_to_location"]["langfuse.observation.status_message"]


async def test_a_blurred_secret_in_a_tool_error_is_redacted_from_status_messages(
    traced: Traced,
) -> None:
    svc, exp = await traced()
    session_id, connecting = await connect(svc, "leo", secrets_blurred=[SECRET])
    async with connecting as client:
        await client.wait_for("session_started")
        await timed_turn(client, f"Give me directions to {SECRET} please", 1)
        await client.send("end")
        await client.wait_for("session_ended")
    spans = exp.spans(session_id)
    tree = assert_trace_contract(spans, session_id=session_id, user_id="leo", model=MODEL)
    (tool,) = tree.tools[1]
    assert tool.attributes["voice.tool.status"] == "error"  # unknown destination
    assert "[REDACTED]" in tool.attributes["langfuse.observation.status_message"]
    assert_nowhere(exp, spans, [SECRET])


async def test_root_connect_and_chat_spans_name_the_live_endpoint(traced: Traced) -> None:
    svc, exp = await traced()
    session_id, connecting = await connect(svc, "mia")
    async with connecting as client:
        await client.wait_for("session_started")
        await timed_turn(client, "Hello.", 1)
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "mia")
    for span in (tree.root, *tree.connects, tree.chats[1]):
        assert span.attributes.get("server.address") == "127.0.0.1", span.name
        assert span.attributes.get("server.port") == svc.emulator.port, span.name


async def test_with_consent_generations_are_chatml_of_the_transcripts_and_the_trace_has_io(
    traced: Traced,
) -> None:
    svc, exp = await traced(capture=True)
    session_id, connecting = await connect(svc, "nina", recording_consent=True)
    said = ["Hello there, what can you do?", "Find a coffee place nearby please"]
    async with connecting as client:
        await client.wait_for("session_started")
        for number, text in enumerate(said, start=1):
            await timed_turn(client, text, number)
        await client.send("end")
        await client.wait_for("session_ended")
    tree = exported_tree(exp, session_id, "nina", consent=True)
    heard = {
        n: "".join(
            m["text"]
            for m in client.of_type("transcript")
            if m["role"] == "model" and m["turn"] == n
        ).strip()
        for n in (1, 2)
    }
    assert all(heard.values()), heard
    system = json.loads(tree.root.attributes["gen_ai.system_instructions"])[0]["content"]
    for number, text in enumerate(said, start=1):
        generation = to_observation(tree.chats[number])
        messages = json.loads(generation.input)
        # Plain ChatML: string contents, system prompt first, then what the user said.
        assert all(isinstance(m["content"], str) for m in messages)
        assert messages[0] == {"role": "system", "content": system}
        assert messages[1] == {"role": "user", "content": text}
        assert json.loads(generation.output) == [{"role": "assistant", "content": heard[number]}]
        # the semconv keys stay for other backends
        semconv = json_attr(tree.chats[number], "gen_ai.input.messages")
        assert semconv[0]["parts"][0]["content"] == text
    # Turn 2's tool call and result are in its generation's input, as the tool spans have them.
    messages = json.loads(to_observation(tree.chats[2]).input)
    (tool,) = tree.tools[2]
    call_id = tool.attributes["gen_ai.tool.call.id"]
    call = next(m for m in messages if m.get("tool_calls"))["tool_calls"][0]
    assert call["id"] == call_id and call["function"]["name"] == "search_nearby"
    assert call["function"]["arguments"] == tool.attributes["gen_ai.tool.call.arguments"]
    result = next(m for m in messages if m["role"] == "tool")
    assert result["tool_call_id"] == call_id
    assert result["content"] == tool.attributes["gen_ai.tool.call.result"]
    trace = to_trace(exp.spans(session_id))
    assert trace.input == said[0] and trace.output == heard[2]


# -- 4. straight to Langfuse: its OTLP rules, scores on the same ids -------------------------------


@pytest.fixture
def to_langfuse() -> Iterator[Callable[..., tuple[LangfuseServer, Any]]]:
    """A local Langfuse (enforcing its rules) and the service's telemetry exporting to it."""
    with ExitStack() as stack:

        def make(hang_scores_s: float = 0.0, capture: bool = False) -> tuple[LangfuseServer, Any]:
            lf = stack.enter_context(LangfuseServer("pk-lf-e2e", "sk-lf-e2e"))
            if hang_scores_s:
                lf.hang[SCORES_PATH] = hang_scores_s
            env = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **lf.env()}
            if capture:
                env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
            tel = configure_telemetry(
                "voicetrace-e2e",
                env=env,
                pricing=PriceTable.load(None),
                usage_wait_s=0.5,
                export_timeout_s=1.0,
                schedule_delay_ms=50,
            )
            stack.callback(tel.shutdown, 2.0)
            return lf, tel

        yield make


async def test_a_real_session_reaches_langfuse_by_its_rules_with_scores_on_the_span_ids(
    to_langfuse: Callable[..., tuple[LangfuseServer, Any]], start_service: Any
) -> None:
    lf, tel = to_langfuse()
    svc = await start_service(telemetry=tel)
    session_id, connecting = await connect(svc, "olga")
    async with connecting as client:
        await client.wait_for("session_started")
        await timed_turn(client, "Hello there.", 1)
        await timed_turn(client, "Find a coffee place nearby please", 2)
        await client.send("end")
        await client.wait_for("session_ended")
    assert tel.force_flush(5.0)
    spans = [s for s in lf.spans if s.attributes.get("session.id") == session_id]
    assert lf.violations == []  # Content-Type, gzip, Basic auth, ingestion version: all held
    tree = assert_trace_contract(spans, session_id=session_id, user_id="olga", model=MODEL)
    assert lf.wait("scores", 2 * 2 + 5) >= 2 * 2 + 5
    assert lf.violations == []
    root = tree.root
    scores = [s for s in lf.scores if s["traceId"] == root.trace_id]
    turn_ids = {t.span_id: t for t in tree.turns}
    per_turn = [s for s in scores if "observationId" in s]
    assert {s["observationId"] for s in per_turn} == set(turn_ids)
    for score in per_turn:
        turn = turn_ids[score["observationId"]].attributes
        assert score["value"] == turn[f"voice.turn.{score['name']}"], score
    session = {s["name"]: s["value"] for s in scores if "observationId" not in s}
    assert session["turns"] == 2 and session["interruption_rate"] == 0
    assert session["cost_usd"] == root.attributes["voice.session.cost_usd"]
    assert session["p95_ttfa_ms"] == max(t.attributes["voice.turn.ttfa_ms"] for t in tree.turns)


async def test_a_consenting_sessions_turn_audio_reaches_langfuse_as_wav_media(
    to_langfuse: Callable[..., tuple[LangfuseServer, Any]], start_service: Any
) -> None:
    lf, tel = to_langfuse(capture=True)
    svc = await start_service(telemetry=tel)
    spoken = speech_like(0.8) + silence(0.6)
    session_id, connecting = await connect(svc, "pia", recording_consent=True)
    async with connecting as client:
        await client.wait_for("session_started")
        await client.say(spoken, frame_ms=100)
        await client.wait_for("turn_complete")
        await client.send("end")
        await client.wait_for("session_ended")
    assert tel.force_flush(5.0) and tel.media.flush(5.0)
    assert lf.violations == []
    turn = next(
        s
        for s in lf.spans
        if s.name.startswith("invoke_agent") and s.attributes.get("session.id") == session_id
    )
    assert lf.wait("media", 2) >= 2
    by_field = {r["field"]: r for r in lf.media.values() if r["observationId"] == turn.span_id}
    assert set(by_field) == {"input", "output"}
    with wave.open(io.BytesIO(by_field["input"]["bytes"])) as w:  # exactly what was streamed
        assert w.getframerate() == 16_000 and w.readframes(w.getnframes()) == spoken
    with wave.open(io.BytesIO(by_field["output"]["bytes"])) as w:
        heard_ms = w.getnframes() / 24
    (done,) = client.of_type("turn_complete")
    assert heard_ms == pytest.approx(done["audio_out_ms"], abs=1)


async def test_without_consent_no_audio_reaches_langfuse(
    to_langfuse: Callable[..., tuple[LangfuseServer, Any]], start_service: Any
) -> None:
    lf, tel = to_langfuse(capture=True)
    svc = await start_service(telemetry=tel)
    _, connecting = await connect(svc, "quin", recording_consent=False)
    async with connecting as client:
        await client.wait_for("session_started")
        await client.say(speech_like(0.5) + silence(0.6), frame_ms=100)
        await client.wait_for("turn_complete")
        await client.send("end")
        await client.wait_for("session_ended")
    assert tel.force_flush(5.0) and tel.media.flush(5.0)
    assert lf.media == {} and lf.violations == []


async def test_voice_turn_latency_is_unchanged_while_the_langfuse_api_hangs(
    to_langfuse: Callable[..., tuple[LangfuseServer, Any]], start_service: Any
) -> None:
    """Scores go out on their own thread: a Langfuse API that never answers costs the voice
    path nothing. (A blocking send would add at least the 1 s export timeout per turn.)"""

    async def turn_ms(hang_scores_s: float) -> list[float]:
        lf, tel = to_langfuse(hang_scores_s)
        svc = await start_service(telemetry=tel)
        _, connecting = await connect(svc, "pete")
        async with connecting as client:
            await client.wait_for("session_started")
            await timed_turn(client, "Hello there.", 1)  # warm-up; its scores go out…
            if hang_scores_s:  # …and hang: measure only once a score request is stuck
                await until(lambda: len(lf.of(SCORES_PATH)) >= 1, timeout_s=5.0)
            times = [(await timed_turn(client, "Hello again.", n))[1] for n in range(2, 8)]
            await client.send("end")
            await client.wait_for("session_ended")
        if hang_scores_s:
            assert lf.scores == [] and len(lf.of(SCORES_PATH)) >= 1
        return times

    healthy = statistics.median(await turn_ms(0.0))
    hanging = statistics.median(await turn_ms(30.0))
    print(f"median turn: healthy {healthy:.1f} ms, Langfuse API hanging {hanging:.1f} ms")
    assert hanging < healthy * 1.5 + 100, (healthy, hanging)
