"""The health endpoint's outside checks: Langfuse (health, then our keys) and the collector.

Each probe has a short deadline and all run concurrently, so a backend that hangs costs the
health endpoint at most `health_probe_timeout_s`; results are reused for `health_cache_s`
(one probe in flight at a time), so polling `/api/observability/health` does not poll
Langfuse. Nothing here can fail the endpoint: a failed probe is a degraded line in its body.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from voicetrace.service.api.langfuse_api import Check, LangfuseTarget, check_auth, check_health
from voicetrace.service.settings import Settings


@dataclass(frozen=True)
class ProbeReport:
    langfuse: dict[str, Any]
    collector: dict[str, Any]
    degraded: list[str]
    checked_at: float  # time.monotonic()


async def check_collector(url: str, timeout_s: float) -> Check:
    """The collector's `health_check` extension: 200 "Server available", else 503."""
    import httpx  # google-genai's HTTP client, a dependency of the service

    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s + 0.25):
            async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as http:
                response = await http.get(url)
        ok = response.is_success
        said = _status_text(response.content)
        detail = f"HTTP {response.status_code}" + (f" {said}" if said else "")
    except (TimeoutError, httpx.TimeoutException):
        ok, detail = False, f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as exc:
        ok, detail = False, f"unreachable ({type(exc).__name__})"
    except Exception as exc:  # a bad URL, a broken proxy: still a degraded line, never a 500
        ok, detail = False, f"probe failed ({type(exc).__name__})"
    return Check(ok, round((time.perf_counter() - started) * 1000, 1), detail)


def _status_text(body: bytes) -> str | None:
    """The `status` of the health_check extension's JSON body, if it has that shape."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    status = parsed.get("status") if isinstance(parsed, dict) else None
    return status if isinstance(status, str) else None


class HealthProbes:
    """Probes Langfuse and the collector at most once per `cache_s`."""

    def __init__(
        self,
        langfuse: LangfuseTarget | None,
        collector_url: str | None,
        timeout_s: float,
        cache_s: float,
    ) -> None:
        self.langfuse, self.collector_url = langfuse, collector_url
        self.timeout_s, self.cache_s = timeout_s, cache_s
        self._last: ProbeReport | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, langfuse: LangfuseTarget | None) -> HealthProbes:
        return cls(
            langfuse,
            settings.collector_health_url,
            settings.health_probe_timeout_s,
            settings.health_cache_s,
        )

    def _fresh(self) -> ProbeReport | None:
        last = self._last
        if last is not None and time.monotonic() - last.checked_at < self.cache_s:
            return last
        return None

    async def report(self) -> ProbeReport:
        if (fresh := self._fresh()) is not None:
            return fresh
        async with self._lock:  # one probe at a time; the others reuse its result
            if (fresh := self._fresh()) is not None:
                return fresh
            self._last = await self._probe()
            return self._last

    async def _probe(self) -> ProbeReport:
        degraded: list[str] = []
        lf: dict[str, Any] = {"configured": self.langfuse is not None}
        col: dict[str, Any] = {"configured": self.collector_url is not None}
        checks: dict[str, Any] = {}
        if self.langfuse is not None:
            checks["health"] = check_health(self.langfuse, self.timeout_s)
            checks["auth"] = check_auth(self.langfuse, self.timeout_s)
        if self.collector_url is not None:
            checks["collector"] = check_collector(self.collector_url, self.timeout_s)
        results: dict[str, Check] = dict(
            zip(checks, await asyncio.gather(*checks.values()), strict=True)
        )
        if self.langfuse is not None:
            health, auth = results["health"], results["auth"]
            lf.update(
                host=self.langfuse.host,
                ok=health.ok and auth.ok,
                health=asdict(health),
                auth=asdict(auth),
            )
            if not health.ok:
                degraded.append(f"langfuse health: {health.detail}")
            if not auth.ok:
                degraded.append(f"langfuse auth: {auth.detail}")
        if self.collector_url is not None:
            collector = results["collector"]
            col.update(asdict(collector))
            if not collector.ok:
                degraded.append(f"collector: {collector.detail}")
        return ProbeReport(lf, col, degraded, time.monotonic())
