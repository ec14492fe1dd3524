"""Per-session budgets, fed by the telemetry's turn summaries (the spans' own numbers).

A session may carry limits in its `budgets` (USD and audio minutes). After each turn the bridge adds
the turn's cost and audio; at `warn_at` of a limit the client gets `budget_warning`, at 100 % the
session pauses. Overshoot is bounded by one turn because the check runs at every turn end.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    metric: str  # "usd" | "audio_minutes"
    used: float
    limit: float
    warning: bool
    exhausted: bool

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "used": round(self.used, 6),
            "limit": self.limit,
            "ratio": round(self.ratio, 4),
        }


class BudgetTracker:
    def __init__(self, limits: dict[str, float], warn_at: float = 0.8) -> None:
        self.limits = {k: float(v) for k, v in limits.items() if v is not None and float(v) > 0}
        self.warn_at = warn_at
        # Usage is counted even without limits, so limits set later (PATCH) see the whole session.
        self.used: dict[str, Decimal] = {"usd": Decimal(0), "audio_minutes": Decimal(0)}
        self._warned: set[str] = set()

    @classmethod
    def from_session(cls, session: Any, warn_at: float = 0.8) -> BudgetTracker:
        budgets = getattr(session, "budgets", None)
        if budgets is None:
            return cls({}, warn_at)
        if hasattr(budgets, "model_dump"):
            budgets = budgets.model_dump()
        limits = {
            "usd": budgets.get("session_usd"),
            "audio_minutes": budgets.get("session_audio_minutes"),
        }
        return cls({k: v for k, v in limits.items() if v is not None}, warn_at)

    def with_limits_of(self, session: Any) -> BudgetTracker:
        """The same usage so far, under the session's (possibly changed) limits."""
        fresh = BudgetTracker.from_session(session, self.warn_at)
        fresh.used = dict(self.used)
        fresh._warned = {m for m in self._warned if m in fresh.limits}
        return fresh

    def add_turn(self, turn: dict[str, Any]) -> BudgetCheck | None:
        """Account one finished turn; return the most urgent check, if any threshold was crossed."""
        if turn.get("cost_usd") is not None:
            self.used["usd"] += Decimal(str(turn["cost_usd"]))
        audio_ms = (turn.get("audio_in_ms") or 0) + (turn.get("audio_out_ms") or 0)
        self.used["audio_minutes"] += Decimal(str(audio_ms)) / Decimal(60_000)
        worst: BudgetCheck | None = None
        for metric, limit in self.limits.items():
            used = float(self.used[metric])
            exhausted = used >= limit
            warning = used >= self.warn_at * limit and metric not in self._warned
            if not (exhausted or warning):
                continue
            check = BudgetCheck(metric, used, limit, warning=warning, exhausted=exhausted)
            if worst is None or (check.exhausted, check.ratio) > (worst.exhausted, worst.ratio):
                worst = check
        if worst is not None and worst.warning:
            self._warned.add(worst.metric)
        return worst
