"""`/app` serves the browser client: every file the page loads, with the right types, and
nothing else."""

from __future__ import annotations

import re

from voicetrace.service.web.routes import ASSETS, STATIC_DIR

# What the page loads: `/app/…` URLs in the HTML and JS, and relative ES module imports.
ABSOLUTE = re.compile(r"""["'](/app/[A-Za-z0-9_.-]+)["']""")
RELATIVE_IMPORT = re.compile(r"""\bfrom\s+["']\./([A-Za-z0-9_.-]+)["']""")


def referenced(name: str, text: str) -> set[str]:
    found = {url.removeprefix("/app/") for url in ABSOLUTE.findall(text)}
    if name.endswith(".js"):
        found |= set(RELATIVE_IMPORT.findall(text))
    return found


async def test_the_page_and_everything_it_loads_are_served_with_their_types(start_service):
    svc = await start_service()
    page = await svc.http.get("/app")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    seen: set[str] = set()
    todo = referenced("index.html", page.text)
    assert {"app.js", "style.css"} <= todo
    while todo:
        name = todo.pop()
        seen.add(name)
        response = await svc.http.get(f"/app/{name}")
        assert response.status_code == 200, name
        expected = "text/javascript" if name.endswith(".js") else "text/css"
        # Browsers refuse ES modules and AudioWorklet modules served as anything else.
        assert response.headers["content-type"] == f"{expected}; charset=utf-8", name
        assert response.headers["x-content-type-options"] == "nosniff"
        todo |= referenced(name, response.text) - seen
    # The worklet is loaded by URL from audio.js, the modules by import from app.js.
    assert {"app.js", "api.js", "call.js", "audio.js", "capture-worklet.js"} <= seen
    assert seen | {"index.html"} == set(ASSETS), "every served file is used, every used one served"


def test_every_static_file_is_listed_and_every_listed_file_exists():
    on_disk = {p.name for p in STATIC_DIR.iterdir() if p.is_file()}
    assert on_disk == set(ASSETS)


async def test_anything_else_under_app_is_a_404_with_a_message(start_service):
    svc = await start_service()
    # Real files of the package next to the static folder, an unknown name, a NUL trick.
    for name in ("routes.py", "__init__.py", "nope.js", "app.js%00.html"):
        response = await svc.http.get(f"/app/{name}")
        assert response.status_code == 404, name
        detail = response.json()["detail"]
        assert detail["code"] == "not_found"
        assert detail["message"].startswith("no such file in the web client: "), name
    # Encoded slashes never reach the handler: the router itself answers 404.
    for path in ("/app/..%2Froutes.py", "/app/%2e%2e%2f__init__.py", "/app/static%2Fapp.js"):
        response = await svc.http.get(path)
        assert response.status_code == 404, path
        assert "web client" not in response.text and "import" not in response.text


async def test_the_root_sends_browsers_to_the_app(start_service):
    svc = await start_service()
    response = await svc.http.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/app"
