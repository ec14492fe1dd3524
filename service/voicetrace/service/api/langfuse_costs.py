"""Costs as Langfuse counts them, and the ledger beside them (`/costs/reconcile`).

Langfuse's numbers come from the `chat` spans it ingested (Metrics API v2, `langfuse_api`);
the ledger's from the same settled turns through its own reliable path. When every span was
exported they agree to Langfuse's precision; a difference means spans were dropped, sampled out,
still queued, or priced differently. Days are the budget time zone's: Langfuse buckets by the
generation's start time, the ledger by its settlement, so a turn straddling midnight can land
on neighbouring days (the sums over both days still agree).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from fastapi import HTTPException, Request, status
from voicetrace.service.api.langfuse_api import (
    LangfuseCost,
    LangfuseError,
    LangfuseTarget,
    Window,
    fetch_costs,
    langfuse_target,
)
from voicetrace.service.ledger.store import CostRow, GroupBy
from voicetrace.service.settings import Settings

DEFAULT_DAYS = 31  # Langfuse needs a time range: without `from`, the last month
MATCH_TOLERANCE_USD = Decimal("1e-9")  # Langfuse returns costs as JSON floats


@dataclass
class Totals:
    generations: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def add(self, row: LangfuseCost) -> None:
        self.generations += row.generations
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.cost += row.cost

    def as_json(self) -> dict[str, Any]:
        return {
            "generations": self.generations,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": float(self.cost),
            "cost_usd_decimal": plain(self.cost),
        }


def plain(d: Decimal) -> str:
    """Fixed-point text (never `1E-9`), trailing zeros trimmed."""
    s = format(d, "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def configured_target(request: Request) -> LangfuseTarget:
    settings: Settings = request.app.state.settings
    target = langfuse_target(settings)
    if target is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "code": "langfuse_not_configured",
                "message": "Langfuse is not configured: set LANGFUSE_PUBLIC_KEY, "
                "LANGFUSE_SECRET_KEY (and LANGFUSE_HOST) to read costs from it",
            },
        )
    return target


def window(start: date | None, end: date | None, today: date, settings: Settings) -> Window:
    last = end or today
    first = start or (last - timedelta(days=DEFAULT_DAYS - 1))
    return Window(first, last, settings.budget_zone)


async def langfuse_costs(
    request: Request, span: Window, user_id: str | None
) -> list[tuple[date, LangfuseCost]]:
    """Langfuse's rows, each with its day in the budget time zone; errors as HTTP errors."""
    settings: Settings = request.app.state.settings
    target = configured_target(request)
    try:
        rows = await fetch_costs(target, span, user_id, settings.langfuse_query_timeout_s)
    except LangfuseError as exc:
        raise HTTPException(exc.status, detail=exc.detail()) from None
    dated = [(span.day_of(r.bucket), r) for r in rows]
    return [(day, r) for day, r in dated if span.start <= day <= span.end]


def grouped(
    rows: Iterable[tuple[date, LangfuseCost]], groups: list[GroupBy]
) -> tuple[list[dict[str, Any]], Totals]:
    by_key: dict[tuple[str, ...], Totals] = {}
    total = Totals()
    for day, row in rows:
        keys = {GroupBy.DAY: day.isoformat(), GroupBy.MODEL: row.model}
        by_key.setdefault(tuple(keys[g] for g in groups), Totals()).add(row)
        total.add(row)
    out = [
        {**{g.value: k for g, k in zip(groups, key, strict=True)}, **t.as_json()}
        for key, t in sorted(by_key.items())
    ]
    return out, total


def reconcile(
    ledger: list[CostRow], langfuse: Iterable[tuple[date, LangfuseCost]]
) -> list[dict[str, Any]]:
    """Per (day, model): the ledger's USD, Langfuse's USD and the difference (ledger − Langfuse)."""
    theirs: dict[tuple[str, str], Totals] = {}
    for when, row in langfuse:
        theirs.setdefault((when.isoformat(), row.model), Totals()).add(row)
    ours = {(r.keys[GroupBy.DAY], r.keys[GroupBy.MODEL]): r.usage for r in ledger}
    out = []
    for day, model in sorted(ours.keys() | theirs.keys()):
        usage, lf = ours.get((day, model)), theirs.get((day, model), Totals())
        mine = usage.cost_usd if usage is not None else Decimal(0)
        diff = mine - lf.cost
        out.append(
            {
                "day": day,
                "model": model,
                "ledger_generations": usage.turns if usage is not None else 0,
                "langfuse_generations": lf.generations,
                "ledger_usd": plain(mine),
                "langfuse_usd": plain(lf.cost),
                "difference_usd": plain(diff),
                "matches": abs(diff) <= MATCH_TOLERANCE_USD
                and (usage.turns if usage is not None else 0) == lf.generations,
            }
        )
    return out
