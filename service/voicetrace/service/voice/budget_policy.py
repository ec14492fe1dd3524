"""`BudgetPolicy`: per-user daily limits, read from the usage ledger, shared by every replica.

A user's limit for a metric is the admin's per-user limit if one is set, else the settings
default (`VOICETRACE_DAILY_BUDGET_*`); a session's own `daily_*` budgets can only lower it
(a client may cap itself, never raise what an operator set). Usage is the ledger's daily row
(atomic increments, every replica's turns) plus what this process settled but has not written
yet (`LedgerWriter.pending`), so a slow or unreachable database never lets a user overrun: when
the read fails, the last value read is used with the pending usage on top.

`SessionAccounts` is one live session's view: it records each settled turn in the ledger
(synchronously, no I/O) and, after the turn, tells the bridge whether a daily threshold was
crossed. The check runs at every settled turn, so a day overshoots by at most the turns in
flight across replicas at the moment the limit is reached (one per live session of the user).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from voicetrace.service.ledger import LedgerEntry, LedgerStore, LedgerWriter, Usage
from voicetrace.service.ledger.entry import from_pico, to_pico
from voicetrace.service.ledger.store import UserLimits
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.schemas import Budgets, LiveSession
from voicetrace.service.settings import Settings
from voicetrace.service.voice.budget import BudgetCheck, BudgetMetric, BudgetScope
from voicetrace.telemetry import PriceTable, TurnSummary

log = logging.getLogger(__name__)

Limits = dict[BudgetMetric, Decimal]
_READ_TIMEOUT_S = 1.0  # a hanging database must not hold a turn's report for long


def _used(usage: Usage) -> Limits:
    return {
        BudgetMetric.USD: usage.cost_usd,
        BudgetMetric.AUDIO_MINUTES: usage.audio_minutes,
        BudgetMetric.VIDEO_TOKENS: Decimal(usage.camera_tokens),
        BudgetMetric.SCREEN_TOKENS: Decimal(usage.screen_tokens),
    }


def _limits(
    usd: Decimal | None,
    audio_minutes: float | None,
    video_tokens: int | None,
    screen_tokens: int | None,
) -> dict[BudgetMetric, Decimal | None]:
    return {
        BudgetMetric.USD: usd,
        BudgetMetric.AUDIO_MINUTES: None if audio_minutes is None else Decimal(str(audio_minutes)),
        BudgetMetric.VIDEO_TOKENS: None if video_tokens is None else Decimal(video_tokens),
        BudgetMetric.SCREEN_TOKENS: None if screen_tokens is None else Decimal(screen_tokens),
    }


def limits_from_json(
    usd: Decimal | None,
    audio_minutes: float | None,
    video_tokens: int | None,
    screen_tokens: int | None,
) -> UserLimits:
    """An admin's limits as the ledger stores them."""
    return UserLimits(
        None if usd is None else to_pico(usd), audio_minutes, video_tokens, screen_tokens
    )


@dataclass(frozen=True, slots=True)
class DailyStatus:
    """A user's day: the limits in force, what is used, and what is left (None: unlimited)."""

    day: date
    limits: dict[BudgetMetric, Decimal | None]
    used: Limits

    def remaining(self, metric: BudgetMetric) -> Decimal | None:
        limit = self.limits[metric]
        return None if limit is None else max(limit - self.used[metric], Decimal(0))

    def checks(self, warn_at: Decimal) -> list[BudgetCheck]:
        out = []
        for metric, limit in self.limits.items():
            if limit is None:
                continue
            used = self.used[metric]
            out.append(
                BudgetCheck(
                    metric,
                    used,
                    limit,
                    warning=limit > used >= warn_at * limit,
                    exhausted=used >= limit,
                    scope=BudgetScope.DAILY,
                )
            )
        return out

    def exhausted(self) -> BudgetCheck | None:
        return next((c for c in self.checks(Decimal(1)) if c.exhausted), None)


class BudgetExhausted(Exception):
    """A daily budget is used up: no new session, no resume (HTTP 409 naming the budget)."""

    def __init__(self, check: BudgetCheck) -> None:
        super().__init__(f"daily budget {check.name} is used up for today")
        self.check = check
        self.message = (
            f"daily budget {check.name} is used up for today "
            f"({float(check.used):g} of {float(check.limit):g}); it is available again when "
            "an admin raises the limit or the day rolls over"
        )


class BudgetPolicy:
    """The process's daily budgets and its ledger writer (one per app)."""

    def __init__(
        self,
        store: LedgerStore,
        writer: LedgerWriter,
        settings: Settings,
        pricing: PriceTable | None,
    ) -> None:
        self.store, self.writer, self.pricing = store, writer, pricing
        self.zone: ZoneInfo = settings.budget_zone
        self.warn_at = Decimal(str(settings.budget_warn_ratio))
        self._defaults = _limits(
            settings.daily_budget_usd,
            settings.daily_budget_audio_minutes,
            settings.daily_budget_video_tokens,
            settings.daily_budget_screen_tokens,
        )
        # The last values read (used while the database is unreachable). Bounded by the users
        # and days this process served: a new day forgets the old ones.
        self._last: dict[tuple[str, date], Usage] = {}
        self._overrides: dict[str, UserLimits] = {}

    @classmethod
    async def start(
        cls, db: Database, settings: Settings, pricing: PriceTable | None
    ) -> BudgetPolicy:
        """Create the ledger's tables (if missing) and start its background writer."""
        store = LedgerStore(db)
        await store.create_schema()
        writer = LedgerWriter(store, max_buffer=settings.ledger_buffer)
        writer.start()
        return cls(store, writer, settings, pricing)

    async def stop(self, timeout_s: float) -> None:
        """Write the buffered usage (bounded), then stop the writer."""
        await self.writer.stop(timeout_s)

    def today(self, now: datetime | None = None) -> date:
        return (now or datetime.now(UTC)).astimezone(self.zone).date()

    async def status(self, user_id: str, session_budgets: Budgets | None = None) -> DailyStatus:
        day = self.today()
        if any(d != day for _, d in self._last):
            self._last = {key: u for key, u in self._last.items() if key[1] == day}
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                override = await self.store.user_limits(user_id)
                stored, pending = await self._consistent_daily(user_id, day)
            self._last[(user_id, day)] = stored
            self._overrides[user_id] = override
        except Exception as exc:  # the database is down: decide from what is known
            log.warning("daily budget read failed (%s); using the last known", type(exc).__name__)
            override = self._overrides.get(user_id, UserLimits())
            stored = self._last.get((user_id, day), Usage())
            pending = self.writer.pending(user_id, day)
        total = Usage()
        total.add(stored)
        total.add(pending)
        return DailyStatus(day, self._limits_for(override, session_budgets), _used(total))

    async def _consistent_daily(self, user_id: str, day: date) -> tuple[Usage, Usage]:
        """The database's row and this process's unwritten usage, each entry in exactly one:
        read under the writer's lock (which a batch holds from its write to leaving pending)."""
        async with self.writer.lock:
            stored = await self.store.daily(user_id, day)
            pending = Usage()
            pending.add(self.writer.pending(user_id, day))
        return stored, pending

    def _limits_for(
        self, override: UserLimits, session: Budgets | None
    ) -> dict[BudgetMetric, Decimal | None]:
        admin = _limits(
            None if override.usd_pusd is None else from_pico(override.usd_pusd),
            override.audio_minutes,
            override.video_tokens,
            override.screen_tokens,
        )
        limits = {m: admin[m] if admin[m] is not None else self._defaults[m] for m in admin}
        if session is not None:
            own = _limits(
                session.daily_usd,
                session.daily_audio_minutes,
                session.daily_video_tokens,
                session.daily_screen_tokens,
            )
            for metric, cap in own.items():
                if cap is not None:
                    current = limits[metric]
                    limits[metric] = cap if current is None else min(cap, current)
        return limits

    async def ensure_available(self, user_id: str, session_budgets: Budgets | None = None) -> None:
        """Raise `BudgetExhausted` when one of the user's daily budgets is used up (for
        `POST /live-sessions` and `PUT …/resume`)."""
        check = (await self.status(user_id, session_budgets)).exhausted()
        if check is not None:
            raise BudgetExhausted(check)

    def for_session(self, session: LiveSession, model: str) -> SessionAccounts:
        priced = self.pricing.priced(model) if self.pricing is not None else None
        return SessionAccounts(
            self,
            session.id,
            session.user_id,
            model,
            price_model=priced[0].name if priced else None,
            cost_estimated=bool(priced and priced[1]),
            budgets=session.budgets,
        )


@dataclass
class SessionAccounts:
    """One live session's ledger entries and daily-budget warnings."""

    policy: BudgetPolicy
    session_id: str
    user_id: str
    model: str
    price_model: str | None
    cost_estimated: bool
    budgets: Budgets | None = None
    _warned: set[tuple[date, BudgetMetric]] = field(default_factory=set)
    _projecting: set[BudgetMetric] = field(default_factory=set)

    def record(self, summary: TurnSummary) -> None:
        """A turn's usage is settled: into the ledger's buffer (no I/O; never raises)."""
        try:
            entry = LedgerEntry.from_turn(
                summary,
                session_id=self.session_id,
                user_id=self.user_id,
                model=self.model,
                price_model=self.price_model,
                cost_estimated=self.cost_estimated,
                tz=self.policy.zone,
            )
            self.policy.writer.record(entry)
        except Exception:
            log.exception("could not record settled turn %s of %s", summary.number, self.session_id)

    async def check(self) -> BudgetCheck | None:
        """After a settled turn: the most urgent daily check not yet told to this session."""
        status = await self.policy.status(self.user_id, self.budgets)
        worst: BudgetCheck | None = None
        for check in status.checks(self.policy.warn_at):
            key = (status.day, check.metric)
            if not (check.exhausted or check.warning):
                continue
            if not check.exhausted and key in self._warned:
                continue  # warned once per metric and day
            if worst is None or check.urgency() > worst.urgency():
                worst = check
        if worst is not None and not worst.exhausted:
            self._warned.add((status.day, worst.metric))
        return worst

    async def exhausted(self) -> BudgetCheck | None:
        return (await self.policy.status(self.user_id, self.budgets)).exhausted()

    async def projected(self, metric: BudgetMetric, extra: Decimal) -> BudgetCheck | None:
        """Would what was streamed but not settled yet (audio minutes, or camera/screen tokens
        of the frames forwarded) use the day's `metric` up? One read per metric at a time: with
        a slow database a projection still in flight answers for the ones that come meanwhile
        (the next one after it sees everything streamed since), so they never queue up."""
        if metric in self._projecting:
            return None
        self._projecting.add(metric)
        try:
            status = await self.policy.status(self.user_id, self.budgets)
        finally:
            self._projecting.discard(metric)
        limit = status.limits[metric]
        if limit is None:
            return None
        used = status.used[metric] + extra
        if used < limit:
            return None
        return BudgetCheck(metric, used, limit, False, True, scope=BudgetScope.DAILY)
