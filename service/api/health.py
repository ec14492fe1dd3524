"""`/health`: liveness plus the telemetry's own counters (drops are visible, never silent)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health and telemetry self-monitoring")
async def health(request: Request) -> dict[str, Any]:
    deps = request.app.state.bridge_deps
    return {
        "status": "ok",
        "live_sessions": len(deps.hub),
        "telemetry": deps.telemetry.health(),
    }
