"""`voicetrace langfuse sync-models`: the price table as Langfuse model definitions, sent to a
local server that enforces Langfuse's model-definition rules."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from voicetrace.service import langfuse_cli
from voicetrace.telemetry import PriceTable
from voicetrace.telemetry.langfuse_models import match_pattern

from tests.langfuse_server import LangfuseServer


def _matches(pattern: str, model: str) -> bool:
    return re.match(pattern, model) is not None


def test_globs_and_exact_names_become_anchored_case_insensitive_regexes() -> None:
    exact, glob = match_pattern("gemini-3.8-live"), match_pattern("gemini-2.5-flash-native-audio-*")
    assert _matches(exact, "gemini-3.8-live") and _matches(exact, "models/Gemini-3.8-Live")
    assert not _matches(exact, "gemini-3.8-live-preview") and not _matches(exact, "gemini-3x8-live")
    assert _matches(glob, "gemini-2.5-flash-native-audio-preview-09-2025")
    assert not _matches(glob, "gemini-2.5-flash")


def test_sync_models_upserts_every_priced_model_with_per_token_prices(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = PriceTable.load(None)
    with LangfuseServer("pk-lf-m", "sk-lf-m") as lf:
        for name, value in lf.env().items():
            monkeypatch.setenv(name, value)
        assert langfuse_cli.main(["langfuse", "sync-models"]) == 0
        assert langfuse_cli.main(["langfuse", "sync-models"]) == 0  # again: same ids, replaced
    assert lf.violations == []
    assert len(lf.models) == len(table.models())
    assert len([r for r in lf.requests if r.method == "PUT"]) == 2 * len(table.models())
    by_name = {m["modelName"]: m for m in lf.models.values()}
    assert set(by_name) == set(table.models())
    live = by_name["gemini-3.8-live"]
    assert live["unit"] == "TOKENS" and _matches(live["matchPattern"], "gemini-3.8-live")
    (tier,) = live["pricingTiers"]
    price = table.lookup("gemini-3.8-live")
    assert price is not None
    million = Decimal(1_000_000)
    assert tier["prices"]["output_audio_tokens"] == float(price.output["audio"] / million)
    assert tier["prices"]["input_audio_tokens"] == float(price.input["audio"] / million)
    assert tier["prices"]["output_reasoning_tokens"] == float(price.output["text"] / million)
    # The same keys as the generations' usage_details: Langfuse prices them one by one.
    assert set(tier["prices"]) == {
        "input_text_tokens",
        "input_audio_tokens",
        "input_image_tokens",
        "input_cached_tokens",
        "input_tool_use_tokens",
        "output_text_tokens",
        "output_audio_tokens",
        "output_image_tokens",
        "output_reasoning_tokens",
    }
    out = capsys.readouterr()
    assert "sk-lf-m" not in out.out + out.err
    assert f"{len(table.models())} model definitions registered" in out.out


def test_sync_models_without_credentials_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert langfuse_cli.main(["langfuse", "sync-models"]) == 2
    assert "LANGFUSE_PUBLIC_KEY" in capsys.readouterr().err


def test_sync_models_reports_a_refusal_without_the_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with LangfuseServer("pk-lf-m", "sk-lf-m") as lf:
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-m")
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-wrong")
        monkeypatch.setenv("LANGFUSE_HOST", lf.base_url)
        assert langfuse_cli.main(["langfuse", "sync-models"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "sk-lf-wrong" not in err


def test_a_bad_price_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text("{not json")
    assert langfuse_cli.main(["langfuse", "sync-models", "--prices", str(bad), "--dry-run"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
