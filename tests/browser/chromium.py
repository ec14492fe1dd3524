"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), with a fake microphone.

No Playwright and no browser download: Debian's `/usr/bin/chromium`, started with a fresh
profile, `--remote-debugging-port=0` (the port it picked is in `DevToolsActivePort` in the
profile), and its page target driven through the `websockets` package. The fake microphone plays
a WAV file (`--use-file-for-fake-audio-capture`, looped) and the permission prompt is
auto-accepted (`--use-fake-ui-for-media-stream`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

DEFAULT_EXECUTABLE = Path("/usr/bin/chromium")


def find_chromium() -> Path | None:
    if DEFAULT_EXECUTABLE.exists():
        return DEFAULT_EXECUTABLE
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


class CdpError(RuntimeError):
    pass


def chromium_args(
    user_data_dir: Path, fake_audio: Path | None, extra: tuple[str, ...] = ()
) -> list[str]:
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data_dir}",
        "--remote-debugging-port=0",
        "--window-size=1200,1100",
        # The page starts its AudioContext from a click; this keeps a headless run from
        # depending on how the browser scores synthetic gestures.
        "--autoplay-policy=no-user-gesture-required",
    ]
    if fake_audio is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_audio}",
        ]
    return [*args, *extra, "about:blank"]


@dataclass
class Page:
    """One page target: commands, events, console output and page errors."""

    ws: ClientConnection
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                else:
                    self._on_event(message["method"], message.get("params", {}))
        except websockets.ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CdpError("DevTools connection closed"))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append(f"{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                details.get("exception", {}).get("description") or details.get("text", "")
            )
        elif method == "Log.entryAdded":
            entry = params["entry"]
            if entry.get("level") == "error":
                self.errors.append(
                    f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
                )

    async def send(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        async with asyncio.timeout(timeout):
            reply = await future
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("Browser.close", timeout=3.0)
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader

    async def evaluate(self, expression: str, *, user_gesture: bool = False) -> Any:
        """The value of a JavaScript expression (promises are awaited)."""
        result = await self.send(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            userGesture=user_gesture,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(
                details.get("exception", {}).get("description") or details.get("text", "")
            )
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0, poll_s: float = 0.1) -> Any:
        """Poll until the expression is truthy; return its value. On timeout, say what the
        page logged, so a failure explains itself."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"page never satisfied {expression!r} in {timeout} s; "
                    f"errors={self.errors[-5:]} console={self.console[-10:]}"
                )
            await asyncio.sleep(poll_s)

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(_write_file, path, base64.b64decode(result["data"]))
        return path


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_port(path: Path) -> int | None:
    """The port in `DevToolsActivePort` once Chromium wrote it (first line), else None."""
    try:
        return int(path.read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


class Chromium:
    """`async with Chromium(exe, fake_audio=wav) as page:` — a fresh browser, one page."""

    def __init__(
        self, executable: Path, *, fake_audio: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.executable = executable
        self.fake_audio = fake_audio
        self.extra_args = extra_args
        self.process: asyncio.subprocess.Process | None = None
        self.page: Page | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="voicetrace-chromium-")
        self._log = Path(self._profile.name) / "chromium.log"

    async def __aenter__(self) -> Page:
        profile = Path(self._profile.name) / "profile"
        log = await asyncio.to_thread(self._open_log, profile)
        try:
            self.process = await asyncio.create_subprocess_exec(
                str(self.executable),
                *chromium_args(profile, self.fake_audio, self.extra_args),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: we stop all of it, only it
            )
        finally:
            log.close()
        try:
            port = await self._devtools_port(profile / "DevToolsActivePort")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                targets = (await http.get("/json/list")).json()
            page_target = next(t for t in targets if t["type"] == "page")
            ws = await websockets.connect(page_target["webSocketDebuggerUrl"], max_size=None)
            self.page = Page(ws)
            self.page.start()
            for domain in ("Page", "Runtime", "Log"):
                await self.page.send(f"{domain}.enable")
        except BaseException:
            await self._stop()
            raise
        return self.page

    def _open_log(self, profile: Path) -> BinaryIO:
        profile.mkdir()
        return self._log.open("wb")

    async def _devtools_port(self, path: Path, timeout: float = 30.0) -> int:
        assert self.process is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise CdpError(f"chromium exited {self.process.returncode}: {self.log_tail()}")
            port = await asyncio.to_thread(_read_port, path)
            if port is not None:
                return port
            await asyncio.sleep(0.1)
        raise CdpError(f"chromium did not open DevTools in {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self.page is not None:
            await self.page.close()
        process = self.process
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            # Helpers (renderer, GPU, zygote) share the group; none may outlive the test.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self._profile.cleanup()
