"""Content policy: nothing without capture AND consent; redacted and capped when allowed."""

from __future__ import annotations

import pytest
from voicetrace.telemetry import keys as k
from voicetrace.telemetry.content import Redactor, capture_from_env

from tests.telemetry.conftest import Traced, session_info

SECRET_TEXT = (
    "my mail is jane.doe@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958, "
    "key AIzaSyA1234567890abcdefghijklmnopqrstu and Bearer abcdefghijklmnop.qrstuvwx, "
    "codename bluebird"
)


def _converse(traced: Traced, consent: bool) -> None:
    s = traced.tel.start_session(
        session_info(
            recording_consent=consent,
            secrets_blurred=("bluebird",),
            system_prompt="You are helpful. Admin password=hunter22",
        )
    )
    s.input_transcript(SECRET_TEXT, finished=True)
    s.tool_call("c1", "lookup", {"email": "jane.doe@example.com"})
    s.tool_result("c1", {"phone": "+1 415 555 2671"})
    s.model_text("Sure, jane.doe@example.com")
    s.model_text("thinking about bluebird", thought=True)
    s.output_transcript("Sure thing")
    s.turn_complete()
    s.end()


def _all_attributes(traced: Traced) -> dict[str, object]:
    merged: dict[str, object] = {}
    for span in traced.spans():
        merged.update({f"{span.name}|{key}": v for key, v in span.attributes.items()})
    return merged


@pytest.mark.parametrize(("capture", "consent"), [(False, True), (True, False), (False, False)])
def test_no_content_key_exists_without_capture_and_consent(traced_factory, capture, consent):
    traced = traced_factory(capture_content=capture)
    _converse(traced, consent)
    attrs = _all_attributes(traced)
    leaked = [key for key in attrs if key.split("|", 1)[1] in k.CONTENT_KEYS]
    assert leaked == []
    assert "jane.doe" not in repr(attrs) and "bluebird" not in repr(attrs)


def test_content_with_consent_is_present_and_redacted(traced_factory) -> None:
    traced = traced_factory(capture_content=True)
    _converse(traced, consent=True)
    turn = traced.one("invoke_agent").attributes
    chat = traced.one("chat").attributes
    tool = traced.one("execute_tool").attributes
    root = traced.one(k.SPAN_SESSION).attributes
    said = turn[k.LF_INPUT]
    for raw in (
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "7946 0958",
        "AIzaSy",
        "abcdefghijklmnop",
        "bluebird",
    ):
        assert raw not in said, raw
    for marker in ("[EMAIL]", "[CARD]", "[PHONE]", "[API_KEY]", "Bearer [REDACTED]", "[REDACTED]"):
        assert marker in said, marker
    assert "Sure" in turn[k.LF_OUTPUT] and "[EMAIL]" in turn[k.LF_OUTPUT]
    assert "[REDACTED]" in turn[k.TURN_THOUGHTS]
    assert "[EMAIL]" in chat[k.INPUT_MESSAGES] and '"role": "user"' in chat[k.INPUT_MESSAGES]
    assert '"role": "assistant"' in chat[k.OUTPUT_MESSAGES]
    assert tool[k.TOOL_CALL_ARGUMENTS] == '{"email":"[EMAIL]"}'
    assert tool[k.TOOL_CALL_RESULT] == '{"phone":"[PHONE]"}'
    assert "hunter22" not in root[k.SYSTEM_INSTRUCTIONS]
    assert "You are helpful" in root[k.SYSTEM_INSTRUCTIONS]


def test_content_is_capped_before_it_touches_an_attribute(traced_factory) -> None:
    traced = traced_factory(capture_content=True, max_content_chars=100)
    s = traced.tel.start_session(session_info(recording_consent=True))
    s.user_text("word " * 10_000)
    s.model_text("ok")
    s.turn_complete()
    s.end()
    said = traced.one("invoke_agent").attributes[k.LF_INPUT]
    assert len(said) <= 100 and said.endswith("…[truncated]")


@pytest.mark.parametrize(
    ("value", "on"),
    [
        ("SPAN_ONLY", True),
        ("span_and_event", True),
        ("true", True),
        ("NO_CONTENT", False),
        ("EVENT_ONLY", False),
        ("", False),
        ("false", False),
    ],
)
def test_capture_switch_follows_the_official_env_var(value: str, on: bool) -> None:
    assert capture_from_env({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}) is on


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111-1111-1111-1111", "[CARD]"),
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # fails Luhn: not a card
        ("order 12345", "order 12345"),  # too short for a phone
        ("+1 (415) 555-2671", "[PHONE]"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl", "[JWT]"),
        ("sk-lf-1234567890abcdef1234", "[API_KEY]"),
        ("api_key: abcd1234efgh", "api_key: [REDACTED]"),
        ("the year 2026 was fine", "the year 2026 was fine"),
    ],
)
def test_redactor_patterns(text: str, expected: str) -> None:
    assert Redactor()(text) == expected


def test_redactor_blurs_session_secrets_case_insensitively() -> None:
    assert Redactor(("Project X",))("we ship project x today") == "we ship [REDACTED] today"
