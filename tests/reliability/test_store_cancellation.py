"""A caller cancelled in the middle of a store write can never leave the database locked or a
session stuck: the write finishes (or never starts) on its own, whatever happens to the caller.

This is the race from issue #8: the client sends `end` right after the `turn_complete` that
exhausts its budget, so the bridge cancels its model loop while that loop is inside the
budget-pause write, then ends the session. On SQLite that used to leave a write transaction open on
a pooled connection: every later write waited out the busy timeout and failed (`database is
locked`) and the session stayed LIVE.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from voicetrace.service.sessions.db import SQLITE_BUSY_TIMEOUT_MS, Database
from voicetrace.service.sessions.errors import InvalidTransition
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.schemas import SessionCreate, SessionUpdate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import SessionStore

S = SessionState
REPETITIONS = 200
# Far below SQLite's busy timeout: a locked database fails this at once instead of after 5 s.
PROMPT_S = 2.0


@pytest.fixture
def store(database: Database) -> SessionStore:
    """Per-user caps out of the way: these tests open hundreds of sessions for one user."""
    return SessionStore(
        database, policy=SessionPolicy(max_live_per_user=10**6, max_open_per_user=10**6)
    )


async def _live(store: SessionStore, user: str) -> str:
    session = await store.create(user, SessionCreate())
    await store.transition(session.id, user, S.LIVE)
    return session.id


async def _cancel_after(task: asyncio.Task[object], step: int) -> None:
    """Cancel `task` at a different point of its write each time: after some loop passes, or
    after a little wall time (the driver's own thread may be mid-statement)."""
    if step % 2:
        for _ in range(step % 17):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep((step % 13) * 0.0003)
    task.cancel()


async def test_ending_right_after_a_cancelled_budget_pause_never_locks_the_database(
    store: SessionStore,
) -> None:
    for step in range(REPETITIONS):
        session_id = await _live(store, "alice")
        pause = asyncio.create_task(
            store.transition(session_id, "alice", S.PAUSED, reason="budget_exhausted")
        )
        await _cancel_after(pause, step)
        with contextlib.suppress(asyncio.CancelledError, InvalidTransition):
            await pause
        # What the bridge does next: end the session. It must work, promptly, every time.
        ended = await asyncio.wait_for(store.end(session_id, "alice", "completed"), PROMPT_S)
        assert ended.state is S.ENDED, step
        # And every other user's writes keep working.
        other = await asyncio.wait_for(store.create("bob", SessionCreate()), PROMPT_S)
        await asyncio.wait_for(
            store.update(other.id, "bob", SessionUpdate(transcript_partial=str(step))), PROMPT_S
        )
        stored = await store.get(session_id, "alice")
        assert stored.state is S.ENDED and stored.end_reason == "completed", step


async def test_a_cancelled_caller_never_half_applies_a_transition(store: SessionStore) -> None:
    """Cancelled or not, a transition is all or nothing: state, reason and time agree. Once the
    store has started the write, a cancelled caller's write still lands."""
    landed = 0
    for step in range(REPETITIONS):
        session_id = await _live(store, "carol")
        pause = asyncio.create_task(
            store.transition(session_id, "carol", S.PAUSED, reason="budget_exhausted")
        )
        await _cancel_after(pause, step)
        with contextlib.suppress(asyncio.CancelledError):
            await pause
        await store.drain_writes()
        stored = await asyncio.wait_for(store.get(session_id, "carol"), PROMPT_S)
        if stored.state is S.PAUSED:
            landed += 1
            assert stored.state_reason == "budget_exhausted", step
        else:  # cancelled before the store ever ran: nothing at all changed
            assert stored.state is S.LIVE and stored.state_reason is None, step
            assert stored.updated_at == stored.started_at, step
    # The cancellation points really spread over the write: most land, some never started.
    assert REPETITIONS // 2 < landed < REPETITIONS


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_on_every_connection(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")  # SQLite only, always
    await database.create_schema()

    async def pragmas(conn: AsyncConnection) -> tuple[str, int]:
        mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        return str(mode), int(timeout)

    try:
        assert database.is_sqlite
        assert await database.read(pragmas) == ("wal", SQLITE_BUSY_TIMEOUT_MS)
    finally:
        await database.dispose()
    assert await database.write(pragmas) == ("wal", SQLITE_BUSY_TIMEOUT_MS)


async def test_many_concurrent_writers_some_cancelled_all_leave_the_store_usable(
    store: SessionStore,
) -> None:
    sessions = [await _live(store, f"user{i}") for i in range(20)]
    tasks = [
        asyncio.create_task(store.transition(sid, f"user{i}", S.PAUSED, reason="r"))
        for i, sid in enumerate(sessions)
    ]
    await asyncio.sleep(0.001)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ends = [store.end(sid, f"user{i}", "completed") for i, sid in enumerate(sessions)]
    ended = await asyncio.wait_for(asyncio.gather(*ends), PROMPT_S * 2)
    assert {s.state for s in ended} == {S.ENDED}
