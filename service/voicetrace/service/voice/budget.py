"""Per-session budgets, fed by the telemetry's settled turn summaries (the spans' own numbers).

A session may carry limits in its `budgets` (USD, audio minutes, camera and screen tokens). When
a turn's usage is settled the bridge adds the turn's cost, audio and image tokens by source; at
`warn_at` of a limit the client gets `budget_warning`, at 100 % the session pauses. A limit of 0
allows nothing; `None` is unlimited. Overshoot is bounded by one turn because the check runs at
every settled turn; streamed audio and frames are also projected while they last
(`StreamedAudio`, `StreamedFrames`). The user's daily
limits, across sessions and replicas, are `voice.budget_policy`'s (read from the usage ledger).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from voicetrace.service.sessions.schemas import Budgets
from voicetrace.telemetry import TurnSummary
from voicetrace.telemetry.frames import FrameSource

_MS_PER_MINUTE = Decimal(60_000)


class BudgetMetric(StrEnum):
    USD = "usd"
    AUDIO_MINUTES = "audio_minutes"
    VIDEO_TOKENS = "video_tokens"  # image tokens of camera frames
    SCREEN_TOKENS = "screen_tokens"  # image tokens of screen-share frames


class BudgetScope(StrEnum):
    SESSION = "session"  # this session's own limits (`Budgets.session_*`)
    DAILY = "daily"  # the user's day, across sessions and replicas (`voice.budget_policy`)


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    metric: BudgetMetric
    used: Decimal
    limit: Decimal
    warning: bool
    exhausted: bool
    scope: BudgetScope = BudgetScope.SESSION

    @property
    def ratio(self) -> Decimal:
        return self.used / self.limit if self.limit else Decimal(1)

    @property
    def name(self) -> str:
        """The budget's name as in `Budgets` (`daily_usd`, `session_audio_minutes`, …)."""
        return f"{self.scope.value}_{self.metric.value}"

    def urgency(self) -> tuple[bool, Decimal]:
        return self.exhausted, self.ratio

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.name,
            "scope": self.scope.value,
            "metric": self.metric.value,
            "used": float(self.used),
            "limit": float(self.limit),
            "ratio": round(float(self.ratio), 4),
        }


def most_urgent(*checks: BudgetCheck | None) -> BudgetCheck | None:
    """Exhausted before warning, then the highest utilisation."""
    found = [c for c in checks if c is not None]
    return max(found, key=BudgetCheck.urgency) if found else None


def session_limits(budgets: Budgets | None) -> dict[BudgetMetric, Decimal]:
    """The per-session limits the bridge enforces (`None` fields are unlimited)."""
    if budgets is None:
        return {}
    limits = {
        BudgetMetric.USD: budgets.session_usd,
        BudgetMetric.AUDIO_MINUTES: budgets.session_audio_minutes,
        BudgetMetric.VIDEO_TOKENS: budgets.session_video_tokens,
        BudgetMetric.SCREEN_TOKENS: budgets.session_screen_tokens,
    }
    return {m: Decimal(str(v)) for m, v in limits.items() if v is not None}


@dataclass
class BudgetTracker:
    """One session's usage so far against its limits (usage counts even without limits, so
    limits set later over REST see the whole session)."""

    limits: dict[BudgetMetric, Decimal]
    warn_at: Decimal = Decimal("0.8")
    used: dict[BudgetMetric, Decimal] = field(
        default_factory=lambda: {m: Decimal(0) for m in BudgetMetric}
    )
    _warned: set[BudgetMetric] = field(default_factory=set)

    @classmethod
    def for_budgets(cls, budgets: Budgets | None, warn_at: float = 0.8) -> BudgetTracker:
        return cls(session_limits(budgets), Decimal(str(warn_at)))

    def with_budgets(self, budgets: Budgets | None) -> BudgetTracker:
        """The same usage so far, under (possibly changed) limits."""
        limits = session_limits(budgets)
        warned = {m for m in self._warned if m in limits}
        return BudgetTracker(limits, self.warn_at, dict(self.used), warned)

    @property
    def exhausted(self) -> BudgetCheck | None:
        """The first limit that is used up, if any (what refuses a resume)."""
        for metric, limit in self.limits.items():
            if self.used[metric] >= limit:
                return BudgetCheck(metric, self.used[metric], limit, False, True)
        return None

    def projected(self, metric: BudgetMetric, extra: Decimal) -> BudgetCheck | None:
        """Would `extra` more of `metric` (streamed, not settled yet) use the limit up?"""
        limit = self.limits.get(metric)
        if limit is None:
            return None
        used = self.used[metric] + extra
        return BudgetCheck(metric, used, limit, False, True) if used >= limit else None

    def add_turn(self, turn: TurnSummary) -> BudgetCheck | None:
        """Account one settled turn; the most urgent check, if a threshold was crossed."""
        if turn.cost_usd is not None:
            self.used[BudgetMetric.USD] += turn.cost_usd
        audio_ms = Decimal(str(turn.audio_in_ms)) + Decimal(str(turn.audio_out_ms))
        self.used[BudgetMetric.AUDIO_MINUTES] += audio_ms / _MS_PER_MINUTE
        self.used[BudgetMetric.VIDEO_TOKENS] += turn.camera_tokens
        self.used[BudgetMetric.SCREEN_TOKENS] += turn.screen_tokens
        worst: BudgetCheck | None = None
        for metric, limit in self.limits.items():
            used = self.used[metric]
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


@dataclass
class StreamedAudio:
    """User audio streamed since the last settled turn, so a monologue is checked while it lasts
    (`every_s` seconds of it at a time) instead of only when its turn settles. The overshoot of
    an audio-minute budget is then at most `every_s` seconds plus what arrives during one check
    (≤ 1 s database read at ≤ `max_audio_speed`× real time)."""

    every_s: float = 5.0
    unsettled_s: float = 0.0
    _next_s: float = 5.0

    def add(self, seconds: float) -> bool:
        """Count `seconds`; True when a projection check is due."""
        self.unsettled_s += seconds
        if self.unsettled_s < self._next_s:
            return False
        self._next_s = self.unsettled_s + self.every_s
        return True

    def settled(self) -> None:
        """A turn settled: its audio is in the budgets now."""
        self.unsettled_s, self._next_s = 0.0, self.every_s

    @property
    def minutes(self) -> Decimal:
        return Decimal(str(self.unsettled_s)) / 60


FRAME_METRICS: Final[dict[FrameSource, BudgetMetric]] = {
    "camera": BudgetMetric.VIDEO_TOKENS,
    "screen": BudgetMetric.SCREEN_TOKENS,
}


@dataclass
class StreamedFrames:
    """Camera and screen frames forwarded since the last settled turn, so a long screen share is
    checked while it lasts: every `every` frames of a source, its unsettled frames are projected
    at `tokens_per_frame` (the session's media resolution). The overshoot of a camera or screen
    token budget is then at most `every - 1` frames plus those forwarded during one check (≤ 1 s
    database read at ≤ `max_video_fps`, after a burst of one second's worth) — see docs/costs.md."""

    tokens_per_frame: int
    every: int = 2
    unsettled: dict[FrameSource, int] = field(default_factory=lambda: {"camera": 0, "screen": 0})

    def add(self, source: FrameSource) -> bool:
        """Count one frame of `source`; True when a projection check is due."""
        self.unsettled[source] += 1
        return self.unsettled[source] % self.every == 0

    def settled(self) -> None:
        """A turn settled: its frames are in the budgets now (its image tokens by source)."""
        self.unsettled = {"camera": 0, "screen": 0}

    def tokens(self, source: FrameSource) -> Decimal:
        return Decimal(self.unsettled[source] * self.tokens_per_frame)
