"""`LangfuseSpanExporter`: OTLP/HTTP protobuf to Langfuse's `/api/public/otel/v1/traces`.

Why our own (thin) exporter instead of the SDK's `OTLPSpanExporter`:
- the SDK merges `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` from `os.environ` into *every* OTLP
  exporter it builds (opentelemetry-exporter-otlp-proto-http 1.45, `_resolve_headers`), so a
  collector's token would travel to Langfuse — and the only way to remove it is to rewrite the
  exporter's private header dict, which is where `Content-Type` lives too (Langfuse then answers
  400 "Invalid content type" and the SDK does not retry a 400: the batch is lost);
- Langfuse's route (web/src/pages/api/public/otel/v1/traces) requires `Content-Type`
  containing `application/x-protobuf` (or json), decompresses only `Content-Encoding: gzip`,
  authenticates with Basic `public:secret`, and rejects `x-langfuse-ingestion-version` > 4.

So this one sends exactly those headers and nothing from the environment. It encodes with the
SDK's public OTLP encoder (`opentelemetry.exporter.otlp.proto.common.trace_encoder`). Retries:
429 and 5xx (the SDK's own client retries 429/502/503/504 but not 500) and connection errors,
with exponential backoff + jitter, honouring `Retry-After`, all inside one `timeout_s` budget
per export; a 4xx other than 429 is final (retrying cannot fix it), logged with its status only.
"""

from __future__ import annotations

import base64
import gzip
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

LANGFUSE_OTEL_PATH: Final = "/api/public/otel/v1/traces"
LANGFUSE_DEFAULT_HOST: Final = "https://cloud.langfuse.com"
INGESTION_VERSION: Final = "4"  # real-time ingestion on Langfuse Cloud / v4; ≤ 4 or it is a 400
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


def basic_auth(public_key: str, secret_key: str) -> str:
    """`Basic base64(public:secret)`: how every Langfuse public API authenticates."""
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()


def langfuse_headers(public_key: str, secret_key: str) -> dict[str, str]:
    """Every header a Langfuse OTLP request carries, and only those."""
    return {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
        "Authorization": basic_auth(public_key, secret_key),
        "x-langfuse-ingestion-version": INGESTION_VERSION,
        "User-Agent": "voicetrace-telemetry",
    }


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After", "").strip()
    try:
        return max(float(raw), 0.0) if raw else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class LangfuseSpanExporter(SpanExporter):
    """Exports spans to Langfuse over OTLP/HTTP protobuf, gzip, with bounded retries."""

    def __init__(
        self,
        public_key: str,
        secret_key: str,
        host: str = LANGFUSE_DEFAULT_HOST,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 5,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
    ) -> None:
        if not public_key or not secret_key:
            raise ValueError("Langfuse export needs both a public and a secret key")
        self.endpoint = host.rstrip("/") + LANGFUSE_OTEL_PATH
        self.timeout_s = float(timeout_s)
        self.max_attempts = max(int(max_attempts), 1)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        # Imported here, like the SDK's OTLP exporter in setup: only a Langfuse export pays it.
        import requests
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        self._encode, self._errors = encode_spans, requests.RequestException
        self._headers = langfuse_headers(public_key, secret_key)
        # A session of our own: connection reuse, and no environment proxies/headers mixed in
        # beyond what requests itself honours (HTTPS_PROXY, CA bundles).
        self._session = requests.Session()
        self._stop = threading.Event()

    def __repr__(self) -> str:  # never the keys
        return f"LangfuseSpanExporter({self.endpoint!r})"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stop.is_set():
            return SpanExportResult.FAILURE
        try:
            body = gzip.compress(self._encode(spans).SerializeToString(), compresslevel=6)
        except Exception as exc:
            log.warning("Langfuse export: could not encode %d spans: %s", len(spans), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self._post(body) else SpanExportResult.FAILURE

    def _post(self, body: bytes) -> bool:
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(self.max_attempts):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait: float | None = None
            try:
                response = self._session.post(
                    self.endpoint, data=body, headers=self._headers, timeout=left
                )
            except self._errors as exc:
                what = type(exc).__name__
            else:
                status = response.status_code
                response.close()
                if 200 <= status < 300:
                    return True
                if status not in RETRY_STATUSES:
                    log.warning("Langfuse refused a span batch: HTTP %d (not retried)", status)
                    return False
                what, wait = f"HTTP {status}", _retry_after(response)
            if wait is None:
                wait = min(self.backoff_s * 2**attempt, self.max_backoff_s)
                wait *= random.uniform(0.8, 1.2)
            if attempt + 1 >= self.max_attempts or wait >= deadline - time.monotonic():
                log.warning("Langfuse span export failed (%s), giving up", what)
                return False
            log.info("Langfuse span export: %s, retrying in %.2f s", what, wait)
            if self._stop.wait(wait):
                return False
        log.warning("Langfuse span export timed out after %.1f s", self.timeout_s)
        return False

    def shutdown(self) -> None:
        self._stop.set()
        self._session.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # nothing is buffered here
