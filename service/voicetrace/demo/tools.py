"""Demo tools over Brightwater, a small fictional town, so the offline demo can call real tools.

The results are deterministic (straight-line distance × a detour factor, fixed speeds per mode),
which makes them usable in tests and in the demo's printed trace. The user is always standing on
Market Square. The data lives in `places.json` next to this module.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from voicetrace.service.voice.tools import ToolError, ToolRegistry

TravelMode = Literal["driving", "walking", "transit", "cycling"]

# Streets are not straight lines: route length ≈ straight-line distance × this factor.
_DETOUR = 1.25
# Metres per minute and a fixed overhead (waiting for the tram, parking) per mode.
_SPEED_M_PER_MIN: dict[str, float] = {
    "walking": 80.0,
    "cycling": 250.0,
    "transit": 330.0,
    "driving": 500.0,
}
_OVERHEAD_MIN: dict[str, float] = {"walking": 0.0, "cycling": 1.0, "transit": 6.0, "driving": 3.0}
_MAX_RADIUS_M = 20_000
_MAX_RESULTS = 5
_EARTH_RADIUS_M = 6_371_000.0
_COMPASS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")

_FILLER = frozenset({"the", "a", "an", "to", "near", "nearby", "me", "some"})
_SPELLINGS = {"harbour": "harbor", "centre": "center", "theatre": "theater"}

# What people say → the categories in the data set.
_SYNONYMS: dict[str, str] = {
    "coffee": "cafe",
    "food": "restaurant",
    "eat": "restaurant",
    "dinner": "restaurant",
    "lunch": "restaurant",
    "pizza": "restaurant",
    "drugstore": "pharmacy",
    "chemist": "pharmacy",
    "medicine": "pharmacy",
    "train": "station",
    "trains": "station",
    "book": "library",
    "bread": "bakery",
    "grocery": "supermarket",
    "groceries": "supermarket",
    "doctor": "hospital",
    "emergency": "hospital",
    "bike": "bike_rental",
    "bicycle": "bike_rental",
    "rental": "bike_rental",
    "sight": "landmark",
    "sightseeing": "landmark",
    "museum": "museum",
    "garden": "park",
}


@dataclass(frozen=True, slots=True)
class Place:
    name: str
    category: str
    lat: float
    lon: float
    address: str


@dataclass(frozen=True, slots=True)
class Town:
    name: str
    origin: Place
    places: tuple[Place, ...]


@cache
def load_town() -> Town:
    """The demo data set (immutable, read once)."""
    raw = json.loads(resources.files(__package__).joinpath("places.json").read_text("utf-8"))
    places = tuple(Place(**p) for p in raw["places"])
    origin = next(p for p in places if p.name == raw["origin"])
    return Town(raw["city"], origin, places)


def _distance_m(a: Place, b: Place) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(math.sqrt(h))


def _heading(a: Place, b: Place) -> str:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    bearing = (math.degrees(math.atan2(x, y)) + 360) % 360
    return _COMPASS[round(bearing / 45) % 8]


def _words(text: str) -> list[str]:
    """Lower-case words without accents, British spellings folded ("Café" ~ "cafe",
    "harbour" ~ "harbor"), filler words dropped."""
    plain = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    words = (_SPELLINGS.get(w, w) for w in re.findall(r"[\w']+", plain))
    return [w for w in words if w not in _FILLER]


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("sh", "ch", "x")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _find_destination(town: Town, destination: str) -> Place:
    wanted = _words(destination)
    if not wanted:
        raise ToolError("destination must name a place, e.g. 'City Library'")
    phrase = " ".join(wanted)
    exact = [p for p in town.places if " ".join(_words(p.name)) == phrase]
    if exact:
        return exact[0]
    singular = {_singular(w) for w in wanted}
    by_words = [
        p
        for p in town.places
        if set(wanted) <= set(_words(p.name))
        or {_SYNONYMS.get(w, w) for w in singular} == {p.category}
    ]
    if len(by_words) == 1:
        return by_words[0]
    if len(by_words) > 1:
        names = ", ".join(p.name for p in by_words)
        raise ToolError(f"'{destination}' is ambiguous in {town.name}: did you mean {names}?")
    known = ", ".join(sorted(p.name for p in town.places))
    raise ToolError(f"unknown destination '{destination}' in {town.name}; known places: {known}")


def navigate_to_location(destination: str, mode: TravelMode = "walking") -> dict[str, Any]:
    """Directions from the user's position (Market Square) to a named place in town.

    Args:
        destination: The place to go to, by name (e.g. "City Library") or kind ("the hospital").
        mode: How the user travels: driving, walking, transit or cycling.
    """
    town = load_town()
    place = _find_destination(town, destination)
    straight = _distance_m(town.origin, place)
    route_m = round(straight * _DETOUR / 10) * 10
    minutes = route_m / _SPEED_M_PER_MIN[mode] + (_OVERHEAD_MIN[mode] if route_m else 0.0)
    eta_min = max(1, math.ceil(minutes)) if route_m else 0
    if route_m == 0:
        directions = f"You are already at {place.name}."
    else:
        distance = f"{route_m / 1000:.1f} km" if route_m >= 1000 else f"{route_m} m"
        directions = f"Head {_heading(town.origin, place)} for about {distance} to {place.address}."
    return {
        "destination": place.name,
        "address": place.address,
        "mode": mode,
        "distance_m": route_m,
        "eta_min": eta_min,
        "directions": directions,
    }


def search_nearby(query: str, radius_m: int = 1000) -> dict[str, Any]:
    """Find places of a kind (cafes, pharmacies, restaurants…) or by name near the user.

    Args:
        query: What to look for, e.g. "coffee", "pharmacy" or "museum".
        radius_m: Search radius in metres around the user (1 to 20000).
    """
    if not 1 <= radius_m <= _MAX_RADIUS_M:
        raise ToolError(f"radius_m must be between 1 and {_MAX_RADIUS_M} (got {radius_m})")
    wanted = [_singular(w) for w in _words(query)]
    if not wanted:
        raise ToolError("query must say what to look for, e.g. 'coffee' or 'pharmacy'")
    categories = {_SYNONYMS.get(w, w) for w in wanted}
    town = load_town()
    hits: list[tuple[float, Place]] = []
    for place in town.places:
        name_words = {_singular(w) for w in _words(place.name)}
        if place.category in categories or name_words & set(wanted):
            distance = _distance_m(town.origin, place)
            if distance <= radius_m:
                hits.append((distance, place))
    hits.sort(key=lambda hit: (hit[0], hit[1].name))
    return {
        "query": query,
        "radius_m": radius_m,
        "count": len(hits),
        "results": [
            {
                "name": p.name,
                "category": p.category,
                "address": p.address,
                "distance_m": round(d / 10) * 10,
            }
            for d, p in hits[:_MAX_RESULTS]
        ],
    }


def demo_registry(timeout_s: float = 5.0) -> ToolRegistry:
    """A registry with the two demo tools (both blocking, so answers wait for the results)."""
    registry = ToolRegistry(timeout_s=timeout_s)
    registry.register(search_nearby)
    registry.register(navigate_to_location)
    return registry
