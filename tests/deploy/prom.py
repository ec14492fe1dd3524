"""A real Prometheus for tests: started on loopback with a temp config and TSDB, queried over its
HTTP API; plus the rule that a dashboard query's result is usable.

    async with RealPrometheus(binary, targets=["127.0.0.1:8080"], tmp=tmp_path) as prom:
        samples = await prom.query("sum(rate(voice_turns_total[1m]))")
"""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import yaml

from tests.deploy.promnames import parse_query

# What Grafana substitutes for `$__rate_interval` (at least 4 scrape intervals; here, a window
# that holds the whole scripted run).
RATE_INTERVAL = "1m"


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class QueryError(AssertionError):
    """A dashboard query that Prometheus refused, or whose result is unusable."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` with stdout and stderr appended to the file `log`."""
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def grafana_to_promql(expr: str) -> str:
    """The query Grafana sends: its interval variables replaced."""
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "15s")


class RealPrometheus:
    """`prometheus` on 127.0.0.1:free port, scraping `targets` every `scrape_s` seconds."""

    def __init__(
        self, binary: str, targets: list[str], tmp: Path, scrape_s: float = 0.5, job: str = "vt"
    ) -> None:
        self.binary = binary
        self.port = free_port()
        self.tmp = tmp
        config = {
            "global": {"scrape_interval": f"{int(scrape_s * 1000)}ms"},
            "scrape_configs": [
                {
                    "job_name": job,
                    "scrape_interval": f"{int(scrape_s * 1000)}ms",
                    "scrape_timeout": f"{int(scrape_s * 1000)}ms",
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        self.config_path = tmp / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    async def __aenter__(self) -> RealPrometheus:
        command = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = await asyncio.to_thread(spawn, command, self.tmp / "prometheus.log")
        for _ in range(300):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited: {(self.tmp / 'prometheus.log').read_text()}"
                )
            try:
                if (await self.http.get("/-/ready")).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("prometheus did not become ready")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()
        if self.process is not None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)

    async def query(self, promql: str) -> list[Sample]:
        """An instant query at now; `QueryError` when Prometheus refuses it."""
        response = await self.http.get("/api/v1/query", params={"query": promql})
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"prometheus refused {promql!r}: {body.get('error', body)}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    async def target_health(self) -> list[str]:
        """Each target's health, with the last scrape error when there is one."""
        body = (await self.http.get("/api/v1/targets")).json()
        return [
            t["health"] + (f": {t['lastError']}" if t.get("lastError") else "")
            for t in body["data"]["activeTargets"]
        ]


async def usable(prom: RealPrometheus, expr: str) -> list[Sample]:
    """Evaluate a dashboard query; its result must be usable on a panel: not empty, every value a
    finite number (histogram_quantile over no data gives NaN), and every label the query groups
    by present on every series (`sum by (typo)` returns one unlabelled series, not an error)."""
    samples = await prom.query(grafana_to_promql(expr))
    if not samples:
        raise QueryError(f"no data for {expr!r}")
    _, groupings, _ = parse_query(expr)
    groupings -= {"le"}
    for sample in samples:
        if not math.isfinite(sample.value):
            raise QueryError(f"{expr!r} gave {sample.value} for {sample.labels}")
        missing = {g for g in groupings if not sample.labels.get(g)}
        if missing:
            raise QueryError(f"{expr!r}: series without label(s) {sorted(missing)}")
    return samples
