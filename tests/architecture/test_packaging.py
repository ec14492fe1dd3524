"""What `pip install` really installs: one `voicetrace` namespace, and a telemetry distribution
that works with nothing but OpenTelemetry."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from tests.architecture.test_layout import MODULES, ROOT

pytestmark = pytest.mark.e2e


def _pip(python: Path, *args: str, cwd: Path = ROOT) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "-q", "--disable-pip-version-check", *args],
        cwd=cwd,
        check=True,
        timeout=600,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )


def _wheel(source: Path, out: Path) -> zipfile.ZipFile:
    _pip(
        Path(sys.executable),
        "wheel",
        "--no-deps",
        "-w",
        str(out),
        ".",
        cwd=source,
    )
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_product_wheel_installs_only_the_voicetrace_namespace(tmp_path: Path) -> None:
    names = _wheel(ROOT, tmp_path).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"voicetrace"}  # no top-level `service` or `telemetry` package
    assert "voicetrace/__init__.py" not in names  # a namespace the two distributions share
    shipped = {
        n[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for n in names
        if n.endswith(".py")
    }
    assert set(MODULES) <= shipped, f"missing from the wheel: {sorted(set(MODULES) - shipped)}"
    assert {"voicetrace/telemetry/prices.json", "voicetrace/demo/places.json"} <= set(names)


def lowest_bounds(pyproject: Path) -> list[str]:
    """`name==X` for every `name>=X` dependency the distribution declares: what an app
    pinned to the oldest allowed OpenTelemetry (Google ADK: <= 1.44) gets."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        name, _, rest = dep.partition(">=")
        pins.append(f"{name.strip()}=={rest.split(',')[0].strip()}")
    return pins


@pytest.mark.parametrize("versions", ["newest", "lowest"])
def test_the_telemetry_distribution_runs_a_session_with_only_opentelemetry(
    tmp_path: Path, versions: str
) -> None:
    names = _wheel(ROOT / "telemetry", tmp_path / "wheel").namelist()
    assert {n.split("/")[1] for n in names if n.startswith("voicetrace/")} == {"telemetry"}

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    pins = lowest_bounds(ROOT / "telemetry" / "pyproject.toml") if versions == "lowest" else []
    _pip(python, "install", str(next((tmp_path / "wheel").glob("*.whl"))), *pins)
    script = textwrap.dedent(
        """
        import importlib, importlib.metadata, json

        def absent(module):
            try:
                importlib.import_module(module)
            except ImportError:
                return True
            return False
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from voicetrace.telemetry import PriceTable, SessionInfo, UsageSnapshot, VoiceTelemetry

        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tel = VoiceTelemetry(provider, pricing=PriceTable.load(None), usage_wait_s=0.1)
        settled = []
        trace = tel.start_session(
            SessionInfo(session_id="s1", user_id="u1", model="gemini-3.8-live"),
            on_turn_settled=settled.append,
        )
        trace.user_text("hello")
        trace.model_audio(4800)
        trace.usage(UsageSnapshot(prompt=10, response=20, total=30))
        trace.turn_complete()
        summary = trace.end()
        tel.force_flush(5)
        # Without the `grpc` extra, asking for OTLP/gRPC is a clear setup error.
        from voicetrace.telemetry.setup import TelemetryConfigError, configure_providers
        try:
            configure_providers(env={"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
            grpc_error = None
        except TelemetryConfigError as exc:
            grpc_error = str(exc)
        http = configure_providers(
            env={"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none"}
        ).plan.describe()
        print(json.dumps({
            "grpc_error": grpc_error,
            "http": http,
            "spans": sorted(s.name for s in memory.get_finished_spans()),
            "cost": str(summary.cost_usd),
            "settled": [s.number for s in settled],
            "otel": {d: importlib.metadata.version(d) for d in (
                "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-semantic-conventions")},
            "absent": [m for m in ("fastapi", "google.genai", "sqlalchemy", "pydantic",
                                   "service", "telemetry", "grpc")
                       if absent(m)],
        }))
        """
    )
    done = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    result = __import__("json").loads(done.stdout)
    assert result["spans"] == ["chat gemini-3.8-live", "invoke_agent voicetrace", "voice_session"]
    assert result["cost"] not in ("None", "0")
    assert result["settled"] == [1]
    for pin in pins:  # the session above really ran on the oldest versions allowed
        name, _, version = pin.partition("==")
        if name in result["otel"]:
            assert Version(result["otel"][name]) == Version(version), (name, result["otel"])
    assert set(result["absent"]) == {
        "fastapi",
        "google.genai",
        "sqlalchemy",
        "pydantic",
        "service",
        "telemetry",
        "grpc",
    }
    assert "voicetrace-telemetry[grpc]" in result["grpc_error"]
    assert result["http"].startswith("traces → OTLP/HTTP http://localhost:4318/v1/traces")
