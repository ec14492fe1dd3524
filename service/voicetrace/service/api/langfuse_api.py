"""What the service reads from Langfuse's public API: costs (Metrics API v2), health, auth.

Through the `langfuse` package's async API client (the optional `langfuse` extra, imported
lazily: without it, `source=langfuse` is a clear 501). Every call has a deadline — the client's
own HTTP timeout, no retries, and an `asyncio.timeout` around it — so Langfuse refusing,
hanging or rejecting the keys is an error with a code, never a stuck request:
502 `langfuse_unreachable` / `langfuse_auth` / `langfuse_rejected` / `langfuse_error`,
504 `langfuse_timeout`.

The costs query is the one Langfuse's own dashboard runs for "cost by model"
(web/src/features/dashboard/components/ModelUsageChart.tsx): the `observations` view, filtered
to `type = GENERATION`, grouped by `providedModelName` with a `timeDimension`. Langfuse names a
metric's column `<aggregation>_<measure>` (queryBuilder.ts `buildOuterMetricsPart`:
`sum_totalCost`, `count_count`) and the time bucket `time_dimension` (a `YYYY-MM-DD` date for
`day`, an ISO datetime for `hour`). ClickHouse quotes 64-bit integers in JSON, so token sums and
counts may arrive as strings. An explicit `orderBy` turns off Langfuse's `WITH FILL`, which
would otherwise add an all-zero row (model `""`) for every empty bucket.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from voicetrace.service.settings import Settings

LANGFUSE_DEFAULT_HOST = "https://cloud.langfuse.com"
ROW_LIMIT = 1000  # Langfuse's maximum `config.row_limit` (the default is 100)
_MESSAGE_CHARS = 300
Granularity = Literal["day", "hour"]
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/GMT", "GMT", "Zulu"})
T = TypeVar("T")


class LangfuseError(Exception):
    """Langfuse could not answer: the HTTP status and body our API gives instead."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def detail(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class LangfuseTarget:
    """Where and as whom to read: the same LANGFUSE_* variables the direct export uses."""

    host: str
    public_key: str
    secret_key: str
    environment: str  # as Langfuse stores it: our spans' `langfuse.environment`, normalised

    def __repr__(self) -> str:  # never the secret
        return f"LangfuseTarget({self.host!r}, {self.public_key!r})"


def langfuse_target(settings: Settings) -> LangfuseTarget | None:
    """The configured Langfuse project, or None when either key is missing."""
    secret = settings.langfuse_secret_key
    if not settings.langfuse_public_key or secret is None or not secret.get_secret_value():
        return None
    host = (settings.langfuse_host or LANGFUSE_DEFAULT_HOST).rstrip("/")
    return LangfuseTarget(
        host, settings.langfuse_public_key, secret.get_secret_value(), _environment(settings)
    )


def _environment(settings: Settings) -> str:
    """Langfuse lower-cases the environment and keeps `[a-z0-9-_]` (else `default`)."""
    value = settings.environment.strip().lower()
    ok = value and len(value) <= 40 and all(c.isalnum() or c in "-_" for c in value)
    return value if ok else "default"


@dataclass(frozen=True)
class LangfuseCost:
    """One row of the costs query: a time bucket and model, with Langfuse's sums."""

    bucket: datetime  # start of the bucket, UTC
    model: str
    generations: int
    input_tokens: int
    output_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class Window:
    """Inclusive days in the budget time zone, as the instants Langfuse filters on."""

    start: date
    end: date
    zone: ZoneInfo

    @property
    def granularity(self) -> Granularity:
        # Langfuse buckets days in UTC; a day of another zone is summed from its hours.
        return "day" if self.zone.key in _UTC_ZONES else "hour"

    def bounds(self) -> tuple[str, str]:
        first = datetime.combine(self.start, datetime.min.time(), self.zone).astimezone(UTC)
        after = datetime.combine(self.end + timedelta(days=1), datetime.min.time(), self.zone)
        last = after.astimezone(UTC) - timedelta(milliseconds=1)  # Langfuse's `<=` bound
        return _iso(first), _iso(last)

    def day_of(self, bucket: datetime) -> date:
        """The budget-zone day of a Langfuse time bucket. Langfuse's buckets are whole UTC
        hours: in a zone with a half-hour offset the window's first bucket starts before the
        window (its observations are all inside it, the query filters on the instant), so it
        counts from the window's start."""
        first = datetime.combine(self.start, datetime.min.time(), self.zone)
        return max(bucket, first).astimezone(self.zone).date()

    def halves(self) -> tuple[Window, Window] | None:
        days = (self.end - self.start).days
        if days < 1:
            return None
        middle = self.start + timedelta(days=days // 2)
        return Window(self.start, middle, self.zone), Window(
            middle + timedelta(days=1), self.end, self.zone
        )


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


_METRICS = (("totalCost", "sum"), ("inputTokens", "sum"), ("outputTokens", "sum"))


def costs_query(window: Window, environment: str, user_id: str | None) -> dict[str, Any]:
    """The Metrics API v2 query: generations' cost and tokens per time bucket and model."""
    filters: list[dict[str, Any]] = [
        {"column": "type", "operator": "=", "value": "GENERATION", "type": "string"},
        {"column": "environment", "operator": "=", "value": environment, "type": "string"},
    ]
    if user_id is not None:
        # userId is high-cardinality: Langfuse refuses it as a dimension, not as a filter.
        filters.append({"column": "userId", "operator": "=", "value": user_id, "type": "string"})
    start, end = window.bounds()
    return {
        "view": "observations",
        "metrics": [
            *({"measure": m, "aggregation": a} for m, a in _METRICS),
            {"measure": "count", "aggregation": "count"},
        ],
        "dimensions": [{"field": "providedModelName"}],
        "filters": filters,
        "timeDimension": {"granularity": window.granularity},
        "fromTimestamp": start,
        "toTimestamp": end,
        "orderBy": [
            {"field": "time_dimension", "direction": "asc"},
            {"field": "providedModelName", "direction": "asc"},
        ],
        "config": {"row_limit": ROW_LIMIT},
    }


def parse_costs(rows: list[dict[str, Any]]) -> list[LangfuseCost]:
    if len(rows) >= ROW_LIMIT:
        raise LangfuseError(
            502,
            "langfuse_truncated",
            f"Langfuse returned its maximum of {ROW_LIMIT} rows for one day",
        )
    out = []
    try:
        for row in rows:
            count = int(row.get("count_count") or 0)
            model = str(row.get("providedModelName") or "")
            if not count and not model:
                continue  # a gap-filling row (WITH FILL), not data
            out.append(
                LangfuseCost(
                    bucket=_bucket(str(row["time_dimension"])),
                    model=model,
                    generations=count,
                    input_tokens=int(row.get("sum_inputTokens") or 0),
                    output_tokens=int(row.get("sum_outputTokens") or 0),
                    cost=_money(row.get("sum_totalCost")),
                )
            )
    except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise LangfuseError(
            502, "langfuse_bad_response", f"unexpected Metrics API row ({type(exc).__name__})"
        ) from None
    return out


def _bucket(raw: str) -> datetime:
    if len(raw) == 10:  # a ClickHouse Date: the UTC day
        return datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
    parsed = datetime.fromisoformat(raw.replace(" ", "T"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _money(value: Any) -> Decimal:
    """A float from JSON, as the decimal it printed as, at Langfuse's 12 decimal places."""
    if value is None:
        return Decimal(0)
    return Decimal(str(value)).quantize(Decimal("1e-12"))


# -- calls ------------------------------------------------------------------------------------


async def _call(
    target: LangfuseTarget, timeout_s: float, what: str, op: Callable[[Any, Any], Awaitable[T]]
) -> T:
    """Run `op(api, request_options)` against Langfuse within `timeout_s`, errors translated."""
    try:
        from langfuse.api import AsyncLangfuseAPI
    except ImportError:
        raise LangfuseError(
            501, "langfuse_not_installed", "install voicetrace[langfuse] to read Langfuse"
        ) from None
    import httpx

    options = {"max_retries": 0, "timeout_in_seconds": timeout_s}
    try:
        async with asyncio.timeout(timeout_s + 0.25):
            async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http:
                api = AsyncLangfuseAPI(
                    base_url=target.host,
                    username=target.public_key,
                    password=target.secret_key,
                    x_langfuse_public_key=target.public_key,
                    x_langfuse_sdk_name="voicetrace",
                    timeout=timeout_s,
                    httpx_client=http,
                )
                return await op(api, options)
    except (TimeoutError, httpx.TimeoutException):
        raise LangfuseError(
            504, "langfuse_timeout", f"Langfuse {what}: no answer within {timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise LangfuseError(
            502,
            "langfuse_unreachable",
            f"Langfuse {what}: cannot reach {target.host} ({type(exc).__name__})",
        ) from None
    except LangfuseError:
        raise
    except Exception as exc:
        raise _api_error(exc, what) from None


def _api_error(exc: Exception, what: str) -> LangfuseError:
    status = getattr(exc, "status_code", None)  # the package's ApiError and its subclasses
    if status in (401, 403):
        return LangfuseError(
            502,
            "langfuse_auth",
            f"Langfuse {what}: the API keys were refused (HTTP {status}); "
            "check LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY",
        )
    if status == 400:
        body = getattr(exc, "body", None)
        said = body.get("message") if isinstance(body, dict) else None
        return LangfuseError(
            502,
            "langfuse_rejected",
            f"Langfuse {what}: query rejected (HTTP 400): {str(said)[:_MESSAGE_CHARS]}",
        )
    if status is not None:
        # Self-hosted Langfuse serves the v2 APIs only with LANGFUSE_ENABLE_EVENTS_TABLE_V2_APIS
        # (web/src/pages/api/public/v2/metrics.ts); otherwise a 404.
        hint = (
            " (Metrics API v2: Langfuse Cloud, or v4+ with "
            "LANGFUSE_ENABLE_EVENTS_TABLE_V2_APIS=true)"
            if status == 404
            else ""
        )
        return LangfuseError(502, "langfuse_error", f"Langfuse {what}: HTTP {status}{hint}")
    return LangfuseError(
        502, "langfuse_bad_response", f"Langfuse {what}: unexpected answer ({type(exc).__name__})"
    )


async def fetch_costs(
    target: LangfuseTarget, window: Window, user_id: str | None, timeout_s: float
) -> list[LangfuseCost]:
    """Generations' cost and tokens in `window`, from Langfuse's Metrics API v2. `timeout_s`
    bounds the whole answer, however many queries a window over Langfuse's row limit takes."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch_costs(target, window, user_id, timeout_s)
    except TimeoutError:
        raise LangfuseError(
            504, "langfuse_timeout", f"Langfuse metrics: no full answer within {timeout_s:g} s"
        ) from None


async def _fetch_costs(
    target: LangfuseTarget, window: Window, user_id: str | None, timeout_s: float
) -> list[LangfuseCost]:
    query = json.dumps(costs_query(window, target.environment, user_id), separators=(",", ":"))

    async def op(api: Any, options: Any) -> list[dict[str, Any]]:
        response = await api.metrics.metrics(query=query, request_options=options)
        return list(response.data)

    try:
        return parse_costs(await _call(target, timeout_s, "metrics", op))
    except LangfuseError as exc:
        halves = window.halves()
        if exc.code != "langfuse_truncated" or halves is None:
            raise
    # More rows than Langfuse returns at once (hours × models over many days): each half
    # separately, concurrently, down to single days.
    first, second = await asyncio.gather(
        *(_fetch_costs(target, half, user_id, timeout_s) for half in halves)
    )
    return first + second


@dataclass(frozen=True)
class Check:
    """One probe's outcome, as the health endpoint shows it."""

    ok: bool
    latency_ms: float
    detail: str  # "OK 4.16.0", "project <name>", or why it failed (no secrets)


async def _timed(target: LangfuseTarget, timeout_s: float, what: str, op: Any) -> Check:
    started = time.perf_counter()
    try:
        detail = await _call(target, timeout_s, what, op)
        ok = True
    except LangfuseError as exc:
        detail, ok = exc.message.removeprefix(f"Langfuse {what}: "), False
    return Check(ok, round((time.perf_counter() - started) * 1000, 1), str(detail))


async def check_health(target: LangfuseTarget, timeout_s: float) -> Check:
    """`GET /api/public/health` (no auth): is Langfuse up at all?"""

    async def op(api: Any, options: Any) -> str:
        answer = await api.health.health(request_options=options)
        return f"{answer.status} {answer.version}"

    return await _timed(target, timeout_s, "health", op)


async def check_auth(target: LangfuseTarget, timeout_s: float) -> Check:
    """`GET /api/public/projects` with Basic auth: are our keys a project's keys?"""

    async def op(api: Any, options: Any) -> str:
        projects = await api.projects.get(request_options=options)
        names = [p.name for p in projects.data]
        return f"project {names[0]}" if names else "keys accepted"

    return await _timed(target, timeout_s, "auth", op)
