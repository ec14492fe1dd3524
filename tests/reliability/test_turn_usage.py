"""Crash safety, store side: every settled turn's usage is persisted as the turn ends, the running
totals are exact under concurrency and retries, and recovery turns them into a summary."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import pytest
from voicetrace.service.sessions.errors import NotFound
from voicetrace.service.sessions.schemas import SessionCreate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import RECOVERED_REASON, SessionStore
from voicetrace.telemetry import SessionSummary

S = SessionState
UNKNOWN = "00000000-0000-0000-0000-000000000000"


async def live(store: SessionStore) -> str:
    session = await store.create("alice", SessionCreate())
    await store.transition(session.id, "alice", S.LIVE)
    return session.id


async def test_a_settled_turn_lands_in_the_running_totals(store: SessionStore) -> None:
    sid = await live(store)
    first = await store.record_turn(
        sid, 1, 1200, 300, Decimal("0.002125"), 4.5, 2.5, {"AUDIO": 1000}
    )
    assert first.recorded is True and first.budget_exhausted is None
    usage = first.session.usage
    assert (usage.turns, usage.input_tokens, usage.output_tokens) == (1, 1200, 300)
    assert usage.cost_usd == Decimal("0.002125")
    assert (usage.audio_in_s, usage.audio_out_s) == (4.5, 2.5)
    assert first.session.audio_minutes_used == pytest.approx(7.0 / 60)
    stored = await store.get(sid, "alice")
    assert stored.usage == usage


async def test_a_retried_turn_write_is_not_counted_twice(store: SessionStore) -> None:
    sid = await live(store)
    args = (sid, 1, 100, 50, Decimal("0.001"), 1.0, 1.0, {"TEXT": 100})
    assert (await store.record_turn(*args)).recorded is True
    retry = await store.record_turn(*args)
    assert retry.recorded is False
    assert retry.session.usage.turns == 1 and retry.session.usage.cost_usd == Decimal("0.001")
    # Concurrent retries of the same turn: still once.
    results = await asyncio.gather(*(store.record_turn(*args[:1], 2, *args[2:]) for _ in range(8)))
    assert sum(r.recorded for r in results) == 1
    final = await store.get(sid, "alice")
    assert final.usage.turns == 2 and final.usage.input_tokens == 200


async def test_concurrent_turns_are_summed_exactly(store: SessionStore) -> None:
    sid = await live(store)
    await asyncio.gather(
        *(
            store.record_turn(sid, n, n, 2 * n, Decimal("0.000001") * n, 0.5, 0.25, {})
            for n in range(1, 51)
        )
    )
    usage = (await store.get(sid, "alice")).usage
    assert usage.turns == 50 and usage.input_tokens == sum(range(1, 51))
    assert usage.output_tokens == 2 * sum(range(1, 51))
    assert usage.cost_usd == Decimal("0.000001") * sum(range(1, 51))
    assert usage.audio_in_s == pytest.approx(25.0) and usage.audio_out_s == pytest.approx(12.5)


async def test_recovery_after_a_crash_writes_the_summary_from_the_recorded_turns(
    store: SessionStore,
) -> None:
    sid = await live(store)
    for n, cost in enumerate(("0.0021", "0.0027", "0.0023"), start=1):
        await store.record_turn(
            sid, n, 500, 100, Decimal(cost), 10.0, 5.0, {"AUDIO": 400, "TEXT": 100}
        )
    # SIGKILL: no bridge ends it, no summary written. The same replica restarts.
    restarted = SessionStore(store._db, policy=store.policy)
    assert await restarted.recover_after_crash() == 1
    ended = await restarted.get(sid, "alice")
    assert ended.state is S.ENDED and ended.end_reason == RECOVERED_REASON
    assert ended.summary["turns"] == 3 and ended.summary["cost_usd"] == pytest.approx(0.0071)
    assert ended.summary["tokens_by_modality"] == {"AUDIO": 1200, "TEXT": 300}
    assert ended.summary["input_tokens"] == 1500 and ended.summary["recovered"] is True
    assert ended.audio_minutes_used == pytest.approx(45.0 / 60)


async def test_a_normally_ended_sessions_summary_is_never_replaced(store: SessionStore) -> None:
    sid = await live(store)
    await store.record_turn(sid, 1, 1, 1, Decimal("0.1"), 1.0, 1.0, {})
    await store.end(sid, "alice", "completed")
    summary = SessionSummary(
        session_id=sid,
        end_reason="completed",
        turns=1,
        tool_calls=0,
        tool_errors=0,
        interruptions=0,
        duration_s=3.0,
        input_tokens=1,
        output_tokens=1,
        tokens_by_modality={},
        cost_usd=Decimal("0.1"),
        audio_in_s=1.0,
        audio_out_s=1.0,
    )
    await store.record_summary(sid, summary)
    assert await SessionStore(store._db, policy=store.policy).recover_after_crash() == 0
    assert (await store.get(sid, "alice")).summary == summary.to_json()


@pytest.mark.parametrize(
    "bad",
    [
        {"input_tokens": -1},
        {"input_tokens": True},
        {"output_tokens": 10**16},
        {"cost_usd": Decimal("NaN")},
        {"cost_usd": Decimal("-0.01")},
        {"cost_usd": 0.01},
        {"audio_in_s": math.inf},
        {"audio_out_s": -1.0},
        {"number": -1},
        {"tokens_by_modality": {"AUDIO": -5}},
    ],
)
async def test_garbage_usage_is_refused_and_nothing_lands(store: SessionStore, bad: dict) -> None:
    sid = await live(store)
    args = {
        "number": 1,
        "input_tokens": 1,
        "output_tokens": 1,
        "cost_usd": Decimal("0.001"),
        "audio_in_s": 1.0,
        "audio_out_s": 1.0,
        "tokens_by_modality": {},
    } | bad
    with pytest.raises(ValueError):
        await store.record_turn(sid, **args)
    assert (await store.get(sid, "alice")).usage.turns == 0


async def test_a_turn_of_an_unknown_session_is_not_found(store: SessionStore) -> None:
    with pytest.raises(NotFound):
        await store.record_turn(UNKNOWN, 1, 1, 1, Decimal(0), 0.0, 0.0, {})
