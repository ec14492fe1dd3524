"""`/api/observability/costs` and `/health`, and `/api/budgets`, on the real service: own vs
admin scope, JSON and CSV, clear errors, 200-while-degraded and 503-only-when-unable."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import uuid
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import text
from voicetrace.emulator import Scenario
from voicetrace.service.api.auth import mint_token
from voicetrace.service.client import VoiceClient
from voicetrace.service.sessions.db import Database

from tests.conftest import JWT_SECRET


async def _turns(svc, user: str, n: int = 2) -> dict:
    session = await svc.create_session(user)
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token(user)) as client:
        await client.wait_for("session_started")
        for i in range(1, n + 1):
            await client.send("text", text=f"hello {i}")
            await client.wait_for("turn_complete", count=i, timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    return ended["summary"]


async def _idle(svc) -> dict:
    for _ in range(200):
        health = (await svc.http.get("/api/observability/health")).json()
        if health["ledger"]["buffered"] == 0:
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(health)


COSTS = "/api/observability/costs"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = mint_token("ops", JWT_SECRET, roles=["admin"])


async def test_users_see_their_own_costs_and_an_admin_sees_all(start_service) -> None:
    svc = await start_service()
    alice, bob = await _turns(svc, "alice"), await _turns(svc, "bob", 1)
    await _idle(svc)
    own = (
        await svc.http.get(COSTS, params={"group_by": "user"}, headers=_auth(svc.token("alice")))
    ).json()
    assert own["scope"] == "own"
    assert [g["user"] for g in own["groups"]] == ["alice"]
    assert own["total"]["input_tokens"] == alice["input_tokens"]
    everyone = (
        await svc.http.get(
            "/api/observability/costs", params={"group_by": "user,model"}, headers=_auth(ADMIN)
        )
    ).json()
    assert everyone["scope"] == "all"
    assert [(g["user"], g["model"]) for g in everyone["groups"]] == [
        ("alice", svc.settings.model),
        ("bob", svc.settings.model),
    ]
    assert everyone["total"]["turns"] == 3
    just_bob = await svc.http.get(COSTS, params={"user": "bob"}, headers=_auth(ADMIN))
    assert just_bob.json()["total"]["turns"] == 1
    peek = await svc.http.get(COSTS, params={"user": "bob"}, headers=_auth(svc.token("alice")))
    assert peek.status_code == 403
    total = Decimal(everyone["total"]["cost_usd_decimal"])
    assert abs(float(total) - (alice["cost_usd"] + bob["cost_usd"])) < 1e-9


async def test_costs_as_csv_match_the_json(start_service) -> None:
    svc = await start_service()
    await _turns(svc, "carol")
    await _idle(svc)
    headers = _auth(svc.token("carol"))
    params = {"group_by": "day,model"}
    as_json = (await svc.http.get(COSTS, params=params, headers=headers)).json()
    r = await svc.http.get(
        "/api/observability/costs", params=params, headers={**headers, "Accept": "text/csv"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    (group,) = as_json["groups"]
    assert row["day"] == group["day"] and row["model"] == group["model"]
    assert int(row["input_tokens"]) == group["input_tokens"]
    assert Decimal(row["cost_usd"]) == Decimal(group["cost_usd_decimal"])
    r2 = await svc.http.get(
        "/api/observability/costs", params={**params, "format": "csv"}, headers=headers
    )
    assert r2.text == r.text


async def test_costs_filter_by_day_range(start_service) -> None:
    svc = await start_service()
    await _turns(svc, "erin", 1)
    await _idle(svc)
    headers = _auth(svc.token("erin"))
    r = await svc.http.get(
        COSTS, params={"from": "2000-01-01", "to": "2000-01-02"}, headers=headers
    )
    assert r.json()["groups"] == [] and r.json()["total"]["turns"] == 0


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"group_by": "user,planet"}, 422, "invalid_group_by"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, 422, "invalid_range"),
        ({"source": "langfuse"}, 409, "langfuse_not_configured"),
        ({"source": "langfuse", "group_by": "user"}, 422, "unsupported_group_by"),
    ],
)
async def test_bad_cost_queries_get_clear_errors(start_service, params, status, code) -> None:
    svc = await start_service()
    r = await svc.http.get("/api/observability/costs", params=params, headers=_auth(svc.token("x")))
    assert r.status_code == status and r.json()["detail"]["code"] == code


async def test_costs_need_a_token(start_service) -> None:
    svc = await start_service()
    assert (await svc.http.get("/api/observability/costs")).status_code == 401


async def test_a_ledger_outage_never_breaks_a_turn_and_health_says_degraded(start_service) -> None:
    svc = await start_service(scenario=Scenario())
    db = Database(f"sqlite+aiosqlite:///{svc.settings.sqlite_path}")
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_ledger RENAME TO usage_ledger_away"))
        summary = await _turns(svc, "frank", 2)  # the voice path does not notice
        assert summary["turns"] == 2 and summary["input_tokens"] > 0
        r = await svc.http.get("/api/observability/health")
        body = r.json()
        assert r.status_code == 200 and body["status"] == "degraded"
        assert body["ledger"]["buffered"] == 2 and body["ledger"]["write_failures"] >= 1
        assert any(d.startswith("ledger:") for d in body["degraded"])
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE usage_ledger_away RENAME TO usage_ledger"))
        await _idle(svc)
        costs = (
            await svc.http.get("/api/observability/costs", headers=_auth(svc.token("frank")))
        ).json()
        assert costs["total"]["input_tokens"] == summary["input_tokens"]  # nothing lost
        assert (await svc.http.get("/api/observability/health")).json()["status"] == "ok"
    finally:
        await db.dispose()


async def test_health_is_503_only_when_the_database_is_gone(start_service) -> None:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    name = f"vt_health_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        svc = await start_service(database_url=url.rsplit("/", 1)[0] + "/" + name)
        ok = await svc.http.get("/api/observability/health")
        assert ok.status_code == 200 and ok.json()["database"]["ok"] is True
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        gone = await svc.http.get("/api/observability/health")
        assert gone.status_code == 503
        assert gone.json()["status"] == "unavailable"
        assert gone.json()["database"]["ok"] is False
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_admin_sets_a_users_daily_limit_and_the_user_sees_what_remains(
    start_service,
) -> None:
    svc = await start_service(daily_budget_audio_minutes=30.0)
    me = (await svc.http.get("/api/budgets/me", headers=_auth(svc.token("gina")))).json()
    assert me["daily_budget_remaining"] == {
        "usd": None,
        "audioMin": 30.0,
        "videoTokens": None,
        "screenTokens": None,
    }
    body = {"daily_usd": 1.5, "daily_screen_tokens": 1000}
    refused = await svc.http.put(
        "/api/budgets/users/gina", json=body, headers=_auth(svc.token("gina"))
    )
    assert refused.status_code == 403 and refused.json()["detail"]["code"] == "forbidden"
    set_ = await svc.http.put("/api/budgets/users/gina", json=body, headers=_auth(ADMIN))
    assert set_.status_code == 200, set_.text
    await _turns(svc, "gina", 1)
    await _idle(svc)
    me = (await svc.http.get("/api/budgets/me", headers=_auth(svc.token("gina")))).json()
    remaining = me["daily_budget_remaining"]
    assert 0 < remaining["usd"] < 1.5 and remaining["screenTokens"] == 1000
    assert remaining["audioMin"] == pytest.approx(30.0 - me["audio_minutes_used"])
    bad = await svc.http.put(
        "/api/budgets/users/gina", json={"daily_usd": -1}, headers=_auth(ADMIN)
    )
    assert bad.status_code == 422


async def test_the_endpoints_are_documented_with_examples(start_service) -> None:
    svc = await start_service()
    spec = (await svc.http.get("/openapi.json")).json()
    costs = spec["paths"]["/api/observability/costs"]["get"]
    assert "example" in costs["responses"]["200"]["content"]["application/json"]
    assert "text/csv" in costs["responses"]["200"]["content"]
    assert {"409", "502", "504"} <= costs["responses"].keys()
    health = spec["paths"]["/api/observability/health"]["get"]
    assert "503" in health["responses"]
    example = health["responses"]["200"]["content"]["application/json"]["example"]
    assert {"langfuse", "collector"} <= example.keys()
    reconcile = spec["paths"]["/api/observability/costs/reconcile"]["get"]
    rows = reconcile["responses"]["200"]["content"]["application/json"]["example"]["rows"]
    assert {"ledger_usd", "langfuse_usd", "difference_usd"} <= rows[0].keys()
    assert {"409", "502", "504"} <= reconcile["responses"].keys()
    assert "put" in spec["paths"]["/api/budgets/users/{user_id}"]


async def test_an_exhausted_daily_budget_is_a_409_naming_it(start_service) -> None:
    """What `POST /live-sessions` and `PUT …/resume` raise once they call
    `BudgetPolicy.ensure_available` (the app's handler turns it into the response)."""
    svc = await start_service(daily_budget_usd=0)
    app = svc.server.app

    async def probe(user: str) -> dict:
        await app.state.budgets.ensure_available(user)
        return {"ok": True}

    app.add_api_route("/probe/{user}", probe, methods=["POST"])
    r = await svc.http.post("/probe/ivan")
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail["code"] == "budget_exhausted" and "daily_usd" in detail["message"]
    assert detail["budget"]["budget"] == "daily_usd"
