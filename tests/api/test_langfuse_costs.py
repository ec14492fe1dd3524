"""`/api/observability/costs?source=langfuse` and `/costs/reconcile` on the real service.

The service exports its spans straight to a local Langfuse (tests/langfuse_server.py, which
enforces Langfuse's OTLP and Metrics API v2 rules) and reads them back through the `langfuse`
package: the ledger and Langfuse are compared on what was really exported.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from voicetrace.service.api.auth import mint_token
from voicetrace.service.api.langfuse_api import Window
from voicetrace.service.client import VoiceClient
from voicetrace.telemetry import PriceTable
from voicetrace.telemetry.setup import configure_telemetry

from tests.collector_health import closed_port
from tests.conftest import JWT_SECRET
from tests.langfuse_metrics import METRICS_V2_PATH
from tests.langfuse_server import HEALTH_PATH, PROJECTS_PATH, LangfuseServer
from tests.otlp_receiver import ReceivedSpan

COSTS = "/api/observability/costs"
RECONCILE = "/api/observability/costs/reconcile"
HEALTH = "/api/observability/health"
ADMIN = {"Authorization": f"Bearer {mint_token('ops', JWT_SECRET, roles=['admin'])}"}


@pytest.fixture
def langfuse() -> Iterator[LangfuseServer]:
    with LangfuseServer("pk-lf-costs", "sk-lf-costs") as lf:
        yield lf


@pytest.fixture
def exporting(langfuse: LangfuseServer) -> Iterator[Any]:
    """The service's telemetry, exporting straight to the local Langfuse."""
    with ExitStack() as stack:
        tel = configure_telemetry(
            "voicetrace-costs",
            env={"OTEL_TRACES_EXPORTER": "none", **langfuse.env()},
            pricing=PriceTable.load(None),
            usage_wait_s=0.5,
            export_timeout_s=1.0,
            schedule_delay_ms=50,
        )
        stack.callback(tel.shutdown, 2.0)
        yield tel


def reads(lf: LangfuseServer, **overrides: Any) -> dict[str, Any]:
    """Settings that point the service's Langfuse reads at `lf`."""
    return {
        "langfuse_public_key": lf.public_key,
        "langfuse_secret_key": lf.secret_key,
        "langfuse_host": lf.base_url,
        "health_probe_timeout_s": 0.5,
        "health_cache_s": 0,
        **overrides,
    }


async def talk(svc: Any, user: str, turns: int) -> dict[str, Any]:
    session = await svc.create_session(user)
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token(user)) as client:
        await client.wait_for("session_started")
        for i in range(1, turns + 1):
            await client.send("text", text=f"hello {i}")
            await client.wait_for("turn_complete", count=i, timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    return dict(ended["summary"])


def chat_spans(lf: LangfuseServer, user: str | None = None) -> list[Any]:
    return [
        s
        for s in lf.spans
        if s.attributes.get("gen_ai.operation.name") == "chat"
        and (user is None or s.attributes.get("user.id") == user)
    ]


async def settled(svc: Any, tel: Any, lf: LangfuseServer, chats: int) -> None:
    """The ledger written and every chat span in Langfuse."""
    for _ in range(200):
        body = (await svc.http.get(HEALTH)).json()
        if body["ledger"]["buffered"] == 0:
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(tel.force_flush, 5.0)
    for _ in range(100):
        if len(chat_spans(lf)) >= chats:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(chat_spans(lf))} chat spans in Langfuse, expected {chats}")


@pytest.mark.parametrize(("zone", "granularity"), [("UTC", "day"), ("Europe/Paris", "hour")])
async def test_langfuse_costs_equal_the_ledger_and_reconcile_to_zero_after_real_sessions(
    start_service, langfuse, exporting, zone, granularity
) -> None:
    svc = await start_service(telemetry=exporting, budget_timezone=zone, **reads(langfuse))
    await talk(svc, "alice", 2)
    await talk(svc, "bob", 1)
    await settled(svc, exporting, langfuse, chats=3)
    alice = {"Authorization": f"Bearer {svc.token('alice')}"}
    params = {"group_by": "day,model"}

    ledger = (await svc.http.get(COSTS, params=params, headers=alice)).json()
    r = await svc.http.get(COSTS, params={**params, "source": "langfuse"}, headers=alice)
    assert r.status_code == 200, r.text
    theirs = r.json()
    assert theirs["source"] == "langfuse" and theirs["scope"] == "own"
    (mine,) = ledger["groups"]
    (group,) = theirs["groups"]
    assert (group["day"], group["model"]) == (mine["day"], mine["model"])
    assert group["generations"] == mine["turns"] == 2
    assert group["input_tokens"] == mine["input_tokens"] > 0
    assert group["output_tokens"] == mine["output_tokens"]
    assert Decimal(group["cost_usd_decimal"]) == Decimal(mine["cost_usd_decimal"]) > 0
    # The user's own costs only: Langfuse was asked with a userId filter.
    asked = langfuse.metric_queries[-1]
    assert {"column": "userId", "operator": "=", "value": "alice", "type": "string"} in asked[
        "filters"
    ]
    # Langfuse buckets days in UTC: another zone's days are summed from its hours.
    assert asked["timeDimension"] == {"granularity": granularity}
    assert theirs["timezone"] == zone

    everyone = (await svc.http.get(COSTS, params={"source": "langfuse"}, headers=ADMIN)).json()
    assert everyone["scope"] == "all" and everyone["total"]["generations"] == 3
    bob = await svc.http.get(COSTS, params={"source": "langfuse", "user": "bob"}, headers=ADMIN)
    assert bob.json()["total"]["generations"] == 1

    csv = await svc.http.get(COSTS, params={**params, "source": "langfuse", "format": "csv"},
                             headers=alice)  # fmt: skip
    header, row = csv.text.splitlines()
    assert header.split(",")[-1] == "cost_usd"
    assert Decimal(row.split(",")[-1]) == Decimal(mine["cost_usd_decimal"])

    rec = (await svc.http.get(RECONCILE, headers=ADMIN)).json()
    assert rec["matches"] is True and rec["scope"] == "all"
    (line,) = rec["rows"]
    assert Decimal(line["difference_usd"]) == 0
    assert line["ledger_generations"] == line["langfuse_generations"] == 3
    assert langfuse.violations == []


@pytest.mark.parametrize(
    ("zone", "first_bucket"),
    [("Asia/Kolkata", "2026-11-30T18:00"), ("Asia/Kathmandu", "2026-11-30T18:00"),
     ("Europe/Paris", "2026-11-30T23:00"), ("UTC", "2026-12-01T00:00")],
)  # fmt: skip
def test_langfuses_first_hour_bucket_counts_for_the_windows_first_day(
    zone: str, first_bucket: str
) -> None:
    """Langfuse's hour buckets are whole UTC hours; a window opening at 18:30Z (India) gets
    its first observations in the 18:00Z bucket, which must not fall on the day before."""
    window = Window(date(2026, 12, 1), date(2026, 12, 2), ZoneInfo(zone))
    bucket = datetime.fromisoformat(first_bucket).replace(tzinfo=UTC)
    assert window.day_of(bucket) == date(2026, 12, 1)
    # Inside the window an hour that straddles a half-hour zone's midnight counts for the day
    # it starts in (docs/costs.md); the hour after it is the next day's.
    assert window.day_of(bucket + timedelta(hours=25)) == date(2026, 12, 2)
    assert window.day_of(bucket + timedelta(hours=49)) == date(2026, 12, 3)  # filtered out


async def test_reconcile_shows_the_cost_of_a_span_langfuse_lacks(
    start_service, langfuse, exporting
) -> None:
    svc = await start_service(telemetry=exporting, **reads(langfuse))
    await talk(svc, "carol", 2)
    await settled(svc, exporting, langfuse, chats=2)
    lost = chat_spans(langfuse, "carol")[0]
    langfuse.forget(lost.span_id)
    carol = {"Authorization": f"Bearer {svc.token('carol')}"}
    rec = (await svc.http.get(RECONCILE, headers=carol)).json()
    assert rec["matches"] is False and rec["scope"] == "own"
    (line,) = rec["rows"]
    assert (line["ledger_generations"], line["langfuse_generations"]) == (2, 1)
    lost_cost = Decimal(lost.attributes["voice.cost.usd_decimal"])
    assert Decimal(line["difference_usd"]) == lost_cost > 0
    assert Decimal(line["ledger_usd"]) - Decimal(line["langfuse_usd"]) == lost_cost
    peek = await svc.http.get(RECONCILE, params={"user": "alice"}, headers=carol)
    assert peek.status_code == 403


async def test_without_langfuse_configured_its_routes_say_so_and_health_is_ok(
    start_service,
) -> None:
    svc = await start_service()
    for url, params in ((COSTS, {"source": "langfuse"}), (RECONCILE, {})):
        r = await svc.http.get(url, params=params, headers=ADMIN)
        assert r.status_code == 409 and r.json()["detail"]["code"] == "langfuse_not_configured"
    health = (await svc.http.get(HEALTH)).json()
    assert health["status"] == "ok"
    assert health["langfuse"] == {"configured": False}
    assert health["collector"] == {"configured": False}


@pytest.mark.parametrize(
    ("failure", "status", "code", "degraded"),
    [
        ("refuse", 502, "langfuse_unreachable", "langfuse health: cannot reach"),
        ("hang", 504, "langfuse_timeout", "langfuse health: no answer within 0.5 s"),
        ("401", 502, "langfuse_auth", "langfuse auth: the API keys were refused (HTTP 401)"),
    ],
)
async def test_a_failing_langfuse_is_a_clear_error_on_costs_and_degraded_on_health(
    start_service, langfuse, failure, status, code, degraded
) -> None:
    overrides = reads(langfuse, langfuse_query_timeout_s=0.5)
    if failure == "refuse":
        overrides["langfuse_host"] = f"http://127.0.0.1:{closed_port()}"
    elif failure == "hang":
        for path in (HEALTH_PATH, PROJECTS_PATH, METRICS_V2_PATH):
            langfuse.hang[path] = 10.0
    else:
        overrides["langfuse_secret_key"] = "sk-lf-wrong"
    svc = await start_service(**overrides)
    began = time.monotonic()
    r = await svc.http.get(COSTS, params={"source": "langfuse"}, headers=ADMIN)
    assert time.monotonic() - began < 3.0  # bounded by the 0.5 s query timeout, never a hang
    assert r.status_code == status and r.json()["detail"]["code"] == code
    assert "sk-lf" not in r.text  # the secret never leaves

    began = time.monotonic()
    h = await svc.http.get(HEALTH)
    assert time.monotonic() - began < 3.0  # the probes are bounded by their 0.5 s timeout
    body = h.json()
    assert h.status_code == 200 and body["status"] == "degraded"
    assert any(d.startswith(degraded) for d in body["degraded"]), body["degraded"]
    assert body["langfuse"]["configured"] is True and body["langfuse"]["ok"] is False
    if failure == "401":  # Langfuse itself is up: only our keys are wrong
        assert body["langfuse"]["health"]["ok"] is True
        assert body["langfuse"]["health"]["detail"].startswith("OK")
    assert "sk-lf" not in h.text


async def test_health_reuses_its_langfuse_checks_for_the_cache_period(
    start_service, langfuse
) -> None:
    svc = await start_service(**reads(langfuse, health_cache_s=60))
    first = (await svc.http.get(HEALTH)).json()
    assert first["status"] == "ok" and first["langfuse"]["ok"] is True
    assert first["langfuse"]["auth"]["detail"] == "project voicetrace-test"
    for _ in range(5):
        assert (await svc.http.get(HEALTH)).json()["langfuse"]["ok"] is True
    assert len(langfuse.of(HEALTH_PATH)) == 1 and len(langfuse.of(PROJECTS_PATH)) == 1
    assert langfuse.violations == []


async def test_a_langfuse_without_the_v2_apis_is_a_502_that_says_how_to_turn_them_on(
    start_service, langfuse
) -> None:
    langfuse.v2_apis = False
    svc = await start_service(**reads(langfuse))
    r = await svc.http.get(RECONCILE, headers=ADMIN)
    assert r.status_code == 502
    detail = r.json()["detail"]
    assert detail["code"] == "langfuse_error"
    assert "HTTP 404" in detail["message"]
    assert "LANGFUSE_ENABLE_EVENTS_TABLE_V2_APIS" in detail["message"]


async def test_without_the_langfuse_package_the_routes_are_501_and_health_says_why(
    start_service, langfuse, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "langfuse.api", None)  # `import` now fails as if absent
    svc = await start_service(**reads(langfuse))
    r = await svc.http.get(COSTS, params={"source": "langfuse"}, headers=ADMIN)
    assert r.status_code == 501 and r.json()["detail"]["code"] == "langfuse_not_installed"
    body = (await svc.http.get(HEALTH)).json()
    assert "langfuse health: install voicetrace[langfuse] to read Langfuse" in body["degraded"]


def _hourly_generations(langfuse: LangfuseServer, first: datetime, hours: int) -> None:
    """One generation a minute past every hour from `first` on, as Langfuse would hold them."""
    for i in range(hours):
        start = (first + timedelta(hours=i, minutes=1)).astimezone(UTC)
        ns = int(start.timestamp() * 1e9)
        langfuse.spans.append(
            ReceivedSpan(
                name="chat gemini-x",
                trace_id=f"{i:032x}",
                span_id=f"{i:016x}",
                parent_span_id="",
                kind=3,
                start_ns=ns,
                end_ns=ns + 1_000_000,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "langfuse.observation.type": "generation",
                    "gen_ai.request.model": "gemini-x",
                    "langfuse.observation.cost_details": '{"total": 0.001}',
                    "langfuse.observation.usage_details": '{"input_text_tokens": 7, "total": 7}',
                    "user.id": "zoe",
                    "langfuse.environment": "development",
                },
                resource={},
                status_code=0,
                status_message="",
            )
        )


async def test_a_range_over_langfuses_row_limit_is_fetched_in_halves_and_sums_up(
    start_service, langfuse
) -> None:
    """Paris days are summed from Langfuse's hours: 42 days of hourly generations are 1008
    rows, over Langfuse's 1000-row maximum; the service splits the range instead of
    returning a short sum."""
    zone = ZoneInfo("Europe/Paris")
    first = datetime(2026, 10, 1, tzinfo=zone)
    hours = 42 * 24
    _hourly_generations(langfuse, first, hours)
    svc = await start_service(budget_timezone="Europe/Paris", **reads(langfuse))
    params = {"source": "langfuse", "group_by": "day", "from": "2026-10-01", "to": "2026-11-11"}
    r = await svc.http.get(COSTS, params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"]["generations"] == hours
    assert body["total"]["input_tokens"] == 7 * hours
    assert Decimal(body["total"]["cost_usd_decimal"]) == Decimal("0.001") * hours
    days = {g["day"]: g["generations"] for g in body["groups"]}
    assert len(days) == 42 and days["2026-10-25"] == 24  # the DST day still has its own hours
    assert len(langfuse.metric_queries) > 1  # split, every part under the limit


async def test_a_long_range_fetched_in_many_halves_is_bounded_in_time_as_a_whole(
    start_service, langfuse
) -> None:
    """Every query answers within the timeout, but 42 days of hours are over Langfuse's row
    limit, so the range is fetched again in halves: the timeout bounds the whole answer
    (not each query), then a clear 504."""
    _hourly_generations(langfuse, datetime(2026, 10, 1, tzinfo=ZoneInfo("Europe/Paris")), 42 * 24)
    langfuse.hang[METRICS_V2_PATH] = 0.6
    svc = await start_service(
        budget_timezone="Europe/Paris", langfuse_query_timeout_s=1.0, **reads(langfuse)
    )
    params = {"source": "langfuse", "from": "2026-10-01", "to": "2026-11-11"}
    began = time.monotonic()
    r = await svc.http.get(COSTS, params=params, headers=ADMIN)
    assert time.monotonic() - began < 1.8
    assert r.status_code == 504, r.text
    assert r.json()["detail"]["code"] == "langfuse_timeout"
    assert len(langfuse.of(METRICS_V2_PATH)) == 3  # the full range, then both halves
