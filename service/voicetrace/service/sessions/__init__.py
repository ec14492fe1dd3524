"""Live sessions: state machine, SQL store and schemas (see `docs/api.md`)."""

from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import (
    BudgetExhausted,
    ConnectTimedOut,
    InvalidTransition,
    NotFound,
    OwnedElsewhere,
    SessionError,
    SessionLimitExceeded,
)
from voicetrace.service.sessions.policy import SessionPolicy
from voicetrace.service.sessions.schemas import Budgets, LiveSession, SessionCreate, SessionUpdate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import SessionStore

__all__ = [
    "BudgetExhausted",
    "Budgets",
    "ConnectTimedOut",
    "Database",
    "InvalidTransition",
    "LiveSession",
    "NotFound",
    "OwnedElsewhere",
    "SessionCreate",
    "SessionError",
    "SessionLimitExceeded",
    "SessionPolicy",
    "SessionState",
    "SessionStore",
    "SessionUpdate",
]
