"""How OTLP metric names reach Prometheus, and which metric/label names a PromQL query uses.

`prom_name` ports the `UnderscoreEscapingWithSuffixes` strategy of prometheus/otlptranslator
(what the collector's `prometheus` exporter uses with `translation_strategy` pinned to it):
unit suffix from a UCUM map (unknown units kept as written, `{…}` annotations dropped), `_total`
for monotonic sums, `_ratio` for unit-1 gauges, invalid characters to `_`. The tests cross-check
it against the Python `opentelemetry-exporter-prometheus` output for the service's metrics.
"""

from __future__ import annotations

import re

_UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "1": "",
    "%": "percent",
}
_PER_UNITS = {
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "mo": "month",
    "y": "year",
}
_INVALID = re.compile(r"[^a-zA-Z0-9:]")


def _clean(unit: str) -> str:
    return re.sub(r"_+", "_", _INVALID.sub("_", unit)).removeprefix("_")


def _unit_suffixes(unit: str) -> tuple[str, str]:
    main, _, per = unit.partition("/")
    main_suffix = per_suffix = ""
    main = main.strip()
    if main and not any(c in main for c in "{}"):
        main_suffix = _UNITS.get(main, main)
    per = per.strip()
    if per and not any(c in per for c in "{}"):
        per_suffix = "per_" + _PER_UNITS.get(per, per)
    return main_suffix, per_suffix


def prom_name(name: str, unit: str, kind: str) -> str:
    """`kind` is "counter" (monotonic sum), "gauge" (gauge or non-monotonic sum), "histogram"."""
    tokens = [t for t in _INVALID.split(name) if t]
    main, per = (_clean(s) for s in _unit_suffixes(unit))
    if main in tokens:
        main = ""
    per = "" if per == "per_" else per.removesuffix("_")
    if per in tokens:
        per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [t for t in (main, per) if t]
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    out = "_".join(tokens)
    return "_" + out if out[:1].isdigit() else out


def series_names(name: str, unit: str, kind: str) -> set[str]:
    """The series names Prometheus stores for one OTLP metric."""
    base = prom_name(name, unit, kind)
    if kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


def label_name(attribute: str) -> str:
    """`gen_ai.request.model` → `gen_ai_request_model` (labels: [a-zA-Z0-9_])."""
    out = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return "key" + out if out[:1].isdigit() else out


# -- PromQL ---------------------------------------------------------------------------------------

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def parse_query(expr: str) -> tuple[set[str], set[str], list[tuple[str | None, str, str, str]]]:
    """(metric names, grouping labels, matchers as (metric, label, op, value)) of one query.

    Enough PromQL for dashboard queries: vector selectors, `{…}` matchers, `[range]`, functions
    and `by/without/on/ignoring (…)` groupings. Grafana's `$__rate_interval` is treated as a range.
    """
    matchers: list[tuple[str | None, str, str, str]] = []
    for metric, body in _MATCHERS.findall(expr):
        pos = 0
        while pos < len(body.strip()):
            m = _MATCHER.match(body, pos)
            if not m:
                raise ValueError(f"cannot parse matchers {{{body}}} in {expr!r}")
            matchers.append((metric or None, m.group(1), m.group(2), m.group(3)))
            pos = m.end()
    groupings = {
        label.strip() for _, labels in _GROUPING.findall(expr) for label in labels.split(",")
    }
    groupings.discard("")
    rest = _GROUPING.sub(" ", expr)
    rest = re.sub(r"\{[^}]*\}", " ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    rest = _STRING.sub(" ", rest)
    metrics: set[str] = set()
    for m in _IDENT.finditer(rest):
        word, after = m.group(0), rest[m.end() :].lstrip()
        if after.startswith("(") or word.lower() in _KEYWORDS or word.startswith("$"):
            continue
        if rest[m.start() - 1 : m.start()] == "$":  # $__rate_interval and friends
            continue
        metrics.add(word)
    return metrics, groupings, matchers
