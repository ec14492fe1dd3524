"""Request limits on a real uvicorn socket: body cap before parsing (413), 422s that never echo
large input, header and body read timeouts, bounded numbers, no WebSocket compression."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from voicetrace.service.api.auth import mint_token
from voicetrace.service.app import create_app
from voicetrace.service.server import serve_in_background
from voicetrace.service.settings import Settings

from tests.conftest import JWT_SECRET

MAX_BODY = 64_000
TIMEOUT_S = 0.5


class Service:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.auth = {"Authorization": f"Bearer {mint_token('alice', JWT_SECRET)}"}

    async def raw(self, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(data)
        await writer.drain()
        return reader, writer


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = Settings(
        jwt_secret=JWT_SECRET,
        sqlite_path=tmp_path / "limits.db",
        max_body_bytes=MAX_BODY,
        http_header_timeout_s=TIMEOUT_S,
        http_body_timeout_s=TIMEOUT_S,
    )
    app = create_app(settings)
    async with serve_in_background(app, settings=settings) as server:
        yield Service(server.base_url)


def _post_head(service: Service, length: int | None, path: str = "/live-sessions") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    head += f"Authorization: {service.auth['Authorization']}\r\n"
    head += (
        f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    )
    return (head + "\r\n").encode()


async def _status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    response = await asyncio.wait_for(reader.read(65_536), 5)
    return int(response.split(b" ", 2)[1]), response


async def test_a_declared_body_over_the_cap_is_refused_413_without_reading_it(
    service: Service,
) -> None:
    started = time.monotonic()
    reader, writer = await service.raw(_post_head(service, 100_000_000))  # 100 MB, never sent
    status, response = await _status(reader)
    writer.close()
    assert status == 413 and b"body_too_large" in response
    assert time.monotonic() - started < 2


async def test_a_chunked_body_is_cut_off_at_the_cap_with_413(service: Service) -> None:
    reader, writer = await service.raw(_post_head(service, None))
    chunk = b"x" * 16_000
    for _ in range(MAX_BODY // len(chunk) + 2):
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    status, response = await _status(reader)
    writer.close()
    assert status == 413 and str(MAX_BODY).encode() in response


async def test_a_422_never_echoes_a_large_input(service: Service) -> None:
    huge = "A" * 60_000  # under the body cap, over the 64-char mode limit
    async with httpx.AsyncClient(base_url=service.base_url, headers=service.auth) as http:
        response = await http.post("/live-sessions", json={"mode": huge})
    assert response.status_code == 422
    assert len(response.content) < 2_000 and huge not in response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "mode"] and "60000 characters, truncated" in error["input"]


async def test_a_request_head_that_never_completes_is_closed(service: Service) -> None:
    reader, writer = await service.raw(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # no end
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    assert TIMEOUT_S * 0.8 < time.monotonic() - started < TIMEOUT_S + 2
    writer.close()


async def test_a_body_that_stops_arriving_gets_408(service: Service) -> None:
    reader, writer = await service.raw(_post_head(service, 1_000) + b'{"mode": ')
    started = time.monotonic()
    status, response = await _status(reader)
    writer.close()
    assert status == 408 and b"body_timeout" in response, response
    assert time.monotonic() - started < TIMEOUT_S + 2


async def test_a_normal_request_is_unaffected(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.base_url, headers=service.auth) as http:
        assert (await http.post("/live-sessions", json={"mode": "ok"})).status_code == 201
        assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("raw_budgets", "field"),
    [
        ('{"session_video_tokens": 9223372036854775808}', "session_video_tokens"),
        ('{"daily_screen_tokens": 10000000000000000}', "daily_screen_tokens"),
        ('{"session_usd": 1e400}', "session_usd"),
        ('{"session_usd": 1000000000000}', "session_usd"),
        ('{"session_audio_minutes": NaN}', "session_audio_minutes"),
        ('{"daily_audio_minutes": Infinity}', "daily_audio_minutes"),
        ('{"daily_audio_minutes": 1e300}', "daily_audio_minutes"),
        ('{"session_usd": -1}', "session_usd"),
    ],
)
async def test_out_of_range_numbers_are_a_clear_422_naming_the_field(
    service: Service, raw_budgets: str, field: str
) -> None:
    body = '{"mode": "x", "budgets": ' + raw_budgets + "}"
    headers = {**service.auth, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=service.base_url, headers=headers) as http:
        response = await http.post("/live-sessions", content=body)
    assert response.status_code == 422, response.text
    locs = [tuple(e["loc"]) for e in response.json()["detail"]]
    assert ("body", "budgets", field) in locs, locs


async def test_a_4300_digit_integer_is_a_400_not_a_crash(service: Service) -> None:
    # Python refuses to parse it (int max str digits); FastAPI answers 400 for unparsable bodies.
    body = '{"mode": "x", "budgets": {"session_video_tokens": ' + "9" * 5000 + "}}"
    headers = {**service.auth, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=service.base_url, headers=headers) as http:
        response = await http.post("/live-sessions", content=body)
        assert response.status_code == 400, response.text
        assert "parsing the body" in response.text and len(response.content) < 2_000
        assert (await http.get("/health")).status_code == 200


async def test_websocket_compression_is_not_negotiated_by_default(service: Service) -> None:
    url = service.base_url.replace("http", "ws", 1) + "/v1/voice/unknown"
    # The websockets client offers permessage-deflate by default.
    async with websockets.connect(url) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await asyncio.wait_for(ws.wait_closed(), 5)


def test_request_limit_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOICETRACE_MAX_BODY_BYTES", "5000")
    monkeypatch.setenv("VOICETRACE_WS_COMPRESSION", "true")
    settings = Settings()
    assert settings.max_body_bytes == 5000 and settings.ws_compression is True
    assert json.loads(json.dumps(settings.http_header_timeout_s)) == 10.0
