"""With the OTLP backend (and Langfuse, and the collector) refusing or hanging, sessions, the
ledger, budgets and both observability endpoints keep working; `/api/observability/health` says
what is degraded."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import pytest
from voicetrace.service.client import VoiceClient

from tests.collector_health import CollectorHealth, closed_port
from tests.langfuse_metrics import METRICS_V2_PATH
from tests.langfuse_server import HEALTH_PATH, PROJECTS_PATH, LangfuseServer
from tests.service.otlp_helpers import exporting_telemetry


@pytest.mark.timeout(40)
@pytest.mark.parametrize("mode", ["refuse", "hang"])
async def test_costs_budgets_and_health_work_with_the_exporter_down(start_service, mode) -> None:
    with exporting_telemetry(mode, hang_s=5.0, export_timeout_s=0.5) as exp:
        svc = await start_service(telemetry=exp.telemetry, flush_timeout_s=0.5)
        created = await svc.create_session("hana", budgets={"daily_usd": 0.000001})
        async with VoiceClient.connect(svc.ws_url(created["id"]), svc.token("hana")) as client:
            await client.wait_for("session_started")
            await client.send("text", text="Hello?")
            await client.wait_for("turn_complete")
            paused = await client.wait_for("session_paused", timeout=10)  # budgets still work
            await client.send("end")
            ended = await client.wait_for("session_ended", timeout=10)
        assert paused["budget"]["budget"] == "daily_usd"
        auth = {"Authorization": f"Bearer {svc.token('hana')}"}
        for _ in range(100):
            health = await svc.http.get("/api/observability/health")
            body = health.json()
            if body["exporter"]["export_failures"] or body["exporter"]["spans_dropped"]:
                break
            await asyncio.sleep(0.1)
        assert health.status_code == 200 and body["status"] == "degraded"
        assert any(d.startswith("telemetry:") for d in body["degraded"])
        costs = (await svc.http.get("/api/observability/costs", headers=auth)).json()
        assert costs["total"]["turns"] == 1
        assert costs["total"]["input_tokens"] == ended["summary"]["input_tokens"] > 0
        me = (await svc.http.get("/api/budgets/me", headers=auth)).json()
        assert me["daily_used"]["usd"] > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["refuse", "hang"])
async def test_everything_keeps_working_with_langfuse_the_collector_and_otlp_all_down(
    start_service, mode
) -> None:
    """Item 6 of the issue: the OTLP endpoint, Langfuse and the collector's health check all
    refusing (or all hanging): sessions, ledger costs, budgets and both observability endpoints
    answer; the Langfuse-backed costs fail fast with a clear code."""
    with ExitStack() as stack:
        exp = stack.enter_context(exporting_telemetry(mode, hang_s=5.0, export_timeout_s=0.5))
        if mode == "refuse":
            langfuse_host = f"http://127.0.0.1:{closed_port()}"
            collector_url = f"http://127.0.0.1:{closed_port()}/"
        else:
            lf = stack.enter_context(LangfuseServer())
            for path in (HEALTH_PATH, PROJECTS_PATH, METRICS_V2_PATH):
                lf.hang[path] = 10.0
            langfuse_host = lf.base_url
            collector = CollectorHealth(hang_s=10.0)
            stack.callback(collector.close)
            collector_url = collector.url
        svc = await start_service(
            telemetry=exp.telemetry,
            flush_timeout_s=0.5,
            langfuse_public_key="pk-lf-test",
            langfuse_secret_key="sk-lf-test",
            langfuse_host=langfuse_host,
            langfuse_query_timeout_s=0.5,
            collector_health_url=collector_url,
            health_probe_timeout_s=0.5,
            health_cache_s=0,
        )
        created = await svc.create_session("ivo")
        async with VoiceClient.connect(svc.ws_url(created["id"]), svc.token("ivo")) as client:
            await client.wait_for("session_started")
            await client.send("text", text="Hello?")
            await client.wait_for("turn_complete")
            await client.send("end")
            ended = await client.wait_for("session_ended", timeout=10)
        auth = {"Authorization": f"Bearer {svc.token('ivo')}"}
        began = time.monotonic()
        health = await svc.http.get("/api/observability/health")
        assert time.monotonic() - began < 3.0
        body = health.json()
        assert health.status_code == 200 and body["status"] == "degraded"
        assert any(d.startswith("langfuse health:") for d in body["degraded"])
        assert any(d.startswith("collector:") for d in body["degraded"])
        for _ in range(100):
            costs = (await svc.http.get("/api/observability/costs", headers=auth)).json()
            if costs["total"]["turns"]:
                break
            await asyncio.sleep(0.05)
        assert costs["total"]["input_tokens"] == ended["summary"]["input_tokens"] > 0
        me = await svc.http.get("/api/budgets/me", headers=auth)
        assert me.status_code == 200 and me.json()["daily_used"]["usd"] > 0
        began = time.monotonic()
        theirs = await svc.http.get(
            "/api/observability/costs", params={"source": "langfuse"}, headers=auth
        )
        assert time.monotonic() - began < 3.0
        want = "langfuse_unreachable" if mode == "refuse" else "langfuse_timeout"
        assert theirs.status_code in (502, 504) and theirs.json()["detail"]["code"] == want
