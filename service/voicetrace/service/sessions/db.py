"""`Database`: the async engine and session factory for one database URL.

SQLite (aiosqlite) is the zero-setup default; PostgreSQL (asyncpg) is for several replicas. On
SQLite every connection turns on WAL (readers never block the writer) and a busy timeout (a second
writer waits instead of failing with "database is locked").
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool
from voicetrace.service.sessions.models import metadata

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SQLITE_BUSY_TIMEOUT_MS = 5_000


class Database:
    """Owns one engine. `schema` (PostgreSQL only) puts the tables in their own schema, so test
    runs or tenants sharing a server never see each other's rows."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        parsed = make_url(url)
        # Accept the usual driverless spellings and pick the async driver for them.
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+asyncpg")
        elif parsed.drivername == "sqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if schema is not None and (self.is_sqlite or not _SCHEMA_NAME.match(schema)):
            raise ValueError(f"invalid schema {schema!r}: PostgreSQL only, lowercase identifier")
        self.schema = schema
        # hide_parameters: statement parameters (transcripts, blurred secrets) never reach a log
        # line or an exception message, even with echo on or when a query fails.
        options: dict[str, Any] = {
            "echo": echo,
            "hide_parameters": True,
            "json_serializer": _json_dumps,
        }
        if self.is_sqlite:
            database = parsed.database or ""
            if database in ("", ":memory:"):
                # One shared connection, or every connection would see its own empty database.
                options |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            options["pool_pre_ping"] = True
        if schema is not None:
            options["execution_options"] = {"schema_translate_map": {None: schema}}
        self.engine: AsyncEngine = create_async_engine(parsed, **options)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            _silence_aiosqlite_statement_logs()
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    def __repr__(self) -> str:
        # Never print a password that may be in the URL.
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def create_schema(self) -> None:
        """Create the tables (and the PostgreSQL schema) if they do not exist yet."""
        async with self.engine.begin() as conn:
            if self.schema is not None:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(metadata.create_all)

    async def drop_schema(self) -> None:
        """Drop everything `create_schema` made (tests, teardown of a tenant)."""
        async with self.engine.begin() as conn:
            if self.schema is not None:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            else:
                await conn.run_sync(metadata.drop_all)

    async def dispose(self) -> None:
        await self.engine.dispose()


class _NoStatementLogs(logging.Filter):
    """aiosqlite logs every call *with its parameters* at DEBUG; drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _silence_aiosqlite_statement_logs() -> None:
    logger = logging.getLogger("aiosqlite")
    if not any(isinstance(f, _NoStatementLogs) for f in logger.filters):
        logger.addFilter(_NoStatementLogs())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _json_default(value: Any) -> Any:
    # Summaries carry Decimal costs and datetimes; JSON columns store them as number / ISO text.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)
