"""Throwaway virtualenvs for the framework examples: a framework + the local telemetry package.

Google ADK and Pipecat pin google-genai 2.x (ADK also OpenTelemetry <= 1.44), which the
product's own environment cannot hold, so each example runs in a venv of its own: the
framework from the registry and `./telemetry[genai]` (the `voicetrace-telemetry` distribution,
editable, so the instrumentor under test is this checkout's). A venv is built once and reused
while its inputs are the same: it lives under a directory named by the hash of the
requirements, `telemetry/pyproject.toml`, the checkout's path and the Python version.
`VOICETRACE_FRAMEWORK_VENVS` moves that cache (default: pytest's cache directory).

A framework that cannot be installed fails the test under `CI=true` and skips it elsewhere,
with pip's own error in the message.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The versions the examples are written against (the newest on PyPI when they were).
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "adk": ("google-adk==2.13.0",),
    "pipecat": ("pipecat-ai[google]==1.14.0",),
}


@dataclass(frozen=True)
class FrameworkEnv:
    name: str
    python: Path
    build_s: float  # how long this venv took to build (when it was built)


def _key(requirements: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (*requirements, str(ROOT), sys.version):
        h.update(part.encode() + b"\0")
    h.update((ROOT / "telemetry" / "pyproject.toml").read_bytes())
    return h.hexdigest()[:16]


def _unavailable(name: str, error: str) -> NoReturn:
    message = f"{name} cannot be installed here: {error.strip()[-1500:]}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


INSTALL_TIMEOUT_S = 1200


def framework_env(name: str, cache_root: Path) -> FrameworkEnv:
    """The venv for framework `name`, built on first use (one builder at a time per key)."""
    requirements = FRAMEWORKS[name]
    root = Path(os.environ.get("VOICETRACE_FRAMEWORK_VENVS") or cache_root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}-{_key(requirements)}"
    with open(root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers wait for one build
        marker = target / "voicetrace-build.json"
        if not marker.exists():
            _build(name, target, requirements)
        built = json.loads(marker.read_text())
    return FrameworkEnv(name, target / "bin" / "python", float(built["build_s"]))


def _build(name: str, target: Path, requirements: tuple[str, ...]) -> None:
    """Build in place (a venv's scripts name its own path); the marker, written last, says
    it is complete: a build that was interrupted is started over."""
    shutil.rmtree(target, ignore_errors=True)
    started = time.monotonic()
    venv.EnvBuilder(with_pip=True).create(target)
    # No .pyc compilation: the install is most of the cost, and most modules are never run.
    command = [
        str(target / "bin" / "python"),
        *("-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check"),
        *requirements,
        "-e",
        f"{ROOT / 'telemetry'}[genai]",
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            env={**os.environ, "PIP_NO_INPUT": "1"},
        )
    except subprocess.TimeoutExpired as exc:  # a stalled index: unavailable, not an error
        shutil.rmtree(target, ignore_errors=True)
        _unavailable(name, f"pip install took over {INSTALL_TIMEOUT_S} s: {exc.stderr or ''!s}")
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        _unavailable(name, done.stderr or done.stdout)
    elapsed = time.monotonic() - started
    (target / "voicetrace-build.json").write_text(
        json.dumps({"build_s": round(elapsed, 1), "requirements": list(requirements)})
    )
