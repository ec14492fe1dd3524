"""Fixtures for the sessions store and the `/live-sessions` API, on SQLite and PostgreSQL.

Every test that uses `database` runs twice: on a fresh SQLite file, and on PostgreSQL in a schema of
its own (dropped afterwards) when `TEST_DATABASE_URL` is set, e.g.
`TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test`. The API runs in-process through
httpx's ASGI transport over a FastAPI app built from the real router and error handlers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from voicetrace.service.api.auth import mint_token
from voicetrace.service.api.errors import register_error_handlers
from voicetrace.service.api.live_sessions import build_router
from voicetrace.service.sessions.db import Database
from voicetrace.service.sessions.schemas import LiveSession
from voicetrace.service.sessions.store import SessionStore
from voicetrace.service.settings import Settings

JWT_SECRET = "api-test-secret-0123456789abcdef0123456789"
PG_ENV = "TEST_DATABASE_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    else:
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
        db = Database(url, schema=f"vt_test_{uuid.uuid4().hex[:16]}")
    await db.create_schema()
    try:
        yield db
    finally:
        if not db.is_sqlite:
            await db.drop_schema()
        await db.dispose()


@pytest.fixture
def store(database: Database) -> SessionStore:
    return SessionStore(database)


class RecordingListener:
    """Collects the REST-made state changes the app reports to `app.state.session_listener`."""

    def __init__(self) -> None:
        self.changes: list[LiveSession] = []

    def session_changed(self, session: LiveSession) -> None:
        self.changes.append(session)


@dataclass
class Api:
    """The app under test plus helpers that speak for a user through a real token."""

    http: httpx.AsyncClient
    store: SessionStore
    listener: RecordingListener
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, user: str) -> dict[str, str]:
        token = self.tokens.setdefault(user, mint_token(user, JWT_SECRET))
        return {"Authorization": f"Bearer {token}"}

    async def create(self, user: str = "alice", **body: Any) -> dict[str, Any]:
        response = await self.http.post("/live-sessions", json=body, headers=self.auth(user))
        assert response.status_code == 201, response.text
        return response.json()

    async def request(
        self, method: str, url: str, user: str = "alice", **kw: Any
    ) -> httpx.Response:
        return await self.http.request(method, url, headers=self.auth(user), **kw)


def build_app(store: SessionStore, listener: RecordingListener | None = None) -> FastAPI:
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(build_router())
    app.state.settings = Settings(jwt_secret=JWT_SECRET)
    app.state.store = store
    app.state.session_listener = listener
    return app


@pytest.fixture
async def api(store: SessionStore) -> AsyncIterator[Api]:
    listener = RecordingListener()
    transport = httpx.ASGITransport(app=build_app(store, listener))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield Api(http, store, listener)
