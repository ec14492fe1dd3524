"""The emulator's built-in deterministic assistant.

It answers in plain sentences derived from what the user said, and asks for the demo tools when
the user wants places or directions (only tools the session declared): `search_nearby(query,
radius_m)` for "find / nearby / near me / coffee / restaurant …" and
`navigate_to_location(destination, mode)` for "directions / navigate / how do I get to …"; a
request that mentions both gets both calls. After the tool responses it speaks about the results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

SEARCH_TOOL = "search_nearby"
NAVIGATE_TOOL = "navigate_to_location"

_SEARCH_WORDS = re.compile(
    r"\b(find|nearby|near me|near here|around here|closest|nearest|coffee|caf[eé]s?|"
    r"restaurants?|pharmac(y|ies)|bakery|bakeries|bars?|pubs?|supermarkets?)\b",
    re.IGNORECASE,
)
_NAVIGATE_WORDS = re.compile(
    r"\b(directions?|navigate|route|how (do|can) i get|take me|way to|walk me)\b", re.IGNORECASE
)
_CATEGORIES = (
    ("coffee", "coffee"),
    ("café", "coffee"),
    ("cafe", "coffee"),
    ("restaurant", "restaurant"),
    ("pharmac", "pharmacy"),
    ("bakery", "bakery"),
    ("bakeries", "bakery"),
    ("museum", "museum"),
    ("park", "park"),
    ("supermarket", "supermarket"),
    ("pub", "bar"),
    ("bar", "bar"),
)
_DESTINATION = re.compile(
    r"\b(?:to|towards)\s+(?:the\s+)?([a-z0-9][\w' -]*?)(?:\s+(?:please|by|on foot|now)\b|[.,!?]|$)",
    re.IGNORECASE,
)
_RADIUS = re.compile(r"\bwithin\s+(\d+(?:\.\d+)?)\s*(km|kilometers?|m|meters?|metres?)\b", re.I)
_TEXT_KEYS = ("summary", "directions", "message", "text", "answer")
_LONG = re.compile(r"\b(long|story|everything|every detail|tell me more)\b", re.IGNORECASE)

_STORY = (
    "Once upon a time, by a quiet harbour, there stood a lighthouse whose keeper counted the "
    "ships every evening. The old town grew around the quay, with its market square, its "
    "bakeries and its narrow streets that all lead down to the water. Every winter the storms "
    "came in from the sea, and every spring the fishermen painted their boats again. "
)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the model does with a user turn: say `speech`, or request `calls` first."""

    speech: str
    calls: tuple[Call, ...] = field(default_factory=tuple)


def respond(user_text: str, declared: Collection[str]) -> Plan:
    """The model's answer to `user_text`, given the names of the declared functions."""
    text = " ".join(user_text.split())
    calls: list[Call] = []
    if SEARCH_TOOL in declared and _SEARCH_WORDS.search(text):
        calls.append(Call(SEARCH_TOOL, {"query": _category(text), "radius_m": _radius_m(text)}))
    if NAVIGATE_TOOL in declared and _NAVIGATE_WORDS.search(text):
        calls.append(Call(NAVIGATE_TOOL, {"destination": _destination(text), "mode": _mode(text)}))
    if calls:
        return Plan(speech="Let me look that up.", calls=tuple(calls))
    if not text:
        return Plan(speech="Sorry, I didn't catch that. Could you say it again?")
    speech = f"You said: '{text}'."
    if _LONG.search(text):
        speech += " Here is the long version. " + _STORY * 2
    else:
        speech += " I can find places nearby and give you directions."
    return Plan(speech=speech.strip())


def after_tools(results: Sequence[tuple[str, Any]]) -> str:
    """A sentence about the function responses (name, response) the model received."""
    sentences = [_summarise(name, response) for name, response in results]
    return " ".join(sentences) if sentences else "I have no results to share."


def _summarise(name: str, response: Any) -> str:
    if isinstance(response, dict) and response.get("error"):
        return f"Sorry, {name} failed: {response['error']}."
    names = _names(response)
    if names:
        listed = ", ".join(names[:3])
        return f"From {name} I found {len(names)} results: {listed}."
    spoken = _first_text(response)
    if spoken:
        return spoken if len(spoken) <= 200 else spoken[:197] + "..."
    body = json.dumps(response, sort_keys=True, ensure_ascii=False)
    if len(body) > 120:
        body = body[:117] + "..."
    return f"{name} says: {body}."


def _names(value: Any) -> list[str]:
    """Names of places in a result, wherever the list sits (`places`, `results`, `steps`…)."""
    if isinstance(value, dict):
        for item in value.values():
            found = _names(item)
            if found:
                return found
        return []
    if isinstance(value, list):
        return [str(v["name"]) for v in value if isinstance(v, dict) and v.get("name")]
    return []


def _first_text(value: Any) -> str | None:
    """A human-readable field of a result (`directions`, `summary`…), wherever it is nested."""
    if isinstance(value, dict):
        for key in _TEXT_KEYS:
            text = value.get(key)
            if isinstance(text, str) and text.strip():
                return text.strip()
        for item in value.values():
            found = _first_text(item)
            if found:
                return found
    return None


def _category(text: str) -> str:
    lowered = text.lower()
    for needle, category in _CATEGORIES:
        if needle in lowered:
            return category
    return "places"


def _radius_m(text: str) -> int:
    match = _RADIUS.search(text)
    if not match:
        return 1000
    value = float(match.group(1))
    return int(value * 1000) if match.group(2).lower().startswith("k") else int(value)


def _destination(text: str) -> str:
    for match in _DESTINATION.finditer(text):
        candidate = match.group(1).strip()
        if candidate and not _SEARCH_WORDS.fullmatch(candidate):
            return candidate
    return "the destination"


def _mode(text: str) -> str:
    lowered = text.lower()
    if re.search(r"\b(drive|driving|car)\b", lowered):
        return "driving"
    if re.search(r"\b(bike|cycle|cycling|bicycle)\b", lowered):
        return "cycling"
    if re.search(r"\b(bus|train|tram|transit|metro)\b", lowered):
        return "transit"
    return "walking"
