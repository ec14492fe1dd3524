"""`/health` (liveness plus the telemetry's own counters) and `/metrics` (Prometheus scrape).

Drops and export failures are on `/health` so a broken telemetry backend is visible, never silent.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health and telemetry self-monitoring")
async def health(request: Request) -> dict[str, Any]:
    deps = request.app.state.bridge_deps
    return {
        "status": "ok",
        # Which replica answered: REST control of a session goes to its `owner_instance`.
        "instance_id": request.app.state.store.instance_id,
        "live_sessions": len(deps.hub),
        "telemetry": deps.telemetry.health(),
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics (when OTEL_METRICS_EXPORTER includes prometheus)",
    response_class=Response,
    responses={404: {"description": "Prometheus export is off"}},
)
async def metrics() -> Response:
    exporters = os.environ.get("OTEL_METRICS_EXPORTER", "")
    if "prometheus" not in (e.strip() for e in exporters.split(",")):
        raise HTTPException(404, "Prometheus metrics are off: set OTEL_METRICS_EXPORTER=prometheus")
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    except ImportError:  # pragma: no cover - the `prometheus` extra is not installed
        raise HTTPException(404, "install voicetrace[prometheus] for /metrics") from None
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
