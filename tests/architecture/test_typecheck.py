"""The type checker runs as part of the suite, so the README's one test command covers it.

Strictness: `mypy --strict` (pyproject.toml [tool.mypy]) over every `voicetrace` package
(service, emulator, demo, telemetry); tests are not type-checked."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.architecture.test_layout import ROOT

pytestmark = pytest.mark.e2e


def test_mypy_strict_finds_no_errors() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
