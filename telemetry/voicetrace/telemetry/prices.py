"""Model prices as data, and the cost of a turn's usage in exact `Decimal` money.

`prices.json` ships with the package; every entry carries its `effective_date` and `source`
(an entry without them inherits the file's `as_of` / `source`, and an operator file naming no
source is its own; an entry with no date at all is refused).
An operator file given to `PriceTable.load(path)` overrides or adds models and may replace the
`fallback`. Model names match exactly first, then by the longest matching glob
(`gemini-2.5-flash-native-audio-*`), after stripping a `models/` prefix. A model that matches
nothing is priced by the table's `fallback` entry and its `Cost` says `estimated=True` (the span
flags it `voice.cost.estimated`): an unknown model is never silently free. A table without a
fallback returns `None` for it (a library user who configured nothing gets no made-up number).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from voicetrace.telemetry.usage import MODALITIES, UsageBreakdown

_PER_TOKEN = Decimal(1_000_000)
_LOOKUP_CACHE = 256  # model names remembered per table (exact and glob matches alike)
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
FALLBACK = "fallback"  # the name of the entry that prices unknown models


def _money(value: Any, where: str) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{where}: {value!r} is not a price") from exc
    if not d.is_finite() or d < 0:
        raise ValueError(f"{where}: {value!r} must be a non-negative number")
    return d


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per 1M tokens. `cached_input` None: cached tokens bill at their modality's input.
    `effective_date` / `source`: since when and according to whom this price holds."""

    name: str
    input: Mapping[str, Decimal]
    output: Mapping[str, Decimal]
    cached_input: Decimal | None = None
    effective_date: date | None = None
    source: str | None = None

    @classmethod
    def parse(
        cls,
        name: str,
        raw: Mapping[str, Any],
        *,
        default_date: str | None = None,
        default_source: str | None = None,
    ) -> ModelPrice:
        where = f"price of {name!r}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected an object")
        try:
            inp, out = raw["input"], raw["output"]
        except KeyError as exc:
            raise ValueError(f"{where}: missing {exc.args[0]!r}") from None
        input_ = {m: _money(inp[m], f"{where}.input.{m}") for m in MODALITIES if m in inp}
        output = {m: _money(out[m], f"{where}.output.{m}") for m in ("text", "audio") if m in out}
        if "text" not in input_ or "text" not in output:
            raise ValueError(f"{where}: input.text and output.text are required")
        cached = raw.get("cached_input")
        when = raw.get("effective_date", default_date)
        source = raw.get("source", default_source)
        if when is None or not source:
            raise ValueError(f"{where}: needs an effective_date and a source (or file-level ones)")
        try:
            effective = date.fromisoformat(str(when))
        except ValueError:
            raise ValueError(f"{where}: effective_date {when!r} is not YYYY-MM-DD") from None
        return cls(
            name=name,
            input=input_,
            output=output,
            cached_input=None if cached is None else _money(cached, f"{where}.cached_input"),
            effective_date=effective,
            source=str(source),
        )

    def input_price(self, modality: str) -> Decimal:
        return self.input.get(modality, self.input["text"])

    def output_price(self, modality: str) -> Decimal:
        return self.output.get(modality, self.output["text"])


@dataclass(frozen=True, slots=True)
class Cost:
    """A turn's cost: per usage-detail key (same keys as usage_details) and the exact total.
    `model` is the price entry used; `estimated` is True when that was the fallback."""

    model: str
    details: Mapping[str, Decimal]
    total: Decimal
    estimated: bool = False

    def details_json(self) -> str:
        """Langfuse `cost_details`: floats only here, at the attribute boundary."""
        body = {key: float(v) for key, v in self.details.items()}
        body["total"] = float(self.total)
        return _COMPACT_JSON.encode(body)


class PriceTable:
    """Prices per model; `cost()` turns a usage breakdown into Decimal USD."""

    def __init__(
        self,
        models: Mapping[str, ModelPrice],
        *,
        as_of: str | None = None,
        source: str | None = None,
        fallback: ModelPrice | None = None,
    ) -> None:
        self._models = dict(models)
        self.as_of, self.source = as_of, source
        self.fallback = fallback
        self._fallback_rates: tuple[ModelPrice, _Rates] | None = (
            None if fallback is None else (fallback, _Rates.of(fallback))
        )
        # Longest pattern first: the most specific family wins.
        self._patterns = sorted((n for n in self._models if "*" in n), key=len, reverse=True)
        # Per-turn cost runs on the voice path: remember each model's match and its USD per
        # token (exact: dividing a price by 10^6 only moves the decimal point).
        self._found: dict[str, tuple[ModelPrice, _Rates] | None] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """The packaged prices, overridden/extended by the operator's JSON file at `path`."""
        packaged = resources.files(__package__).joinpath("prices.json").read_text("utf-8")
        table = cls.from_json(json.loads(packaged), origin="packaged prices.json")
        if path is None:
            return table
        p = Path(path)
        try:
            raw = json.loads(p.read_text("utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read price file {p}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"price file {p} is not valid JSON: {exc}") from exc
        override = cls.from_json(raw, origin=str(p))
        return cls(
            {**table._models, **override._models},
            as_of=override.as_of or table.as_of,
            source=override.source or table.source,
            fallback=override.fallback or table.fallback,
        )

    @classmethod
    def from_json(cls, raw: Any, origin: str = "prices") -> PriceTable:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("models"), Mapping):
            raise ValueError(f"{origin}: expected an object with a 'models' object")
        # An operator file that names no source is its own source.
        as_of, source = raw.get("as_of"), raw.get("source") or origin
        models = {
            name: ModelPrice.parse(name, spec, default_date=as_of, default_source=source)
            for name, spec in raw["models"].items()
        }
        spec = raw.get(FALLBACK)
        fallback = (
            None
            if spec is None
            else ModelPrice.parse(FALLBACK, spec, default_date=as_of, default_source=source)
        )
        return cls(models, as_of=as_of, source=raw.get("source"), fallback=fallback)

    def models(self) -> list[str]:
        return sorted(self._models)

    def lookup(self, model: str) -> ModelPrice | None:
        found = self._rates(model)
        return None if found is None else found[0]

    def _rates(self, model: str) -> tuple[ModelPrice, _Rates] | None:
        if model in self._found:
            return self._found[model]
        price = self._match(model)
        found = None if price is None else (price, _Rates.of(price))
        if len(self._found) < _LOOKUP_CACHE:
            self._found[model] = found
        return found

    def _match(self, model: str) -> ModelPrice | None:
        name = model.removeprefix("models/")
        if name in self._models:
            return self._models[name]
        for pattern in self._patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return self._models[pattern]
        return None

    def priced(self, model: str) -> tuple[ModelPrice, bool] | None:
        """The price entry that bills `model` and whether it is the fallback (an estimate)."""
        found, estimated = self._billing(model)
        return None if found is None else (found[0], estimated)

    def _billing(self, model: str) -> tuple[tuple[ModelPrice, _Rates] | None, bool]:
        found = self._rates(model)
        if found is not None:
            return found, False
        return self._fallback_rates, self._fallback_rates is not None

    def cost(self, model: str, usage: UsageBreakdown) -> Cost | None:
        """Exact cost of one turn (a plain function of the usage: linear in every token count).
        An unknown model is billed at the fallback price (`estimated=True`); None only when the
        table has no fallback."""
        found, estimated = self._billing(model)
        if found is None:
            return None
        price, r = found
        cached = usage.input_cached
        uncached, tool_use, out = usage.input_uncached, usage.input_tool_use, usage.output
        details = {
            "input_text_tokens": uncached["text"] * r.input_text,
            "input_audio_tokens": uncached["audio"] * r.input_audio,
            "input_image_tokens": uncached["image"] * r.input_image,
            "input_cached_tokens": cached["text"] * r.cached_text
            + cached["audio"] * r.cached_audio
            + cached["image"] * r.cached_image,
            "input_tool_use_tokens": tool_use["text"] * r.input_text
            + tool_use["audio"] * r.input_audio
            + tool_use["image"] * r.input_image,
            "output_text_tokens": out["text"] * r.output_text,
            "output_audio_tokens": out["audio"] * r.output_audio,
            "output_image_tokens": out["image"] * r.output_text,
            # Thinking bills as (text) output.
            "output_reasoning_tokens": usage.reasoning * r.output_text,
        }
        return Cost(price.name, details, sum(details.values(), Decimal(0)), estimated)

    def audio_output_cost(self, model: str, tokens: Decimal) -> Decimal | None:
        found, _ = self._billing(model)
        return None if found is None else tokens * found[1].output_audio


@dataclass(frozen=True, slots=True)
class _Rates:
    """A model's USD per single token, per bucket of a `UsageBreakdown`."""

    input_text: Decimal
    input_audio: Decimal
    input_image: Decimal
    cached_text: Decimal
    cached_audio: Decimal
    cached_image: Decimal
    output_text: Decimal
    output_audio: Decimal

    @classmethod
    def of(cls, p: ModelPrice) -> _Rates:
        def cached(m: str) -> Decimal:
            return p.cached_input if p.cached_input is not None else p.input_price(m)

        return cls(
            input_text=p.input_price("text") / _PER_TOKEN,
            input_audio=p.input_price("audio") / _PER_TOKEN,
            input_image=p.input_price("image") / _PER_TOKEN,
            cached_text=cached("text") / _PER_TOKEN,
            cached_audio=cached("audio") / _PER_TOKEN,
            cached_image=cached("image") / _PER_TOKEN,
            output_text=p.output_price("text") / _PER_TOKEN,
            output_audio=p.output_price("audio") / _PER_TOKEN,
        )
