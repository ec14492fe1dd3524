"""Live sessions: state machine, SQL store and schemas (see `docs/api.md`)."""

from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.errors import InvalidTransition, NotFound, SessionError
from voicetrace.service.sessions.schemas import Budgets, LiveSession, SessionCreate, SessionUpdate
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import SessionStore

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
