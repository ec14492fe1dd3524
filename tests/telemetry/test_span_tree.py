"""The shape of a session's trace: span tree, kinds, contract attributes, ids, levels."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode
from voicetrace.telemetry import ModalityTokens, UsageSnapshot
from voicetrace.telemetry import keys as k

from tests.telemetry.conftest import MODEL, Traced, session_info

USAGE = UsageSnapshot(
    prompt=1200,
    cached=200,
    response=300,
    tool_use_prompt=50,
    thoughts=20,
    total=1570,
    prompt_details=(ModalityTokens("TEXT", 400), ModalityTokens("AUDIO", 800)),
    cache_details=(ModalityTokens("TEXT", 200),),
    response_details=(ModalityTokens("AUDIO", 300),),
)


def _one_turn_with_two_tools(traced: Traced) -> None:
    s = traced.tel.start_session(session_info(tags=("mode:test",), environment="staging"))
    s.connect_started()
    s.connect_finished()
    s.user_audio(0.02, voiced=True)
    s.user_audio(0.02, voiced=True)
    s.user_audio(0.02, voiced=False)
    s.input_transcript("find coffee", finished=True)
    s.tool_call("c1", "search_nearby", {"q": "coffee"})
    s.tool_call("c2", "directions", {"to": "harbour"})
    s.tool_result("c1", {"places": ["A"]}, duration_s=0.01)
    s.tool_result("c2", {}, error="upstream timeout", duration_s=0.02)
    s.model_audio(4800)
    s.generation_complete()
    s.usage(USAGE)
    s.turn_complete()
    s.end("client_disconnect")


def test_session_is_one_trace_root_connect_turn_chat_and_tools(traced: Traced) -> None:
    _one_turn_with_two_tools(traced)
    spans = traced.spans()
    assert len({s.context.trace_id for s in spans}) == 1
    root = traced.one(k.SPAN_SESSION)
    connect = traced.one(k.SPAN_CONNECT)
    turn = traced.one("invoke_agent ")
    chat = traced.one("chat ")
    tools = traced.named("execute_tool ")
    assert root.parent is None
    assert connect.parent.span_id == root.context.span_id
    assert turn.parent.span_id == root.context.span_id
    assert chat.parent.span_id == turn.context.span_id
    assert sorted(t.name for t in tools) == [
        "execute_tool directions",
        "execute_tool search_nearby",
    ]
    assert all(t.parent.span_id == turn.context.span_id for t in tools)
    assert turn.name == "invoke_agent voicetrace" and chat.name == f"chat {MODEL}"
    assert (root.kind, connect.kind, turn.kind, chat.kind) == (
        SpanKind.INTERNAL,
        SpanKind.INTERNAL,
        SpanKind.INTERNAL,
        SpanKind.CLIENT,
    )
    # children lie within their parents in time
    for child, parent in [(chat, turn), (turn, root), *[(t, turn) for t in tools]]:
        assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time


def test_every_span_carries_session_user_and_conversation_ids(traced: Traced) -> None:
    _one_turn_with_two_tools(traced)
    for span in traced.spans():
        a = span.attributes
        assert a[k.SESSION_ID] == "sess-1", span.name
        assert a[k.USER_ID] == "alice", span.name
        assert a[k.CONVERSATION_ID] == "sess-1", span.name
        assert a[k.LF_ENVIRONMENT] == "staging", span.name
        assert a[k.LF_LEVEL] in k.LEVELS, span.name
        assert a[k.LF_OBSERVATION_TYPE] in ("span", "agent", "generation", "tool"), span.name


def test_contract_attributes_of_each_span_type(traced: Traced) -> None:
    _one_turn_with_two_tools(traced)
    root = traced.one(k.SPAN_SESSION).attributes
    assert root[k.LF_OBSERVATION_TYPE] == "span"
    assert root[k.LF_TRACE_NAME] == "voice_session"
    assert root[k.LF_TRACE_TAGS] == ("mode:test",)
    assert root[k.SESSION_END_REASON] == "client_disconnect"
    assert root[k.SESSION_TURNS] == 1 and root[k.SESSION_TOOL_CALLS] == 2
    assert root[k.SESSION_TOOL_ERRORS] == 1
    assert root[k.SESSION_INPUT_TOKENS] == 1250 and root[k.SESSION_OUTPUT_TOKENS] == 320
    assert root[k.trace_metadata("turns")] == 1
    # Rule 2: no usage on the root (Langfuse would count it twice).
    assert not [
        key
        for key in root
        if key.startswith(("gen_ai.usage.", "langfuse.observation.u", "langfuse.observation.cost"))
    ]

    connect = traced.one(k.SPAN_CONNECT).attributes
    assert connect[k.LF_OBSERVATION_TYPE] == "span"
    assert k.REQUEST_MODEL not in connect and k.RESPONSE_MODEL not in connect

    turn = traced.one("invoke_agent").attributes
    assert turn[k.OPERATION_NAME] == "invoke_agent" and turn[k.LF_OBSERVATION_TYPE] == "agent"
    assert turn[k.TURN_NUMBER] == 1 and turn[k.TURN_END_REASON] == "tool_error"
    assert turn[k.LF_LEVEL] == "WARNING"
    assert not [key for key in turn if "usage" in key or "cost" in key]

    chat = traced.one("chat").attributes
    assert chat[k.OPERATION_NAME] == "chat" and chat[k.LF_OBSERVATION_TYPE] == "generation"
    assert chat[k.PROVIDER_NAME] == "gcp.gemini"
    assert chat[k.REQUEST_MODEL] == MODEL == chat[k.RESPONSE_MODEL]
    assert chat[k.OUTPUT_TYPE] == "speech"
    assert chat[k.RESPONSE_FINISH_REASONS] == ("stop",)
    assert chat[k.USAGE_INPUT_TOKENS] == 1250 and chat[k.USAGE_OUTPUT_TOKENS] == 320
    assert chat[k.usage_modality_key("audio", "input")] == 800
    assert chat[k.USAGE_REASONING_OUTPUT_TOKENS] == 20
    assert k.LF_USAGE_DETAILS in chat and k.LF_COST_DETAILS in chat
    assert "gen_ai.usage.cost" not in chat  # Langfuse reads cost_details only
    assert chat[k.LF_COMPLETION_START_TIME].endswith("+00:00")
    assert chat[k.RESPONSE_TIME_TO_FIRST_CHUNK] >= 0

    tools = {t.attributes[k.TOOL_NAME]: t for t in traced.named("execute_tool")}
    ok, bad = tools["search_nearby"], tools["directions"]
    assert ok.attributes[k.TOOL_CALL_ID] == "c1" and ok.attributes[k.TOOL_TYPE] == "function"
    assert ok.attributes[k.TOOL_STATUS] == "ok" and ok.attributes[k.TOOL_DURATION_MS] == 10.0
    assert ok.status.status_code is StatusCode.UNSET
    assert bad.attributes[k.TOOL_STATUS] == "error" and bad.attributes[k.ERROR_TYPE] == "tool_error"
    assert bad.attributes[k.LF_LEVEL] == "ERROR" and bad.status.status_code is StatusCode.ERROR


def test_model_error_marks_turn_and_session_error_with_status(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_text("hello")
    s.model_audio(960)
    s.model_error(1011, "internal error, key AIzaSyA1234567890abcdefghijklmnopqrstuv leaked")
    summary = s.end("model_error")
    assert summary is not None and summary.end_reason == "model_error"
    turn = traced.one("invoke_agent")
    root = traced.one(k.SPAN_SESSION)
    assert turn.attributes[k.TURN_END_REASON] == "model_error"
    assert turn.attributes[k.LF_LEVEL] == "ERROR" and turn.status.status_code is StatusCode.ERROR
    assert root.attributes[k.LF_LEVEL] == "ERROR" and root.status.status_code is StatusCode.ERROR
    # the error text is kept, the secret in it is not
    assert "AIza" not in root.status.description and "[API_KEY]" in root.status.description
    assert any(e.name == k.EV_MODEL_ERROR for e in root.events)


def test_connect_failure_is_an_error_span_without_model(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.connect_started()
    s.connect_finished(error="1008: API key not valid")
    s.end("model_error")
    connect = traced.one(k.SPAN_CONNECT)
    assert connect.status.status_code is StatusCode.ERROR
    assert connect.attributes[k.LF_LEVEL] == "ERROR"
    assert k.REQUEST_MODEL not in connect.attributes


def test_lifecycle_events_land_on_the_session_and_turn(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_audio(0.02, voiced=True)
    s.model_audio(960)
    s.interrupted()
    s.turn_complete()
    s.go_away(12.5)
    s.resumption_handle("secret-handle-value")
    s.reconnected("go_away", 0.25, resumed=True)
    s.end()
    root = traced.one(k.SPAN_SESSION)
    names = [e.name for e in root.events]
    assert names == [k.EV_GO_AWAY, k.EV_RESUMPTION, k.EV_RECONNECT]
    assert root.events[0].attributes["time_left_s"] == 12.5
    assert root.events[2].attributes["downtime_s"] == 0.25
    assert root.attributes[k.SESSION_RECONNECTS] == 1
    # the resumption handle is a credential: never recorded
    assert all(
        "secret-handle-value" not in str(dict(sp.attributes)) + str(sp.events)
        for sp in traced.spans()
    )
    reconnect = [c for c in traced.named(k.SPAN_CONNECT)]
    assert len(reconnect) == 1 and reconnect[0].attributes[k.CONNECT_RESUMED] is True
    duration = reconnect[0].end_time - reconnect[0].start_time
    assert abs(duration - 250_000_000) < 5_000_000
    turn = traced.one("invoke_agent")
    assert [e.name for e in turn.events] == [k.EV_SPEECH_STARTED, k.EV_INTERRUPTED]


def test_end_is_idempotent_and_closes_everything_with_the_reason(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    s.user_audio(0.02, voiced=True)
    s.tool_call("c9", "slow_tool", {})
    first = s.end("server_shutdown")
    second = s.end("completed")
    assert first is second and first.end_reason == "server_shutdown"
    turn = traced.one("invoke_agent")
    tool = traced.one("execute_tool")
    assert turn.attributes[k.TURN_END_REASON] == "server_shutdown"
    assert turn.attributes[k.LF_LEVEL] == "WARNING"
    assert tool.attributes[k.TOOL_STATUS] == "abandoned"
    assert all(sp.end_time is not None for sp in traced.spans())
    assert len(traced.named(k.SPAN_SESSION)) == 1


def test_unknown_end_reason_is_normalised(traced: Traced) -> None:
    s = traced.tel.start_session(session_info())
    summary = s.end("weird reason")
    assert summary.end_reason == "internal_error"
    assert traced.one(k.SPAN_SESSION).attributes[k.SESSION_END_REASON] == "internal_error"
