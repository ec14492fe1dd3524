"""What the emulator's conversations do: scripted from Python or loaded from a JSON file.

The emulator cannot recognise speech, so a spoken turn's transcript is the next entry of
`Scenario.user_says`. Per-turn knobs (thoughts, tool-use tokens, a forced error close, a goAway,
a reply delay, a fixed reply, where usage goes) come either with that entry (`ScriptedTurn`) or,
for any turn including typed ones, from `Scenario.turns[turn_number]`.

Usage delivery (`UsageDelivery`): real Gemini Live puts `usageMetadata` in the `turnComplete`
message, but an independent Live server may send it as its own message right after
`turnComplete`, and interrupted turns often carry none at all. `Scenario.usage` (with a per-turn
`ScriptedTurn.usage` override) and `Scenario.usage_on_interrupted` reproduce those servers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

FALLBACK_SAYS = "(unintelligible)"

UsageDelivery = Literal["with_turn_complete", "after_turn_complete", "none"]
"""Where a turn's `usageMetadata` goes: inside the `turnComplete` message, in its own server
message sent right after the `turnComplete` message, or nowhere."""
USAGE_DELIVERIES: tuple[str, ...] = get_args(UsageDelivery)


def _check_usage(value: object, where: str) -> None:
    if value not in USAGE_DELIVERIES:
        raise ValueError(f"{where} must be one of {list(USAGE_DELIVERIES)}, not {value!r}")


@dataclass(frozen=True, slots=True)
class ScriptedTurn:
    """One user turn's script. Every field but `says` is an optional override."""

    says: str = ""
    reply: str | None = None  # what the model answers instead of the built-in assistant
    thoughts_tokens: int = 0  # reported as `thoughtsTokenCount`
    tool_use_prompt_tokens: int | None = None  # replaces the counted tool-response tokens
    close_code: int | None = None  # close the connection with this code when the turn starts
    close_reason: str = "Internal error encountered."
    go_away: bool = False  # send goAway after this turn, then close 1000
    reply_delay_s: float = 0.0  # think time before the first reply message
    usage: UsageDelivery | None = None  # overrides `Scenario.usage` for this turn
    go_away_after_s: float | None = None  # send goAway this long after the turn started

    def __post_init__(self) -> None:
        if self.usage is not None:
            _check_usage(self.usage, "ScriptedTurn.usage")
        if self.go_away_after_s is not None and self.go_away_after_s < 0:
            raise ValueError("ScriptedTurn.go_away_after_s must be non-negative")

    def merged(self, other: ScriptedTurn | None) -> ScriptedTurn:
        """`other`'s explicitly set fields win over ours (`says` is kept)."""
        if other is None:
            return self
        defaults = ScriptedTurn()
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(ScriptedTurn)
            if f.name != "says" and getattr(other, f.name) != getattr(defaults, f.name)
        }
        return replace(self, **changes)


@dataclass(frozen=True)
class Scenario:
    """Scripted behaviour of every Live connection of one emulator.

    Pacing: output audio goes out in `chunk_ms` chunks, `speed` times faster than real time
    (`realtime=True` paces at 1x). A reply lasts `ms_per_char` per character, capped at
    `max_reply_s`. `silence_duration_ms` applies when the setup does not set one.

    Usage: `usage` says where every turn's `usageMetadata` goes (a turn's own `usage` wins);
    `usage_on_interrupted=False` sends none for interrupted turns, whatever `usage` says.

    Connection timing: `go_away_at_s` sends `goAway` that many seconds after `setupComplete`
    (then closes 1000 after `go_away_time_left_s`), independent of turns.
    `resumption_busy_updates=True` also sends `sessionResumptionUpdate{resumable: false}` (no
    handle) when the model starts a turn, as Gemini does while it generates or calls tools.
    """

    user_says: Sequence[str | ScriptedTurn] = ()
    turns: Mapping[int, ScriptedTurn] = field(default_factory=dict)
    fallback_says: str = FALLBACK_SAYS
    chunk_ms: int = 40
    speed: float = 20.0
    realtime: bool = False
    ms_per_char: float = 60.0
    max_reply_s: float = 12.0
    silence_duration_ms: int = 300
    vad_threshold: int = 1_000
    go_away_after_turn: int | None = None
    go_away_time_left_s: float = 1.0
    go_away_at_s: float | None = None
    usage: UsageDelivery = "with_turn_complete"
    usage_on_interrupted: bool = True
    resumption_busy_updates: bool = False

    def __post_init__(self) -> None:
        _check_usage(self.usage, "Scenario.usage")
        if not isinstance(self.usage_on_interrupted, bool):
            raise ValueError("Scenario.usage_on_interrupted must be true or false")
        if not isinstance(self.resumption_busy_updates, bool):
            raise ValueError("Scenario.resumption_busy_updates must be true or false")
        if self.go_away_at_s is not None and self.go_away_at_s < 0:
            raise ValueError("Scenario.go_away_at_s must be non-negative")
        if self.go_away_time_left_s < 0:
            raise ValueError("Scenario.go_away_time_left_s must be non-negative")
        if self.chunk_ms <= 0 or self.speed <= 0 or self.ms_per_char < 0 or self.max_reply_s < 0:
            raise ValueError("chunk_ms and speed must be positive, durations non-negative")
        if self.silence_duration_ms <= 0:
            raise ValueError("silence_duration_ms must be positive")

    def spoken(self, index: int) -> ScriptedTurn:
        """The script of the `index`-th spoken turn (0-based) of a conversation."""
        if index < len(self.user_says):
            entry = self.user_says[index]
            return entry if isinstance(entry, ScriptedTurn) else ScriptedTurn(says=entry)
        return ScriptedTurn(says=self.fallback_says)

    def for_turn(self, number: int, base: ScriptedTurn | None = None) -> ScriptedTurn:
        turn = (base or ScriptedTurn()).merged(self.turns.get(number))
        if self.go_away_after_turn == number and not turn.go_away:
            turn = replace(turn, go_away=True)
        return turn

    @property
    def chunk_pause_s(self) -> float:
        return self.chunk_ms / 1000 / (1.0 if self.realtime else self.speed)

    # -- JSON ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Build from plain JSON data; unknown keys are an error (typos must not pass silently)."""
        if not isinstance(data, Mapping):
            raise ValueError("a scenario must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scenario keys: {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        values["user_says"] = tuple(_turn(e) for e in data.get("user_says", ()))
        values["turns"] = {int(k): _turn(v) for k, v in dict(data.get("turns", {})).items()}
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"invalid scenario: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data)


def _turn(entry: Any) -> str | ScriptedTurn:
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"a scripted turn is a string or an object, not {entry!r}")
    known = {f.name for f in fields(ScriptedTurn)}
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"unknown scripted turn keys: {sorted(unknown)}; known: {sorted(known)}")
    try:
        return ScriptedTurn(**entry)
    except TypeError as exc:
        raise ValueError(f"invalid scripted turn: {exc}") from exc
