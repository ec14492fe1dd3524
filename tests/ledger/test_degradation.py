"""With the OTLP backend refusing or hanging, sessions, the ledger, budgets and both
observability endpoints keep working; `/api/observability/health` says telemetry is degraded."""

from __future__ import annotations

import asyncio

import pytest
from voicetrace.service.client import VoiceClient

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
