"""The live-session state machine: one table, pure functions, no I/O.

`IDLE → CONNECTING → LIVE ⇄ PAUSED → ENDED`. A session is created straight into CONNECTING (the
IDLE → CONNECTING step happens at creation), becomes LIVE when its voice bridge is up, and may end
from any non-terminal state. ENDED is terminal. The store turns this table into the `WHERE state IN
(…)` of an atomic UPDATE, so the database, not Python, decides which of two racing calls wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class SessionState(StrEnum):
    IDLE = "IDLE"
    CONNECTING = "CONNECTING"
    LIVE = "LIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"


class StateReason(StrEnum):
    """Why a session's last transition happened (`state_reason`; the end ones also become its
    `end_reason`). Defined once; a session's end reason may also be a telemetry `EndReason`."""

    PAUSED_BY_USER = "paused_by_user"
    RESUMED_BY_USER = "resumed_by_user"
    BUDGET_EXHAUSTED = "budget_exhausted"
    DIRECT_TOKEN = "direct_token"  # a client-direct session went LIVE when its token was minted
    RECOVERED = "recovered_after_restart"  # this instance id served it before a restart
    OWNER_LOST = "owner_lease_expired"  # another instance served it and stopped renewing
    CONNECT_TIMEOUT = "connect_timeout"  # nobody connected to it in time


S = SessionState

TRANSITIONS: Mapping[SessionState, frozenset[SessionState]] = {
    S.IDLE: frozenset({S.CONNECTING}),
    S.CONNECTING: frozenset({S.LIVE, S.ENDED}),
    S.LIVE: frozenset({S.PAUSED, S.ENDED}),
    S.PAUSED: frozenset({S.LIVE, S.ENDED}),
    S.ENDED: frozenset(),
}

# The verb a user would use to ask for a target state, for error messages
# ("cannot pause a session in state ENDED").
ACTIONS: Mapping[SessionState, str] = {
    S.IDLE: "reset",
    S.CONNECTING: "connect",
    S.LIVE: "resume",
    S.PAUSED: "pause",
    S.ENDED: "end",
}

# States a session may be in while some process believes it has a live voice bridge. After a
# crash no bridge exists any more, so these are closed on the next start.
OPEN_STATES: frozenset[SessionState] = frozenset({S.CONNECTING, S.LIVE, S.PAUSED})


def can_transition(current: SessionState, requested: SessionState) -> bool:
    """True when `current → requested` is an edge of the state machine."""
    return requested in TRANSITIONS[current]


def sources_of(requested: SessionState) -> frozenset[SessionState]:
    """Every state from which `requested` can be reached in one step."""
    return frozenset(state for state, targets in TRANSITIONS.items() if requested in targets)


def is_terminal(state: SessionState) -> bool:
    return not TRANSITIONS[state]


def transition_message(current: SessionState, requested: SessionState) -> str:
    """Human-readable reason a transition was refused."""
    return f"cannot {ACTIONS[requested]} a session in state {current.value}"
