"""Wire-level helpers shared by the Live and REST sides: key casing, base64, models, errors.

Gemini's endpoints speak proto-JSON, which accepts both `camelCase` and `snake_case` field names
at every level. We never rewrite client messages (user-defined keys such as function arguments
and schema property names must survive untouched); instead every lookup tries both spellings.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

# Live models the emulator serves, and the families that only speak (no TEXT response modality).
LIVE_MODELS: frozenset[str] = frozenset(
    {
        "gemini-3.8-live",
        "gemini-3.8-live-extended-thinking",
        "gemini-3.1-flash-live-preview",
        "gemini-live-2.5-flash-native-audio",
        "gemini-2.0-flash-live-001",
    }
)
NATIVE_AUDIO_PREFIX = "gemini-2.5-flash-native-audio-"
# Models that only exist for REST generateContent (the Live models answer there too).
REST_MODELS: frozenset[str] = frozenset(
    {"gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro", "gemini-3-flash-preview"}
)
# NON_BLOCKING is the default function behaviour only on the GA 3.8 Live models.
NON_BLOCKING_DEFAULT_MODELS: frozenset[str] = frozenset(
    {"gemini-3.8-live", "gemini-3.8-live-extended-thinking"}
)

_CAMEL_RE = re.compile(r"_([a-z0-9])")


class CloseError(Exception):
    """End a Live connection with this close code and reason: how Gemini reports errors."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        # RFC 6455 caps a close reason at 123 bytes; longer ones would fail the close itself.
        self.reason = reason.encode()[:123].decode(errors="ignore")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def camel(name: str) -> str:
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


def pick(obj: Any, name: str, default: Any = None) -> Any:
    """`obj[name]` under either spelling (`turnComplete` / `turn_complete`); `default` if absent."""
    if not isinstance(obj, dict):
        return default
    for key in (name, snake(name), camel(name)):
        if key in obj:
            return obj[key]
    return default


def has(obj: Any, name: str) -> bool:
    return isinstance(obj, dict) and any(k in obj for k in (name, snake(name), camel(name)))


def b64decode_any(data: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not (the Python SDK sends URL-safe,
    browsers and the JS SDK standard)."""
    if not isinstance(data, str):
        raise ValueError("base64 data must be a string")
    cleaned = data.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 data: {exc}") from exc


def b64encode(data: bytes) -> str:
    # The real service sends standard base64; the SDK's bytes fields accept both alphabets.
    return base64.b64encode(data).decode()


def model_name(raw: Any) -> str:
    """`models/gemini-x` or `gemini-x` → `gemini-x`."""
    name = str(raw or "")
    return name.removeprefix("models/")


def is_live_model(name: str) -> bool:
    return name in LIVE_MODELS or name.startswith(NATIVE_AUDIO_PREFIX)


def is_audio_only(name: str) -> bool:
    """Native-audio and 3.x Live models reject a TEXT response modality."""
    return name != "gemini-2.0-flash-live-001"


def duration_json(seconds: float) -> str:
    """A protobuf Duration in its JSON form (`"5s"`, `"0.250s"`)."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator) if numerator > 0 else 0


def ceil_float(value: float) -> int:
    return max(0, math.ceil(value - 1e-9))
