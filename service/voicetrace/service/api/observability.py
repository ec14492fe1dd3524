"""`/api/observability/costs` (the usage ledger, aggregated) and `/api/observability/health`.

Costs come from the ledger's per-generation rows — the same numbers as the `chat` spans — grouped
by any of user, day (the budget time zone's) and model, as JSON or CSV. A user sees only their
own usage; a token with the `admin` role sees everyone's. Money is exact: `cost_usd_decimal` is
the Decimal as a string (as on the span's `voice.cost.usd_decimal`), `cost_usd` its float.

Health is 200 whenever the voice path can serve (the body says what is degraded: ledger writes
failing or overflowing, spans dropped, exports failing) and 503 only when it cannot: the
database that holds the sessions does not answer.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text
from voicetrace.service.api.errors import UNAUTHORIZED
from voicetrace.service.api.principal import Caller
from voicetrace.service.ledger.entry import Usage
from voicetrace.service.ledger.store import CostRow, GroupBy
from voicetrace.service.ledger.tables import TOKEN_COLUMNS
from voicetrace.service.voice.budget_policy import BudgetPolicy

router = APIRouter(prefix="/api/observability", tags=["observability"])

_DB_PROBE_TIMEOUT_S = 2.0
_CSV_TOKEN_FIELDS = TOKEN_COLUMNS  # the ledger's token columns, in its order


class CostTotals(BaseModel):
    turns: int = Field(description="Settled generations.")
    input_tokens: int
    output_tokens: int
    tokens: dict[str, int] = Field(description="By modality and source (disjoint).")
    audio_in_s: float
    audio_out_s: float
    cost_usd: float = Field(description="Rounded at this edge; see `cost_usd_decimal`.")
    cost_usd_decimal: str = Field(description="Exact USD, as on the chat spans.")


class CostGroup(CostTotals):
    user: str | None = None
    day: date | None = None
    model: str | None = None


class CostReport(BaseModel):
    source: Literal["ledger"] = "ledger"
    group_by: list[GroupBy]
    start: date | None = Field(default=None, alias="from")
    end: date | None = Field(default=None, alias="to")
    timezone: str
    scope: Literal["own", "all"] = Field(description="`all` for an admin token.")
    groups: list[CostGroup]
    total: CostTotals

    model_config = {"populate_by_name": True}


_COSTS_EXAMPLE = {
    "source": "ledger",
    "group_by": ["day", "model"],
    "from": "2026-12-01",
    "to": "2026-12-01",
    "timezone": "UTC",
    "scope": "own",
    "groups": [
        {
            "day": "2026-12-01",
            "model": "gemini-3.8-live",
            "turns": 3,
            "input_tokens": 912,
            "output_tokens": 240,
            "tokens": {"input_text": 312, "input_audio": 600, "output_audio": 240},
            "audio_in_s": 12.5,
            "audio_out_s": 9.6,
            "cost_usd": 0.00489,
            "cost_usd_decimal": "0.00489000",
        }
    ],
    "total": {
        "turns": 3,
        "input_tokens": 912,
        "output_tokens": 240,
        "tokens": {"input_text": 312, "input_audio": 600, "output_audio": 240},
        "audio_in_s": 12.5,
        "audio_out_s": 9.6,
        "cost_usd": 0.00489,
        "cost_usd_decimal": "0.00489000",
    },
}


def _totals(u: Usage) -> dict[str, Any]:
    cost = u.cost_usd
    return {
        "turns": u.turns,
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "tokens": {f: getattr(u, f) for f in _CSV_TOKEN_FIELDS if getattr(u, f)},
        "audio_in_s": u.audio_in_us / 1e6,
        "audio_out_s": u.audio_out_us / 1e6,
        "cost_usd": float(cost),
        "cost_usd_decimal": _plain(cost),
    }


def _plain(d: Decimal) -> str:
    """Fixed-point text (never `1E-9`), trailing zeros trimmed."""
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _parse_group_by(raw: str) -> list[GroupBy]:
    out = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            out.append(GroupBy(part))
        except ValueError:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                detail={
                    "code": "invalid_group_by",
                    "message": f"cannot group by {part!r}: use user, day and/or model",
                },
            ) from None
    return list(dict.fromkeys(out))


def _csv(groups: list[GroupBy], rows: list[CostRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            *(g.value for g in groups),
            "turns",
            "input_tokens",
            "output_tokens",
            *_CSV_TOKEN_FIELDS,
            "audio_in_s",
            "audio_out_s",
            "cost_usd",
        ]
    )
    for row in rows:
        u = row.usage
        w.writerow(
            [
                *(row.keys[g] for g in groups),
                u.turns,
                u.input_tokens,
                u.output_tokens,
                *(getattr(u, f) for f in _CSV_TOKEN_FIELDS),
                u.audio_in_us / 1e6,
                u.audio_out_us / 1e6,
                _plain(u.cost_usd),
            ]
        )
    return buf.getvalue()


def ledger_policy(request: Request) -> BudgetPolicy:
    policy: BudgetPolicy | None = getattr(request.app.state, "budgets", None)
    if policy is None:
        raise HTTPException(503, detail={"code": "starting", "message": "ledger not ready"})
    return policy


@router.get(
    "/costs",
    summary="Costs from the usage ledger, grouped by user, day and/or model (JSON or CSV)",
    description="Every settled generation counts once, with the numbers of its `chat` span. "
    "A user sees only their own usage, an `admin` token everyone's. `from`/`to` are inclusive "
    "days in the budget time zone. CSV with `format=csv` or `Accept: text/csv`.",
    response_model=CostReport,
    response_model_by_alias=True,
    responses={
        **UNAUTHORIZED,
        200: {
            "content": {
                "application/json": {"example": _COSTS_EXAMPLE},
                "text/csv": {
                    "example": "day,model,turns,input_tokens,output_tokens,input_text,...,"
                    "cost_usd\n2026-12-01,gemini-3.8-live,3,912,240,312,...,0.00489\n"
                },
            }
        },
        422: {"description": "Unknown `group_by` key, or `from` after `to`."},
        501: {"description": "`source=langfuse` is not available in this version."},
    },
)
async def costs(
    request: Request,
    caller: Caller,
    group_by: Annotated[
        str, Query(description="Comma-separated: user, day, model.", examples=["day,model"])
    ] = "",
    start: Annotated[date | None, Query(alias="from", description="First day.")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day.")] = None,
    source: Annotated[Literal["ledger", "langfuse"], Query()] = "ledger",
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    user: Annotated[
        str | None, Query(max_length=255, description="Admin only: one user's costs.")
    ] = None,
) -> Any:
    if source == "langfuse":
        raise HTTPException(
            status.HTTP_501_NOT_IMPLEMENTED,
            detail={
                "code": "not_implemented",
                "message": "source=langfuse (Langfuse Metrics API) is not implemented yet; "
                "the ledger is the billing source",
            },
        )
    groups = _parse_group_by(group_by)
    if start is not None and end is not None and start > end:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail={"code": "invalid_range", "message": "`from` is after `to`"},
        )
    if user is not None and not caller.is_admin and user != caller.user_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"code": "forbidden", "message": "only an admin sees other users' costs"},
        )
    policy = ledger_policy(request)
    only = user if caller.is_admin else caller.user_id
    rows = await policy.store.costs(groups, user_id=only, start=start, end=end)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        return Response(_csv(groups, rows), media_type="text/csv; charset=utf-8")
    total = Usage()
    for row in rows:
        total.add(row.usage)
    report = {
        "source": "ledger",
        "group_by": [g.value for g in groups],
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "timezone": policy.zone.key,
        "scope": "all" if caller.is_admin else "own",
        "groups": [{**{g.value: r.keys[g] for g in groups}, **_totals(r.usage)} for r in rows],
        "total": _totals(total),
    }
    return JSONResponse(report)


_HEALTH_EXAMPLE = {
    "status": "degraded",
    "degraded": ["ledger: 3 write failure(s), 12 turn(s) buffered"],
    "service": {"live_sessions": 2},
    "database": {"ok": True, "latency_ms": 1.2},
    "ledger": {"buffered": 12, "overflow": 0, "write_failures": 3, "lag_s": 4.1},
    "exporter": {"spans_exported": 120, "spans_dropped": 0, "export_failures": 0},
}


@router.get(
    "/health",
    summary="What works and what is degraded (service, database, ledger, exporter)",
    description="200 while the voice path can serve — the body lists what is degraded — and "
    "503 only when it cannot (the sessions database does not answer).",
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
    }
    return JSONResponse(body, status_code=200 if serving else 503)


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
