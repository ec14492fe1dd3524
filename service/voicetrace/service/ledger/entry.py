"""`LedgerEntry`: one settled generation as the ledger stores it, built from the settled
`TurnSummary` — the very numbers the turn's `chat` span carries (`TurnOutbox.emit` computes the
summary and the span's usage/cost from one `UsageBreakdown` and one `Cost`).

Idempotency key: (session_id, turn). The chat span's id would do too, but it does not exist yet
when the turn settles (the span is built later, on the telemetry's emitter thread, and may never
be built when sampled out or dropped), while (session, turn) is known at once, is the same on
every replay, and a session id is claimed by exactly one connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from voicetrace.telemetry import TurnSummary

PICO = 12  # money is stored as integer 10^-12 USD
_MICRO_PER_MS = 1000


def to_pico(usd: Decimal) -> int:
    """Exact for every packaged price; anything finer rounds half-even (the one edge)."""
    return int(usd.scaleb(PICO).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_pico(pusd: int) -> Decimal:
    return Decimal(pusd).scaleb(-PICO)


@dataclass(slots=True)
class Usage:
    """Summable usage: one generation, or a day's or a group's total."""

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_text: int = 0
    input_audio: int = 0
    input_image: int = 0
    output_text: int = 0
    output_audio: int = 0
    output_image: int = 0
    output_reasoning: int = 0
    camera_tokens: int = 0
    screen_tokens: int = 0
    audio_in_us: int = 0
    audio_out_us: int = 0
    cost_pusd: int = 0

    def add(self, other: Usage) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_columns(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Usage:
        return cls(**{f.name: int(row[f.name] or 0) for f in fields(cls)})

    @property
    def cost_usd(self) -> Decimal:
        return from_pico(self.cost_pusd)

    @property
    def audio_minutes(self) -> Decimal:
        return Decimal(self.audio_in_us + self.audio_out_us) / Decimal(60_000_000)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    session_id: str
    turn: int
    user_id: str
    model: str
    price_model: str | None
    day: date
    settled_at: datetime
    usage_received: bool
    usage_estimated: bool
    cost_known: bool
    cost_estimated: bool
    usage: Usage = field(default_factory=Usage)

    @classmethod
    def from_turn(
        cls,
        summary: TurnSummary,
        *,
        session_id: str,
        user_id: str,
        model: str,
        price_model: str | None,
        cost_estimated: bool,
        tz: ZoneInfo,
        now: datetime | None = None,
    ) -> LedgerEntry:
        settled = now or datetime.now(UTC)
        tokens = summary.tokens_by_modality
        usage = Usage(
            turns=1,
            input_tokens=summary.input_tokens,
            output_tokens=summary.output_tokens,
            input_text=tokens.get("input_text", 0),
            input_audio=tokens.get("input_audio", 0),
            input_image=tokens.get("input_image", 0),
            output_text=tokens.get("output_text", 0),
            output_audio=tokens.get("output_audio", 0),
            output_image=tokens.get("output_image", 0),
            output_reasoning=tokens.get("output_reasoning", 0),
            camera_tokens=summary.camera_tokens,
            screen_tokens=summary.screen_tokens,
            audio_in_us=round(summary.audio_in_ms * _MICRO_PER_MS),
            audio_out_us=round(summary.audio_out_ms * _MICRO_PER_MS),
            cost_pusd=0 if summary.cost_usd is None else to_pico(summary.cost_usd),
        )
        return cls(
            session_id=session_id,
            turn=summary.number,
            user_id=user_id,
            model=model,
            price_model=price_model,
            day=settled.astimezone(tz).date(),
            settled_at=settled,
            usage_received=summary.usage_received,
            usage_estimated=summary.usage_estimated,
            cost_known=summary.cost_usd is not None,
            cost_estimated=cost_estimated,
            usage=usage,
        )

    def row(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "turn": self.turn,
            "user_id": self.user_id,
            "model": self.model,
            "price_model": self.price_model,
            "day": self.day,
            "settled_at": self.settled_at,
            "usage_received": self.usage_received,
            "usage_estimated": self.usage_estimated,
            "cost_known": self.cost_known,
            "cost_estimated": self.cost_estimated,
            **self.usage.as_columns(),
        }
