"""Scenario files, the CLI entry point, and the audio-time VAD's independence from chunking."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from google import genai
from voicetrace.emulator import Scenario, ScriptedTurn
from voicetrace.emulator.vad import Endpointer

from tests.emulator.helpers import live_config, one_turn, silence, speech, text_turn

ROOT = Path(__file__).resolve().parents[2]


def test_a_scenario_file_scripts_spoken_turns_and_per_turn_overrides(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(
        json.dumps(
            {
                "user_says": ["Hello", {"says": "Boom", "close_code": 1011}],
                "turns": {"3": {"thoughts_tokens": 7}},
                "speed": 50,
                "silence_duration_ms": 400,
            }
        )
    )
    scenario = Scenario.load(path)
    assert scenario.spoken(0) == ScriptedTurn(says="Hello")
    assert scenario.spoken(1).close_code == 1011
    assert scenario.spoken(2).says == "(unintelligible)"
    assert scenario.for_turn(3).thoughts_tokens == 7
    assert scenario.for_turn(3, ScriptedTurn(says="x", reply="y")).reply == "y"
    assert scenario.silence_duration_ms == 400 and scenario.chunk_pause_s == 0.04 / 50


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"user_sayz": []}', "unknown scenario keys"),
        ('{"user_says": [{"said": "x"}]}', "unknown scripted turn keys"),
        ('{"user_says": [3]}', "a scripted turn is a string or an object"),
        ('{"speed": 0}', "must be positive"),
        ("[1, 2]", "must be a JSON object"),
        ("{nope", "not valid JSON"),
    ],
)
def test_a_bad_scenario_file_fails_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        Scenario.load(path)


@pytest.mark.parametrize("chunk", [1, 37, 160, 1600, 32_000])
def test_vad_boundaries_depend_on_samples_not_on_how_audio_is_chunked(chunk):
    pcm = silence(0.2) + speech(0.5) + silence(0.4) + speech(0.1) + silence(0.5)
    vad = Endpointer(silence_duration_ms=300)
    events = []
    for start in range(0, len(pcm), 2 * chunk):
        events += [(b.event, b.sample) for b in vad.feed(pcm[start : start + 2 * chunk])]
    assert events == [
        ("speech_start", 3_200),
        ("speech_end", 16_000),  # 0.7 s of audio + 300 ms of silence
        ("speech_start", 17_600),
        ("speech_end", 24_000),
    ]


async def test_the_cli_prints_the_env_to_export_and_stops_on_ctrl_c(tmp_path, monkeypatch):
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"turns": {"1": {"reply": "From the file."}}, "speed": 500}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from voicetrace.emulator import run_emulator_cli; "
        "run_emulator_cli(0, sys.argv[1])",
        str(scenario),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        env: dict[str, str] = {}
        while len(env) < 3:
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            assert line, "the CLI exited early"
            if line.strip().startswith("export "):
                name, _, value = line.strip().removeprefix("export ").partition("=")
                env[name] = value
        assert env["GOOGLE_GEMINI_BASE_URL"].startswith("https://127.0.0.1:")
        pem = await asyncio.to_thread(Path(env["SSL_CERT_FILE"]).read_text)
        assert pem.startswith("-----BEGIN CERTIFICATE-----")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        async with genai.Client().aio.live.connect(
            model="gemini-3.8-live", config=live_config()
        ) as session:
            await session.send_client_content(turns=text_turn("Hi"))
            messages = await one_turn(session)
        said = "".join(
            m.server_content.output_transcription.text
            for m in messages
            if m.server_content and m.server_content.output_transcription
        )
        assert said == "From the file."
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        # The certificates are cleaned up.
        assert not await asyncio.to_thread(Path(env["SSL_CERT_FILE"]).exists)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
