"""`/api/observability/health`: what works and what is degraded.

200 whenever the voice path can serve — the body says what is degraded: ledger writes failing
or overflowing, spans dropped, exports failing, Langfuse or the collector failing their checks
(`probes`) — and 503 only when it cannot: the database that holds the sessions does not answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from voicetrace.service.api.langfuse_api import langfuse_target
from voicetrace.service.api.probes import HealthProbes, ProbeReport
from voicetrace.service.voice.budget_policy import BudgetPolicy

router = APIRouter()

_DB_PROBE_TIMEOUT_S = 2.0


_HEALTH_EXAMPLE = {
    "status": "degraded",
    "degraded": [
        "ledger: 3 write failure(s), 12 turn(s) buffered",
        "langfuse auth: the API keys were refused (HTTP 401); check LANGFUSE_PUBLIC_KEY / "
        "LANGFUSE_SECRET_KEY",
    ],
    "service": {"live_sessions": 2},
    "database": {"ok": True, "latency_ms": 1.2},
    "ledger": {"buffered": 12, "overflow": 0, "write_failures": 3, "lag_s": 4.1},
    "exporter": {"spans_exported": 120, "spans_dropped": 0, "export_failures": 0},
    "langfuse": {
        "configured": True,
        "host": "https://cloud.langfuse.com",
        "ok": False,
        "health": {"ok": True, "latency_ms": 41.2, "detail": "OK 4.16.0"},
        "auth": {
            "ok": False,
            "latency_ms": 38.9,
            "detail": "the API keys were refused (HTTP 401); check LANGFUSE_PUBLIC_KEY / "
            "LANGFUSE_SECRET_KEY",
        },
        "age_s": 1.7,
    },
    "collector": {"configured": True, "ok": True, "latency_ms": 0.8, "detail": "HTTP 200"},
}


@router.get(
    "/health",
    summary="What works and what is degraded (service, database, ledger, exporter, Langfuse, "
    "collector)",
    description="200 while the voice path can serve — the body lists what is degraded — and "
    "503 only when it cannot (the sessions database does not answer). When configured, Langfuse "
    "(`/api/public/health`, then the keys on `/api/public/projects`) and the collector's "
    "health check are probed with short timeouts; their results are reused for "
    "`health_cache_s` (`age_s` says how old they are).",
    responses={
        200: {"content": {"application/json": {"example": _HEALTH_EXAMPLE}}},
        503: {"description": "The service cannot serve (database unreachable)."},
    },
)
async def health(request: Request) -> JSONResponse:
    deps = request.app.state.bridge_deps
    policy: BudgetPolicy | None = getattr(request.app.state, "budgets", None)
    degraded: list[str] = []
    database = await _probe_database(request)
    ledger: dict[str, Any] = policy.writer.health() if policy is not None else {"running": False}
    if ledger.get("overflow"):
        degraded.append(f"ledger: {ledger['overflow']} settled turn(s) lost to a full buffer")
    if ledger.get("buffered") and ledger.get("write_failures"):
        degraded.append(
            f"ledger: {ledger['write_failures']} write failure(s), "
            f"{ledger['buffered']} turn(s) buffered"
        )
    if not ledger.get("running"):
        degraded.append("ledger: writer not running")
    exporter = deps.telemetry.health()
    for key in ("spans_dropped", "emit_dropped", "export_failures", "tracer_errors"):
        if exporter.get(key):
            degraded.append(f"telemetry: {key}={exporter[key]}")
    probes = await _probes(request).report()
    degraded.extend(probes.degraded)
    serving = bool(database["ok"])
    if not serving:
        degraded.insert(0, "database: unreachable (no new sessions)")
    body = {
        "status": "ok" if not degraded else ("degraded" if serving else "unavailable"),
        "degraded": degraded,
        "service": {"live_sessions": len(deps.hub)},
        "database": database,
        "ledger": ledger,
        "exporter": exporter,
        "langfuse": {**probes.langfuse, **_age(probes)},
        "collector": probes.collector,
    }
    return JSONResponse(body, status_code=200 if serving else 503)


def _probes(request: Request) -> HealthProbes:
    """One set of probes per app (its cache lives there), built on first use."""
    probes: HealthProbes | None = getattr(request.app.state, "health_probes", None)
    if probes is None:
        settings = request.app.state.settings
        probes = HealthProbes.from_settings(settings, langfuse_target(settings))
        request.app.state.health_probes = probes
    return probes


def _age(report: ProbeReport) -> dict[str, float]:
    if not report.langfuse.get("configured"):
        return {}
    return {"age_s": round(time.monotonic() - report.checked_at, 1)}


async def _probe_database(request: Request) -> dict[str, Any]:
    policy: BudgetPolicy | None = getattr(request.app.state, "budgets", None)
    if policy is None:
        return {"ok": False, "error": "not started"}
    started = time.perf_counter()
    try:
        async with asyncio.timeout(_DB_PROBE_TIMEOUT_S):
            async with policy.store.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # the type only: a driver message may carry the URL
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
