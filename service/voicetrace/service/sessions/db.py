"""`Database`: the async engines for one database URL, and the only way the store touches them.

SQLite (aiosqlite) is the zero-setup default; PostgreSQL (asyncpg) is for several replicas. On
SQLite every connection turns on WAL (readers never block the writer) and a busy timeout (a writer
of another process waits instead of failing with "database is locked"), and this process writes
through ONE connection, one transaction at a time (SQLite allows a single writer anyway).

Every unit of work runs in a task of its own that the caller merely awaits through
`asyncio.shield`: cancelling the caller (a bridge loop torn down mid-write, a client gone) never
cancels the transaction half way. An interrupted transaction is what used to leave a pooled SQLite
connection holding the write lock for good (issue #8): by construction that cannot happen now —
the write commits or rolls back on its own, and `dispose()` waits for writes still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DefaultClause, MetaData, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool
from voicetrace.service.sessions.models import metadata

log = logging.getLogger(__name__)

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SQLITE_BUSY_TIMEOUT_MS = 5_000
# How long `dispose()` waits for writes still in flight (their callers may be long gone).
DRAIN_TIMEOUT_S = 10.0

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[T]]


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
        writer_options: dict[str, Any] = {}
        shared = False
        if self.is_sqlite:
            database = parsed.database or ""
            if database in ("", ":memory:"):
                # One shared connection, or every connection would see its own empty database.
                options |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
                shared = True
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                # The one writer connection; readers get a pool of their own (WAL: they never
                # wait for the writer).
                writer_options = {"pool_size": 1, "max_overflow": 0}
        else:
            options["pool_pre_ping"] = True
        if schema is not None:
            options["execution_options"] = {"schema_translate_map": {None: schema}}
        # `engine` writes (and, on PostgreSQL or in-memory SQLite, reads too).
        self.engine: AsyncEngine = create_async_engine(parsed, **options, **writer_options)
        self.reader: AsyncEngine = (
            create_async_engine(parsed, **options) if self.is_sqlite and not shared else self.engine
        )
        if self.is_sqlite:
            for engine in {self.engine, self.reader}:
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            _silence_aiosqlite_statement_logs()
        # SQLite has one writer: queue our own writes here instead of in its busy timeout.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        self._in_flight: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        # Never print a password that may be in the URL.
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def write(self, work: Work[T]) -> T:
        """Run `work(conn)` in one transaction (committed when it returns, rolled back when it
        raises), on the writer connection. Cancelling the caller does not cancel the write."""
        return await self._detached(self._write(work))

    async def read(self, work: Work[T]) -> T:
        """Run `work(conn)` on a read connection; like `write`, immune to caller cancellation
        (a connection is never abandoned mid-statement)."""
        return await self._detached(self._read(work))

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait (bounded) until every unit of work already handed over has finished."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=timeout_s)

    async def _detached(self, work: Awaitable[T]) -> T:
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller is gone; the work goes on. Nobody awaits it any more, so report a
            # failure here (type only: messages may quote row values).
            task.add_done_callback(_log_orphan_failure)
            raise

    async def _write(self, work: Work[T]) -> T:
        async with self._write_lock or contextlib.nullcontext(), self.engine.begin() as conn:
            return await work(conn)

    async def _read(self, work: Work[T]) -> T:
        async with self.reader.connect() as conn:
            return await work(conn)

    async def create_schema(self) -> None:
        """Create the tables (and the PostgreSQL schema) if they do not exist yet."""

        async def create(conn: AsyncConnection) -> None:
            if conn.dialect.name == "postgresql":
                # Replicas starting together must not race to create the same tables (the
                # loser fails on pg_type's unique index): one at a time, for this transaction.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7301917041)"))
            if self.schema is not None:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(add_missing_columns, self.schema, metadata)

        await self.write(create)

    async def drop_schema(self) -> None:
        """Drop everything `create_schema` made (tests, teardown of a tenant)."""

        async def drop(conn: AsyncConnection) -> None:
            if self.schema is not None:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            else:
                await conn.run_sync(metadata.drop_all)

        await self.write(drop)

    async def dispose(self) -> None:
        """Let writes in flight finish (bounded), then close every connection."""
        await self.drain()
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


def add_missing_columns(sync_conn: Any, schema: str | None, tables: MetaData) -> None:
    """Bring a database made by an older release up to date: add the columns of `tables` it
    lacks (every later column is nullable or has a server default, so `ADD COLUMN` is enough).
    Also used for the usage ledger's tables, which have their own metadata."""
    inspector = inspect(sync_conn)
    preparer = sync_conn.dialect.identifier_preparer
    for table in tables.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name, schema=schema)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl = f"{column.name} {column.type.compile(sync_conn.dialect)}"
            if isinstance(column.server_default, DefaultClause):
                ddl += f" NOT NULL DEFAULT {column.server_default.arg}"
            name = preparer.quote(table.name)
            if schema is not None:
                name = f"{preparer.quote_schema(schema)}.{name}"
            sync_conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {ddl}"))


def _log_orphan_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("a database write whose caller was cancelled failed: %s", type(exc).__name__)


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
