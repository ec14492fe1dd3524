"""The few domain errors of the session store; `voicetrace.service.api.errors` maps them to HTTP."""

from __future__ import annotations

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
