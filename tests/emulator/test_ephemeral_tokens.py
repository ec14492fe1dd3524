"""Ephemeral auth tokens minted with the real SDK: uses, expiry, constraints, and the browser's
`?access_token=` path."""

from __future__ import annotations

import datetime
import json
import ssl
import urllib.parse

import pytest
import websockets
from google import genai
from google.genai import errors, types
from voicetrace.emulator import Emulator
from websockets.exceptions import ConnectionClosed

from tests.emulator.helpers import live_config, one_turn, text_turn

pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")


def v1alpha() -> types.HttpOptions:
    # A fresh object each time: the SDK writes the resolved base URL into the HttpOptions it is
    # given, so a shared instance would pin every later client to the first emulator's port.
    return types.HttpOptions(api_version="v1alpha")


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def mint(**config) -> str:
    client = genai.Client(http_options=v1alpha())
    token = await client.aio.auth_tokens.create(config=types.CreateAuthTokenConfig(**config))
    assert token.name.startswith("auth_tokens/")
    return token.name


def with_token(token: str) -> genai.Client:
    return genai.Client(api_key=token, http_options=v1alpha())


async def say_hi(client: genai.Client, model: str = "gemini-3.8-live", **config) -> list:
    async with client.aio.live.connect(model=model, config=live_config(**config)) as session:
        await session.send_client_content(turns=text_turn("Hi"))
        return await one_turn(session)


async def test_a_token_opens_a_constrained_session_and_is_used_up_after_its_uses(emu):
    token = await mint(uses=1)
    assert await say_hi(with_token(token))
    with pytest.raises(errors.APIError) as caught:
        await say_hi(with_token(token))
    assert caught.value.code == 1008 and "no uses left" in caught.value.details
    first = emu.wire.select(direction="in")[0]
    assert first.message["setup"]["model"] == "models/gemini-3.8-live"


async def test_resuming_a_session_does_not_spend_a_use(emu):
    token = await mint(uses=1)
    client = with_token(token)
    config = live_config(session_resumption=types.SessionResumptionConfig())
    async with client.aio.live.connect(model="gemini-3.8-live", config=config) as session:
        await session.send_client_content(turns=text_turn("Hi"))
        await one_turn(session)
        handle = (await session._receive()).session_resumption_update.new_handle
    resumed = types.SessionResumptionConfig(handle=handle)
    assert await say_hi(client, session_resumption=resumed)
    with pytest.raises(errors.APIError):
        await say_hi(client)  # a new session would be a second use


@pytest.mark.parametrize(
    ("field", "message"),
    [("expire_time", "expired"), ("new_session_expire_time", "no longer opens new sessions")],
)
async def test_an_expired_token_is_refused_with_1008(emu, field, message):
    token = await mint(**{field: now() - datetime.timedelta(seconds=1)})
    with pytest.raises(errors.APIError) as caught:
        await say_hi(with_token(token))
    assert caught.value.code == 1008 and message in caught.value.details


async def test_constraints_without_a_field_mask_replace_the_whole_setup(emu):
    token = await mint(
        live_connect_constraints=types.LiveConnectConstraints(
            model="gemini-3.8-live",
            config=types.LiveConnectConfig(system_instruction="Speak like a pirate."),
        )
    )
    # The client asks for a model that does not exist and its own system prompt: both ignored,
    # and so is its (unlocked, but globally locked) output transcription.
    messages = await say_hi(
        with_token(token), model="gemini-does-not-exist", system_instruction="x"
    )
    usage = messages[-1].usage_metadata
    assert usage.prompt_token_count == 5 + 1  # "Speak like a pirate." (20 chars) + "Hi"
    assert not any(m.server_content and m.server_content.output_transcription for m in messages)


async def test_constraints_with_a_field_mask_lock_only_those_fields(emu):
    token = await mint(
        live_connect_constraints=types.LiveConnectConstraints(
            model="gemini-3.8-live",
            config=types.LiveConnectConfig(system_instruction="Speak like a pirate."),
        ),
        lock_additional_fields=[],
    )
    messages = await say_hi(
        with_token(token), model="gemini-does-not-exist", system_instruction="x"
    )
    assert messages[-1].usage_metadata.prompt_token_count == 6
    # Output transcription was not locked: the client's choice stands.
    assert any(m.server_content and m.server_content.output_transcription for m in messages)


def _constrained_url(emu: Emulator, query: str) -> str:
    return (
        emu.base_url.replace("https://", "wss://")
        + "/ws/google.ai.generativelanguage.v1alpha.GenerativeService."
        + "BidiGenerateContentConstrained"
        + query
    )


async def test_a_browser_passes_the_token_as_access_token_in_the_query(emu):
    token = await mint(uses=1)
    context = ssl.create_default_context(cafile=emu.cert_path)
    url = _constrained_url(emu, "?access_token=" + urllib.parse.quote(token, safe=""))
    async with websockets.connect(url, ssl=context) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}


@pytest.mark.parametrize("where", ["api_key_on_constrained", "token_on_plain"])
async def test_each_endpoint_refuses_the_other_credential(emu, where):
    token = await mint(uses=0)
    context = ssl.create_default_context(cafile=emu.cert_path)
    if where == "api_key_on_constrained":
        url = _constrained_url(emu, f"?key={emu.api_key}")
    else:
        url = _constrained_url(emu, "?key=" + urllib.parse.quote(token, safe="")).replace(
            "Constrained", ""
        )
    async with websockets.connect(url, ssl=context) as ws:
        await ws.send(json.dumps({"setup": {"model": "models/gemini-3.8-live"}}))
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    assert caught.value.rcvd.code == 1008


async def test_tokens_are_minted_only_on_v1alpha_and_only_with_the_api_key(emu, monkeypatch):
    with pytest.raises(errors.ClientError) as caught:
        await genai.Client().aio.auth_tokens.create(config=types.CreateAuthTokenConfig())
    assert caught.value.code == 404
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")
    with pytest.raises(errors.ClientError) as caught:
        await genai.Client(http_options=v1alpha()).aio.auth_tokens.create()
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
