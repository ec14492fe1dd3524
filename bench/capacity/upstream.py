"""A minimal fake Gemini Live server over TLS: the real wire protocol, as little CPU as possible.

    python -m capacity.upstream --cert chain.pem --key key.pem --stats out.json [--no-deflate]

It prints `PORT <n>` once listening and writes its statistics to `--stats` on SIGTERM.

What it speaks (the same frames the emulator and Gemini send; see docs/emulator.md):
- any `…BidiGenerateContent` path; an API key is required (`?key=` or `x-goog-api-key`, else close
  1008), `setup` must be the first message (else 1007) and gets `setupComplete`;
- `realtime_input.audio` (base64 PCM16 16 kHz) is counted, never decoded beyond its 24-character
  tag (capacity/tags.py): the tag gives the client→upstream latency of every frame, and its flag
  marks the frame on which this fake's "VAD" ends the user turn (Gemini's server VAD would end it
  after `silence_duration_ms` of silence; the client puts the flag exactly there);
- then a reply like the emulator's: `inputTranscription` (when the setup asked for it), `--reply-s`
  of 24 kHz speech in 40 ms `inlineData` chunks paced against an absolute clock, every third with
  an `outputTranscription` word, `generationComplete`, `turnComplete` with `usageMetadata`
  (25 audio tokens a second), and `sessionResumptionUpdate` when the setup asked for resumption.
Every output chunk's PCM starts with a tag stamped just before it is sent; the client matches it
for the upstream→client latency. How late each chunk went out is recorded: a fake that cannot keep
its own pace would make the run invalid, not the relay look slow.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from voicetrace.service.voice.audio import speech_like
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from capacity import tags

CHUNK_MS = 40
OUTPUT_RATE = 24_000
TOKENS_PER_S = 25
WORDS = ["Sure", "that", "sounds", "like", "a", "lovely", "plan", "for", "the", "afternoon"]


@dataclass
class Stats:
    connections: int = 0
    audio_in: int = 0
    chunks_out: int = 0
    turns: int = 0
    protocol_errors: list[str] = field(default_factory=list)
    up_ms: list[float] = field(default_factory=list)  # client send → received here, per frame
    pace_late_ms: list[float] = field(default_factory=list)  # output chunks behind the clock


class Reply:
    """One reply's audio, pre-encoded: a chunk is a fresh 24-char tag + the fixed rest of it."""

    def __init__(self, seconds: float) -> None:
        pcm = speech_like(seconds, OUTPUT_RATE, pitch_hz=180.0)
        step = 2 * OUTPUT_RATE * CHUNK_MS // 1000
        self.tails = [
            base64.b64encode(pcm[i + tags.TAG_BYTES : i + step]).decode()
            for i in range(0, len(pcm) - step + 1, step)
        ]
        self.seconds = len(self.tails) * CHUNK_MS / 1000

    def chunk(self, i: int) -> bytes:
        data = base64.b64encode(tags.tag(time.monotonic())).decode() + self.tails[i]
        content = '"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"'
        content += data + '"}}]}'
        if i % 3 == 0:
            content += ',"outputTranscription":{"text":"' + WORDS[i // 3 % len(WORDS)] + ' "}'
        return ('{"serverContent":{' + content + "}}").encode()


class Session:
    def __init__(self, ws: ServerConnection, stats: Stats, reply: Reply) -> None:
        self.ws, self.stats, self.reply = ws, stats, reply
        self.input_samples = 0
        self.context_tokens = 0
        self.transcribe = self.resumption = False
        self.generation: asyncio.Task[None] | None = None

    async def run(self) -> None:
        request = self.ws.request
        assert request is not None
        query = parse_qs(urlparse(request.path).query)
        if not (query.get("key") or request.headers.get("x-goog-api-key")):
            await self.ws.close(1008, "API key required")
            return
        first = json.loads(await self.ws.recv())
        setup = first.get("setup")
        if not isinstance(setup, dict):
            self.stats.protocol_errors.append("first message was not setup")
            await self.ws.close(1007, "setup must be the first message")
            return
        self.transcribe = "inputAudioTranscription" in setup or "input_audio_transcription" in setup
        self.resumption = "sessionResumption" in setup or "session_resumption" in setup
        self.stats.connections += 1
        await self.ws.send(b'{"setupComplete":{}}')
        try:
            async for raw in self.ws:
                self.on_message(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            if self.generation is not None:
                self.generation.cancel()

    def on_message(self, message: dict) -> None:
        realtime = message.get("realtime_input") or message.get("realtimeInput")
        audio = realtime.get("audio") if isinstance(realtime, dict) else None
        if not isinstance(audio, dict):
            return  # audioStreamEnd, client_content, tool responses: nothing to do here
        data: str = audio["data"]
        now = time.monotonic()
        sent, flag = tags.read_b64(data)
        self.stats.audio_in += 1
        self.stats.up_ms.append(1000 * (now - sent))
        self.input_samples += len(data) * 3 // 8  # base64 chars → bytes → PCM16 samples
        if flag == tags.END_OF_SPEECH and (self.generation is None or self.generation.done()):
            self.generation = asyncio.create_task(self.respond())

    async def respond(self) -> None:
        stats, reply = self.stats, self.reply
        if self.transcribe:
            await self.ws.send(
                b'{"serverContent":{"inputTranscription":{"text":"Hello","finished":true}}}'
            )
        start = time.monotonic()
        for i in range(len(reply.tails)):
            delay = start + i * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stats.pace_late_ms.append(max(0.0, -1000 * delay))
            await self.ws.send(reply.chunk(i))
            stats.chunks_out += 1
        await self.ws.send(b'{"serverContent":{"generationComplete":true}}')
        prompt_audio = math.ceil(self.input_samples / 16_000 * TOKENS_PER_S)
        self.input_samples = 0
        response = math.ceil(reply.seconds * TOKENS_PER_S)
        prompt = self.context_tokens + prompt_audio
        usage = {
            "promptTokenCount": prompt,
            "responseTokenCount": response,
            "totalTokenCount": prompt + response,
            "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": prompt}],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": response}],
        }
        self.context_tokens = prompt + response
        await self.ws.send(
            json.dumps({"serverContent": {"turnComplete": True}, "usageMetadata": usage}).encode()
        )
        stats.turns += 1
        if self.resumption:
            handle = f"fake-{stats.turns}"
            await self.ws.send(
                json.dumps(
                    {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
                ).encode()
            )


async def main(args: argparse.Namespace) -> None:
    stats, reply = Stats(), Reply(args.reply_s)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)

    async def handler(ws: ServerConnection) -> None:
        await Session(ws, stats, reply).run()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=context,
        compression="deflate" if args.deflate else None,
        max_size=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"PORT {port}", flush=True)
        await stop
    Path(args.stats).write_text(json.dumps(stats.__dict__))  # noqa: ASYNC240 - after serving


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--reply-s", type=float, default=2.0)
    parser.add_argument("--no-deflate", dest="deflate", action="store_false")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args(sys.argv[1:])))
