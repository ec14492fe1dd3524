"""The floor: a bare relay of the same frames on the same stack, without the SDK or telemetry.

    python -m capacity.relay [--deflate]
    # env: GOOGLE_GEMINI_BASE_URL, SSL_CERT_FILE, GEMINI_API_KEY (as for `voicetrace serve`)

uvicorn (the same `websockets` protocol `voicetrace serve` gets) serving Starlette WebSockets, one
`websockets` client connection per session to the same upstream over TLS. Per microphone frame
it does what any Gemini Live relay must: base64 + one JSON `realtime_input` message; per model
message: parse the JSON, base64-decode the audio, send it as a binary frame. It sends the client
the same frames as voicetrace (`session_started`, `response_started`, `transcript`,
`turn_complete`, `session_ended`) so the same load generator drives both. No sessions API: any
`/v1/voice/{id}` connects. permessage-deflate is off on both legs unless `--deflate`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import ssl
import sys
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

MODEL = "gemini-3.8-live"
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
SETUP = json.dumps(
    {
        "setup": {
            "model": f"models/{MODEL}",
            "generationConfig": {"responseModalities": ["AUDIO"]},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
        }
    }
)
AUDIO_HEAD = '{"realtime_input":{"audio":{"data":"'
AUDIO_TAIL = '","mimeType":"audio/pcm;rate=16000"}}}'


class Relay:
    def __init__(self, deflate: bool) -> None:
        base = os.environ["GOOGLE_GEMINI_BASE_URL"].replace("https://", "wss://", 1)
        self.url = f"{base}{PATH}?key={os.environ['GEMINI_API_KEY']}"
        self.ssl = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
        self.compression = "deflate" if deflate else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        elif scope["type"] == "http":  # /health for the harness
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
        else:
            await self.session(WebSocket(scope, receive, send))

    async def session(self, ws: WebSocket) -> None:
        offered = ws.scope.get("subprotocols", [])
        await ws.accept(subprotocol="voicetrace.v1" if "voicetrace.v1" in offered else None)
        async with connect(
            self.url, ssl=self.ssl, compression=self.compression, max_size=None
        ) as upstream:
            await upstream.send(SETUP)
            await upstream.recv()  # setupComplete
            await ws.send_text('{"type":"session_started","protocol_version":1}')
            down = asyncio.create_task(self.downstream(upstream, ws))
            try:
                await self.upstream(ws, upstream)
            finally:
                down.cancel()
                with contextlib.suppress(BaseException):
                    await down
        with contextlib.suppress(Exception):
            await ws.close(1000)

    async def upstream(self, ws: WebSocket, upstream: ClientConnection) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is not None:
                await upstream.send(AUDIO_HEAD + base64.b64encode(data).decode() + AUDIO_TAIL)
            elif json.loads(message.get("text") or "{}").get("type") == "end":
                await ws.send_text('{"type":"session_ended","reason":"completed"}')
                return

    async def downstream(self, upstream: ClientConnection, ws: WebSocket) -> None:
        turn, speaking = 1, 0
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            async for raw in upstream:
                content: dict[str, Any] = json.loads(raw).get("serverContent") or {}
                for part in (content.get("modelTurn") or {}).get("parts", ()):
                    inline = part.get("inlineData")
                    if inline:
                        if speaking != turn:
                            speaking = turn
                            await ws.send_text(
                                json.dumps({"type": "response_started", "turn": turn})
                            )
                        await ws.send_bytes(base64.b64decode(inline["data"]))
                for key, role in (("inputTranscription", "user"), ("outputTranscription", "model")):
                    if key in content:
                        text = content[key].get("text", "")
                        await ws.send_text(
                            json.dumps(
                                {"type": "transcript", "role": role, "text": text, "turn": turn}
                            )
                        )
                if content.get("turnComplete"):
                    await ws.send_text(
                        json.dumps(
                            {"type": "turn_complete", "number": turn, "end_reason": "completed"}
                        )
                    )
                    turn += 1


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deflate", action="store_true", help="permessage-deflate on both legs")
    args = parser.parse_args(argv)
    uvicorn.run(
        Relay(args.deflate),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",  # ws="auto", as `voicetrace serve`: the websockets sans-I/O protocol
        ws_per_message_deflate=args.deflate,
        ws_max_size=1 << 20,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
