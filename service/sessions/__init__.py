"""Live sessions: state machine, SQL store and schemas (see `docs/api.md`)."""

from service.sessions.db import Database
from service.sessions.errors import InvalidTransition, NotFound, SessionError
from service.sessions.schemas import Budgets, LiveSession, SessionCreate, SessionUpdate
from service.sessions.state import SessionState
from service.sessions.store import SessionStore

__all__ = [
    "Budgets",
    "Database",
    "InvalidTransition",
    "LiveSession",
    "NotFound",
    "SessionCreate",
    "SessionError",
    "SessionState",
    "SessionStore",
    "SessionUpdate",
]
