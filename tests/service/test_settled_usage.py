"""A turn's usage reaches the client, the budget and the session summary once it is settled —
also when the server sends `usageMetadata` in its own message after `turnComplete` (as an
independent Gemini Live server does) or not at all."""

from __future__ import annotations

from decimal import Decimal

import pytest
from voicetrace.emulator import Scenario
from voicetrace.service.client import VoiceClient


async def _typed_turn_then_end(
    svc, user: str, budgets: dict | None = None, *, expect: str = "turn_complete"
) -> VoiceClient:
    session = await svc.create_session(user, budgets=budgets or {})
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token(user)) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello there")
        await client.wait_for(expect)
        await client.send("end")
        await client.wait_for("session_ended")
    return client


def _chat_cost(svc) -> tuple[int, Decimal]:
    chats = [s for s in svc.finished_spans() if s.name.startswith("chat ")]
    assert len(chats) == 1
    attrs = chats[0].attributes
    return attrs["gen_ai.usage.input_tokens"], Decimal(attrs["voice.cost.usd_decimal"])


@pytest.mark.parametrize("delivery", ["with_turn_complete", "after_turn_complete"])
async def test_usage_after_turn_complete_reaches_turn_summary_and_session_summary(
    start_service, delivery
):
    svc = await start_service(scenario=Scenario(usage=delivery))
    client = await _typed_turn_then_end(svc, "alice")

    (turn,) = client.of_type("turn_complete")
    (ended,) = client.of_type("session_ended")
    tokens, cost = _chat_cost(svc)
    assert turn["usage_received"] is True
    assert tokens > 0 and cost > 0
    assert turn["input_tokens"] == ended["summary"]["input_tokens"] == tokens
    assert turn["cost_usd"] == ended["summary"]["cost_usd"] == float(cost)


async def test_usage_after_turn_complete_counts_toward_the_session_budget(start_service):
    svc = await start_service(scenario=Scenario(usage="after_turn_complete"))
    client = await _typed_turn_then_end(
        svc, "bob", budgets={"session_usd": 0.000001}, expect="session_paused"
    )

    (paused,) = client.of_type("session_paused")
    _, cost = _chat_cost(svc)
    assert paused["reason"] == "budget_exhausted"
    assert paused["budget"]["used"] == pytest.approx(float(cost))


async def test_a_turn_without_usage_is_reported_after_the_usage_wait_and_billed_by_estimate(
    start_service,
):
    svc = await start_service(scenario=Scenario(usage="none"), usage_wait_s=0.3)
    client = await _typed_turn_then_end(svc, "carol")

    (turn,) = client.of_type("turn_complete")
    (ended,) = client.of_type("session_ended")
    # The client hears of the turn after the wait, with what was known then: no usage yet.
    assert turn["usage_received"] is False and turn["usage_estimated"] is False
    assert turn["input_tokens"] == 0 and turn["cost_usd"] is None
    # Its generation went out for good at the end, estimated: the session bills it.
    tokens, cost = _chat_cost(svc)
    assert tokens > 0 and cost > 0
    assert ended["summary"]["input_tokens"] == tokens
    assert ended["summary"]["cost_usd"] == float(cost)


async def test_an_estimated_turn_counts_toward_the_session_budget_during_the_session(
    start_service,
):
    """No usage ever: turn 1 is estimated once turn 2 finished (its usage can no longer come),
    and the estimate pauses a session over its budget — not only at the end."""
    svc = await start_service(scenario=Scenario(usage="none"), usage_wait_s=0.3)
    session = await svc.create_session("dave", budgets={"session_usd": 0.000001})
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("dave")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello there")
        await client.wait_for("turn_complete")
        await client.send("text", text="And another thing")
        paused = await client.wait_for("session_paused", timeout=10)
        assert not client.of_type("session_ended")
        await client.send("end")
        await client.wait_for("session_ended")
    chats = {
        s.attributes["voice.turn.number"]: s.attributes
        for s in svc.finished_spans()
        if s.name.startswith("chat ")
    }
    assert chats[1]["voice.usage.estimated"] is True
    assert paused["reason"] == "budget_exhausted"
    assert paused["budget"]["used"] >= float(Decimal(chats[1]["voice.cost.usd_decimal"]))
