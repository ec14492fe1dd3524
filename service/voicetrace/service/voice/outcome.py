"""How a voice session ends: its end reason and the WebSocket close that goes with it."""

from __future__ import annotations

from dataclasses import dataclass

from voicetrace.telemetry import EndReason

# WebSocket close codes (RFC 6455 §7.4.1)
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the session ends: the reason (telemetry and client) and the WebSocket close."""

    end_reason: EndReason
    code: int = CLOSE_NORMAL
    message: str = ""

    @classmethod
    def stopped(cls, reason: str) -> Outcome:
        """Ended from outside: server shutdown (1001) or REST."""
        code = CLOSE_GOING_AWAY if reason == EndReason.SERVER_SHUTDOWN else CLOSE_NORMAL
        return cls(EndReason.parse(reason), code)


class Closing(Exception):
    """Raised inside a loop to end the session with `outcome`."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def closing(reason: EndReason, code: int = CLOSE_NORMAL, message: str = "") -> Closing:
    return Closing(Outcome(reason, code, message))
