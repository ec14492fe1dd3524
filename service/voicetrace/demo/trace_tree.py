"""Render finished spans as an indented tree (the demo's view of a trace)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

_USAGE = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float | str) else 0.0


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def _line(span: ReadableSpan) -> str:
    attrs = span.attributes or {}
    ms = ((span.end_time or _start(span)) - _start(span)) / 1e6
    parts = [f"{span.name}  {ms:,.1f} ms"]
    if "voice.turn.number" in attrs:
        parts.append(f"turn {attrs['voice.turn.number']!s}")
    if "voice.turn.end_reason" in attrs:
        parts.append(str(attrs["voice.turn.end_reason"]))
    if all(k in attrs for k in _USAGE):
        parts.append(f"tokens in {attrs[_USAGE[0]]!s} / out {attrs[_USAGE[1]]!s}")
    if "gen_ai.response.time_to_first_chunk" in attrs:
        parts.append(f"TTFA {1000 * _num(attrs['gen_ai.response.time_to_first_chunk']):.0f} ms")
    if attrs.get("voice.audio.unheard_ms"):
        parts.append(
            f"heard {_num(attrs.get('voice.audio.heard_ms', 0)):.0f} ms, "
            f"{_num(attrs['voice.audio.unheard_ms']):.0f} ms never heard"
            + (
                f" (${_num(attrs['voice.audio.unheard_cost_usd']):.5f})"
                if "voice.audio.unheard_cost_usd" in attrs
                else ""
            )
        )
    if "gen_ai.tool.call.id" in attrs and "voice.tool.status" in attrs:
        parts.append(str(attrs["voice.tool.status"]))
    if not span.status.is_ok:
        parts.append(f"ERROR {span.status.description or ''}".strip())
    return " · ".join(parts)


def format_trace(spans: Sequence[ReadableSpan]) -> str:
    """Every trace in `spans` as a tree, children in start order."""
    by_id = {s.context.span_id: s for s in spans}
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children[parent if parent in by_id else None].append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, last: bool, root: bool) -> None:
        lines.append(("" if root else prefix + ("└── " if last else "├── ")) + _line(span))
        kids = sorted(children.get(span.context.span_id, []), key=_start)
        for i, kid in enumerate(kids):
            walk(
                kid,
                "" if root else prefix + ("    " if last else "│   "),
                i == len(kids) - 1,
                False,
            )

    for root in sorted(children.get(None, []), key=_start):
        walk(root, "", True, True)
    return "\n".join(lines)
