"""Diagnostic (`--gc-probe`): log the cyclic garbage collector's pauses of the process under test.

On PYTHONPATH this runs at interpreter start (Python imports `sitecustomize` if it finds one).
Every collection is timed through `gc.callbacks`; each pause of 1 ms or more is appended to
$CAPACITY_GC_LOG at once as a JSON line [monotonic time, generation, ms] — not at exit, since
uvicorn re-raises SIGTERM after its shutdown and atexit handlers then never run.
"""

from __future__ import annotations

import gc
import json
import os
import time

_path = os.environ.get("CAPACITY_GC_LOG")
if _path:
    _log = open(_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as we do
    _start = [0.0]

    def _probe(phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            _start[0] = now
            return
        ms = 1000 * (now - _start[0])
        if ms >= 1.0:
            _log.write(json.dumps([now, info["generation"], round(ms, 2)]) + "\n")

    gc.callbacks.append(_probe)

    # The event loop: every callback that held it for `_SLOW_S` or more (a slow handle blocks
    # every session of the process), logged as [time, -1, ms, what]. Handle._run is asyncio's
    # own per-callback entry point; wrapping it costs two clock reads per callback.
    import asyncio.events

    _SLOW_S = 0.02
    _run = asyncio.events.Handle._run

    def _timed_run(self: asyncio.events.Handle) -> None:
        t0 = time.monotonic()
        _run(self)
        t1 = time.monotonic()
        if t1 - t0 >= _SLOW_S:
            what = repr(getattr(self, "_callback", self))[:160]
            _log.write(json.dumps([t1, -1, round(1000 * (t1 - t0), 1), what]) + "\n")

    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
