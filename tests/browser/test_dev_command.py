"""`voicetrace dev` as a newcomer runs it: one command, a link that signs in, Ctrl-C stops it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys

import httpx
import pytest
from voicetrace.service.client import VoiceClient

pytestmark = pytest.mark.timeout(90)

LINK = re.compile(r"(http://127\.0\.0\.1:\d+)/app#token=([A-Za-z0-9_.-]+)")


async def read_until(stream: asyncio.StreamReader, pattern: re.Pattern[str], seen: list[str]):
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"voicetrace dev exited before printing a link: {seen}")
        seen.append(line)
        if match := pattern.search(line):
            return match


async def test_dev_prints_a_login_link_serves_the_page_with_tools_and_stops_on_ctrl_c():
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicetrace.service.cli",
        "dev",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(40):
            match = await read_until(process.stdout, LINK, seen)
        base, token = match.group(1), match.group(2)
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = await http.get("/app")
            assert page.status_code == 200 and "<title>voicetrace</title>" in page.text
            # The printed token is a real login for the printed user; a forged one is not.
            assert (await http.get("/live-sessions", headers=auth)).status_code == 200
            forged = {"Authorization": f"Bearer {token[:-4]}AAAA"}
            assert (await http.get("/live-sessions", headers=forged)).status_code == 401
            created = await http.post("/live-sessions", json={"mode": "dev"}, headers=auth)
            assert created.status_code == 201 and created.json()["user_id"] == "dev-user"
        # The emulator and the demo tools are wired in: asking for places calls a tool.
        ws_url = base.replace("http", "ws", 1) + f"/v1/voice/{created.json()['id']}"
        async with VoiceClient.connect(ws_url, token) as client:
            await client.wait_for("session_started")
            await client.send("text", text="Find a coffee place nearby.")
            call = await client.wait_for("tool_call", timeout=15)
            assert call["name"] == "search_nearby"
            await client.send("end")
            await client.wait_for("session_ended", timeout=15)

        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest = (await process.stdout.read()).decode()
            code = await process.wait()
        assert code == 0, [*seen, rest]
        assert "stopping" in rest
        assert token not in rest  # the token is printed once, in the link, never logged again
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
