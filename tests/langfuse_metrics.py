"""Langfuse's Metrics API v2 (`GET /api/public/v2/metrics?query=<JSON>`) over ingested spans.

Two halves, both as Langfuse implements them (langfuse/langfuse, v4):

1. **Spans → observations**, the OTLP converter's rules (packages/shared/src/server/otel/
   OtelIngestionProcessor.ts, ObservationTypeMapper.ts): the observation type (explicit
   `langfuse.observation.type`, else `gen_ai.operation.name`, else a tool or model attribute,
   else SPAN), the model, `langfuse.observation.cost_details` (else `gen_ai.usage.cost`),
   `langfuse.observation.usage_details` (else the `gen_ai.usage.*` keys), user, session and
   environment. SPAN and EVENT observations, and `invoke_agent` ones, carry no model, usage or
   cost.
2. **The query**: validated like web/src/features/public-api/types/metrics.ts
   (`MetricsQueryObject`), web/src/features/query/validateQuery.ts (high-cardinality
   dimensions) and server/queryBuilder.ts (known dimensions, measures, filter columns, orderBy
   fields) — anything else is a 400 `{"message", "error": "InvalidRequestError"}`; executed with
   their semantics: `fromTimestamp <= startTime <= toTimestamp`, `day` buckets are UTC dates,
   metric columns are named `<aggregation>_<measure>`, the bucket `time_dimension`, 64-bit
   integer sums come back as strings (ClickHouse JSON), costs as numbers, and without an
   `orderBy` a time series is gap-filled (`WITH FILL`) with all-zero rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.otlp_receiver import ReceivedSpan

METRICS_V2_PATH = "/api/public/v2/metrics"

_EXPLICIT_TYPES = {
    "span", "generation", "event", "embedding", "agent", "tool", "chain", "retriever",
    "guardrail", "evaluator",
}  # fmt: skip
_OPERATION_TYPES = {
    **dict.fromkeys(
        ("chat", "completion", "text_completion", "generate_content", "generate"), "GENERATION"
    ),
    "embeddings": "EMBEDDING",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
    "execute_tool": "TOOL",
}
_MODEL_KEYS = ("langfuse.observation.model.name", "gen_ai.response.model", "gen_ai.request.model")
_ENV_KEYS = ("langfuse.environment", "deployment.environment.name", "deployment.environment")

VIEWS = {"observations", "scores-numeric", "scores-boolean", "scores-categorical"}
AGGREGATIONS = {"sum", "avg", "count", "max", "min", "p50", "p75", "p90", "p95", "p99"}
AGGREGATIONS_ALL = AGGREGATIONS | {"histogram", "uniq"}
GRANULARITIES = {"auto", "minute", "hour", "day", "week", "month"}
# The v2 observations view (the API reference in langfuse.api.metrics.client).
DIMENSIONS = {
    "environment", "type", "name", "level", "version", "tags", "release", "traceName",
    "traceRelease", "traceVersion", "providedModelName", "promptName", "promptVersion",
    "isRootObservation", "startTimeMonth",
}  # fmt: skip
HIGH_CARDINALITY = {"id", "traceId", "userId", "sessionId", "parentObservationId"}
MEASURES = {
    "count", "latency", "streamingLatency", "inputTokens", "outputTokens", "totalTokens",
    "outputTokensPerSecond", "tokensPerSecond", "inputCost", "outputCost", "totalCost",
    "timeToFirstToken", "countScores",
}  # fmt: skip
TIME_COLUMN = "startTime"
_OPERATORS = {
    "datetime": {">", "<", ">=", "<="},
    "string": {"=", "contains", "does not contain", "starts with", "ends with"},
    "stringOptions": {"any of", "none of"},
    "categoryOptions": {"any of", "none of"},
    "arrayOptions": {"any of", "none of", "all of"},
    "number": {"=", ">", "<", ">=", "<="},
    "stringObject": {"=", "contains", "does not contain", "starts with", "ends with"},
    "numberObject": {"=", ">", "<", ">=", "<="},
    "boolean": {"=", "<>"},
    "null": {"is null", "is not null"},
}
# zod's `z.string().datetime({ offset: true })`.
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)")


class QueryError(ValueError):
    """What Langfuse answers with 400 InvalidRequestError."""


@dataclass(frozen=True)
class Observation:
    id: str
    trace_id: str
    type: str
    name: str
    model: str | None
    start: datetime
    user_id: str | None
    session_id: str | None
    environment: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal | None

    def field(self, name: str) -> Any:
        return {
            "id": self.id,
            "traceId": self.trace_id,
            "type": self.type,
            "name": self.name,
            "providedModelName": self.model,
            "userId": self.user_id,
            "sessionId": self.session_id,
            "environment": self.environment,
        }.get(name)


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attrs[k] for k in keys if attrs.get(k) not in (None, "")), None)


def _type(attrs: dict[str, Any]) -> str:
    explicit = attrs.get("langfuse.observation.type")
    if explicit in _EXPLICIT_TYPES:
        return str(explicit).upper()
    operation = attrs.get("gen_ai.operation.name")
    if operation in _OPERATION_TYPES:
        return _OPERATION_TYPES[operation]
    if attrs.get("gen_ai.tool.name") or attrs.get("gen_ai.tool.call.id"):
        return "TOOL"
    return "GENERATION" if _first(attrs, _MODEL_KEYS) else "SPAN"


def _json_numbers(raw: Any, integers: bool) -> dict[str, Decimal] | None:
    """A JSON object of non-negative numbers (ints only for usage); others are dropped."""
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    out = {}
    for key, value in parsed.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            continue
        if integers and not isinstance(value, int):
            continue
        out[key] = Decimal(str(value))
    return out


def _usage(attrs: dict[str, Any]) -> dict[str, Decimal]:
    details = _json_numbers(attrs.get("langfuse.observation.usage_details"), integers=True)
    if details is not None:
        return details
    usage: dict[str, Decimal] = {}
    for key, value in attrs.items():
        if not key.startswith("gen_ai.usage.") or key == "gen_ai.usage.cost":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            continue
        name = key.removeprefix("gen_ai.usage.")
        name = {
            "input_tokens": "input",
            "output_tokens": "output",
            "total_tokens": "total",
            "cache_read.input_tokens": "input_cached_tokens",
        }.get(name, name)
        usage[name] = Decimal(value)
    if "input_cached_tokens" in usage and "input" in usage:
        usage["input"] = max(usage["input"] - usage["input_cached_tokens"], Decimal(0))
    return usage


def _environment(span: ReceivedSpan) -> str:
    raw = _first(span.attributes, _ENV_KEYS) or _first(span.resource, _ENV_KEYS)
    value = str(raw or "").lower()
    ok = value and len(value) <= 40 and re.fullmatch(r"[a-z0-9_-]+", value)
    return value if ok else "default"


def observation(span: ReceivedSpan) -> Observation:
    attrs = span.attributes
    kind = _type(attrs)
    keeps = kind not in ("SPAN", "EVENT") and attrs.get("gen_ai.operation.name") != "invoke_agent"
    usage = _usage(attrs) if keeps else {}
    costs = _json_numbers(attrs.get("langfuse.observation.cost_details"), integers=False)
    if costs is None and isinstance(attrs.get("gen_ai.usage.cost"), int | float):
        costs = {"total": Decimal(str(attrs["gen_ai.usage.cost"]))}
    costs = costs if keeps else None
    total_cost = None
    if costs:
        total_cost = costs["total"] if "total" in costs else sum(costs.values(), Decimal(0))
    input_tokens = sum((v for k, v in usage.items() if "input" in k), Decimal(0))
    output_tokens = sum((v for k, v in usage.items() if "output" in k), Decimal(0))
    total = usage.get("total", sum((v for k, v in usage.items()), Decimal(0)))
    return Observation(
        id=span.span_id,
        trace_id=span.trace_id,
        type=kind,
        name=str(attrs.get("gen_ai.tool.name") or span.name),
        model=str(_first(attrs, _MODEL_KEYS)) if keeps and _first(attrs, _MODEL_KEYS) else None,
        start=datetime.fromtimestamp(span.start_ns // 1_000_000 / 1000, UTC),  # ms, as stored
        user_id=_first(attrs, ("langfuse.user.id", "user.id")),
        session_id=_first(attrs, ("langfuse.session.id", "session.id")),
        environment=_environment(span),
        input_tokens=int(input_tokens),
        output_tokens=int(output_tokens),
        total_tokens=int(total),
        input_cost=sum((v for k, v in (costs or {}).items() if "input" in k), Decimal(0)),
        output_cost=sum((v for k, v in (costs or {}).items() if "output" in k), Decimal(0)),
        total_cost=total_cost,
    )


# -- the query --------------------------------------------------------------------------------


def _timestamp(query: dict[str, Any], key: str) -> datetime:
    raw = query.get(key)
    if not isinstance(raw, str) or not _ISO.fullmatch(raw):
        raise QueryError(f"{key}: Invalid ISO datetime (with an offset or Z)")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)


def _check_filter(f: Any) -> None:
    if not isinstance(f, dict) or not all(k in f for k in ("column", "operator", "type")):
        raise QueryError(f"Invalid filter {f!r}: needs column, operator, value and type")
    kind, operator, column = f["type"], f["operator"], f["column"]
    if kind not in _OPERATORS:
        raise QueryError(f"Invalid filter type {kind!r}")
    if operator not in _OPERATORS[kind]:
        raise QueryError(f"Invalid operator {operator!r} for a {kind} filter")
    if kind != "null" and "value" not in f:
        raise QueryError(f"filter on {column}: value is required")
    value = f.get("value")
    if kind in ("string", "stringObject") and not isinstance(value, str):
        raise QueryError(f"filter on {column}: a {kind} filter needs a string value")
    if kind in ("stringOptions", "categoryOptions", "arrayOptions") and not isinstance(value, list):
        raise QueryError(f"filter on {column}: a {kind} filter needs a list of values")
    if kind in ("stringObject", "numberObject") and not f.get("key"):
        raise QueryError(f"filter on {column}: a {kind} filter needs a key")
    if kind == "datetime" and (not isinstance(value, str) or not _ISO.fullmatch(value)):
        raise QueryError(f"filter on {column}: a datetime filter needs an ISO datetime")
    known = DIMENSIONS | HIGH_CARDINALITY | {TIME_COLUMN, "metadata"}
    if column not in known and not column.endswith("Name"):
        raise QueryError(f"Invalid filter column {column}. Must be one of {sorted(known)}")


def validate(query: Any) -> dict[str, Any]:
    """The query as Langfuse accepts it (defaults applied), or QueryError."""
    if not isinstance(query, dict):
        raise QueryError("query must be a JSON object")
    if query.get("view") not in VIEWS:
        raise QueryError(f"Invalid view {query.get('view')!r}: one of {sorted(VIEWS)}")
    if query["view"] != "observations":
        raise QueryError("this local Langfuse answers the observations view only")
    metrics = query.get("metrics")
    if not isinstance(metrics, list):
        raise QueryError("metrics: Required (a list of {measure, aggregation})")
    for m in metrics:
        if not isinstance(m, dict) or not isinstance(m.get("measure"), str):
            raise QueryError(f"Invalid metric {m!r}")
        if m.get("aggregation") not in AGGREGATIONS_ALL:
            raise QueryError(f"Invalid aggregation {m.get('aggregation')!r}")
        if m["measure"] not in MEASURES:
            raise QueryError(f"Invalid metric {m['measure']}. Must be one of {sorted(MEASURES)}")
    dimensions = query.get("dimensions", [])
    if not isinstance(dimensions, list) or any(
        not isinstance(d, dict) or not isinstance(d.get("field"), str) for d in dimensions
    ):
        raise QueryError("dimensions: a list of {field}")
    for d in dimensions:
        if d["field"] not in DIMENSIONS | HIGH_CARDINALITY:
            raise QueryError(f"Invalid dimension {d['field']}")
    filters = query.get("filters", [])
    if not isinstance(filters, list):
        raise QueryError("filters: a list")
    for f in filters:
        _check_filter(f)
    time_dim = query.get("timeDimension")
    if time_dim is not None and (
        not isinstance(time_dim, dict) or time_dim.get("granularity") not in GRANULARITIES
    ):
        raise QueryError(f"timeDimension.granularity: one of {sorted(GRANULARITIES)}")
    start, end = _timestamp(query, "fromTimestamp"), _timestamp(query, "toTimestamp")
    if not start < end:
        raise QueryError("fromTimestamp must be before toTimestamp")
    config = query.get("config") or {}
    limit = config.get("row_limit")
    if limit is not None and (not isinstance(limit, int) or not 0 < limit <= 1000):
        raise QueryError("config.row_limit: an integer from 1 to 1000")
    order = query.get("orderBy")
    if order is not None and (
        not isinstance(order, list)
        or any(not isinstance(o, dict) or o.get("direction") not in ("asc", "desc") for o in order)
    ):
        raise QueryError("orderBy: a list of {field, direction: asc|desc}")
    high = [d["field"] for d in dimensions if d["field"] in HIGH_CARDINALITY]
    if high and time_dim is not None:
        raise QueryError(f"High cardinality dimension(s) '{', '.join(high)}' cannot be used with "
                         "timeDimension.")  # fmt: skip
    if high and (limit is None or not any(o["direction"] == "desc" for o in order or [])):
        raise QueryError(f"High cardinality dimension(s) '{', '.join(high)}' require both "
                         "'config.row_limit' and 'orderBy' with direction 'desc'.")  # fmt: skip
    names = {f"{m['aggregation']}_{m['measure']}" for m in metrics}
    fields = names | {d["field"] for d in dimensions} | ({"time_dimension"} if time_dim else set())
    for o in order or []:
        if o.get("field") not in fields:
            raise QueryError(f"Invalid orderBy field: {o.get('field')}. Must be one of the "
                             "dimension or metric fields.")  # fmt: skip
    return {**query, "dimensions": dimensions, "filters": filters, "start": start, "end": end}


def _granularity(raw: str, start: datetime, end: datetime) -> str:
    if raw != "auto":
        return raw
    hours = (end - start).total_seconds() / 3600
    for limit, name in ((2, "minute"), (72, "hour"), (1440, "day"), (8760, "week")):
        if hours < limit:
            return name
    return "month"


def _bucket(t: datetime, granularity: str) -> datetime:
    if granularity == "minute":
        return t.replace(second=0, microsecond=0)
    if granularity == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def _bucket_text(t: datetime, granularity: str) -> str:
    """ClickHouse with `date_time_output_format=iso`: a Date for day/week/month buckets."""
    if granularity in ("day", "week", "month"):
        return t.date().isoformat()
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _matches(obs: Observation, f: dict[str, Any]) -> bool:
    column, op, value = f["column"], f["operator"], f.get("value")
    if column == TIME_COLUMN:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        cmp: dict[str, Callable[[datetime, datetime], bool]] = {
            ">": lambda a, b: a > b,
            "<": lambda a, b: a < b,
            ">=": lambda a, b: a >= b,
            "<=": lambda a, b: a <= b,
        }
        return cmp[op](obs.start, when)
    actual = obs.field(column)
    if f["type"] == "null":
        return (actual is None) == (op == "is null")
    text = "" if actual is None else str(actual)
    if op == "=":
        return text == str(value)
    if op == "contains":
        return str(value) in text
    if op == "does not contain":
        return str(value) not in text
    if op == "starts with":
        return text.startswith(str(value))
    if op == "ends with":
        return text.endswith(str(value))
    if op == "any of":
        return text in value
    if op == "none of":
        return text not in value
    raise QueryError(f"this local Langfuse cannot apply {op!r} on {column}")


def _measure(obs: Observation, measure: str) -> Decimal | None:
    values = {
        "count": Decimal(1),
        "inputTokens": Decimal(obs.input_tokens),
        "outputTokens": Decimal(obs.output_tokens),
        "totalTokens": Decimal(obs.total_tokens),
        "inputCost": obs.input_cost,
        "outputCost": obs.output_cost,
        "totalCost": obs.total_cost,
    }
    if measure not in values:
        raise QueryError(f"this local Langfuse does not compute {measure}")
    return values[measure]


def _aggregate(values: list[Decimal | None], aggregation: str, measure: str) -> Any:
    present = [v for v in values if v is not None]
    if aggregation == "count":
        return str(len(values))  # UInt64: quoted
    if aggregation == "sum":
        total = sum(present, Decimal(0))
        cost = measure.endswith("Cost")
        return float(total) if cost else str(int(total))  # Decimal → number, UInt64 → string
    if not present:
        return None
    if aggregation == "max":
        return float(max(present))
    if aggregation == "min":
        return float(min(present))
    if aggregation == "avg":
        return float(sum(present, Decimal(0)) / len(present))
    raise QueryError(f"this local Langfuse does not compute {aggregation}")


def run(query: dict[str, Any], observations: list[Observation]) -> list[dict[str, Any]]:
    """Execute a validated query: one row per group, Langfuse's column names."""
    start, end = query["start"], query["end"]
    rows = [o for o in observations if start <= o.start <= end]
    rows = [o for o in rows if all(_matches(o, f) for f in query["filters"])]
    dims = [d["field"] for d in query["dimensions"]]
    time_dim = query.get("timeDimension")
    granularity = _granularity(time_dim["granularity"], start, end) if time_dim else None
    groups: dict[tuple[Any, ...], list[Observation]] = {}
    for o in rows:
        key = tuple(o.field(d) for d in dims)
        if granularity:
            key += (_bucket(o.start, granularity),)
        groups.setdefault(key, []).append(o)
    metrics = query["metrics"]
    out = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(dims, key, strict=False))
        if granularity:
            row["time_dimension"] = key[-1]
        for m in metrics:
            values = [_measure(o, m["measure"]) for o in members]
            row[f"{m['aggregation']}_{m['measure']}"] = _aggregate(
                values, m["aggregation"], m["measure"]
            )
        out.append(row)
    order = query.get("orderBy")
    if granularity and not order:  # Langfuse's default order and WITH FILL gap rows
        seen = {r["time_dimension"] for r in out}
        t, last = _bucket(start, granularity), _bucket(end, granularity)
        while t <= last:
            if t not in seen:
                filled = dict.fromkeys(dims)
                filled["time_dimension"] = t
                for m in metrics:
                    filled[f"{m['aggregation']}_{m['measure']}"] = 0
                out.append(filled)
            t = _next(t, granularity)
        order = [{"field": "time_dimension", "direction": "asc"}]
    for o in reversed(order or []):
        out.sort(key=lambda r, f=o["field"]: _sortable(r.get(f)), reverse=o["direction"] == "desc")
    if granularity:
        for r in out:
            r["time_dimension"] = _bucket_text(r["time_dimension"], granularity)
    limit = (query.get("config") or {}).get("row_limit") or 100
    return out[:limit]


def _next(t: datetime, granularity: str) -> datetime:
    if granularity == "month":
        return (t.replace(day=28) + timedelta(days=4)).replace(day=1)
    step = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}[granularity]
    return t + timedelta(seconds=step)


def _sortable(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return (1, int(value))
    if isinstance(value, datetime | date):
        return (1, value.isoformat())
    return (1, value)
