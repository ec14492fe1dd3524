"""Gemini ephemeral tokens for client-direct sessions (the browser talks to Gemini Live).

A token is minted through google-genai's `auth_tokens` for one use, expires soon, and locks the
session setup to exactly what a proxied session of this service would send
(`gemini.live_connect_config`): model, voice, system prompt, tools, voice detection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from google import genai
from google.genai import types
from google.genai.errors import ExperimentalWarning
from voicetrace.service.voice.gemini import live_base_url, live_connect_config
from voicetrace.service.voice.gemini_events import function_declaration
from voicetrace.service.voice.live_model import LiveModelConfig

_CONSTRAINED_PATH = (
    "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
)


@dataclass(frozen=True, slots=True)
class EphemeralToken:
    name: str  # what the client passes as `access_token`
    expires_at: dt.datetime


async def mint_ephemeral_token(
    config: LiveModelConfig, *, ttl: dt.timedelta, new_session_ttl: dt.timedelta
) -> EphemeralToken:
    """One-use token whose Live setup is locked to `config` (resumption off: one session)."""
    locked = live_connect_config(
        dataclasses.replace(config, resumption=False),
        [function_declaration(spec) for spec in config.tools],
    )
    key = config.api_key
    # A fresh HttpOptions per client: the SDK writes the resolved base URL into it.
    client = await asyncio.to_thread(
        lambda: genai.Client(api_key=key, http_options=types.HttpOptions(api_version="v1alpha"))
    )
    now = dt.datetime.now(dt.UTC)
    expires = now + ttl
    with warnings.catch_warnings():  # the SDK marks token creation experimental on every call
        warnings.simplefilter("ignore", category=ExperimentalWarning)
        token = await _create_token(client, config.model, locked, expires, now, new_session_ttl)
    if not token.name:
        raise RuntimeError("Gemini returned an auth token without a name")
    return EphemeralToken(token.name, expires)


async def _create_token(
    client: genai.Client,
    model: str,
    locked: types.LiveConnectConfig,
    expires: dt.datetime,
    now: dt.datetime,
    new_session_ttl: dt.timedelta,
) -> types.AuthToken:
    token: types.AuthToken = await client.aio.auth_tokens.create(
        config=types.CreateAuthTokenConfig(
            uses=1,
            expire_time=expires,
            new_session_expire_time=now + new_session_ttl,
            live_connect_constraints=types.LiveConnectConstraints(model=model, config=locked),
            lock_additional_fields=[],  # every field set above is locked
        )
    )
    return token


def constrained_ws_url() -> str:
    """Gemini Live's constrained endpoint (ephemeral tokens), resolved as the SDK resolves it."""
    parts = urlsplit(live_base_url())
    scheme = "ws" if parts.scheme == "http" else "wss"
    return f"{scheme}://{parts.netloc}{_CONSTRAINED_PATH}"
