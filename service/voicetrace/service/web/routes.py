"""`/app`: the browser voice client, served as static files from this package.

The files are plain ES modules (no build step). Only the files listed in `ASSETS` are served, so
no path a client sends can reach anything else on disk. The page authenticates its API calls
itself (bearer token), so serving it needs none; the headers keep it from being framed or from
loading anything but its own origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse
from voicetrace.service.api.errors import error_body
from voicetrace.service.voice.gemini_tokens import constrained_ws_url

STATIC_DIR = Path(__file__).parent / "static"

# file name → media type. JavaScript must be served as JavaScript: browsers refuse ES modules
# and AudioWorklet modules with any other type.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "call.js": "text/javascript; charset=utf-8",
    "direct.js": "text/javascript; charset=utf-8",
    "audio.js": "text/javascript; charset=utf-8",
    "capture-worklet.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def content_security_policy(live_origin: str) -> str:
    """Only this origin, plus Gemini Live's WebSocket for direct mode. `'self'` also covers the
    same-origin ws:// and wss:// of the proxied voice socket (CSP level 3)."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src 'self' {live_origin}",
            "img-src 'self' data:",
            "media-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


HEADERS = {
    "Cache-Control": "no-cache",  # revalidate: a stale app.js against a newer service breaks
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

AssetName = Annotated[str, PathParam(max_length=64, description="One of the client's files.")]

router = APIRouter(tags=["web"])


def _asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        body = error_body("not_found", f"no such file in the web client: {name[:64]!r}")
        raise HTTPException(404, detail=body["detail"])
    parts = urlsplit(constrained_ws_url())
    csp = content_security_policy(f"{parts.scheme}://{parts.netloc}")
    headers = {**HEADERS, "Content-Security-Policy": csp}
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=headers)


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/app", status_code=307)


@router.get("/app", summary="The browser voice client", response_class=FileResponse)
async def app_page() -> FileResponse:
    return _asset("index.html")


@router.get(
    "/app/{name}", summary="A file of the browser voice client", response_class=FileResponse
)
async def app_asset(name: AssetName) -> FileResponse:
    return _asset(name)
