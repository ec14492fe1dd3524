"""The REST side: `generateContent`, `streamGenerateContent?alt=sse`, `countTokens`, auth tokens.

Same assistant and token rules as Live (see `usage`), with REST's `candidatesTokenCount`. Errors
have Google's shape, `{"error": {"code", "message", "status"}}`, with the real API's statuses:
no key 403, a wrong key 400, an unknown model or version 404.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from voicetrace.emulator import assistant
from voicetrace.emulator.protocol import REST_MODELS, is_live_model, pick
from voicetrace.emulator.tokens import TokenStore
from voicetrace.emulator.usage import (
    Context,
    TurnUsage,
    declaration_tokens,
    response_tokens,
    system_tokens,
    text_tokens,
)

VERSIONS = ("v1", "v1beta", "v1alpha")
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}


class RestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        status = _STATUS.get(self.code, "UNKNOWN")
        body = {"error": {"code": self.code, "message": self.message, "status": status}}
        return JSONResponse(body, status_code=self.code)


class RestApi:
    """Request handlers bound to one emulator's API key and token store."""

    def __init__(self, api_key: str, tokens: TokenStore) -> None:
        self.api_key = api_key
        self.tokens = tokens

    async def models(self, request: Request) -> Response:
        try:
            version = self._check(request)
            model, _, action = request.path_params["target"].rpartition(":")
            if action not in ("generateContent", "streamGenerateContent", "countTokens"):
                raise RestError(404, f"Method {action!r} is not found.")
            if not (is_live_model(model) or model in REST_MODELS):
                raise RestError(
                    404,
                    f"models/{model} is not found for API version {version}, or is not "
                    f"supported for {action}. Call ListModels to see the available models.",
                )
            body = await _json(request)
            if action == "countTokens":
                request_body = pick(body, "generateContentRequest") or body
                usage, _ = _answer(request_body, count_only=True)
                total = usage.input_text
                details = [{"modality": "TEXT", "tokenCount": total}] if total else []
                return JSONResponse({"totalTokens": total, "promptTokensDetails": details})
            usage, parts = _answer(body)
            if action == "generateContent":
                return JSONResponse(_candidate(model, parts, usage, final=True))
            return StreamingResponse(_sse(model, parts, usage), media_type="text/event-stream")
        except RestError as exc:
            return exc.response()

    async def auth_tokens(self, request: Request) -> Response:
        try:
            version = self._check(request)
            if version != "v1alpha":
                raise RestError(404, f"auth_tokens is only available in v1alpha, not {version}.")
            body = await _json(request)
            try:
                token = self.tokens.create(body)
            except ValueError as exc:
                raise RestError(400, str(exc)) from None
            return JSONResponse(token.as_json())
        except RestError as exc:
            return exc.response()

    def _check(self, request: Request) -> str:
        version = str(request.path_params["version"])
        if version not in VERSIONS:
            raise RestError(404, f"API version {version!r} is not found.")
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            raise RestError(403, "Method doesn't allow unregistered callers. Pass an API key.")
        if key != self.api_key:
            raise RestError(400, "API key not valid. Please pass a valid API key.")
        return version


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise RestError(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise RestError(400, "Invalid JSON payload: expected an object.")
    return body


def _answer(
    body: dict[str, Any], count_only: bool = False
) -> tuple[TurnUsage, list[dict[str, Any]]]:
    """The reply parts for a request, and its usage (prompt = everything sent)."""
    contents = pick(body, "contents") or []
    if not isinstance(contents, list):
        raise RestError(400, "Invalid value at 'contents': expected a list.")
    declared: list[str] = []
    tokens = system_tokens(pick(body, "systemInstruction"))
    for tool in pick(body, "tools") or []:
        for declaration in pick(tool, "functionDeclarations") or []:
            declared.append(str(pick(declaration, "name") or ""))
            tokens += declaration_tokens(declaration)
    user_text = ""
    results: list[tuple[str, Any]] = []  # tool results since the last user text
    for content in contents:
        role = pick(content, "role") or "user"
        for part in pick(content, "parts") or []:
            text = pick(part, "text")
            if isinstance(text, str):
                tokens += text_tokens(text)
                if role == "user":
                    user_text, results = text, []
            if pick(part, "functionResponse") is not None:
                response = pick(pick(part, "functionResponse"), "response") or {}
                tokens += response_tokens(response)
                results.append((str(pick(pick(part, "functionResponse"), "name")), response))
    usage = TurnUsage(input_text=tokens)
    if count_only:
        return usage, []
    if results:
        reply = assistant.after_tools(results)
    else:
        plan = assistant.respond(user_text, declared)
        if plan.calls:
            return usage, [{"functionCall": {"name": c.name, "args": c.args}} for c in plan.calls]
        reply = plan.speech
    usage.output_text = text_tokens(reply)
    return usage, [{"text": reply}]


def _candidate(
    model: str, parts: list[dict[str, Any]], usage: TurnUsage, *, final: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model}
    if final:
        candidate["finishReason"] = "STOP"
        out["usageMetadata"] = usage.metadata(Context(), rest=True)
    out["responseId"] = secrets.token_hex(8)
    return out


async def _sse(model: str, parts: list[dict[str, Any]], usage: TurnUsage) -> AsyncIterator[bytes]:
    """Text replies stream in three pieces; the last carries finishReason and usage."""
    text = parts[0].get("text") if len(parts) == 1 else None
    if text is None:
        chunks = [parts]
    else:
        words = text.split(" ")
        step = max(1, -(-len(words) // 3))
        pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        chunks = [
            [{"text": p + (" " if i < len(pieces) - 1 else "")}] for i, p in enumerate(pieces)
        ]
    for index, chunk in enumerate(chunks):
        event = _candidate(model, chunk, usage, final=index == len(chunks) - 1)
        yield f"data: {json.dumps(event)}\r\n\r\n".encode()
