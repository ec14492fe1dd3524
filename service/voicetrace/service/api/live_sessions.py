"""`/live-sessions`: create, read, list, pause, resume, update and end the caller's sessions.

The owner is always the bearer token's subject. A `user_id` anywhere in the request — query string
(how the original API took it) or body — is refused with 422 rather than silently ignored, so a
client still written against the old API finds out at once instead of acting as someone else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from voicetrace.service.api.budgets import daily_budget_remaining
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
    LiveSessionView,
    SessionCreate,
    SessionUpdate,
)
from voicetrace.service.sessions.state import SessionState, StateReason
from voicetrace.service.sessions.store import MAX_LIST_LIMIT
from voicetrace.service.voice.budget_policy import BudgetPolicy

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


async def with_daily_budget(request: Request, *sessions: LiveSession) -> list[LiveSessionView]:
    """The sessions with their owner's daily budget left today (`GET /api/budgets/me`'s
    computation, under each session's own daily caps; one ledger read per distinct caps)."""
    policy: BudgetPolicy | None = getattr(request.app.state, "budgets", None)
    remaining: dict[str, dict[str, float | None] | None] = {}
    views = []
    for session in sessions:
        key = f"{session.user_id}:{session.budgets.model_dump_json()}"
        if key not in remaining:
            remaining[key] = (
                daily_budget_remaining(await policy.status(session.user_id, session.budgets))
                if policy is not None
                else None
            )
        views.append(
            LiveSessionView.model_validate(
                {**dict(session), "daily_budget_remaining": remaining[key]}
            )
        )
    return views


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
        response_model=LiveSessionView,
        summary="Create a live session (state CONNECTING)",
        response_description="The new session; connect its voice WebSocket next (before it "
        "expires: VOICETRACE_SESSION_CONNECT_TIMEOUT_S).",
        responses=TOO_MANY,
    )
    async def create_session(
        body: SessionCreate, user: CurrentUser, store: Store, response: Response, request: Request
    ) -> LiveSessionView:
        await ensure_daily_budget(request, user, body.budgets)  # 409 when used up
        session = await store.create(user, body)
        response.headers["Location"] = f"/live-sessions/{session.id}"
        (view,) = await with_daily_budget(request, session)
        return view

    @api.get(
        "",
        response_model=LiveSessionList,
        summary="List the caller's sessions, newest first",
    )
    async def list_sessions(
        user: CurrentUser,
        store: Store,
        request: Request,
        state: Annotated[
            SessionState | None, Query(description="Only sessions in this state.")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIST_LIMIT, description="At most this many.")
        ] = 50,
    ) -> LiveSessionList:
        sessions = await store.list(user, state=state, limit=limit)
        return LiveSessionList(sessions=await with_daily_budget(request, *sessions))

    @api.get(
        "/{session_id}",
        response_model=LiveSessionView,
        summary="Get one session",
        responses=NOT_FOUND,
    )
    async def get_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSessionView:
        (view,) = await with_daily_budget(request, await store.get(session_id, user))
        return view

    @api.put(
        "/{session_id}/pause",
        response_model=LiveSessionView,
        summary="Pause a LIVE session",
        responses=NOT_FOUND | CONFLICT,
    )
    async def pause_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSessionView:
        session = await store.transition(
            session_id, user, SessionState.PAUSED, reason=PAUSED_BY_USER
        )
        notify_session_changed(request, session)
        (view,) = await with_daily_budget(request, session)
        return view

    @api.put(
        "/{session_id}/resume",
        response_model=LiveSessionView,
        summary="Resume a PAUSED session",
        responses=NOT_FOUND | CONFLICT,
    )
    async def resume_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSessionView:
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
        (view,) = await with_daily_budget(request, session)
        return view

    async def update_session(
        session_id: SessionId,
        body: SessionUpdate,
        user: CurrentUser,
        store: Store,
        request: Request,
    ) -> LiveSessionView:
        session = await store.update(session_id, user, body)
        notify_session_changed(request, session)  # new budgets apply to a live session at once
        (view,) = await with_daily_budget(request, session)
        return view

    for method in ("PATCH", "PUT"):
        api.add_api_route(
            "/{session_id}",
            update_session,
            methods=[method],
            response_model=LiveSessionView,
            summary="Update transcripts and budgets"
            + (" (PUT: same as PATCH, kept for older clients)" if method == "PUT" else ""),
            description="Only the fields present are changed; budget fields are merged.",
            responses=NOT_FOUND | CONFLICT,
            operation_id=f"update_session_{method.lower()}",
        )

    @api.delete(
        "/{session_id}",
        response_model=LiveSessionView,
        summary="End a session (state ENDED, reason ended_by_user)",
        description="The session is kept (state ENDED) and returned. Ending an ENDED session "
        "is a 409.",
        responses=NOT_FOUND | CONFLICT,
    )
    async def end_session(
        session_id: SessionId, user: CurrentUser, store: Store, request: Request
    ) -> LiveSessionView:
        session = await store.end(session_id, user, reason=ENDED_BY_USER)
        notify_session_changed(request, session)
        (view,) = await with_daily_budget(request, session)
        return view

    return api


router = build_router()
