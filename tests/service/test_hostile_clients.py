"""Limits the bridge enforces against hostile or unlucky clients (issue: hold under faults)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from voicetrace.service.client import VoiceClient

from tests.service.otlp_helpers import Exported, exporting_telemetry


def _texts_reaching_the_model(svc) -> int:
    return sum(
        1 for entry in svc.emulator.wire.select(direction="in") if entry.has("client_content")
    )


async def test_typed_input_is_rate_limited_in_tokens_and_the_session_goes_on(start_service):
    svc = await start_service(max_text_tokens_per_minute=8_000)  # a burst of 2,000 tokens
    session = await svc.create_session("alice")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("alice")) as client:
        await client.wait_for("session_started")
        for _ in range(10):  # 10 × 8,000 chars ≈ 20,000 tokens, sent as fast as possible
            await client.send("text", text="x" * 8_000)
        await client.wait_for("error", count=9, timeout=10)
        errors = client.of_type("error")
        assert {e["code"] for e in errors} == {"rate_limited"}
        assert "tokens per minute" in errors[0]["message"]
        await client.send("end")
        ended = await client.wait_for("session_ended")
    assert ended["reason"] == "completed"  # refused input does not end the session
    # The burst holds one 2,000-token text; the refill (133 tokens/s) no second one.
    assert _texts_reaching_the_model(svc) == 1


async def test_a_zero_budget_allows_nothing(start_service):
    svc = await start_service()
    session = await svc.create_session("bob", budgets={"session_usd": 0})
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("bob")) as client:
        await client.wait_for("session_started")
        paused = await client.wait_for("session_paused")
        assert paused["reason"] == "budget_exhausted" and paused["budget"]["limit"] == 0
        await client.send("text", text="Hello?")
        assert (await client.wait_for("error"))["code"] == "session_paused"
        await client.send("end")
        await client.wait_for("session_ended")
    assert _texts_reaching_the_model(svc) == 0
    state = await svc.get_session(session["id"], "bob")
    assert state["state_reason"] == "budget_exhausted" or state["end_reason"] == "completed"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "text", "text": "hi", "n": ' + "9" * 5_000 + "}", "bad_json"),
        (
            '{"type": "playback", "event": "stopped", "turn": 1, "played_ms": 1e400}',
            "invalid_message",
        ),
        ('{"type": "playback", "event": "started", "turn": 99999999999}', "invalid_message"),
    ],
    ids=["4300-digit-integer", "infinite-played-ms", "huge-turn-number"],
)
async def test_out_of_range_values_get_an_error_frame_and_the_session_goes_on(
    start_service, frame, code
):
    svc = await start_service()
    session = await svc.create_session("carol")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("carol")) as client:
        await client.wait_for("session_started")
        await client.ws.send(frame)
        assert (await client.wait_for("error"))["code"] == code
        await client.send("text", text="Still there?")
        assert (await client.wait_for("turn_complete"))["end_reason"] == "completed"
        await client.send("end")
        assert (await client.wait_for("session_ended"))["reason"] == "completed"


@pytest.fixture
def hanging_exporter() -> Iterator[Callable[[], Exported]]:
    with ExitStack() as stack:
        yield lambda: stack.enter_context(
            exporting_telemetry("hang", hang_s=30.0, export_timeout_s=10.0, shutdown_s=0.5)
        )


@pytest.mark.timeout(60)
async def test_sessions_ending_with_a_hanging_exporter_leave_the_thread_pool_free(
    start_service, hanging_exporter
):
    """Each session end used to run a flush of up to 5 s in asyncio's default thread pool,
    which the voice path needs too (DNS, the SDK's client): 30 ended sessions starved 88 of
    120 new connects. Flushes now run on the telemetry's own thread."""
    exp = hanging_exporter()
    svc = await start_service(telemetry=exp.telemetry, flush_timeout_s=5.0)

    async def one_session(n: int) -> None:
        session = await svc.create_session(f"user{n}")
        async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token(f"user{n}")) as c:
            await c.wait_for("session_started")
            await c.send("end")
            await c.wait_for("session_ended")

    await asyncio.gather(*(one_session(n) for n in range(12)))  # > the pool's 6 workers here
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    await asyncio.wait_for(loop.run_in_executor(None, lambda: None), 2.0)
    assert time.monotonic() - started < 0.5
    await asyncio.gather(*(one_session(n) for n in range(12, 18)))  # new sessions connect
