"""`/api/budgets`: a user's daily budget today, and an admin's per-user daily limits.

`daily_budget_remaining {usd, audioMin, videoTokens, screenTokens}` and `audio_minutes_used`
use the seed's names; `null` means unlimited. An admin's limits replace the settings defaults
for that user (a `null` field falls back to the default).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from voicetrace.service.api.errors import UNAUTHORIZED, error_body
from voicetrace.service.api.observability import ledger_policy
from voicetrace.service.api.principal import Admin, Caller
from voicetrace.service.sessions.schemas import Minutes, Tokens, Usd
from voicetrace.service.voice.budget import BudgetMetric
from voicetrace.service.voice.budget_policy import BudgetExhausted, DailyStatus, limits_from_json

router = APIRouter(prefix="/api/budgets", tags=["budgets"], responses=UNAUTHORIZED)

UserId = Annotated[str, Path(min_length=1, max_length=255)]


class DailyLimitsBody(BaseModel):
    """Per-user daily limits; `null` (or absent) = the settings default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"daily_usd": 2.5, "daily_audio_minutes": 60}]},
    )

    daily_usd: Usd | None = None
    daily_audio_minutes: Minutes | None = None
    daily_video_tokens: Tokens | None = None
    daily_screen_tokens: Tokens | None = None


class DailyBudgetView(BaseModel):
    user_id: str
    day: date
    timezone: str
    daily_budget_remaining: dict[str, float | None] = Field(
        description="`usd`, `audioMin`, `videoTokens`, `screenTokens`; null = unlimited.",
        examples=[{"usd": 1.25, "audioMin": 42.5, "videoTokens": None, "screenTokens": None}],
    )
    daily_limits: dict[str, float | None]
    daily_used: dict[str, float]
    audio_minutes_used: float


_SEED_NAMES = {
    BudgetMetric.USD: "usd",
    BudgetMetric.AUDIO_MINUTES: "audioMin",
    BudgetMetric.VIDEO_TOKENS: "videoTokens",
    BudgetMetric.SCREEN_TOKENS: "screenTokens",
}


def _num(d: Decimal | None) -> float | None:
    return None if d is None else float(d)


def daily_budget_remaining(status: DailyStatus) -> dict[str, float | None]:
    """`{usd, audioMin, videoTokens, screenTokens}` left today (None: unlimited)."""
    return {n: _num(status.remaining(m)) for m, n in _SEED_NAMES.items()}


def _view(user_id: str, status: DailyStatus, zone: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "day": status.day,
        "timezone": zone,
        "daily_budget_remaining": daily_budget_remaining(status),
        "daily_limits": {n: _num(status.limits[m]) for m, n in _SEED_NAMES.items()},
        "daily_used": {n: float(status.used[m]) for m, n in _SEED_NAMES.items()},
        "audio_minutes_used": float(status.used[BudgetMetric.AUDIO_MINUTES]),
    }


@router.get("/me", response_model=DailyBudgetView, summary="The caller's daily budget today")
async def my_budget(request: Request, caller: Caller) -> dict[str, Any]:
    policy = ledger_policy(request)
    return _view(caller.user_id, await policy.status(caller.user_id), policy.zone.key)


@router.get(
    "/users/{user_id}",
    response_model=DailyBudgetView,
    summary="A user's daily budget today (admin)",
    responses={403: {"description": "Needs the admin role."}},
)
async def user_budget(request: Request, user_id: UserId, _admin: Admin) -> dict[str, Any]:
    policy = ledger_policy(request)
    return _view(user_id, await policy.status(user_id), policy.zone.key)


@router.put(
    "/users/{user_id}",
    response_model=DailyBudgetView,
    summary="Set a user's daily limits (admin)",
    description="Replaces the user's limits; null fields fall back to the settings defaults. "
    "Live sessions see the new limits at their next settled turn.",
    responses={403: {"description": "Needs the admin role."}},
)
async def set_user_budget(
    request: Request, user_id: UserId, body: DailyLimitsBody, admin: Admin
) -> dict[str, Any]:
    policy = ledger_policy(request)
    limits = limits_from_json(
        body.daily_usd, body.daily_audio_minutes, body.daily_video_tokens, body.daily_screen_tokens
    )
    await policy.store.set_user_limits(user_id, limits, by=admin.user_id)
    return _view(user_id, await policy.status(user_id), policy.zone.key)


async def _budget_exhausted(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BudgetExhausted)
    body = error_body("budget_exhausted", exc.message, budget=exc.check.to_json())
    return JSONResponse(body, status.HTTP_409_CONFLICT)


def register_budget_errors(app: FastAPI) -> None:
    """`BudgetExhausted` anywhere in a request → 409 `budget_exhausted` naming the budget."""
    app.add_exception_handler(BudgetExhausted, _budget_exhausted)
