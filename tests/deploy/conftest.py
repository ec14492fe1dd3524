"""Paths, parsed files and binaries shared by the deployment tests (offline, no Docker engine)."""

from __future__ import annotations

import os
import shutil
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


def require_binary(name: str) -> str:
    """The path of a binary the check needs. Missing: a skip on a developer machine, a failure
    under CI=true (.ci/run installs prometheus, promtool and docker-compose, so a missing one
    means the CI setup broke, not that the check may be left out)."""
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed (apt-get install prometheus docker-compose)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " and CI=true: .ci/run should have installed it")
        pytest.skip(message)
    return path
