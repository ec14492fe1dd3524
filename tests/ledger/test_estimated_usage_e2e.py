"""End to end through the service and the emulator: turns Gemini reports no usage for are
estimated, flagged on their `chat` span and in the ledger, and counted everywhere exactly once —
chat spans = ledger = costs API = `session_ended` summary = the user's daily budget, to the token
and 1e-9 USD. Usage that comes after `turnComplete` within the wait is used as is (no estimate).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select
from voicetrace.emulator import Scenario, ScriptedTurn
from voicetrace.emulator.usage import text_tokens
from voicetrace.service.client import VoiceClient
from voicetrace.service.ledger.tables import usage_ledger
from voicetrace.service.sessions.db import Database

from tests.frames_helpers import jpeg, png
from tests.ledger.test_ledger_e2e import (
    TURNS,
    USD_TOLERANCE,
    _assert_all_agree,
    _chats,
    _conversation,
    _costs,
    _ledger_settled,
    _ledger_total,
)

LONG_REPLY = " ".join(["The harbour walk goes on past the old lighthouse and the fish market."] * 6)


async def _ledger_rows(svc) -> dict[int, dict]:
    db = Database(f"sqlite+aiosqlite:///{svc.settings.sqlite_path}")
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(select(usage_ledger))).mappings().all()
    finally:
        await db.dispose()
    return {r["turn"]: dict(r) for r in rows}


def _chat_spans(svc) -> dict[int, dict]:
    return {
        int(s.attributes["voice.turn.number"]): dict(s.attributes)
        for s in svc.finished_spans()
        if s.name.startswith("chat ")
    }


async def _daily_usd(svc, user: str) -> float:
    r = await svc.http.get(
        "/api/budgets/me", headers={"Authorization": f"Bearer {svc.token(user)}"}
    )
    assert r.status_code == 200, r.text
    return float(r.json()["daily_used"]["usd"])


async def test_a_server_that_never_reports_usage_is_billed_by_estimate_everywhere_alike(
    start_service,
) -> None:
    svc = await start_service(scenario=Scenario(usage="none"), usage_wait_s=0.3)
    summary = await _conversation(svc, "nina")
    await _ledger_settled(svc, TURNS)
    chats = _chat_spans(svc)
    assert sorted(chats) == [1, 2, 3]
    for attrs in chats.values():
        assert attrs["voice.usage.estimated"] is True and attrs["voice.usage.missing"] is True
        assert attrs["langfuse.observation.level"] == "WARNING"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    # Each estimate carries the one before it: the prompt grows turn by turn.
    prompts = [chats[n]["gen_ai.usage.input_tokens"] for n in (1, 2, 3)]
    assert prompts == sorted(prompts) and len(set(prompts)) == 3
    rows = await _ledger_rows(svc)
    assert {n: (r["usage_received"], r["usage_estimated"]) for n, r in rows.items()} == {
        n: (False, True) for n in (1, 2, 3)
    }
    ledger = await _ledger_total(svc, "nina")
    _assert_all_agree(
        summary, ledger, (await _costs(svc, "nina"))["total"], _chats(svc.finished_spans())
    )
    assert abs(await _daily_usd(svc, "nina") - float(ledger.cost_usd)) < USD_TOLERANCE


async def test_an_interrupted_turn_without_usage_is_estimated_as_the_emulator_billed_it(
    start_service,
) -> None:
    """Real Gemini often sends no usage for an interrupted turn (`usage_on_interrupted=False`).
    The emulator still billed it: its input and output are in the next turn's prompt. So the
    estimate is checked against the emulator's own accounting, to the token: turn 3's prompt
    = the context after turn 2 + turn 3's typed text."""
    scenario = Scenario(usage_on_interrupted=False, turns={2: ScriptedTurn(reply=LONG_REPLY)})
    svc = await start_service(scenario=scenario, usage_wait_s=0.3)
    third = "Thanks, that will do"
    session = await svc.create_session("olga")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("olga")) as client:
        await client.wait_for("session_started")
        await client.send("text", text="Hello, what is nearby?")
        await client.wait_for("turn_complete", count=1, timeout=15)
        await client.send("text", text="Tell me about the harbour walk")
        await client.wait_for("transcript", where=lambda m: m["role"] == "model" and m["turn"] == 2)
        await client.send("text", text=third)  # talks over the model: turn 2 is interrupted
        await client.wait_for("turn_complete", count=3, timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    await _ledger_settled(svc, 3)
    chats = _chat_spans(svc)
    assert [chats[n].get("voice.usage.estimated", False) for n in (1, 2, 3)] == [
        False,
        True,
        False,
    ]
    two, three = chats[2], chats[3]
    assert two["gen_ai.response.finish_reasons"] == ("interrupted",)
    carried = two["gen_ai.usage.input_tokens"] + two["gen_ai.usage.output_tokens"]
    assert carried == three["gen_ai.usage.input_tokens"] - text_tokens(third)
    # ...and by modality, so it is priced as Gemini would have priced it.
    assert two["gen_ai.usage.audio.output_tokens"] > 0
    assert two.get("gen_ai.usage.audio.input_tokens", 0) + two[
        "gen_ai.usage.audio.output_tokens"
    ] == (three.get("gen_ai.usage.audio.input_tokens", 0))
    rows = await _ledger_rows(svc)
    assert [rows[n]["usage_estimated"] for n in (1, 2, 3)] == [False, True, False]
    assert rows[2]["input_tokens"] == two["gen_ai.usage.input_tokens"]
    assert rows[2]["cost_pusd"] > 0
    ledger = await _ledger_total(svc, "olga")
    spans = _chats(svc.finished_spans())
    summary = ended["summary"]
    assert ledger.turns == 3
    assert summary["input_tokens"] == ledger.input_tokens == spans[0]
    assert summary["output_tokens"] == ledger.output_tokens == spans[1]
    api = (await _costs(svc, "olga"))["total"]
    assert ledger.cost_usd == Decimal(api["cost_usd_decimal"]) == spans[2]
    assert abs(summary["cost_usd"] - float(spans[2])) < USD_TOLERANCE
    assert abs(await _daily_usd(svc, "olga") - float(ledger.cost_usd)) < USD_TOLERANCE


@pytest.mark.parametrize("delivery", ["with_turn_complete", "after_turn_complete"])
async def test_usage_that_comes_within_the_wait_is_used_and_nothing_is_estimated(
    start_service, delivery: str
) -> None:
    svc = await start_service(scenario=Scenario(usage=delivery))
    summary = await _conversation(svc, "pia")
    await _ledger_settled(svc, TURNS)
    chats = _chat_spans(svc)
    assert not any(
        a.get("voice.usage.estimated") or a.get("voice.usage.missing") for a in chats.values()
    )
    rows = await _ledger_rows(svc)
    assert all(r["usage_received"] and not r["usage_estimated"] for r in rows.values())
    ledger = await _ledger_total(svc, "pia")
    _assert_all_agree(
        summary, ledger, (await _costs(svc, "pia"))["total"], _chats(svc.finished_spans())
    )


async def test_estimated_turns_bill_their_frames_and_count_in_the_camera_and_screen_budgets(
    start_service,
) -> None:
    """No usage ever: the frames forwarded are still billed (the emulator re-bills each one
    every later turn, 70 tokens at the default resolution) and split by source, so the chat
    spans, the `session_ended` summary and the user's daily camera/screen budgets count them."""
    svc = await start_service(scenario=Scenario(usage="none"), usage_wait_s=0.3)
    session = await svc.create_session("pia")
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token("pia")) as client:
        await client.wait_for("session_started")
        await client.send_frame("camera", jpeg())
        await client.send_frame("camera", jpeg())
        await client.send("text", text="What do you see?")
        await client.wait_for("turn_complete", count=1, timeout=15)
        await client.send_frame("screen", png(), "image/png")
        await client.send("text", text="And on the screen?")
        await client.wait_for("turn_complete", count=2, timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    await _ledger_settled(svc, 2)
    chats = _chat_spans(svc)
    assert all(chats[n]["voice.usage.estimated"] is True for n in (1, 2))
    # Turn 1: two camera frames; turn 2 re-bills them and adds the screen frame.
    assert [chats[n]["gen_ai.usage.image.input_tokens"] for n in (1, 2)] == [140, 210]
    assert [chats[n]["voice.usage.camera_tokens"] for n in (1, 2)] == [140, 140]
    assert chats[2]["voice.usage.screen_tokens"] == 70
    summary = ended["summary"]
    assert (summary["camera_tokens"], summary["screen_tokens"]) == (280, 70)
    r = await svc.http.get(
        "/api/budgets/me", headers={"Authorization": f"Bearer {svc.token('pia')}"}
    )
    assert r.status_code == 200, r.text
    used = r.json()["daily_used"]
    assert (used["videoTokens"], used["screenTokens"]) == (280, 70)
