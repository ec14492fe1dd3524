"""Turn audio you can listen to in Langfuse: WAV attachments through its media API.

Only with content capture **and** recording consent (the span mapping calls this only then).

- `AudioCapture` keeps one session's PCM per turn and direction (user audio in, model audio
  out), bounded: at most `max_turn_s` seconds per clip and `max_turns` turns at once (older
  turns are forgotten, counted in `media_dropped`). With the defaults (15 s, 4 turns, 16 kHz in
  and 24 kHz out, PCM16 mono) that is at most 4 × (480 KB + 720 KB) = 4.8 MB per session.
  `add()` runs on the caller's thread: one `bytearray.extend` under a lock, nothing else.
- When a turn's span is built (on the emitter thread), `take()` turns its clips into WAV files
  whose Langfuse media id is known before any upload (the first 22 base64url characters of the
  SHA-256, as Langfuse's server derives it), so the turn's input/output can carry the reference
  string `@@@langfuseMedia:type=audio/wav|id=…|source=bytes@@@` Langfuse renders as a player.
- `MediaUploader` sends them off the voice path, from its own thread and bounded queue, through
  the `langfuse` package's API (`api.media.get_upload_url` → PUT the bytes to the returned URL →
  `api.media.patch` with the upload status), fail-open and counted (`media_uploaded`,
  `media_failures`, `media_dropped`). Clips over `max_bytes` are not uploaded.

Not wired into `SessionTrace` yet: it has no method that receives PCM (see docs/langfuse.md).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import time
import wave
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from voicetrace.telemetry.health import TelemetryHealth

log = logging.getLogger(__name__)

Direction = Literal["input", "output"]
AUDIO_WAV: Final = "audio/wav"


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """PCM16 mono → a WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def media_id(sha256_base64: str) -> str:
    """Langfuse's media id: the hash made URL-safe, its first 22 characters (132 bits)."""
    return sha256_base64.replace("+", "-").replace("/", "_")[:22]


def reference(mid: str, content_type: str = AUDIO_WAV) -> str:
    return f"@@@langfuseMedia:type={content_type}|id={mid}|source=bytes@@@"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One WAV ready for upload, with what links it to its observation's field."""

    field: Direction
    data: bytes
    sha256: str
    duration_ms: float

    @property
    def media_id(self) -> str:
        return media_id(self.sha256)

    @property
    def reference(self) -> str:
        return reference(self.media_id)


class AudioCapture:
    """One session's turn audio, bounded (see the module docstring for the bound)."""

    def __init__(
        self,
        health: TelemetryHealth,
        *,
        max_turn_s: float = 15.0,
        max_turns: int = 4,
        max_bytes: int = 4_000_000,
        rates: tuple[int, int] = (16_000, 24_000),
    ) -> None:
        self.health = health
        self.rates: dict[Direction, int] = {"input": rates[0], "output": rates[1]}
        self._cap = {d: int(max_turn_s * r) * 2 for d, r in self.rates.items()}
        self.max_turns, self.max_bytes = max_turns, max_bytes
        self._lock = threading.Lock()
        self._clips: OrderedDict[tuple[int, Direction], bytearray] = OrderedDict()

    def add(self, turn: int, direction: Direction, pcm: bytes) -> None:
        """Caller's thread: append PCM16 to a turn's clip (beyond the cap it is not kept)."""
        with self._lock:
            clip = self._clips.get((turn, direction))
            if clip is None:
                turns = {t for t, _ in self._clips}
                while len(turns) >= self.max_turns and turn not in turns:
                    self._clips.popitem(last=False)
                    self.health.add("media_dropped")
                    turns = {t for t, _ in self._clips}
                clip = self._clips[(turn, direction)] = bytearray()
            room = self._cap[direction] - len(clip)
            if room > 0:
                clip.extend(pcm[:room])

    def take(self, turn: int) -> list[Attachment]:
        """Emitter thread: the turn's clips as WAV attachments (and forget them)."""
        out = []
        for direction in ("input", "output"):
            with self._lock:
                pcm = self._clips.pop((turn, direction), None)
            if not pcm:
                continue
            data = wav_bytes(bytes(pcm), self.rates[direction])
            if len(data) > self.max_bytes:
                self.health.add("media_dropped")
                continue
            ms = len(pcm) / 2 / self.rates[direction] * 1000.0
            out.append(Attachment(direction, data, sha256_b64(data), ms))
        return out


Upload = Callable[[Attachment, str, str], None]  # attachment, trace id, observation id


class MediaUploader:
    """A bounded queue of attachments and one daemon thread that uploads them."""

    def __init__(self, upload: Upload, health: TelemetryHealth, max_queue: int = 64) -> None:
        self._upload, self.health, self.max_queue = upload, health, max_queue
        self._queue: deque[tuple[Attachment, str, str]] = deque()
        self._wake = threading.Event()
        self._busy = self._closed = False
        self._thread = threading.Thread(target=self._run, name="voicetrace-media", daemon=True)
        self._thread.start()

    def submit(self, attachment: Attachment, trace_id: str, observation_id: str) -> None:
        if self._closed or len(self._queue) >= self.max_queue:
            self.health.add("media_dropped")
            return
        self._queue.append((attachment, trace_id, observation_id))
        self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while (self._queue or self._busy) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not (self._queue or self._busy)

    def close(self, timeout_s: float = 2.0) -> None:
        """Upload what is queued (bounded), then stop the thread."""
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                self._busy = True
                job = self._queue.popleft()
                try:
                    self._upload(*job)
                    self.health.add("media_uploaded")
                except Exception as exc:  # fail-open, counted; never the content
                    self.health.add("media_failures")
                    log.warning("Langfuse media upload failed (%s)", type(exc).__name__)
                finally:
                    self._busy = False


def api_upload(public_key: str, secret_key: str, host: str, timeout_s: float = 10.0) -> Upload:
    """The `langfuse` package's media API (optional extra, imported here) + a plain PUT."""
    import httpx
    from langfuse.api import LangfuseAPI

    api = LangfuseAPI(
        base_url=host.rstrip("/"), username=public_key, password=secret_key, timeout=timeout_s
    )
    http = httpx.Client(timeout=timeout_s)

    def upload(a: Attachment, trace_id: str, observation_id: str) -> None:
        target: Any = api.media.get_upload_url(
            content_type=AUDIO_WAV,
            content_length=len(a.data),
            sha256hash=a.sha256,
            field=a.field,
            trace_id=trace_id,
            observation_id=observation_id,
        )
        if target.media_id != a.media_id:
            raise ValueError("Langfuse derived another media id")  # the reference would dangle
        if not target.upload_url:
            return  # Langfuse already has these bytes
        started = time.monotonic()
        headers = {"Content-Type": AUDIO_WAV, "x-amz-checksum-sha256": a.sha256}
        response = http.put(target.upload_url, content=a.data, headers=headers)
        api.media.patch(
            a.media_id,
            uploaded_at=datetime.now(UTC),
            upload_http_status=response.status_code,
            upload_http_error=None if response.is_success else response.text[:200],
            upload_time_ms=int((time.monotonic() - started) * 1000),
        )
        response.raise_for_status()

    return upload
