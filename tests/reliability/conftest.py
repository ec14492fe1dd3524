"""Fixtures for the reliability tests: the same real databases as the store tests (a fresh SQLite
file, and PostgreSQL in a schema of its own when `TEST_DATABASE_URL` is set)."""

from __future__ import annotations

from tests.api.conftest import api, database, store  # noqa: F401  (re-exported fixtures)
