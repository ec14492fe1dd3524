"""FastAPI dependencies: who is calling (from the bearer token only) and the shared store.

Both read what the app factory put on `app.state` (`settings`, `store`), so there are no module
globals and every test app is independent.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from voicetrace.service.api.auth import AuthError, verify_token
from voicetrace.service.sessions.schemas import Budgets, LiveSession
from voicetrace.service.sessions.store import SessionStore
from voicetrace.service.voice.budget_policy import BudgetPolicy

# auto_error=False: we answer 401 ourselves, with a JSON body like every other error.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="HS256 JWT whose `sub` is the user id (`voicetrace token --user <id>`).",
)


def unauthorized(message: str) -> HTTPException:
    """401 with the RFC 6750 challenge, so clients know to (re)authenticate."""
    challenge = 'Bearer realm="voicetrace"'
    if message != "missing bearer token":
        challenge += ', error="invalid_token"'
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail={"code": "unauthorized", "message": message},
        headers={"WWW-Authenticate": challenge},
    )


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> str:
    """The caller's user id from `Authorization: Bearer <jwt>`; 401 when missing or invalid."""
    if credentials is None or not credentials.credentials:
        raise unauthorized("missing bearer token")
    secret = request.app.state.settings.jwt_secret.get_secret_value()
    try:
        return verify_token(credentials.credentials, secret)
    except AuthError as exc:
        raise unauthorized(exc.message) from None


def get_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.store
    return store


class SessionListener(Protocol):
    """Told about state changes made through the REST API, so the process that holds the
    session's voice bridge can act on them (stop it on DELETE, pause it on PUT …/pause)."""

    def session_changed(self, session: LiveSession) -> None: ...


def notify_session_changed(request: Request, session: LiveSession) -> None:
    """Call `app.state.session_listener` if the app has one (optional)."""
    listener: SessionListener | None = getattr(request.app.state, "session_listener", None)
    if listener is not None:
        listener.session_changed(session)


CurrentUser = Annotated[str, Depends(current_user)]
Store = Annotated[SessionStore, Depends(get_store)]


async def ensure_daily_budget(request: Request, user: str, budgets: Budgets | None) -> None:
    """The user's daily budgets (usage ledger) must not be used up; raises `BudgetExhausted`,
    which the app maps to 409 naming the budget. Without a ledger (a router used on its own)
    there is nothing to check."""
    policy: BudgetPolicy | None = getattr(request.app.state, "budgets", None)
    if policy is not None:
        await policy.ensure_available(user, budgets)
