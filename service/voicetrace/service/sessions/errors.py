"""The few domain errors of the session store; `voicetrace.service.api.errors` maps them to HTTP."""

from __future__ import annotations

from datetime import datetime

from voicetrace.service.sessions.state import SessionState, transition_message


class SessionError(Exception):
    """Base class: every store error has a stable machine-readable `code`."""

    code = "session_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(SessionError):
    """No such session *for this user*: a missing session and another user's look the same."""

    code = "not_found"

    def __init__(self, message: str = "live session not found") -> None:
        super().__init__(message)


class InvalidTransition(SessionError):
    """The state machine (or a concurrent call that got there first) forbids this transition."""

    code = "invalid_transition"

    def __init__(self, current: SessionState, requested: SessionState) -> None:
        super().__init__(transition_message(current, requested))
        self.current = current
        self.requested = requested


class ConnectTimedOut(InvalidTransition):
    """Nobody connected to the session in time; it is ENDED now (reason `connect_timeout`)."""

    code = "connect_timeout"

    def __init__(self, timeout_s: float) -> None:
        super().__init__(SessionState.ENDED, SessionState.LIVE)
        self.message = (
            f"the session expired: nobody connected to it within {timeout_s:g} s "
            "(it is ENDED with reason connect_timeout)"
        )
        self.args = (self.message,)


class OwnedElsewhere(SessionError):
    """The session's voice bridge runs on another replica whose lease is still valid: only that
    replica can pause, resume, re-budget or end it (see docs/reliability.md)."""

    code = "owned_by_other_instance"

    def __init__(self, owner: str, lease_expires_at: datetime | None) -> None:
        super().__init__(
            f"the session is served by instance {owner!r}; send this request to that instance "
            "(or retry after its lease expires)"
        )
        self.owner = owner
        self.lease_expires_at = lease_expires_at


class BudgetExhausted(SessionError):
    """Resume (or connect) refused: the named budget is used up. Raise the limit first."""

    code = "budget_exhausted"

    def __init__(self, budget: str) -> None:
        super().__init__(
            f"the {budget} budget is exhausted: raise budgets.{budget} (PATCH) before resuming"
        )
        self.budget = budget


class SessionLimitExceeded(SessionError):
    """A per-user cap on concurrent sessions (`kind` is `live` or `open`) is reached."""

    def __init__(self, kind: str, limit: int) -> None:
        what = "live (LIVE or PAUSED)" if kind == "live" else "open (not yet connected)"
        super().__init__(
            f"too many {what} sessions: at most {limit} per user; end one first"
            + ("" if kind == "live" else " or let it expire")
        )
        self.code = f"too_many_{kind}_sessions"
        self.kind = kind
        self.limit = limit
