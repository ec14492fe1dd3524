"""A local Langfuse for tests: speaks and ENFORCES the parts of Langfuse's public API we use.

Rules, as Langfuse's server implements them (langfuse/langfuse, web/src/pages/api/public/...):
- every route but health needs `Authorization: Basic base64(pk:sk)` with the project's keys
  (401 otherwise);
- `POST /api/public/otel/v1/traces`: `Content-Type` must contain `application/x-protobuf` or
  `application/json` (else 400 "Invalid content type"); a body is gunzipped only when
  `Content-Encoding` contains `gzip` (a bad gzip stream is a 400); `x-langfuse-ingestion-version`
  must be an integer ≤ 4 when present (else 400); a protobuf body must decode as an
  `ExportTraceServiceRequest` (else 400). We are stricter than Langfuse where it matters to us:
  we *require* protobuf, gzip and the ingestion version, and an empty request is a violation;
- `POST /api/public/scores` (what the `langfuse` 5.x package sends, a JSON list of
  `CreateScoreRequest`): each score needs a `name`, a numeric `value` for NUMERIC, a 32-hex
  `traceId` and a 16-hex `observationId` when given (OTel ids, as our spans carry them);
  answers 202 `{"message": "Accepted"}`;
- `PUT /api/public/models/{id}` (model definition upsert): `modelName`, a valid `matchPattern`
  regex, a known `unit`, and either flat prices or `pricingTiers` with exactly one default tier
  (priority 0, no conditions) and non-negative prices;
- `POST /api/public/media` (an accepted audio type, contentLength, base64 SHA-256, field,
  OTel trace/observation ids) → 201 `{mediaId, uploadUrl}` with Langfuse's id derivation; the
  upload URL (no auth, like a presigned URL) checks Content-Type, length and SHA-256;
  `PATCH /api/public/media/{id}` needs `uploadHttpStatus`;
- `GET /api/public/health` (no auth);
- `GET /api/public/projects` (the project of the keys: `{"data": [project]}`);
- `GET /api/public/v2/metrics?query=<JSON>`: the Metrics API v2 over the observations made from
  the spans this server ingested (tests/langfuse_metrics.py: Langfuse's mapping, validation and
  column names); a bad query is a 400 with Langfuse's message.

Every violation is recorded in `violations` and answered as Langfuse would; tests assert the
list is empty (or names the violation they provoke). `script[path]` queues status codes to
answer before the normal behaviour (429/503 to test retries); `hang[path]` makes a route sleep.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
import time
import urllib.parse
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.langfuse_metrics import METRICS_V2_PATH, QueryError, observation, run, validate
from tests.otlp_receiver import ReceivedSpan, decode_spans

OTEL_PATH = "/api/public/otel/v1/traces"
SCORES_PATH = "/api/public/scores"
MODELS_PATH = "/api/public/models"
MEDIA_PATH = "/api/public/media"
UPLOAD_PATH = "/upload/"  # where our "presigned" upload URLs point
_AUDIO_TYPES = {"audio/wav", "audio/mpeg", "audio/ogg", "audio/opus", "audio/webm", "audio/flac"}
HEALTH_PATH = "/api/public/health"
PROJECTS_PATH = "/api/public/projects"
PROJECT = {
    "id": "proj-voicetrace-test",
    "name": "voicetrace-test",
    "organization": {"id": "org-test", "name": "Test org"},
    "metadata": {},
}
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass
class LangfuseRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # as received (compressed if it was)
    status: int = 0


@dataclass
class LangfuseServer:
    """Context manager: `with LangfuseServer("pk-lf-1", "sk-lf-1") as lf: lf.base_url`."""

    public_key: str = "pk-lf-test"
    secret_key: str = "sk-lf-test"
    requests: list[LangfuseRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id (upserted)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # by media id
    script: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    hang: dict[str, float] = field(default_factory=dict)
    metric_queries: list[dict[str, Any]] = field(default_factory=list)  # as validated
    # Self-hosted Langfuse without LANGFUSE_ENABLE_EVENTS_TABLE_V2_APIS=true: the v2 routes 404.
    v2_apis: bool = True
    port: int = 0

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> LangfuseServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_PUT(self) -> None:
                server._handle(self, "PUT")

            def do_PATCH(self) -> None:
                server._handle(self, "PATCH")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment the telemetry reads to export here."""
        return {
            "LANGFUSE_PUBLIC_KEY": self.public_key,
            "LANGFUSE_SECRET_KEY": self.secret_key,
            "LANGFUSE_HOST": self.base_url,
        }

    # -- waiting --------------------------------------------------------------------------------
    def wait(self, what: str, n: int, timeout_s: float = 5.0) -> int:
        """Wait until `len(getattr(self, what)) >= n`; return the count reached."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(getattr(self, what)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return len(getattr(self, what))

    def of(self, path: str) -> list[LangfuseRequest]:
        with self._cond:
            return [r for r in self.requests if r.path == path]

    # -- handling -------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        path = h.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in h.headers.items()}
        request = LangfuseRequest(method, path, headers, body)
        with self._cond:
            self.requests.append(request)
            scripted = self.script[path].pop(0) if self.script.get(path) else None
            self._cond.notify_all()
        if path in self.hang:
            self._release.wait(self.hang[path])
        if scripted is not None:
            extra = {"Retry-After": "0"} if scripted == 429 else {}
            self._reply(h, request, scripted, {"error": "scripted"}, extra)
            return
        if method == "GET" and path == HEALTH_PATH:
            self._reply(h, request, 200, {"status": "OK", "version": "4.16.0"})
            return
        if method == "PUT" and path.startswith(UPLOAD_PATH):
            self._upload(h, request, path.removeprefix(UPLOAD_PATH))  # a presigned URL: no auth
            return
        if not self._authorized(headers):
            self._violation(f"{path}: bad or missing Basic auth")
            self._reply(h, request, 401, {"error": "Unauthorized"})
            return
        if method == "POST" and path == OTEL_PATH:
            self._traces(h, request)
        elif method == "POST" and path == SCORES_PATH:
            self._scores(h, request)
        elif method == "POST" and path == MEDIA_PATH:
            self._media_url(h, request)
        elif method == "PATCH" and path.startswith(MEDIA_PATH + "/"):
            self._media_patch(h, request, path.removeprefix(MEDIA_PATH + "/"))
        elif method == "PUT" and path.startswith(MODELS_PATH + "/"):
            self._model(h, request, path.removeprefix(MODELS_PATH + "/"))
        elif method == "GET" and path == PROJECTS_PATH:
            self._reply(h, request, 200, {"data": [PROJECT]})
        elif method == "GET" and path == METRICS_V2_PATH:
            self._metrics(h, request, h.path.partition("?")[2])
        else:
            self._violation(f"{method} {path}: no such Langfuse route")
            self._reply(h, request, 404, {"error": "Not found"})

    def _authorized(self, headers: dict[str, str]) -> bool:
        want = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()
        return headers.get("authorization") == f"Basic {want}"

    def _traces(self, h: BaseHTTPRequestHandler, request: LangfuseRequest) -> None:
        headers, body = request.headers, request.body
        ctype = headers.get("content-type", "").lower()
        if "application/x-protobuf" not in ctype and "application/json" not in ctype:
            self._violation(f"traces: invalid content type {ctype!r}")
            self._reply(h, request, 400, {"error": "Invalid content type"})
            return
        if "application/x-protobuf" not in ctype:
            self._violation(f"traces: expected protobuf, got {ctype!r}")
        version = headers.get("x-langfuse-ingestion-version")
        if version is None:
            self._violation("traces: no x-langfuse-ingestion-version header")
        elif not version.strip().lstrip("-").isdigit() or int(version) > 4:
            self._violation(f"traces: unsupported ingestion version {version!r}")
            self._reply(h, request, 400, {"error": "Unsupported x-langfuse-ingestion-version"})
            return
        if "gzip" in headers.get("content-encoding", ""):
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                self._violation("traces: Content-Encoding gzip but the body is not gzip")
                self._reply(h, request, 400, {"error": "Failed to decompress request body"})
                return
        else:
            self._violation("traces: body not gzip-compressed")
        parsed = ExportTraceServiceRequest()
        try:
            parsed.ParseFromString(body)
        except Exception:
            self._violation("traces: body is not an ExportTraceServiceRequest")
            self._reply(h, request, 400, {"error": "Failed to parse OTel Protobuf Trace"})
            return
        spans = decode_spans(parsed)
        if not spans:
            self._violation("traces: an export request without spans")
        with self._cond:
            self.spans.extend(spans)
            self._cond.notify_all()
        request.status = 200
        payload = ExportTraceServiceResponse().SerializeToString()
        self._send(h, 200, payload, "application/x-protobuf")

    def _metrics(self, h: BaseHTTPRequestHandler, request: LangfuseRequest, qs: str) -> None:
        if not self.v2_apis:  # web/src/pages/api/public/v2/metrics.ts
            message = "v2 APIs are currently in beta and only available on Langfuse Cloud"
            self._reply(h, request, 404, {"message": message, "error": "LangfuseNotFoundError"})
            return
        params = urllib.parse.parse_qs(qs, keep_blank_values=True)
        try:
            if len(params.get("query", [])) != 1:
                raise QueryError("query: Required (one JSON-encoded query object)")
            try:
                parsed = json.loads(params["query"][0])
            except ValueError:
                raise QueryError("Invalid JSON in query parameter") from None
            query = validate(parsed)
            with self._cond:
                observations = [observation(s) for s in self.spans]
            rows = run(query, observations)
        except QueryError as exc:
            self._violation(f"metrics: {exc}")
            self._reply(h, request, 400, {"message": str(exc), "error": "InvalidRequestError"})
            return
        with self._cond:
            self.metric_queries.append(query)
        self._reply(h, request, 200, {"data": rows})

    def forget(self, span_id: str) -> None:
        """Lose an ingested span, as Langfuse's worker does with one it cannot convert."""
        with self._cond:
            self.spans[:] = [s for s in self.spans if s.span_id != span_id]

    def _scores(self, h: BaseHTTPRequestHandler, request: LangfuseRequest) -> None:
        if "application/json" not in request.headers.get("content-type", ""):
            self._violation("scores: not JSON")
        try:
            items = json.loads(request.body)
        except ValueError:
            self._violation("scores: body is not JSON")
            self._reply(h, request, 400, {"error": "Invalid request data"})
            return
        if not isinstance(items, list) or not items:
            self._violation("scores: expected a non-empty JSON list of scores")
            self._reply(h, request, 400, {"error": "Invalid request data"})
            return
        for score in items:
            problem = _score_problem(score)
            if problem:
                self._violation(f"scores: {problem}: {score}")
                self._reply(h, request, 400, {"error": problem})
                return
        with self._cond:
            self.scores.extend(items)
            self._cond.notify_all()
        self._reply(h, request, 202, {"message": "Accepted"})

    def _model(self, h: BaseHTTPRequestHandler, request: LangfuseRequest, model_id: str) -> None:
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        problem = _model_problem(body) if isinstance(body, dict) else "body must be an object"
        if problem:
            self._violation(f"models/{model_id}: {problem}")
            self._reply(h, request, 400, {"error": problem})
            return
        with self._cond:
            self.models[model_id] = body
            self._cond.notify_all()
        # The response is Langfuse's `Model`: the definition as stored, tiers with ids.
        default = next(t for t in body.get("pricingTiers") or [{}] if t.get("isDefault", True))
        prices = default.get("prices", {})
        stored = {
            "id": model_id,
            "modelName": body["modelName"],
            "matchPattern": body["matchPattern"],
            "unit": body["unit"],
            "startDate": None,
            "inputPrice": None,
            "outputPrice": None,
            "totalPrice": None,
            "tokenizerId": None,
            "tokenizerConfig": None,
            "isLangfuseManaged": False,
            "createdAt": "2026-12-01T00:00:00.000Z",
            "prices": {key: {"price": v} for key, v in prices.items()},
            "pricingTiers": [
                {**t, "id": f"{model_id}-tier-{i}", "isDefault": bool(t.get("isDefault"))}
                for i, t in enumerate(body.get("pricingTiers") or [])
            ],
        }
        self._reply(h, request, 200, stored)

    def _media_url(self, h: BaseHTTPRequestHandler, request: LangfuseRequest) -> None:
        """POST /api/public/media: a media record and where to PUT its bytes (201)."""
        try:
            body = json.loads(request.body)
        except ValueError:
            body = {}
        problem = _media_problem(body)
        if problem:
            self._violation(f"media: {problem}")
            self._reply(h, request, 400, {"error": problem})
            return
        sha = body["sha256Hash"]
        mid = sha.replace("+", "-").replace("/", "_")[:22]  # Langfuse's getMediaId
        with self._cond:
            self.media[mid] = {**body, "bytes": None, "patched": None}
        self._reply(
            h, request, 201, {"mediaId": mid, "uploadUrl": f"{self.base_url}{UPLOAD_PATH}{mid}"}
        )

    def _upload(self, h: BaseHTTPRequestHandler, request: LangfuseRequest, mid: str) -> None:
        record = self.media.get(mid)
        problem = None
        if record is None:
            problem = "upload to an unknown media id"
        elif request.headers.get("content-type") != record["contentType"]:
            problem = "upload Content-Type differs from the media record"
        elif len(request.body) != record["contentLength"]:
            problem = "upload length differs from contentLength"
        elif (
            base64.b64encode(hashlib.sha256(request.body).digest()).decode() != record["sha256Hash"]
        ):
            problem = "upload bytes do not match sha256Hash"
        if problem or record is None:
            self._violation(f"upload: {problem}")
            self._reply(h, request, 400, {"error": problem})
            return
        with self._cond:
            record["bytes"] = request.body
            self._cond.notify_all()
        self._send(h, 200, b"", "text/plain")

    def _media_patch(self, h: BaseHTTPRequestHandler, request: LangfuseRequest, mid: str) -> None:
        record = self.media.get(mid)
        try:
            body = json.loads(request.body)
        except ValueError:
            body = {}
        if record is None or not isinstance(body.get("uploadHttpStatus"), int):
            self._violation(f"media patch: unknown id or no uploadHttpStatus ({mid})")
            self._reply(h, request, 400, {"error": "Invalid request"})
            return
        with self._cond:
            record["patched"] = body
            self._cond.notify_all()
        self._reply(h, request, 200, {})

    # -- replies --------------------------------------------------------------------------------
    def _violation(self, text: str) -> None:
        with self._cond:
            self.violations.append(text)
            self._cond.notify_all()

    def _reply(
        self,
        h: BaseHTTPRequestHandler,
        request: LangfuseRequest,
        status: int,
        payload: dict[str, Any],
        extra: dict[str, str] | None = None,
    ) -> None:
        request.status = status
        self._send(h, status, json.dumps(payload).encode(), "application/json", extra)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                h.send_header(key, value)
            h.end_headers()
            h.wfile.write(body)
        except OSError:
            pass  # the client gave up


def _media_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be an object"
    if body.get("contentType") not in _AUDIO_TYPES:
        return f"contentType {body.get('contentType')!r} is not an accepted audio type"
    length = body.get("contentLength")
    if not isinstance(length, int) or not 0 < length <= 10_000_000:
        return "contentLength must be a positive int within the media size limit"
    sha = body.get("sha256Hash")
    if not isinstance(sha, str) or len(sha) != 44:
        return "sha256Hash must be a base64 SHA-256"
    if body.get("field") not in ("input", "output", "metadata"):
        return "field must be input, output or metadata"
    if not _HEX32.fullmatch(str(body.get("traceId"))):
        return "traceId must be an OTel trace id"
    if body.get("observationId") is not None and not _HEX16.fullmatch(str(body["observationId"])):
        return "observationId must be an OTel span id"
    return None


def _model_problem(body: dict[str, Any]) -> str | None:
    """Langfuse's model definition rules (PUT /api/public/models/{id})."""
    if not isinstance(body.get("modelName"), str) or not body["modelName"]:
        return "modelName is required"
    pattern = body.get("matchPattern")
    if not isinstance(pattern, str):
        return "matchPattern is required"
    try:
        re.compile(pattern)
    except re.error:
        return f"matchPattern {pattern!r} is not a valid regex"
    if body.get("unit") not in (
        "CHARACTERS",
        "TOKENS",
        "MILLISECONDS",
        "SECONDS",
        "IMAGES",
        "REQUESTS",
    ):
        return "unit is invalid"
    tiers = body.get("pricingTiers")
    flat = [key for key in ("inputPrice", "outputPrice", "totalPrice") if body.get(key) is not None]
    if tiers is not None and flat:
        return "pricingTiers cannot be combined with flat prices"
    if tiers is None:
        return None if flat else "prices are required"
    defaults = [t for t in tiers if t.get("isDefault")]
    if len(defaults) != 1:
        return "exactly one default pricing tier is required"
    if defaults[0].get("priority") != 0 or defaults[0].get("conditions") != []:
        return "the default tier needs priority 0 and no conditions"
    for tier in tiers:
        prices = tier.get("prices")
        if not isinstance(prices, dict) or not prices:
            return "each tier must define at least one price"
        if any(not isinstance(v, int | float) or v < 0 for v in prices.values()):
            return "prices must be non-negative numbers"
    return None


def _score_problem(score: Any) -> str | None:
    if not isinstance(score, dict):
        return "a score must be an object"
    if not isinstance(score.get("name"), str) or not score["name"]:
        return "name is required"
    data_type = score.get("dataType", "NUMERIC")
    value = score.get("value")
    if data_type in ("NUMERIC", "BOOLEAN"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{data_type} value must be a number"
        if data_type == "BOOLEAN" and value not in (0, 1):
            return "BOOLEAN value must be 0 or 1"
    elif not isinstance(value, str):
        return f"{data_type} value must be a string"
    trace_id = score.get("traceId")
    if trace_id is None and score.get("sessionId") is None:
        return "a score needs a traceId or sessionId"
    if trace_id is not None and not _HEX32.fullmatch(str(trace_id)):
        return "traceId must be 32 lower-case hex characters (an OTel trace id)"
    obs = score.get("observationId")
    if obs is not None:
        if trace_id is None:
            return "observationId needs a traceId"
        if not _HEX16.fullmatch(str(obs)):
            return "observationId must be 16 lower-case hex characters (an OTel span id)"
    return None
