"""`/live-sessions`: create, read, list, pause, resume, update and end the caller's sessions.

The owner is always the bearer token's subject. A `user_id` anywhere in the request — query string
(how the original API took it) or body — is refused with 422 rather than silently ignored, so a
client still written against the old API finds out at once instead of acting as someone else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from voicetrace.service.api.deps import (
    CurrentUser,
    Store,
    ensure_daily_budget,
    notify_session_changed,
)
from voicetrace.service.api.errors import CONFLICT, NOT_FOUND, TOO_MANY, UNAUTHORIZED
from voicetrace.service.sessions.schemas import (
    LiveSession,
    LiveSessionList,
    SessionCreate,
    SessionUpdate,
)
from voicetrace.service.sessions.state import SessionState, StateReason
from voicetrace.service.sessions.store import MAX_LIST_LIMIT

ENDED_BY_USER = "ended_by_user"
PAUSED_BY_USER = StateReason.PAUSED_BY_USER
RESUMED_BY_USER = StateReason.RESUMED_BY_USER


def _refuse_user_id_query(request: Request) -> None:
    if "user_id" in request.query_params:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[
                {
                    "type": "extra_forbidden",
                    "loc": ["query", "user_id"],
                    "msg": "user_id is not accepted: the owner is the bearer token's subject",
                    "input": None,
                }
            ],
        )


SessionId = Annotated[str, Path(min_length=1, max_length=64, description="Session UUID.")]


def build_router() -> APIRouter:
    """A fresh router (no shared mutable state); `router` below is the default instance."""
    api = APIRouter(
        prefix="/live-sessions",
        tags=["live-sessions"],
        dependencies=[Depends(_refuse_user_id_query)],
        responses=UNAUTHORIZED,
    )

    @api.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=LiveSession,
        summary="Create a live session (state CONNECTING)",
        response_description="The new session; connect its voice WebSocket next (before it "
        "expires: VOICETRACE_SESSION_CONNECT_TIMEOUT_S).",
        responses=TOO_MANY,
    )
    async def create_session(
        body: SessionCreate, user: CurrentUser, store: Store, response: Response, request: Request
    ) -> LiveSession:
        await ensure_daily_budget(request, user, body.budgets)  # 409 when used up
        session = await store.create(user, body)
        response.headers["Location"] = f"/live-sessions/{session.id}"
        return session

    @api.get(
        "",
        response_model=LiveSessionList,
        summary="List the caller's sessions, newest first",
    )
    async def list_sessions(
        user: CurrentUser,
        store: Store,
        state: Annotated[
            SessionState | None, Query(description="Only sessions in this state.")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIST_LIMIT, description="At most this many.")
        ] = 50,
    ) -> LiveSessionList:
        return LiveSessionList(sessions=await store.list(user, state=state, limit=limit))

    @api.get(
        "/{session_id}",
        response_model=LiveSession,
        summary="Get one session",
        responses=NOT_FOUND,
    )
    async def get_session(session_id: SessionId, user: CurrentUser, store: Store) -> LiveSession:
        return await store.get(session_id, user)

    @api.put(
        "/{session_id}/pause",
        response_model=LiveSession,
        summary="Pause a LIVE session",
        responses=NOT_FOUND | CONFLICT,
    )
    async def pause_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSession:
        session = await store.transition(
            session_id, user, SessionState.PAUSED, reason=PAUSED_BY_USER
        )
        notify_session_changed(request, session)
        return session

    @api.put(
        "/{session_id}/resume",
        response_model=LiveSession,
        summary="Resume a PAUSED session",
        responses=NOT_FOUND | CONFLICT,
    )
    async def resume_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSession:
        current = await store.get(session_id, user)
        await ensure_daily_budget(request, user, current.budgets)  # 409 when used up
        await store.clear_daily_budget_flag(session_id, user)  # the day's budget has room
        session = await store.transition(
            session_id,
            user,
            SessionState.LIVE,
            reason=RESUMED_BY_USER,
            only_from={SessionState.PAUSED},  # CONNECTING → LIVE is the bridge's, not the user's
        )
        notify_session_changed(request, session)
        return session

    async def update_session(
        session_id: SessionId,
        body: SessionUpdate,
        user: CurrentUser,
        store: Store,
        request: Request,
    ) -> LiveSession:
        session = await store.update(session_id, user, body)
        notify_session_changed(request, session)  # new budgets apply to a live session at once
        return session

    for method in ("PATCH", "PUT"):
        api.add_api_route(
            "/{session_id}",
            update_session,
            methods=[method],
            response_model=LiveSession,
            summary="Update transcripts and budgets"
            + (" (PUT: same as PATCH, kept for older clients)" if method == "PUT" else ""),
            description="Only the fields present are changed; budget fields are merged.",
            responses=NOT_FOUND | CONFLICT,
            operation_id=f"update_session_{method.lower()}",
        )

    @api.delete(
        "/{session_id}",
        response_model=LiveSession,
        summary="End a session (state ENDED, reason ended_by_user)",
        description="The session is kept (state ENDED) and returned. Ending an ENDED session "
        "is a 409.",
        responses=NOT_FOUND | CONFLICT,
    )
    async def end_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSession:
        session = await store.end(session_id, user, reason=ENDED_BY_USER)
        notify_session_changed(request, session)
        return session

    return api


router = build_router()
