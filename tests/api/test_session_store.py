"""`SessionStore` against a real database (SQLite file, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import InvalidTransition, NotFound
from voicetrace.service.sessions.schemas import Budgets, LiveSession, SessionCreate, SessionUpdate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import RECOVERED_REASON, SessionStore
from voicetrace.telemetry import SessionSummary

S = SessionState


def new(**fields: object) -> SessionCreate:
    return SessionCreate(**fields)


async def live_session(store: SessionStore, user: str = "alice") -> str:
    session = await store.create(user, new())
    await store.transition(session.id, user, S.LIVE)
    return session.id


async def test_create_starts_connecting_and_round_trips_every_field(store: SessionStore) -> None:
    data = new(
        mode="LS1A",
        recording_consent=True,
        secrets_blurred=["hunter2", "sk-live-123"],
        budgets=Budgets(session_usd=Decimal("0.25"), daily_audio_minutes=30, daily_video_tokens=9),
    )
    created = await store.create("alice", data)
    fetched = await store.get(created.id, "alice")
    assert fetched == created
    assert fetched.state is S.CONNECTING and fetched.user_id == "alice"
    assert fetched.mode == "LS1A" and fetched.recording_consent is True
    assert fetched.secrets_blurred == ["hunter2", "sk-live-123"]
    assert fetched.budgets.session_usd == Decimal("0.25")
    assert fetched.budgets.daily_audio_minutes == 30 and fetched.budgets.daily_video_tokens == 9
    assert fetched.budgets.daily_usd is None
    assert fetched.created_at.tzinfo is not None and fetched.started_at is None
    assert len(fetched.id) == 36 and fetched.audio_minutes_used == 0


async def test_usd_budgets_are_stored_exactly(store: SessionStore) -> None:
    created = await store.create("alice", new(budgets=Budgets(daily_usd=Decimal("1234.000001"))))
    assert (await store.get(created.id, "alice")).budgets.daily_usd == Decimal("1234.000001")


async def test_another_users_session_is_not_found(store: SessionStore) -> None:
    session = await store.create("alice", new())
    with pytest.raises(NotFound):
        await store.get(session.id, "mallory")
    with pytest.raises(NotFound):
        await store.transition(session.id, "mallory", S.ENDED, reason="x")
    with pytest.raises(NotFound):
        await store.update(session.id, "mallory", SessionUpdate(transcript_partial="pwned"))
    untouched = await store.get(session.id, "alice")
    assert untouched.state is S.CONNECTING and untouched.transcript_partial is None


def a_summary(session_id: str) -> SessionSummary:
    return SessionSummary(
        session_id=session_id,
        end_reason="completed",
        turns=2,
        tool_calls=1,
        tool_errors=0,
        interruptions=0,
        duration_s=130.0,
        input_tokens=10,
        output_tokens=20,
        tokens_by_modality={"input_text": 10, "output_audio": 20},
        cost_usd=Decimal("0.0125"),
        audio_in_s=90.0,
        audio_out_s=30.0,
    )


async def test_unknown_session_is_not_found(store: SessionStore) -> None:
    with pytest.raises(NotFound):
        await store.get("00000000-0000-0000-0000-000000000000", "alice")
    with pytest.raises(NotFound):
        unknown = "00000000-0000-0000-0000-000000000000"
        await store.record_summary(unknown, a_summary(unknown))


async def test_full_lifecycle_sets_timestamps_and_reasons(store: SessionStore) -> None:
    session = await store.create("alice", new())
    live = await store.transition(session.id, "alice", S.LIVE)
    assert live.started_at is not None and live.state is S.LIVE
    paused = await store.transition(session.id, "alice", S.PAUSED, reason="budget_exhausted")
    assert paused.state is S.PAUSED and paused.state_reason == "budget_exhausted"
    resumed = await store.transition(session.id, "alice", S.LIVE)
    assert resumed.started_at == live.started_at  # first time LIVE, not the latest
    ended = await store.end(session.id, "alice", reason="completed")
    assert ended.state is S.ENDED and ended.end_reason == "completed"
    assert ended.ended_at is not None and ended.ended_at >= ended.started_at


@pytest.mark.parametrize(
    ("path", "requested", "current"),
    [
        ((), S.PAUSED, S.CONNECTING),
        ((S.LIVE,), S.LIVE, S.LIVE),
        ((S.LIVE, S.PAUSED), S.PAUSED, S.PAUSED),
        ((S.ENDED,), S.LIVE, S.ENDED),
        ((S.LIVE, S.ENDED), S.ENDED, S.ENDED),
        ((), S.CONNECTING, S.CONNECTING),
        ((), S.IDLE, S.CONNECTING),
    ],
)
async def test_invalid_transitions_report_current_and_requested(
    store: SessionStore, path: tuple[S, ...], requested: S, current: S
) -> None:
    session = await store.create("alice", new())
    for step in path:
        await store.transition(session.id, "alice", step, reason="test")
    with pytest.raises(InvalidTransition) as info:
        await store.transition(session.id, "alice", requested)
    assert (info.value.current, info.value.requested) == (current, requested)
    assert (await store.get(session.id, "alice")).state is current


async def test_ending_twice_keeps_the_first_reason(store: SessionStore) -> None:
    session = await store.create("alice", new())
    await store.end(session.id, "alice", reason="ended_by_user")
    with pytest.raises(InvalidTransition):
        await store.end(session.id, "alice", reason="completed")
    assert (await store.get(session.id, "alice")).end_reason == "ended_by_user"


async def test_update_changes_only_the_given_fields(store: SessionStore) -> None:
    session = await store.create(
        "alice", new(budgets=Budgets(daily_usd=Decimal("5"), session_audio_minutes=10))
    )
    await store.update(session.id, "alice", SessionUpdate(transcript_partial="hel"))
    patched = await store.update(
        session.id,
        "alice",
        SessionUpdate.model_validate(
            {"budgets": {"session_audio_minutes": None, "session_usd": 1}}
        ),
    )
    assert patched.transcript_partial == "hel" and patched.transcript_final is None
    assert patched.budgets.daily_usd == Decimal("5")  # untouched
    assert patched.budgets.session_audio_minutes is None  # explicit null clears
    assert patched.budgets.session_usd == Decimal("1")
    assert patched.updated_at >= session.updated_at and patched.state is S.CONNECTING


async def test_list_is_newest_first_filtered_and_limited(store: SessionStore) -> None:
    ids = [(await store.create("alice", new(mode=f"m{i}"))).id for i in range(5)]
    await store.create("bob", new())
    await store.transition(ids[1], "alice", S.LIVE)
    await store.transition(ids[3], "alice", S.LIVE)
    assert [s.id for s in await store.list("alice")] == ids[::-1]
    assert [s.id for s in await store.list("alice", limit=2)] == [ids[4], ids[3]]
    assert [s.id for s in await store.list("alice", state=S.LIVE)] == [ids[3], ids[1]]
    assert await store.list("alice", state=S.ENDED) == []
    assert [s.user_id for s in await store.list("bob")] == ["bob"]


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_list_rejects_a_limit_out_of_range(store: SessionStore, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list("alice", limit=limit)


async def test_list_orders_by_creation_time_not_insertion(database: Database) -> None:
    clock = iter(datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in (10, 0, 20))
    store = SessionStore(database, clock=lambda: next(clock))
    middle, oldest, newest = [(await store.create("alice", new())).id for _ in range(3)]
    assert [s.id for s in await store.list("alice")] == [newest, middle, oldest]


async def test_record_summary_stores_it_and_the_audio_minutes(store: SessionStore) -> None:
    session_id = await live_session(store)
    await store.end(session_id, "alice", reason="completed")
    await store.record_summary(session_id, a_summary(session_id))
    stored = await store.get(session_id, "alice")
    assert stored.summary is not None
    assert stored.summary["turns"] == 2 and stored.summary["cost_usd"] == 0.0125
    assert stored.audio_minutes_used == pytest.approx(2.0)


async def test_recover_after_a_restart_ends_what_this_instance_served_and_nothing_else(
    store: SessionStore, database: Database
) -> None:
    connecting = (await store.create("alice", new())).id
    live = await live_session(store, "bob")
    paused = await live_session(store, "carol")
    await store.transition(paused, "carol", S.PAUSED)
    ended = await live_session(store)
    await store.end(ended, "alice", reason="completed")

    restarted = SessionStore(database, policy=store.policy)  # same instance id, new process
    assert await restarted.recover_after_crash() == 2
    for session_id, user in ((live, "bob"), (paused, "carol")):
        session = await store.get(session_id, user)
        assert session.state is S.ENDED and session.end_reason == RECOVERED_REASON
        assert session.ended_at is not None and session.summary is not None
    # Not connected yet, and not expired: another replica may be about to take it.
    assert (await store.get(connecting, "alice")).state is S.CONNECTING
    assert (await store.get(ended, "alice")).end_reason == "completed"
    assert await restarted.recover_after_crash() == 0


# -- races: the database decides, exactly one of the conflicting calls wins --------------------


async def _outcomes(*calls: object) -> list[object]:
    return await asyncio.gather(*calls, return_exceptions=True)  # type: ignore[arg-type]


async def test_concurrent_identical_transitions_have_exactly_one_winner(
    store: SessionStore,
) -> None:
    for _ in range(5):
        session_id = await live_session(store)
        results = await _outcomes(
            *(store.transition(session_id, "alice", S.PAUSED, reason=f"r{i}") for i in range(8))
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, InvalidTransition) and r.current is S.PAUSED for r in losers)
        assert (await store.get(session_id, "alice")).state_reason == winners[0].state_reason


async def test_concurrent_ends_record_one_reason_only(store: SessionStore) -> None:
    session_id = await live_session(store)
    results = await _outcomes(*(store.end(session_id, "alice", reason=f"r{i}") for i in range(8)))
    (winner,) = [r for r in results if not isinstance(r, BaseException)]
    assert (await store.get(session_id, "alice")).end_reason == winner.end_reason


async def test_pause_racing_end_never_leaves_an_ended_session_paused(store: SessionStore) -> None:
    for _ in range(5):
        session_id = await live_session(store)
        pause, end = await _outcomes(
            store.transition(session_id, "alice", S.PAUSED, reason="budget_exhausted"),
            store.end(session_id, "alice", reason="ended_by_user"),
        )
        assert not isinstance(end, BaseException)  # LIVE → ENDED and PAUSED → ENDED both allowed
        assert isinstance(pause, LiveSession) or (
            isinstance(pause, InvalidTransition) and pause.current is S.ENDED
        )
        final = await store.get(session_id, "alice")
        assert final.state is S.ENDED and final.end_reason == "ended_by_user"


async def test_a_transition_racing_an_update_loses_neither_change(store: SessionStore) -> None:
    for i in range(5):
        session_id = await live_session(store)
        await asyncio.gather(
            store.transition(session_id, "alice", S.PAUSED),
            store.update(session_id, "alice", SessionUpdate(transcript_final=f"t{i}")),
            store.update(
                session_id, "alice", SessionUpdate(budgets=Budgets(session_audio_minutes=i + 1))
            ),
        )
        final = await store.get(session_id, "alice")
        assert final.state is S.PAUSED and final.transcript_final == f"t{i}"
        assert final.budgets.session_audio_minutes == i + 1


async def test_only_from_narrows_the_allowed_sources(store: SessionStore) -> None:
    session = await store.create("alice", new())
    with pytest.raises(InvalidTransition) as info:
        await store.transition(session.id, "alice", S.LIVE, only_from={S.PAUSED})
    assert info.value.current is S.CONNECTING
    await store.transition(session.id, "alice", S.LIVE, only_from={S.CONNECTING})
    with pytest.raises(ValueError, match="no state"):
        await store.transition(session.id, "alice", S.LIVE, only_from={S.ENDED})
