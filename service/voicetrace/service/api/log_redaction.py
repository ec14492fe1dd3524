"""Keep tokens, keys and conversation content out of every log record, at every level.

At DEBUG, the `websockets` library (which uvicorn's WebSocket protocols drive, logging to
`uvicorn.error`, and which google-genai uses to reach Gemini, logging to `websockets.client`) logs
each handshake header — `Sec-WebSocket-Protocol: voicetrace.v1, bearer.<jwt>`, `x-goog-api-key` —
and each frame with a preview of its payload: transcripts, typed text, tool arguments, i.e. the
very strings a session asked us to blur. `SecretRedactor`:

- replaces frame records (`"< %s"` / `"> %s"` with a `websockets.frames.Frame`) by the frame's
  opcode and size: no payload ever reaches a log, so no per-session secret list is needed;
- blanks the values of credential headers (`Authorization`, `Cookie`, `x-goog-api-key`, the
  bearer entry of `Sec-WebSocket-Protocol`);
- as a catch-all, rewrites any message (and traceback text) containing a JWT, a `Bearer …` or
  `bearer.…` credential, or a `token=` / `key=` query parameter.

It is installed both on the loggers that emit these records (a logger's filters see only its own
records) and on every handler of the root and uvicorn loggers (a handler's filters see propagated
records too), so an operator's own logging config stays covered.
"""

from __future__ import annotations

import logging
import re

from websockets.frames import Frame

REDACTED = "[REDACTED]"
_SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-goog-api-key",
        "x-api-key",
        "sec-websocket-protocol",
    }
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer[ .])[A-Za-z0-9._~+/=-]{8,}")
_QUERY = re.compile(r"(?i)([?&](?:token|key|access_token|api_key)=)[^&\s\"']+")
_HEADER_FORMATS = frozenset({"< %s: %s", "> %s: %s"})
_FRAME_FORMATS = frozenset({"< %s", "> %s"})

# Loggers that emit credential-bearing records directly (filters on a logger see only those).
EMITTING_LOGGERS = (
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets",
    "websockets.client",
    "websockets.server",
    "websockets.protocol",
    "google_genai",
    "google_genai.live",
    "httpx",
    "httpcore",
)


def redact_text(text: str) -> str:
    """`text` with every JWT, bearer credential and credential query parameter blanked."""
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _QUERY.sub(lambda m: m.group(1) + REDACTED, text)


def _frame_summary(frame: Frame) -> str:
    return f"{frame.opcode.name} [{len(frame.data)} bytes, payload not logged]"


class SecretRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            if record.msg in _FRAME_FORMATS and len(args) == 1 and isinstance(args[0], Frame):
                record.args = (_frame_summary(args[0]),)
            elif record.msg in _HEADER_FORMATS and len(args) == 2:
                name = str(args[0])
                if name.lower() in _SENSITIVE_HEADERS:
                    record.args = (name, _header_value(name, str(args[1])))
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def _header_value(name: str, value: str) -> str:
    if name.lower() != "sec-websocket-protocol":
        return REDACTED
    # Keep the protocol names (useful when debugging a handshake), drop the credential.
    parts = [p.strip() for p in value.split(",")]
    return ", ".join(REDACTED if p.lower().startswith("bearer") else p for p in parts)


def _has_redactor(filterer: logging.Filterer) -> bool:
    return any(isinstance(f, SecretRedactor) for f in filterer.filters)


def install_log_redaction() -> None:
    """Idempotent; call after logging is configured (uvicorn's Config does that)."""
    redactor = SecretRedactor()
    for name in EMITTING_LOGGERS:
        logger = logging.getLogger(name)
        if not _has_redactor(logger):
            logger.addFilter(redactor)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not _has_redactor(handler):
                handler.addFilter(redactor)
