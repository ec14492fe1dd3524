"""Who is calling, with roles: the bearer token's `sub` and `roles` claim (api.auth).

`/live-sessions` only needs the user id (`api.deps.current_user`); the observability and budget
routes also need to know an admin (`roles: ["admin"]`), who sees every user's costs and sets
per-user budgets. Same 401s as `api.deps`; a non-admin on an admin route is a 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from voicetrace.service.api.auth import AuthError, Principal, verify_principal
from voicetrace.service.api.deps import unauthorized

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description='HS256 JWT whose `sub` is the user id; `roles: ["admin"]` for admin routes.',
)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise unauthorized("missing bearer token")
    secret = request.app.state.settings.jwt_secret.get_secret_value()
    try:
        return verify_principal(credentials.credentials, secret)
    except AuthError as exc:
        raise unauthorized(exc.message) from None


async def admin_principal(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    if not principal.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail={"code": "forbidden", "message": "this needs the admin role (roles: [admin])"},
        )
    return principal


Caller = Annotated[Principal, Depends(current_principal)]
Admin = Annotated[Principal, Depends(admin_principal)]
