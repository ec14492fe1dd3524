"""One JSON error shape for the API: `{"detail": {"code": …, "message": …}}`.

`register_error_handlers(app)` maps the session store's domain errors to HTTP; the 401s come from
`service.api.deps` as `HTTPException`s with the same shape. Validation errors keep FastAPI's 422
format, which names the offending field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from voicetrace.service.api.auth import AuthError
from voicetrace.service.api.deps import unauthorized
from voicetrace.service.sessions.errors import InvalidTransition, NotFound
from voicetrace.service.sessions.schemas import ErrorResponse

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
        "description": "The state machine forbids this transition (`invalid_transition`).",
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


async def _auth_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    http = unauthorized(exc.message)
    return JSONResponse({"detail": http.detail}, http.status_code, headers=http.headers)


def register_error_handlers(app: FastAPI) -> None:
    """Install the handlers for the session store's errors (and stray `AuthError`s)."""
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(InvalidTransition, _invalid_transition)
    app.add_exception_handler(AuthError, _auth_error)
