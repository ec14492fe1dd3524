"""The two container entry points of deploy/: the emulator's (publishes a CA bundle the real
google-genai SDK trusts, health-checks itself, cleans up on SIGTERM) and the service's shell
wrapper (emulator wiring only when GEMINI_API_KEY is empty). Real processes, real TLS."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import pytest

from tests.deploy.conftest import DEPLOY, REPO

EMULATOR = DEPLOY / "emulator.py"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"


def _env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing of the developer's Gemini/SSL/OTel setup leaks in."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, "PYTHONPATH": str(REPO), **extra}


@dataclass
class RunningEmulator:
    process: subprocess.Popen[str]
    url: str
    port: int
    bundle: Path


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    bundle = tmp_path / "certs" / "ca-bundle.pem"
    process = subprocess.Popen(
        [
            sys.executable,
            str(EMULATOR),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--bundle",
            str(bundle),
        ],
        env=_env(EMULATOR_API_KEY="test-emulator-key"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _wait_for_url(process, timeout_s=20)
        yield RunningEmulator(process, url, int(url.rsplit(":", 1)[1]), bundle)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def _wait_for_url(process: subprocess.Popen[str], timeout_s: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline()
            match = re.search(r"listening on (https://\S+)", line)
            if match:
                return match.group(1)
        if process.poll() is not None:
            raise AssertionError(
                f"emulator exited: {process.stderr.read() if process.stderr else ''}"
            )
    raise AssertionError("emulator did not report its URL")


def _check(port: int, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(EMULATOR),
            "--check",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--bundle",
            str(bundle),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_emulator_bundle_holds_public_roots_and_the_emulator_ca(
    emulator: RunningEmulator,
) -> None:
    bundle = emulator.bundle.read_text()
    public = Path(certifi.where()).read_text().count("BEGIN CERTIFICATE")
    assert bundle.count("BEGIN CERTIFICATE") == public + 1
    assert _check(emulator.port, emulator.bundle).returncode == 0


def test_real_sdk_trusts_the_published_bundle(emulator: RunningEmulator) -> None:
    """What the service container does: SSL_CERT_FILE=bundle, base URL and key from env, an
    unmodified genai.Client() (in a subprocess so the env does not leak into this one)."""
    # Keep the client referenced: a temporary genai.Client() closes its HTTP transport when
    # garbage-collected, under the `models` call still using it (google-genai 3.4).
    code = (
        "from google import genai\n"
        "client = genai.Client()\n"
        "r = client.models.count_tokens(model='gemini-2.5-flash', contents='hello')\n"
        "print(r.total_tokens)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(
            GEMINI_API_KEY="test-emulator-key",
            GOOGLE_GEMINI_BASE_URL=emulator.url,
            SSL_CERT_FILE=str(emulator.bundle),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) > 0


def test_healthcheck_fails_when_the_bundle_does_not_match_the_server(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    public_only = tmp_path / "public.pem"
    public_only.write_text(Path(certifi.where()).read_text())
    result = _check(emulator.port, public_only)
    assert result.returncode == 1 and "TLS handshake" in result.stderr
    missing = _check(emulator.port, tmp_path / "nope.pem")
    assert missing.returncode == 1 and "no CA bundle" in missing.stderr


def test_sigterm_stops_the_emulator_and_withdraws_the_bundle(emulator: RunningEmulator) -> None:
    assert emulator.bundle.is_file()
    emulator.process.send_signal(signal.SIGTERM)
    assert emulator.process.wait(timeout=15) == 0
    assert not emulator.bundle.exists()


# -- the service's entry point --------------------------------------------------------------------


def _entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run deploy/docker-entrypoint.sh with `env -0` as the command: it prints what the service
    process would inherit."""
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "env"],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


def _parsed(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_entrypoint_points_the_sdk_at_the_emulator_without_a_gemini_key(tmp_path: Path) -> None:
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    result = _entrypoint(
        tmp_path,
        GEMINI_API_KEY="",
        VOICETRACE_EMULATOR_CA_BUNDLE=str(bundle),
        VOICETRACE_EMULATOR_URL="https://emulator:9443",
        EMULATOR_API_KEY="k-emu",
    )
    assert result.returncode == 0, result.stderr
    env = _parsed(result.stdout)
    assert env["GEMINI_API_KEY"] == "k-emu"
    assert env["GOOGLE_GEMINI_BASE_URL"] == "https://emulator:9443"
    assert env["SSL_CERT_FILE"] == str(bundle)
    assert "using the Gemini Live emulator" in result.stderr


def test_entrypoint_leaves_a_real_gemini_setup_untouched(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path, GEMINI_API_KEY="AIza-real-key")
    assert result.returncode == 0, result.stderr
    env = _parsed(result.stdout)
    assert env["GEMINI_API_KEY"] == "AIza-real-key"
    assert "SSL_CERT_FILE" not in env and "GOOGLE_GEMINI_BASE_URL" not in env
    assert "AIza-real-key" not in result.stderr  # the key is never echoed


def test_entrypoint_fails_clearly_when_the_emulator_never_comes(tmp_path: Path) -> None:
    result = _entrypoint(
        tmp_path,
        VOICETRACE_EMULATOR_CA_BUNDLE=str(tmp_path / "missing.pem"),
        VOICETRACE_EMULATOR_WAIT_S="0",
    )
    assert result.returncode == 78
    assert "GEMINI_API_KEY is not set" in result.stderr and result.stdout == ""


def _fake_voicetrace(tmp_path: Path) -> dict[str, str]:
    """A `voicetrace` on PATH that prints the arguments it was started with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "voicetrace"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _serve_args(tmp_path: Path, *command: str, **env: str) -> list[str]:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *command],
        env={**_env(**env), **_fake_voicetrace(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_on_the_emulator_serve_gets_the_demo_tools_unless_it_names_its_own(tmp_path: Path):
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    emulated = {"GEMINI_API_KEY": "", "VOICETRACE_EMULATOR_CA_BUNDLE": str(bundle)}
    assert _serve_args(tmp_path / "a", "voicetrace", "serve", **emulated) == [
        "serve",
        "--tools",
        "voicetrace.demo.tools:demo_registry",
    ]
    own = ["serve", "--tools", "my.tools:registry"]
    assert _serve_args(tmp_path / "b", "voicetrace", *own, **emulated) == own
    # other commands, and real Gemini, are left alone
    assert _serve_args(tmp_path / "c", "voicetrace", "token", "alice", **emulated) == [
        "token",
        "alice",
    ]
    assert _serve_args(tmp_path / "d", "voicetrace", "serve", GEMINI_API_KEY="AIza-real") == [
        "serve"
    ]
