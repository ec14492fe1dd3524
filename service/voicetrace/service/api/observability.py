"""`/api/observability/costs` (the usage ledger, aggregated) and `/costs/reconcile`.

Costs come from the ledger's per-generation rows — the same numbers as the `chat` spans — grouped
by any of user, day (the budget time zone's) and model, as JSON or CSV. A user sees only their
own usage; a token with the `admin` role sees everyone's. Money is exact: `cost_usd_decimal` is
the Decimal as a string (as on the span's `voice.cost.usd_decimal`), `cost_usd` its float.

`source=langfuse` reads the same costs from Langfuse's Metrics API v2 and `/costs/reconcile`
puts the two side by side (`langfuse_costs`): 409 when Langfuse is not configured, 502/504 with a
code when it refuses, rejects or hangs — the ledger routes never depend on it. `/health` is in
`observability_health`, on this router.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from voicetrace.service.api import langfuse_costs as lf
from voicetrace.service.api import observability_health
from voicetrace.service.api.auth import Principal
from voicetrace.service.api.errors import UNAUTHORIZED
from voicetrace.service.api.principal import Caller
from voicetrace.service.ledger.entry import Usage
from voicetrace.service.ledger.store import CostRow, GroupBy
from voicetrace.service.ledger.tables import TOKEN_COLUMNS
from voicetrace.service.voice.budget_policy import BudgetPolicy

router = APIRouter(prefix="/api/observability", tags=["observability"])

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
        "cost_usd_decimal": lf.plain(cost),
    }


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
                lf.plain(u.cost_usd),
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
    "days in the budget time zone. CSV with `format=csv` or `Accept: text/csv`. "
    "`source=langfuse` asks Langfuse's Metrics API v2 instead (generations, tokens and cost "
    "by day and/or model; the last 31 days without `from`).",
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
        422: {
            "description": "Unknown `group_by` key (or `user` with source=langfuse), or "
            "`from` after `to`."
        },
        409: {"description": "`source=langfuse` but Langfuse is not configured."},
        501: {"description": "`source=langfuse` but the `langfuse` package is not installed."},
        502: {"description": "Langfuse refused the keys, rejected the query or is unreachable."},
        504: {"description": "Langfuse did not answer within `langfuse_query_timeout_s`."},
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
    source: Annotated[
        Literal["ledger", "langfuse"],
        Query(description="`langfuse`: Langfuse's Metrics API v2 (day/model groups only)."),
    ] = "ledger",
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    user: Annotated[
        str | None, Query(max_length=255, description="Admin only: one user's costs.")
    ] = None,
) -> Any:
    groups = _parse_group_by(group_by)
    only = _scope(caller, user, start, end)
    policy = ledger_policy(request)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if source == "langfuse":
        return await _langfuse_report(request, caller, policy, groups, start, end, only, wants_csv)
    rows = await policy.store.costs(groups, user_id=only, start=start, end=end)
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


def _scope(caller: Principal, user: str | None, start: date | None, end: date | None) -> str | None:
    """The user whose costs these are (None: everyone, for an admin); 403/422 otherwise."""
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
    return user if caller.is_admin else str(caller.user_id)


async def _langfuse_report(
    request: Request,
    caller: Principal,
    policy: BudgetPolicy,
    groups: list[GroupBy],
    start: date | None,
    end: date | None,
    only: str | None,
    wants_csv: bool,
) -> Response:
    if GroupBy.USER in groups:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail={
                "code": "unsupported_group_by",
                "message": "Langfuse cannot group by user (a high-cardinality field): "
                "group by day and/or model, and filter with `user=`",
            },
        )
    span = lf.window(start, end, policy.today(), request.app.state.settings)
    rows, total = lf.grouped(await lf.langfuse_costs(request, span, only), groups)
    if wants_csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        fields = ["generations", "input_tokens", "output_tokens", "cost_usd_decimal"]
        w.writerow([*(g.value for g in groups), *fields[:-1], "cost_usd"])
        for row in rows:
            w.writerow([*(row[g.value] for g in groups), *(row[f] for f in fields)])
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
    return JSONResponse(
        {
            "source": "langfuse",
            "group_by": [g.value for g in groups],
            "from": span.start.isoformat(),
            "to": span.end.isoformat(),
            "timezone": span.zone.key,
            "scope": "all" if only is None else "own" if only == caller.user_id else "user",
            "groups": rows,
            "total": total.as_json(),
        }
    )


_RECONCILE_EXAMPLE = {
    "from": "2026-12-01",
    "to": "2026-12-01",
    "timezone": "UTC",
    "scope": "all",
    "matches": False,
    "rows": [
        {
            "day": "2026-12-01",
            "model": "gemini-3.8-live",
            "ledger_generations": 3,
            "langfuse_generations": 2,
            "ledger_usd": "0.00489",
            "langfuse_usd": "0.00326",
            "difference_usd": "0.00163",
            "matches": False,
        }
    ],
}


@router.get(
    "/costs/reconcile",
    summary="Ledger vs Langfuse, per day and model, with the difference",
    description="The ledger's cost of each day and model next to what Langfuse's Metrics API v2 "
    "counts from the exported `chat` spans; `difference_usd` is ledger − Langfuse. A user "
    "reconciles their own costs, an admin everyone's (or one `user`). Days are the budget "
    "time zone's; without `from`, the last 31 days.",
    responses={
        **UNAUTHORIZED,
        200: {"content": {"application/json": {"example": _RECONCILE_EXAMPLE}}},
        409: {"description": "Langfuse is not configured (`langfuse_not_configured`)."},
        501: {"description": "The `langfuse` package is not installed."},
        502: {"description": "Langfuse refused, rejected or cannot be reached (the code says)."},
        504: {"description": "Langfuse did not answer in time (`langfuse_timeout`)."},
    },
)
async def reconcile(
    request: Request,
    caller: Caller,
    start: Annotated[date | None, Query(alias="from", description="First day.")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day.")] = None,
    user: Annotated[
        str | None, Query(max_length=255, description="Admin only: one user's costs.")
    ] = None,
) -> JSONResponse:
    only = _scope(caller, user, start, end)
    policy = ledger_policy(request)
    span = lf.window(start, end, policy.today(), request.app.state.settings)
    theirs = await lf.langfuse_costs(request, span, only)
    ours = await policy.store.costs(
        [GroupBy.DAY, GroupBy.MODEL], user_id=only, start=span.start, end=span.end
    )
    rows = lf.reconcile(ours, theirs)
    return JSONResponse(
        {
            "from": span.start.isoformat(),
            "to": span.end.isoformat(),
            "timezone": span.zone.key,
            "scope": "all" if only is None else "own" if only == caller.user_id else "user",
            "matches": all(r["matches"] for r in rows),
            "rows": rows,
        }
    )


# `/health` lives in observability_health (one module per job), on this same router.
router.include_router(observability_health.router)
