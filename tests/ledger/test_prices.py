"""Pricing as data: every entry dated and sourced, operator overrides, a flagged fallback for
unknown models, and a cost function that is exact Decimal arithmetic (property-tested)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from voicetrace.telemetry import PriceTable
from voicetrace.telemetry.prices import ModelPrice
from voicetrace.telemetry.usage import UsageBreakdown

TABLE = PriceTable.load(None)
PACKAGED = json.loads(
    (Path(__file__).parents[2] / "telemetry/voicetrace/telemetry/prices.json").read_text()
)
M = 1_000_000
MODALITIES = ("text", "audio", "image")
# Every bucket of a breakdown, as (field, modality or None).
BUCKETS = [("input_uncached", m) for m in MODALITIES]
BUCKETS += [("input_cached", m) for m in MODALITIES]
BUCKETS += [("input_tool_use", m) for m in MODALITIES]
BUCKETS += [("output", m) for m in MODALITIES]
BUCKETS += [("reasoning", None)]

counts = st.integers(min_value=0, max_value=10**9)
breakdowns = st.fixed_dictionaries({f"{f}.{m}": counts for f, m in BUCKETS})
# Names that match the packaged file (including glob families), plus unknown ones.
models = st.sampled_from(
    [
        "gemini-3.8-live",
        "gemini-3.8-live-2026-12",
        "gemini-3.1-flash-live-preview",
        "models/gemini-2.5-flash-native-audio-preview-09-2025",
        "gemini-live-2.5-flash-native-audio",
        "gemini-2.0-flash-live-001",
        "gpt-4o-realtime",
        "some-future-model",
    ]
)


def _usage(n: dict[str, int]) -> UsageBreakdown:
    def part(field: str) -> dict[str, int]:
        return {m: n[f"{field}.{m}"] for m in MODALITIES}

    return UsageBreakdown(
        input_uncached=part("input_uncached"),
        input_cached=part("input_cached"),
        input_tool_use=part("input_tool_use"),
        output=part("output"),
        reasoning=n["reasoning.None"],
        reported_total=0,
    )


def _hand_cost(price: ModelPrice, n: dict[str, int]) -> Fraction:
    """The documented rules, in exact rationals: per 1M tokens; cached at `cached_input` or its
    modality's input; tool-use prompt at its modality's input; image output and thinking as text
    output."""

    def f(d: Decimal) -> Fraction:
        return Fraction(d)

    total = Fraction(0)
    for m in MODALITIES:
        inp = f(price.input_price(m))
        cached = f(price.cached_input) if price.cached_input is not None else inp
        total += n[f"input_uncached.{m}"] * inp
        total += n[f"input_cached.{m}"] * cached
        total += n[f"input_tool_use.{m}"] * inp
    total += n["output.text"] * f(price.output_price("text"))
    total += n["output.audio"] * f(price.output_price("audio"))
    total += n["output.image"] * f(price.output_price("text"))
    total += n["reasoning.None"] * f(price.output_price("text"))
    return total / M


@settings(max_examples=200, deadline=None)
@given(models, breakdowns, breakdowns)
def test_cost_is_additive_across_turns(model: str, a: dict[str, int], b: dict[str, int]) -> None:
    both = {key: a[key] + b[key] for key in a}
    one, two, joint = (TABLE.cost(model, _usage(x)) for x in (a, b, both))
    assert one is not None and two is not None and joint is not None
    assert one.total + two.total == joint.total


@settings(max_examples=200, deadline=None)
@given(models, breakdowns, st.sampled_from([f"{f}.{m}" for f, m in BUCKETS]), counts)
def test_cost_is_monotone_in_every_token_count(
    model: str, n: dict[str, int], bucket: str, more: int
) -> None:
    grown = dict(n)
    grown[bucket] += more
    before, after = TABLE.cost(model, _usage(n)), TABLE.cost(model, _usage(grown))
    assert before is not None and after is not None
    assert after.total >= before.total
    if more > 0:  # every packaged price is positive: more tokens always cost more
        assert after.total > before.total


@settings(max_examples=200, deadline=None)
@given(models, st.lists(breakdowns, min_size=1, max_size=30))
def test_summing_many_turns_has_no_float_drift(model: str, turns: list[dict[str, int]]) -> None:
    total = sum((TABLE.cost(model, _usage(t)).total for t in turns), Decimal(0))
    priced = TABLE.priced(model)
    assert priced is not None
    exact = sum((_hand_cost(priced[0], t) for t in turns), Fraction(0))
    assert isinstance(total, Decimal)
    assert Fraction(total) == exact  # exact to the last digit, however many turns


@pytest.mark.parametrize("name", sorted(PACKAGED["models"]))
@settings(max_examples=50, deadline=None)
@given(n=breakdowns)
def test_cost_is_exact_against_hand_computed_prices_for_each_model(
    name: str, n: dict[str, int]
) -> None:
    raw = PACKAGED["models"][name]
    model = name.replace("*", "x")  # a name the entry (or its glob) matches
    cost = TABLE.cost(model, _usage(n))
    assert cost is not None and cost.model == name and not cost.estimated
    # Straight from the JSON strings, independent of the parser.
    inp, out = raw["input"], raw["output"]
    per = {
        m: Fraction(inp.get(m, inp["text"])) for m in MODALITIES
    }  # missing modality = text price
    expected = Fraction(0)
    for m in MODALITIES:
        cached = Fraction(raw["cached_input"]) if raw["cached_input"] is not None else per[m]
        expected += n[f"input_uncached.{m}"] * per[m] + n[f"input_tool_use.{m}"] * per[m]
        expected += n[f"input_cached.{m}"] * cached
    out_text = Fraction(out["text"])
    expected += n["output.text"] * out_text + n["output.image"] * out_text
    expected += n["reasoning.None"] * out_text
    expected += n["output.audio"] * Fraction(out.get("audio", out["text"]))
    assert Fraction(cost.total) == expected / M


def test_every_packaged_entry_has_an_effective_date_and_a_source() -> None:
    for name in TABLE.models():
        price = TABLE.lookup(name)
        assert price is not None
        assert isinstance(price.effective_date, date), name
        assert price.source, name
    assert TABLE.fallback is not None and TABLE.fallback.source


def test_unknown_model_is_priced_by_the_fallback_and_flagged_never_zero() -> None:
    n = {f"{f}.{m}": 0 for f, m in BUCKETS} | {"input_uncached.audio": 1000}
    cost = TABLE.cost("brand-new-live-model", _usage(n))
    assert cost is not None and cost.estimated and cost.model == "fallback"
    assert cost.total == Decimal(1000) * Decimal("3.00") / M
    known = TABLE.cost("gemini-3.8-live", _usage(n))
    assert known is not None and not known.estimated


def test_the_fallback_never_under_bills_a_packaged_model() -> None:
    fallback = TABLE.fallback
    assert fallback is not None
    for name in TABLE.models():
        price = TABLE.lookup(name)
        for m in MODALITIES:
            assert fallback.input_price(m) >= price.input_price(m), (name, m)
        for m in ("text", "audio"):
            assert fallback.output_price(m) >= price.output_price(m), (name, m)


def test_operator_file_replaces_the_fallback_and_dates_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "as_of": "2027-02-01",
                "fallback": {"input": {"text": "9"}, "output": {"text": "9"}},
                "models": {
                    "acme-live": {
                        "effective_date": "2027-03-01",
                        "source": "acme contract 42",
                        "input": {"text": "1"},
                        "output": {"text": "2"},
                    }
                },
            }
        )
    )
    table = PriceTable.load(path)
    acme = table.lookup("acme-live")
    assert acme.effective_date == date(2027, 3, 1) and acme.source == "acme contract 42"
    assert table.fallback.input_price("audio") == Decimal(9)
    assert table.fallback.effective_date == date(2027, 2, 1)
    assert table.fallback.source == str(path)  # an unsourced operator file is its own source
    assert table.lookup("gemini-3.8-live").source == TABLE.lookup("gemini-3.8-live").source


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"input": {"text": "1"}, "output": {"text": "1"}}, "effective_date"),
        (
            {"effective_date": "March", "input": {"text": "1"}, "output": {"text": "1"}},
            "not YYYY-MM-DD",
        ),
    ],
)
def test_undated_price_entry_is_refused(tmp_path: Path, entry: dict, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"source": "me", "models": {"m": entry}}))
    with pytest.raises(ValueError, match=message):
        PriceTable.load(path)
