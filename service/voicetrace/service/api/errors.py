"""One JSON error shape for the API: `{"detail": {"code": …, "message": …}}`.

`register_error_handlers(app)` maps the session store's domain errors to HTTP; the 401s come from
`service.api.deps` as `HTTPException`s with the same shape. Validation errors keep FastAPI's 422
format, which names the offending field — but never echo a large input back (`input` is cut
short), so a 10 MB body cannot become a 10 MB error.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from voicetrace.service.api.auth import AuthError
from voicetrace.service.api.deps import unauthorized
from voicetrace.service.sessions.errors import (
    BudgetExhausted,
    InvalidTransition,
    NotFound,
    OwnedElsewhere,
    SessionLimitExceeded,
)
from voicetrace.service.sessions.schemas import ErrorResponse

# A 422 quotes at most this much of the offending value.
MAX_ECHO_CHARS = 120

# For `responses=` in route decorators, so /docs shows every error a route can return.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, malformed or expired bearer token."}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorResponse,
        "description": "No such session for this user (another user's session looks the same).",
    }
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "The state machine forbids this transition (`invalid_transition`), "
        "the session is served by another live instance (`owned_by_other_instance`, names the "
        "`owner`) or, on resume, a budget is used up (`budget_exhausted`, names the `budget`).",
    }
}
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "A per-user cap on concurrent sessions is reached "
        "(`too_many_open_sessions` / `too_many_live_sessions`, with the `limit`).",
    }
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"detail": {"code": code, "message": message, **extra}}


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    return JSONResponse(error_body(exc.code, exc.message), status.HTTP_404_NOT_FOUND)


async def _invalid_transition(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidTransition)
    body = error_body(
        exc.code, exc.message, current=exc.current.value, requested=exc.requested.value
    )
    return JSONResponse(body, status.HTTP_409_CONFLICT)


async def _owned_elsewhere(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OwnedElsewhere)
    expires = exc.lease_expires_at.isoformat() if exc.lease_expires_at else None
    body = error_body(exc.code, exc.message, owner=exc.owner, lease_expires_at=expires)
    return JSONResponse(body, status.HTTP_409_CONFLICT)


async def _budget_exhausted(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BudgetExhausted)
    body = error_body(exc.code, exc.message, budget=exc.budget)
    return JSONResponse(body, status.HTTP_409_CONFLICT)


async def _too_many(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SessionLimitExceeded)
    body = error_body(exc.code, exc.message, limit=exc.limit)
    return JSONResponse(body, status.HTTP_429_TOO_MANY_REQUESTS)


def _short(value: Any) -> Any:
    """`value` if it is small, else a truncated description of it."""
    if isinstance(value, str):
        if len(value) <= MAX_ECHO_CHARS:
            return value
        return f"{value[:MAX_ECHO_CHARS]}… ({len(value)} characters, truncated)"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no inf / nan
    if isinstance(value, bool | int | float | None):
        text = repr(value)
        if len(text) <= MAX_ECHO_CHARS:
            return value
        return f"{text[:MAX_ECHO_CHARS]}… ({len(text)} characters, truncated)"
    try:
        text = str(jsonable_encoder(value))
    except Exception:  # an unencodable input: describe it by type only
        return f"<{type(value).__name__}>"
    if len(text) <= MAX_ECHO_CHARS:
        return value
    return f"<{type(value).__name__} of {len(text)} characters, truncated>"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        error = dict(error)
        if "input" in error:
            error["input"] = _short(error["input"])
        if "ctx" in error:
            error["ctx"] = {key: _short(value) for key, value in dict(error["ctx"]).items()}
        if isinstance(error.get("msg"), str):
            error["msg"] = _short(error["msg"])
        errors.append(error)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _auth_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    http = unauthorized(exc.message)
    return JSONResponse({"detail": http.detail}, http.status_code, headers=http.headers)


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers for the session store's errors (and stray `AuthError`s)."""
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(InvalidTransition, _invalid_transition)
    app.add_exception_handler(OwnedElsewhere, _owned_elsewhere)
    app.add_exception_handler(BudgetExhausted, _budget_exhausted)
    app.add_exception_handler(SessionLimitExceeded, _too_many)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(AuthError, _auth_error)
