"""Gemini usage (adapter event) → the telemetry's SDK-independent `UsageSnapshot`."""

from __future__ import annotations

from collections.abc import Iterable

from voicetrace.service.voice.events import ModalityCount, Usage
from voicetrace.telemetry import ModalityTokens, UsageSnapshot


def _details(counts: Iterable[ModalityCount]) -> tuple[ModalityTokens, ...]:
    return tuple(ModalityTokens(c.modality, c.token_count) for c in counts)


def usage_snapshot(u: Usage) -> UsageSnapshot:
    return UsageSnapshot(
        prompt=u.prompt_token_count,
        cached=u.cached_content_token_count,
        response=u.response_token_count,
        tool_use_prompt=u.tool_use_prompt_token_count,
        thoughts=u.thoughts_token_count,
        total=u.total_token_count,
        prompt_details=_details(u.prompt_tokens_details),
        cache_details=_details(u.cache_tokens_details),
        response_details=_details(u.response_tokens_details),
        tool_use_prompt_details=_details(u.tool_use_prompt_tokens_details),
    )
