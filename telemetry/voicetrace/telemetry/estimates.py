"""Attribute keys that flag a number on the `chat` span as an estimate, not Gemini's own report.

- `voice.cost.estimated=true`: the model had no price entry; the table's `fallback` priced it
  (`prices.Cost.estimated`).
- `voice.usage.estimated=true`: Gemini reported no usage for the turn; the tokens were estimated
  from what was streamed.

They live here, beside the pricing that decides them, until `keys.py` (the one constants module)
takes them over; `spans.py` sets them on the `chat` span.
"""

from __future__ import annotations

from typing import Final

COST_ESTIMATED: Final = "voice.cost.estimated"
USAGE_ESTIMATED: Final = "voice.usage.estimated"
