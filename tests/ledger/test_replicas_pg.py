"""Two `voicetrace serve` processes on one PostgreSQL share one user's daily budget: concurrent
turns on both lose no increment, and a limit reached through one replica refuses and pauses
sessions on the other."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
from voicetrace.emulator import Emulator, Scenario
from voicetrace.service.api.auth import mint_token
from voicetrace.service.client import VoiceClient

pytestmark = pytest.mark.e2e

PG_ENV = "TEST_DATABASE_URL"
JWT_SECRET = "replica-test-secret-0123456789abcdef0123"
USER = "alice-replicas"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh database on the test server (both replicas share it), dropped afterwards."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    name = f"vt_replicas_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class Replica:
    def __init__(self, db_url: str, emulator: Emulator, tmp_path: Path, name: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = (tmp_path / f"{name}.log").open("wb")
        env = {
            **os.environ,
            **emulator.env(),
            "DATABASE_URL": db_url,
            "VOICETRACE_JWT_SECRET": JWT_SECRET,
            "VOICETRACE_LOG_LEVEL": "warning",
            "VOICETRACE_USAGE_WAIT_S": "0.5",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicetrace.service.cli", "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"replica exited ({self.log.name})"
                try:
                    if (await http.get(f"{self.base}/api/observability/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("voicetrace serve did not become healthy")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    async def create(self, token: str) -> str:
        async with httpx.AsyncClient(base_url=self.base) as http:
            r = await http.post(
                "/live-sessions",
                json={"mode": "test"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 201, r.text
            return r.json()["id"]

    def ws(self, session_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/voice/{session_id}"


async def _conversation(replica: Replica, token: str, turns: int) -> dict:
    sid = await replica.create(token)
    async with VoiceClient.connect(replica.ws(sid), token) as client:
        await client.wait_for("session_started", timeout=15)
        for n in range(1, turns + 1):
            await client.send("text", text=f"Tell me fact number {n}")
            await client.wait_for("turn_complete", count=n, timeout=20)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=20)
    return ended["summary"]


async def _ledger_idle(replicas: list[Replica]) -> None:
    async with httpx.AsyncClient() as http:
        for replica in replicas:
            for _ in range(200):
                health = (await http.get(f"{replica.base}/api/observability/health")).json()
                if health["ledger"]["buffered"] == 0:
                    break
                await asyncio.sleep(0.05)


async def test_two_replicas_share_one_users_daily_budget(pg_database: str, tmp_path: Path) -> None:
    token = mint_token(USER, JWT_SECRET)
    admin = mint_token("ops", JWT_SECRET, roles=["admin"])
    async with Emulator(scenario=Scenario()) as emulator:
        a = Replica(pg_database, emulator, tmp_path, "a")
        b = Replica(pg_database, emulator, tmp_path, "b")
        try:
            await asyncio.gather(a.wait_healthy(), b.wait_healthy())
            # 1. Concurrent turns of one user on both replicas: no increment lost.
            summaries = await asyncio.gather(
                *(_conversation(r, token, 3) for r in (a, b, a, b, a, b))
            )
            await _ledger_idle([a, b])
            conn = await asyncpg.connect(pg_database)
            try:
                daily = await conn.fetchrow(
                    "SELECT turns, input_tokens, cost_pusd FROM usage_daily WHERE user_id = $1",
                    USER,
                )
                rows = await conn.fetchrow(
                    "SELECT count(*) AS n, sum(input_tokens) AS tin, sum(cost_pusd) AS c "
                    "FROM usage_ledger WHERE user_id = $1",
                    USER,
                )
            finally:
                await conn.close()
            assert daily["turns"] == rows["n"] == 18
            assert daily["input_tokens"] == rows["tin"] == sum(s["input_tokens"] for s in summaries)
            used = Decimal(daily["cost_pusd"]).scaleb(-12)
            assert daily["cost_pusd"] == rows["c"]
            assert abs(float(used) - sum(s["cost_usd"] for s in summaries)) < 1e-9

            async with httpx.AsyncClient() as http:
                # Both replicas report the same day from the shared ledger.
                views = [
                    (
                        await http.get(
                            f"{r.base}/api/observability/costs",
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    ).json()["total"]
                    for r in (a, b)
                ]
                assert views[0] == views[1] and Decimal(views[0]["cost_usd_decimal"]) == used

                # 2. An admin on replica A caps the day just above what is used…
                per_turn = used / 18
                limit = used + per_turn / 2
                r = await http.put(
                    f"{a.base}/api/budgets/users/{USER}",
                    json={"daily_usd": float(round(limit, 6))},
                    headers={"Authorization": f"Bearer {admin}"},
                )
                assert r.status_code == 200, r.text
            # …so the next settled turn on replica B pauses that session, naming the budget.
            sid = await b.create(token)
            async with VoiceClient.connect(b.ws(sid), token) as client:
                await client.wait_for("session_started", timeout=15)
                await client.send("text", text="One more, please")
                paused = await client.wait_for("session_paused", timeout=20)
                assert paused["reason"] == "budget_exhausted"
                assert paused["budget"]["budget"] == "daily_usd"
                await client.send("end")
                await client.wait_for("session_ended", timeout=20)
            # 3. And a new session of the exhausted user is refused on either replica (409,
            # naming the budget, before anything is created).
            async with httpx.AsyncClient() as http:
                for replica in (a, b):
                    refused = await http.post(
                        f"{replica.base}/live-sessions",
                        json={"mode": "test"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert refused.status_code == 409, refused.text
                    assert refused.json()["detail"]["code"] == "budget_exhausted"
                    assert "daily_usd" in refused.text
        finally:
            a.stop()
            b.stop()
