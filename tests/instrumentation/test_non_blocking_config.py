"""Which functions a Live connect config makes NON_BLOCKING, as Gemini applies it."""

from __future__ import annotations

import pytest
from google.genai import types
from voicetrace.emulator.protocol import NON_BLOCKING_DEFAULT_MODELS
from voicetrace.telemetry.instrumentation.genai_session import (
    NON_BLOCKING_BY_DEFAULT,
    non_blocking_functions,
)


@pytest.mark.parametrize("behavior", ["non_blocking", "NON_BLOCKING", "Non_Blocking"])
def test_a_dict_configs_behaviour_is_read_in_any_case_as_the_sdk_sends_it(behavior: str) -> None:
    config = {
        "tools": [
            {
                "function_declarations": [
                    {"name": "remind", "behavior": behavior},
                    {"name": "lookup", "behavior": "blocking"},
                ]
            }
        ]
    }
    # The SDK's `Behavior` is case-insensitive: this is what goes on the wire.
    sent = types.LiveConnectConfig.model_validate(config)
    [tool] = sent.tools or []
    [remind, _] = tool.function_declarations or []
    assert remind.behavior is types.Behavior.NON_BLOCKING
    assert non_blocking_functions(config, "gemini-3.1-flash-live-preview") == {"remind"}
    assert non_blocking_functions(config, "gemini-3.8-live") == {"remind"}


def test_a_dict_config_without_behaviour_takes_the_models_default() -> None:
    config = {"tools": [{"function_declarations": [{"name": "remind"}]}]}
    assert non_blocking_functions(config, "models/gemini-3.8-live") == {"remind"}
    assert non_blocking_functions(config, "gemini-3.1-flash-live-preview") == frozenset()


def test_the_instrumentor_and_the_emulator_default_to_non_blocking_on_the_same_models() -> None:
    assert NON_BLOCKING_BY_DEFAULT == NON_BLOCKING_DEFAULT_MODELS
