"""The price table as Langfuse model definitions, so its model pages and cost views know the Live
models (what `voicetrace langfuse sync-models` registers).

Langfuse prices a generation from a *model definition* (`matchPattern` regex on the generation's
model, prices per usage key) when the generation carries no cost of its own. Our generations do
carry `cost_details`, so these definitions do not change billed numbers; they name the models
and price usage for anything that arrives without cost. Each definition has one default pricing
tier with a USD-per-token price for each of our non-overlapping usage keys (telemetry.usage), so
Langfuse's inferred cost equals ours key by key — except `input_cached_tokens`, which is one key
for every modality: with `cached_input: null` it is priced at the highest input price (never
under-billed; ours prices it per modality).

Definitions are upserted (`PUT /api/public/models/{id}` through the `langfuse` package's
`api.models.upsert`) under stable ids, so running the sync again replaces rather than duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from voicetrace.telemetry.prices import ModelPrice, PriceTable

PER_TOKEN = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelDefinition:
    """One Langfuse model definition: stable id, name, regex, USD per token per usage key."""

    id: str
    model_name: str
    match_pattern: str
    prices: dict[str, float]


def match_pattern(name: str) -> str:
    """Our price key (an exact name or an fnmatch glob with `*`) as Langfuse's case-insensitive
    regex; Gemini may report the model as `models/<name>`, which our lookup accepts too."""
    # `-` needs no escape outside a bracket (and `\-` reads oddly in Langfuse's UI).
    body = ".*".join(re.escape(part).replace("\\-", "-") for part in name.split("*"))
    return f"(?i)^(models/)?{body}$"


def definition_id(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("*", "x")).strip("-")
    return f"voicetrace-{slug}"


def prices_per_token(p: ModelPrice) -> dict[str, float]:
    """USD per token for each usage key we send (floats only here, at the API boundary)."""

    def per(value: Decimal) -> float:
        return float(value / PER_TOKEN)

    cached = p.cached_input
    if cached is None:
        cached = max(p.input_price(m) for m in ("text", "audio", "image"))
    return {
        "input_text_tokens": per(p.input_price("text")),
        "input_audio_tokens": per(p.input_price("audio")),
        "input_image_tokens": per(p.input_price("image")),
        "input_cached_tokens": per(cached),
        "input_tool_use_tokens": per(p.input_price("text")),
        "output_text_tokens": per(p.output_price("text")),
        "output_audio_tokens": per(p.output_price("audio")),
        "output_image_tokens": per(p.output_price("text")),
        "output_reasoning_tokens": per(p.output_price("text")),
    }


def model_definitions(table: PriceTable) -> list[ModelDefinition]:
    out = []
    for name in table.models():
        price = table.lookup(name)
        if price is None or price.name != name:
            continue  # a glob that another, more specific key shadows for its own name
        out.append(
            ModelDefinition(definition_id(name), name, match_pattern(name), prices_per_token(price))
        )
    return out


Upsert = Callable[[ModelDefinition], None]


def api_upsert(public_key: str, secret_key: str, host: str, timeout_s: float = 10.0) -> Upsert:
    """`api.models.upsert` of the `langfuse` package (the optional extra, imported here)."""
    from langfuse.api import LangfuseAPI
    from langfuse.api.commons import ModelUsageUnit, PricingTierInput

    api = LangfuseAPI(
        base_url=host.rstrip("/"), username=public_key, password=secret_key, timeout=timeout_s
    )

    def upsert(d: ModelDefinition) -> None:
        tier: Any = PricingTierInput(
            name="Standard", is_default=True, priority=0, conditions=[], prices=d.prices
        )
        api.models.upsert(
            d.id,
            model_name=d.model_name,
            match_pattern=d.match_pattern,
            unit=ModelUsageUnit.TOKENS,
            pricing_tiers=[tier],
        )

    return upsert


def sync_models(table: PriceTable, upsert: Upsert) -> list[ModelDefinition]:
    """Register every priced model; returns what was sent (in order). Raises on the first
    failure: the caller (a CLI) reports it; a re-run is safe (upsert by id)."""
    definitions = model_definitions(table)
    for d in definitions:
        upsert(d)
    return definitions
