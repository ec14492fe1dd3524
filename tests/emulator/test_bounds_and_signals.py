"""The emulator stays bounded (resumption snapshots, wire log, tokens) and the real `voicetrace
emulator` process deletes its key and certificates on SIGTERM and on SIGINT."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types
from voicetrace.emulator import Emulator, Scenario, WireLog
from voicetrace.emulator.resumption import Conversation, ResumptionStore
from voicetrace.emulator.tokens import MAX_TOKENS, TokenStore
from voicetrace.emulator.wire import ENTRY_OVERHEAD

from tests.emulator.helpers import FAST, live_config, one_turn, text_turn

VOICETRACE = Path(sys.executable).with_name("voicetrace")


def test_only_the_newest_handles_of_a_conversation_stay_valid():
    store = ResumptionStore(per_conversation=2, total=100)
    conversation = Conversation(id=1)
    handles = []
    for turn in range(1, 5):
        conversation.turns = turn
        handles.append(store.save(conversation))
    assert [store.restore(h) is not None for h in handles] == [False, False, True, True]
    assert store.restore(handles[-1]).turns == 4
    # A restored snapshot is a copy: changing it does not change what the handle restores.
    store.restore(handles[-1]).turns = 99
    assert store.restore(handles[-1]).turns == 4
    assert len(store) == 2 and store.conversations == 1


def test_the_process_wide_bound_forgets_the_oldest_handles_of_any_conversation():
    store = ResumptionStore(per_conversation=4, total=3)
    first = [store.save(Conversation(id=n)) for n in range(1, 6)]
    assert len(store) == 3 and store.conversations == 3
    assert [h in store for h in first] == [False, False, True, True, True]


def test_the_wire_log_keeps_the_newest_frames_within_its_byte_budget():
    log = WireLog(max_entries=1_000, max_bytes=10 * (100 + ENTRY_OVERHEAD))
    for n in range(25):
        log.record(1, "out", "binary", {"n": n}, 100)
    assert len(log) == 10 and log.dropped == 15
    assert [e.message["n"] for e in log] == list(range(15, 25))
    assert log.charged_bytes <= log.max_bytes
    by_count = WireLog(max_entries=3)
    for n in range(5):
        by_count.record(1, "in", "text", {"n": n}, 1)
    assert [e.message["n"] for e in by_count] == [2, 3, 4]


def test_minted_tokens_are_capped_and_long_expired_ones_forgotten():
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    store = TokenStore(clock=lambda: now)
    past = (now - datetime.timedelta(hours=2)).isoformat()
    store.create({"expireTime": past})
    store.create({})
    assert len(store) == 1  # the one expired two hours ago is gone
    for _ in range(MAX_TOKENS + 5):
        store.create({})
    assert len(store) == MAX_TOKENS


async def test_a_forgotten_handle_is_refused_like_an_unknown_one(monkeypatch):
    emu = Emulator(Scenario(**FAST), resumptions=ResumptionStore(per_conversation=1))
    async with emu:
        for name, value in emu.env().items():
            monkeypatch.setenv(name, value)
        config = live_config(session_resumption=types.SessionResumptionConfig())
        handles = []
        async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=config) as s:
            for text in ("One", "Two"):
                await s.send_client_content(turns=text_turn(text))
                await one_turn(s)
                async for message in s.receive():
                    if message.session_resumption_update:
                        handles.append(message.session_resumption_update.new_handle)
                        break
        old = live_config(session_resumption=types.SessionResumptionConfig(handle=handles[0]))
        with pytest.raises(errors.APIError) as refused:
            async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=old) as s:
                await s.send_client_content(turns=text_turn("Back"))
                await one_turn(s)
        assert refused.value.code == 1008
        new = live_config(session_resumption=types.SessionResumptionConfig(handle=handles[1]))
        async with genai.Client().aio.live.connect(model="gemini-3.8-live", config=new) as s:
            await s.send_client_content(turns=text_turn("Back"))
            assert (await one_turn(s))[-1].server_content.turn_complete


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_voicetrace_emulator_deletes_its_key_and_certificates_on(sig):
    process = await asyncio.create_subprocess_exec(
        str(VOICETRACE),
        "emulator",
        "--port",
        "0",
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        ca = None
        while ca is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "the emulator exited early"
            if line.startswith("TLS certificate authority: "):
                ca = Path(line.removeprefix("TLS certificate authority: ").strip())
        directory = ca.parent
        files = await asyncio.to_thread(lambda: sorted(p.name for p in directory.iterdir()))
        assert files == ["ca.pem", "server.key", "server.pem"]
        process.send_signal(sig)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert not await asyncio.to_thread(directory.exists)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_typed_text_kept_until_turn_complete_is_bounded_newest_first():
    from voicetrace.emulator.user_input import _newest

    assert _newest(["a" * 10, "b" * 10, "c" * 10], 25) == ["b" * 10, "c" * 10]
    assert _newest(["x" * 100], 8) == ["x" * 8]
    assert _newest([], 8) == []


async def test_a_turn_that_never_completes_keeps_only_the_newest_text(start_emulator):
    from voicetrace.emulator.user_input import MAX_PENDING_CHARS

    await start_emulator()
    async with genai.Client().aio.live.connect(
        model="gemini-3.8-live", config=live_config()
    ) as session:
        for n in range(5):
            await session.send_client_content(
                turns=[text_turn(f"{n} " + "z" * (MAX_PENDING_CHARS // 2))], turn_complete=False
            )
        await session.send_client_content(turns=[text_turn("Hello")], turn_complete=True)
        messages = await one_turn(session)
    said = "".join(
        m.server_content.output_transcription.text
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )
    assert "Hello" in said and "0 zzz" not in said
    # every character was still billed: 5 × (2 + 32768) + 5 characters, 4 per token
    usage = messages[-1].usage_metadata
    assert usage.prompt_token_count == sum(-(-len(t) // 4) for t in [f"0 {'z' * 32768}"] * 5) + 2
