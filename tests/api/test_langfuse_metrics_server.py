"""The local Langfuse's Metrics API v2 refuses what Langfuse refuses, as the `langfuse`
package's own client sees it (so the service's happy path proves a query Langfuse accepts)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from langfuse.api import LangfuseAPI

from tests.langfuse_server import LangfuseServer

GOOD: dict[str, Any] = {
    "view": "observations",
    "metrics": [{"measure": "totalCost", "aggregation": "sum"}],
    "dimensions": [{"field": "providedModelName"}],
    "filters": [{"column": "type", "operator": "=", "value": "GENERATION", "type": "string"}],
    "timeDimension": {"granularity": "day"},
    "fromTimestamp": "2026-12-01T00:00:00.000Z",
    "toTimestamp": "2026-12-03T23:59:59.999Z",
}


@pytest.fixture
def lf() -> Iterator[LangfuseServer]:
    with LangfuseServer("pk-lf-m", "sk-lf-m") as server:
        yield server


def client(lf: LangfuseServer, secret: str | None = None) -> LangfuseAPI:
    return LangfuseAPI(
        base_url=lf.base_url, username=lf.public_key, password=secret or lf.secret_key, timeout=5
    )


def ask(lf: LangfuseServer, query: dict[str, Any], secret: str | None = None) -> Any:
    options: Any = {"max_retries": 0}
    return client(lf, secret).metrics.metrics(query=json.dumps(query), request_options=options)


def test_without_an_order_a_time_series_is_gap_filled_with_zero_rows(lf) -> None:
    rows = ask(lf, GOOD).data
    assert [r["time_dimension"] for r in rows] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert all(r["sum_totalCost"] == 0 and r["providedModelName"] is None for r in rows)
    ordered = {**GOOD, "orderBy": [{"field": "time_dimension", "direction": "asc"}]}
    assert ask(lf, ordered).data == []
    assert lf.violations == []


def test_wrong_keys_are_a_401(lf) -> None:
    with pytest.raises(Exception) as refused:
        ask(lf, GOOD, secret="sk-lf-wrong")
    assert getattr(refused.value, "status_code", None) == 401


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"metrics": None}, "metrics: Required"),
        ({"view": "traces"}, "Invalid view"),
        ({"metrics": [{"measure": "cost", "aggregation": "sum"}]}, "Invalid metric cost"),
        ({"metrics": [{"measure": "totalCost", "aggregation": "total"}]}, "Invalid aggregation"),
        ({"dimensions": [{"field": "model"}]}, "Invalid dimension model"),
        ({"dimensions": [{"field": "userId"}]}, "High cardinality dimension(s) 'userId'"),
        ({"timeDimension": {"granularity": "daily"}}, "timeDimension.granularity"),
        ({"fromTimestamp": "2026-12-01T00:00:00"}, "fromTimestamp: Invalid ISO datetime"),
        ({"toTimestamp": "2026-11-30T00:00:00Z"}, "fromTimestamp must be before toTimestamp"),
        ({"filters": [{"column": "userId", "operator": "is", "value": "a", "type": "string"}]},
         "Invalid operator 'is'"),
        ({"filters": [{"column": "user", "operator": "=", "value": "a", "type": "string"}]},
         "Invalid filter column user"),
        ({"orderBy": [{"field": "totalCost", "direction": "asc"}]}, "Invalid orderBy field"),
        ({"config": {"row_limit": 5000}}, "config.row_limit"),
    ],
)  # fmt: skip
def test_a_query_langfuse_would_refuse_is_a_400_with_its_reason(lf, change, says) -> None:
    query = {**GOOD, **change}
    query = {k: v for k, v in query.items() if v is not None}
    with pytest.raises(Exception) as rejected:
        ask(lf, query)
    assert getattr(rejected.value, "status_code", None) == 400
    assert says in rejected.value.body["message"]  # type: ignore[attr-defined]
    assert lf.violations and lf.violations[-1].startswith("metrics:")
