"""Paths and parsed files shared by the deployment tests (all offline, no Docker engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.collector_schema import SchemaStore

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "tests" / "data" / "collector-schemas"
COLLECTOR_CONFIG = REPO / "otel-collector.yaml"
COMPOSE_FILE = REPO / "docker-compose.yml"
DEPLOY = REPO / "deploy"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="session")
def schema_store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


@pytest.fixture(scope="session")
def collector_config() -> dict[str, Any]:
    return load_yaml(COLLECTOR_CONFIG)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)
