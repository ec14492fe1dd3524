"""The usage ledger's cost on the voice path (µs per settled turn) and its write throughput.

    python bench/ledger.py [--turns 20000] [--writes 5000] [--pg postgresql://…/test]

voice path   `SessionAccounts.record(summary)`: what the event loop pays per settled turn
             (LedgerEntry from the TurnSummary + an append to the bounded buffer; no I/O).
             Measured with `time.thread_time()` on the loop's thread; median of 5 runs.
write        settled turns/s from `record()` until the background writer has committed them
             all (exactly-once insert + atomic daily upsert, batches of 200), on a SQLite file
             and — with `--pg` or TEST_DATABASE_URL — on PostgreSQL (a fresh schema, dropped).
The run says INVALID when a turn was lost (overflow, or fewer rows than recorded) or the
machine was overloaded (1-minute load average above the core count).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from voicetrace.service.ledger import LedgerStore, LedgerWriter
from voicetrace.service.sessions.db import Database
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget_policy import BudgetPolicy
from voicetrace.telemetry import PriceTable, TurnSummary


def summary(number: int) -> TurnSummary:
    return TurnSummary(
        number=number,
        end_reason="completed",
        trigger="user_audio",
        user_speech_ms=1800.0,
        endpointing_ms=300.0,
        response_ms=2400.0,
        total_ms=4500.0,
        ttfa_ms=420.0,
        tool_ms=0.0,
        input_tokens=2400,
        output_tokens=390,
        tokens_by_modality={"input_text": 900, "input_audio": 1500, "output_audio": 350},
        cost_usd=Decimal("0.0064785"),
        audio_in_ms=1800.0,
        audio_out_ms=2400.0,
        usage_received=True,
    )


async def voice_path_us(store: LedgerStore, turns: int) -> float:
    runs = []
    for _ in range(5):
        writer = LedgerWriter(store, max_buffer=turns + 1)  # not started: measures record() only
        policy = BudgetPolicy(store, writer, Settings(), PriceTable.load(None))
        session = SimpleNamespace(id=str(uuid.uuid4()), user_id="bench", budgets=None)
        accounts = policy.for_session(session, "gemini-3.8-live")  # type: ignore[arg-type]
        items = [summary(n) for n in range(1, turns + 1)]
        start = time.thread_time()
        for item in items:
            accounts.record(item)
        runs.append((time.thread_time() - start) / turns * 1e6)
        assert writer.recorded == turns
    return statistics.median(runs)


async def write_rate(db: Database, turns: int) -> tuple[float, bool]:
    store = LedgerStore(db)
    await store.create_schema()
    writer = LedgerWriter(store, max_buffer=turns + 1)
    policy = BudgetPolicy(store, writer, Settings(), PriceTable.load(None))
    writer.start()
    sessions = [
        policy.for_session(
            SimpleNamespace(id=str(uuid.uuid4()), user_id=f"u{i % 10}", budgets=None),  # type: ignore[arg-type]
            "gemini-3.8-live",
        )
        for i in range(turns // 10)
    ]
    start = time.perf_counter()
    for n in range(turns):
        sessions[n % len(sessions)].record(summary(n // len(sessions) + 1))
    ok = await writer.flush(600)
    elapsed = time.perf_counter() - start
    rows = await store.costs([])
    await writer.stop(5)
    valid = ok and writer.overflow == 0 and rows[0].usage.turns == turns
    return turns / elapsed, valid


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=5_000)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"))
    args = parser.parse_args()
    invalid = []
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        invalid.append(f"load average {load:.1f} > {os.cpu_count()} cores")

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        us = await voice_path_us(LedgerStore(sqlite), args.turns)
        rate_sqlite, ok = await write_rate(sqlite, args.writes)
        if not ok:
            invalid.append("SQLite: turns lost")
        await sqlite.dispose()
    rate_pg: float | None = None
    if args.pg:
        pg = Database(args.pg, schema=f"vt_bench_{uuid.uuid4().hex[:12]}")
        await pg.create_schema()
        try:
            rate_pg, ok = await write_rate(pg, args.writes)
            if not ok:
                invalid.append("PostgreSQL: turns lost")
        finally:
            await pg.drop_schema()
            await pg.dispose()

    print(f"{'measure':<40} {'value':>14}")
    print(f"{'voice path, µs per settled turn':<40} {us:>14.2f}")
    print(f"{'SQLite writes, settled turns/s':<40} {rate_sqlite:>14,.0f}")
    pg_text = f"{rate_pg:>14,.0f}" if rate_pg is not None else f"{'(no --pg)':>14}"
    print(f"{'PostgreSQL writes, settled turns/s':<40} {pg_text}")
    print("run: " + ("INVALID (" + "; ".join(invalid) + ")" if invalid else "valid"))


if __name__ == "__main__":
    asyncio.run(main())
