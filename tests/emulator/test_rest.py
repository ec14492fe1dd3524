"""The REST side through the real SDK: generateContent, SSE streaming, countTokens, errors."""

from __future__ import annotations

import httpx
import pytest
from google import genai
from google.genai import errors, types

REPLY = "You said: 'Hello REST'. I can find places nearby and give you directions."


async def test_generate_content_answers_with_exact_rest_usage(emu, client):
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents="Hello REST",
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert response.text == REPLY
    usage = response.usage_metadata
    # System "Be brief." → 3, "Hello REST" → 3; the reply is 75 characters → 19.
    assert (usage.prompt_token_count, usage.candidates_token_count) == (6, 19)
    assert usage.total_token_count == 25
    assert response.candidates[0].finish_reason == types.FinishReason.STOP


async def test_stream_generate_content_sends_sse_chunks_that_add_up_to_the_reply(emu, client):
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="Hello REST"
        )
    ]
    assert len(chunks) == 3
    assert "".join(c.text for c in chunks) == REPLY
    assert [c.usage_metadata is not None for c in chunks] == [False, False, True]
    assert chunks[-1].usage_metadata.candidates_token_count == 19


async def test_the_stream_is_server_sent_events_on_the_wire(emu):
    async with httpx.AsyncClient(verify=emu_ssl(emu)) as http:
        response = await http.post(
            f"{emu.base_url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            headers={"x-goog-api-key": emu.api_key},
            json={"contents": [{"parts": [{"text": "Hi"}]}]},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\r\n\r\n") if line]
    assert events and all(e.startswith("data: {") for e in events)


async def test_count_tokens_uses_the_four_characters_per_token_rule(emu, client):
    result = await client.aio.models.count_tokens(
        model="gemini-2.5-flash",
        contents="Exactly seventeen",  # 17 characters
    )
    assert result.total_tokens == 5


async def test_place_requests_become_function_calls_when_tools_are_declared(emu, client):
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(name="search_nearby", description="Find places"),
            types.FunctionDeclaration(name="navigate_to_location", description="Directions"),
        ]
    )
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents="Find a pharmacy near me within 2 km",
        config=types.GenerateContentConfig(
            tools=[tool],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    (call,) = response.function_calls
    assert (call.name, call.args) == ("search_nearby", {"query": "pharmacy", "radius_m": 2000})


async def test_an_unknown_model_is_404_not_found(emu, client):
    with pytest.raises(errors.ClientError) as caught:
        await client.aio.models.generate_content(model="gemini-0-nothing", contents="x")
    assert (caught.value.code, caught.value.status) == (404, "NOT_FOUND")


async def test_a_wrong_key_is_400_and_a_missing_key_is_403(emu, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")
    with pytest.raises(errors.ClientError) as caught:
        await genai.Client().aio.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in caught.value.message
    async with httpx.AsyncClient(verify=emu_ssl(emu)) as http:
        response = await http.post(
            f"{emu.base_url}/v1beta/models/gemini-2.5-flash:generateContent", json={}
        )
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def emu_ssl(emu):
    import ssl

    return ssl.create_default_context(cafile=emu.cert_path)
