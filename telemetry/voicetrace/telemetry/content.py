"""Content policy: whether content may be recorded, and redaction + size cap before it may.

Content (transcripts, model text, tool arguments/results, the system prompt) reaches a span only
when capture is on (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT` = SPAN_ONLY,
SPAN_AND_EVENT or true) **and** the session has recording consent. Even then it passes through
`Redactor` (secrets, bearer/JWT tokens, e-mails, Luhn-valid card numbers, phone numbers, the
session's own blurred strings) and is capped *before* it touches an attribute.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = frozenset({"span_only", "span_and_event", "true", "1", "yes"})


def capture_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """The official instrumentations' switch; NO_CONTENT/EVENT_ONLY/unset mean no span content."""
    env = os.environ if environ is None else environ
    return env.get(CAPTURE_ENV, "").strip().lower() in _CAPTURE_ON


# Order matters: whole tokens first (so a JWT is not half-eaten as a "phone number").
# Each pattern runs only if its cheap hint (a substring every match contains) is present.
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    (("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[JWT]"),
    (("bearer",), re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{8,}=*"), "Bearer [REDACTED]"),
    (("aiza",), re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"), "[API_KEY]"),
    (
        ("k-",),
        re.compile(r"\b(?:sk|pk|rk)-(?:lf-|proj-|live-|test-|ant-)?[A-Za-z0-9_\-]{16,}"),
        "[API_KEY]",
    ),
    (
        ("gh", "xox"),
        re.compile(r"\b(?:ghp|gho|ghs|github_pat|xox[abp])_[A-Za-z0-9_]{16,}"),
        "[API_KEY]",
    ),
    (("akia",), re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "[API_KEY]"),
    (
        ("key", "token", "secret", "passw"),
        re.compile(
            r"(?i)\b(api[_-]?key|access[_-]?token|auth[_-]?token|secret|password|passwd)"
            r"(\s*[:=]\s*|\s+is\s+)(\"?)[^\s\"',;]{4,}"
        ),
        r"\1\2\3[REDACTED]",
    ),
    (("@",), re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), "[EMAIL]"),
)
# Cards and phones both need a run of 8+ digits/separators: one cheap search gates both.
_DIGIT_RUN = re.compile(r"\d[\d ().\-]{6,}\d")
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().\-]{6,}\d(?![\d])")


# One encoder for every tool argument/result (json.dumps with options builds one per call).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else m.group(0)


def _phone(m: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in m.group(0))
    return "[PHONE]" if 8 <= digits <= 15 else m.group(0)


class Redactor:
    """Redacts and caps content strings. One per session (it knows the session's secrets)."""

    __slots__ = ("_blur", "max_chars")

    def __init__(self, secrets_blurred: Iterable[str] = (), max_chars: int = 4000) -> None:
        if max_chars < 16:
            raise ValueError("max_content_chars must be at least 16")
        self.max_chars = max_chars
        words = sorted(
            {s for s in secrets_blurred if s and len(s.strip()) >= 2}, key=len, reverse=True
        )
        self._blur = (
            re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None
        )

    def __call__(self, text: str) -> str:
        # Bound the work first (a megabyte transcript must not cost a megabyte of regex), but
        # keep enough so a secret straddling the final cut is still seen whole.
        if len(text) > self.max_chars * 2:
            text = text[: self.max_chars * 2]
        if self._blur is not None:
            text = self._blur.sub("[REDACTED]", text)
        low = text.lower()
        for hints, pattern, repl in _PATTERNS:
            for hint in hints:  # a plain loop: no generator object per pattern
                if hint in low:
                    text = pattern.sub(repl, text)
                    break
        if _DIGIT_RUN.search(text):
            text = _CARD.sub(_card, text)
            text = _PHONE.sub(_phone, text)
        return self.cap(text)

    def cap(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars - 13] + "…[truncated]"

    def json(self, value: Any) -> str:
        """Redact a JSON-able value (tool args/results) as its compact JSON text."""
        try:
            raw = _COMPACT_JSON.encode(value)
        except (TypeError, ValueError):
            raw = repr(value)
        return self(raw)
