"""The `live_sessions` and `session_turns` tables (SQLAlchemy Core), portable between SQLite and
PostgreSQL.

Budgets are one column each rather than a JSON blob, so a PATCH of one limit is a single atomic
`UPDATE … SET session_usd = …` and can never lose a concurrent change to another limit. Usage
running totals are columns too, incremented in SQL (`SET cost_usd = cost_usd + ?`), never read,
added to in Python and written back.

Columns added after the first release carry a `server_default` (or are nullable), so
`Database.create_schema` can add them to an existing database with `ALTER TABLE … ADD COLUMN`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset on its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """Exact USD amounts as integer micro-dollars: SQLite has no exact decimal type."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(Decimal(value).scaleb(6).to_integral_value(rounding=ROUND_HALF_EVEN))

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value).scaleb(-6)


metadata = MetaData()

# `pk` orders rows by insertion (ties on created_at are possible); `id` is the public UUID.
# BigInteger as SQLite's INTEGER PRIMARY KEY needs the plain INTEGER spelling to autoincrement.
live_sessions = Table(
    "live_sessions",
    metadata,
    Column(
        "pk", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(36), nullable=False, unique=True),
    Column("user_id", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_reason", String(64)),
    Column("mode", String(32), nullable=False),
    Column("recording_consent", Boolean, nullable=False, default=False),
    Column("secrets_blurred", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("end_reason", String(64)),
    Column("transcript_partial", Text),
    Column("transcript_final", Text),
    Column("daily_usd", Money),
    Column("daily_audio_minutes", Float),
    Column("daily_video_tokens", BigInteger),
    Column("daily_screen_tokens", BigInteger),
    Column("session_usd", Money),
    Column("session_audio_minutes", Float),
    Column("session_video_tokens", BigInteger),
    Column("session_screen_tokens", BigInteger),
    Column("audio_minutes_used", Float, nullable=False, default=0.0),
    Column("summary", JSON),
    # Replicas: the instance whose voice bridge holds the session, and until when that
    # instance is known to be alive (renewed by its heartbeat). Set when the session goes LIVE.
    Column("owner_instance", String(64)),
    Column("lease_expires_at", UTCDateTime),
    # The session's root span (hex ids, sampled, start): whoever ends it after a crash closes
    # its trace with a root of the same id (voicetrace.telemetry.recovery).
    Column("trace_id", String(32)),
    Column("root_span_id", String(16)),
    Column("trace_sampled", Boolean),
    Column("trace_start_ns", BigInteger),
    # The budget (field name, e.g. `session_usd`) that ran out; resume is refused while set.
    Column("budget_exhausted", String(32)),
    # Running totals of the settled turns recorded in `session_turns`.
    Column("turns_settled", Integer, nullable=False, default=0, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, default=0, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, default=0, server_default="0"),
    Column("cost_usd", Money, nullable=False, default=Decimal(0), server_default="0"),
    Column("audio_in_s", Float, nullable=False, default=0.0, server_default="0"),
    Column("audio_out_s", Float, nullable=False, default=0.0, server_default="0"),
    Column("camera_tokens", BigInteger, nullable=False, default=0, server_default="0"),
    Column("screen_tokens", BigInteger, nullable=False, default=0, server_default="0"),
    Index("ix_live_sessions_user_created", "user_id", "created_at"),
    Index("ix_live_sessions_state", "state"),
    Index("ix_live_sessions_user_state", "user_id", "state"),
    Index("ix_live_sessions_owner_state", "owner_instance", "state"),
)

# One row per settled turn: the usage the bridge settled when the turn ended. The primary key
# makes a retried write a no-op, so a turn is never counted twice in the running totals.
session_turns = Table(
    "session_turns",
    metadata,
    Column("session_id", String(36), nullable=False),
    Column("number", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_usd", Money, nullable=False),
    Column("audio_in_s", Float, nullable=False),
    Column("audio_out_s", Float, nullable=False),
    Column("tokens_by_modality", JSON, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("session_id", "number", name="pk_session_turns"),
)
