"""`/live-sessions` over HTTP (in-process ASGI), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from voicetrace.service.api.auth import mint_token
from voicetrace.service.sessions.state import SessionState
from voicetrace.service.sessions.store import SessionStore

from tests.api.conftest import JWT_SECRET, Api, build_app

S = SessionState
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
SECRETS = ["hunter2-very-secret", "sk-live-abcdef123456"]


async def make_live(api: Api, user: str = "alice") -> str:
    """A LIVE session, as the voice bridge leaves it once the model is connected."""
    session = await api.create(user)
    await api.store.transition(session["id"], user, S.LIVE)
    return session["id"]


def assert_422_names(response: httpx.Response, *loc: str) -> None:
    assert response.status_code == 422, response.text
    locs = [tuple(error["loc"]) for error in response.json()["detail"]]
    assert tuple(loc) in locs, locs


# -- create ---------------------------------------------------------------------------------------


async def test_create_returns_201_connecting_owned_by_the_token_subject(api: Api) -> None:
    response = await api.http.post(
        "/live-sessions",
        json={"mode": "LS1A", "recording_consent": True, "budgets": {"session_usd": 0.5}},
        headers=api.auth("alice"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user_id"] == "alice" and body["state"] == "CONNECTING"
    assert body["mode"] == "LS1A" and body["recording_consent"] is True
    assert body["budgets"]["session_usd"] == 0.5 and body["budgets"]["daily_usd"] is None
    assert response.headers["location"] == f"/live-sessions/{body['id']}"
    assert (await api.store.get(body["id"], "alice")).recording_consent is True


async def test_create_defaults_are_safe(api: Api) -> None:
    body = await api.create("alice")
    assert body["recording_consent"] is False and body["secrets_blurred_count"] == 0
    assert body["summary"] is None and body["ended_at"] is None


async def test_create_refuses_a_user_id_in_the_body(api: Api) -> None:
    response = await api.request("POST", "/live-sessions", "alice", json={"user_id": "bob"})
    assert_422_names(response, "body", "user_id")
    assert await api.store.list("bob") == [] and await api.store.list("alice") == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"mode": "x" * 33}, ("body", "mode")),
        ({"mode": "bad mode!"}, ("body", "mode")),
        ({"recording_consent": "maybe"}, ("body", "recording_consent")),
        ({"secrets_blurred": [""]}, ("body", "secrets_blurred", 0)),
        ({"budgets": {"session_usd": -1}}, ("body", "budgets", "session_usd")),
        ({"budgets": {"audioMin": 5}}, ("body", "budgets", "audioMin")),
        ({"state": "LIVE"}, ("body", "state")),
    ],
)
async def test_create_rejects_bad_input_naming_the_field(
    api: Api, body: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    assert_422_names(await api.request("POST", "/live-sessions", json=body), *loc)


# -- read -----------------------------------------------------------------------------------------


async def test_get_returns_the_callers_session(api: Api) -> None:
    created = await api.create("alice", mode="demo")
    response = await api.request("GET", f"/live-sessions/{created['id']}")
    assert response.status_code == 200 and response.json() == created


async def test_another_users_session_is_indistinguishable_from_a_missing_one(api: Api) -> None:
    created = await api.create("alice")
    foreign = await api.request("GET", f"/live-sessions/{created['id']}", "mallory")
    missing = await api.request("GET", f"/live-sessions/{UNKNOWN_ID}", "mallory")
    assert foreign.status_code == missing.status_code == 404
    assert (
        foreign.json()
        == missing.json()
        == {"detail": {"code": "not_found", "message": "live session not found"}}
    )


@pytest.mark.parametrize(
    ("method", "suffix", "json"),
    [
        ("PUT", "/pause", None),
        ("PUT", "/resume", None),
        ("PATCH", "", {"transcript_final": "pwned"}),
        ("PUT", "", {"transcript_final": "pwned"}),
        ("DELETE", "", None),
    ],
)
async def test_no_one_can_touch_another_users_session(
    api: Api, method: str, suffix: str, json: dict[str, Any] | None
) -> None:
    session_id = await make_live(api, "alice")
    response = await api.request(
        method, f"/live-sessions/{session_id}{suffix}", "mallory", json=json
    )
    assert response.status_code == 404, response.text
    unchanged = await api.store.get(session_id, "alice")
    assert unchanged.state is S.LIVE and unchanged.transcript_final is None
    assert api.listener.changes == []


async def test_list_is_the_callers_newest_first(api: Api) -> None:
    ids = [(await api.create("alice"))["id"] for _ in range(3)]
    await api.create("bob")
    response = await api.request("GET", "/live-sessions")
    assert response.status_code == 200
    assert [s["id"] for s in response.json()["sessions"]] == ids[::-1]


async def test_list_filters_by_state_and_limits(api: Api) -> None:
    ids = [(await api.create("alice"))["id"] for _ in range(4)]
    for session_id in ids[:3]:
        await api.store.transition(session_id, "alice", S.LIVE)
    live = await api.request("GET", "/live-sessions", params={"state": "LIVE", "limit": 2})
    assert [s["id"] for s in live.json()["sessions"]] == [ids[2], ids[1]]
    connecting = await api.request("GET", "/live-sessions", params={"state": "CONNECTING"})
    assert [s["id"] for s in connecting.json()["sessions"]] == [ids[3]]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ("query", "limit")),
        ({"limit": 101}, ("query", "limit")),
        ({"limit": "ten"}, ("query", "limit")),
        ({"state": "SLEEPING"}, ("query", "state")),
        ({"user_id": "bob"}, ("query", "user_id")),
    ],
)
async def test_list_rejects_bad_query_parameters(
    api: Api, params: dict[str, Any], loc: tuple[str, ...]
) -> None:
    await api.create("bob")
    assert_422_names(await api.request("GET", "/live-sessions", params=params), *loc)


async def test_a_user_id_query_parameter_cannot_select_the_owner(api: Api) -> None:
    session = await api.create("bob")
    response = await api.request("GET", f"/live-sessions/{session['id']}?user_id=bob", "alice")
    assert_422_names(response, "query", "user_id")


# -- transitions ----------------------------------------------------------------------------------


async def test_pause_and_resume_a_live_session(api: Api) -> None:
    session_id = await make_live(api)
    paused = await api.request("PUT", f"/live-sessions/{session_id}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "PAUSED" and paused.json()["state_reason"] == "paused_by_user"
    resumed = await api.request("PUT", f"/live-sessions/{session_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] == "LIVE"
    assert [(s.id, s.state) for s in api.listener.changes] == [
        (session_id, S.PAUSED),
        (session_id, S.LIVE),
    ]


async def test_pausing_an_ended_session_is_a_409_with_a_clear_body(api: Api) -> None:
    session = await api.create()
    await api.request("DELETE", f"/live-sessions/{session['id']}")
    response = await api.request("PUT", f"/live-sessions/{session['id']}/pause")
    assert response.status_code == 409
    assert response.json() == {
        "detail": {
            "code": "invalid_transition",
            "message": "cannot pause a session in state ENDED",
            "current": "ENDED",
            "requested": "PAUSED",
        }
    }


@pytest.mark.parametrize(
    ("setup", "action", "current", "requested"),
    [
        ((), "pause", "CONNECTING", "PAUSED"),
        ((S.LIVE,), "resume", "LIVE", "LIVE"),
        ((S.LIVE, S.PAUSED), "pause", "PAUSED", "PAUSED"),
        ((), "resume", "CONNECTING", "LIVE"),
    ],
)
async def test_transitions_the_state_machine_forbids_are_409(
    api: Api, setup: tuple[S, ...], action: str, current: str, requested: str
) -> None:
    session = await api.create()
    for state in setup:
        await api.store.transition(session["id"], "alice", state)
    response = await api.request("PUT", f"/live-sessions/{session['id']}/{action}")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert (detail["current"], detail["requested"]) == (current, requested)
    assert detail["message"] == f"cannot {action} a session in state {current}"
    assert (await api.store.get(session["id"], "alice")).state.value == current


async def test_delete_ends_the_session_and_returns_it(api: Api) -> None:
    session_id = await make_live(api)
    response = await api.request("DELETE", f"/live-sessions/{session_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "ENDED" and body["end_reason"] == "ended_by_user"
    assert body["ended_at"] is not None
    assert api.listener.changes[-1].state is S.ENDED
    # ended, not deleted: it is still there to read
    assert (await api.request("GET", f"/live-sessions/{session_id}")).json() == body


async def test_deleting_an_ended_session_is_a_409(api: Api) -> None:
    session = await api.create()
    await api.request("DELETE", f"/live-sessions/{session['id']}")
    again = await api.request("DELETE", f"/live-sessions/{session['id']}")
    assert again.status_code == 409
    assert again.json()["detail"]["message"] == "cannot end a session in state ENDED"


async def test_sessions_left_open_by_a_crash_read_as_ended_after_restart(api: Api) -> None:
    session_id = await make_live(api)
    # The same replica restarted (same instance id): nothing it served before can still be live.
    restarted = SessionStore(api.store._db, policy=api.store.policy)
    assert await restarted.recover_after_crash() == 1
    app = build_app(restarted)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = (await c.get(f"/live-sessions/{session_id}", headers=api.auth("alice"))).json()
    assert body["state"] == "ENDED" and body["end_reason"] == "recovered_after_restart"


# -- update ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_update_merges_transcripts_and_budget_fields(api: Api, method: str) -> None:
    session = await api.create(budgets={"daily_usd": 2, "session_audio_minutes": 5})
    response = await api.request(
        method,
        f"/live-sessions/{session['id']}",
        json={"transcript_partial": "hello wor", "budgets": {"session_audio_minutes": 7.5}},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["transcript_partial"] == "hello wor" and body["transcript_final"] is None
    assert body["budgets"]["daily_usd"] == 2 and body["budgets"]["session_audio_minutes"] == 7.5
    assert body["state"] == "CONNECTING"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"audio_minutes_used": 5.5}, ("body", "audio_minutes_used")),
        ({"daily_budget_remaining": {"audioMin": 54.5}}, ("body", "daily_budget_remaining")),
        ({"state": "ENDED"}, ("body", "state")),
        ({"user_id": "bob"}, ("body", "user_id")),
        ({"budgets": {"daily_video_tokens": -3}}, ("body", "budgets", "daily_video_tokens")),
        ({"budgets": None}, ("body",)),
        ({}, ("body",)),
    ],
)
async def test_update_rejects_fields_it_does_not_own(
    api: Api, body: dict[str, Any], loc: tuple[str, ...]
) -> None:
    session = await api.create()
    assert_422_names(await api.request("PATCH", f"/live-sessions/{session['id']}", json=body), *loc)
    stored = await api.store.get(session["id"], "alice")
    assert stored.updated_at == datetime.fromisoformat(session["updated_at"])  # nothing written


# -- auth -----------------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/live-sessions", {"mode": "x"}),
    ("GET", "/live-sessions", None),
    ("GET", "/live-sessions/{id}", None),
    ("PUT", "/live-sessions/{id}/pause", None),
    ("PUT", "/live-sessions/{id}/resume", None),
    ("PATCH", "/live-sessions/{id}", {"transcript_final": "x"}),
    ("PUT", "/live-sessions/{id}", {"transcript_final": "x"}),
    ("DELETE", "/live-sessions/{id}", None),
]


def _bad_headers(kind: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "missing": {},
        "empty": {"Authorization": "Bearer "},
        "basic": {"Authorization": "Basic YWxpY2U6cHc="},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "forged": {"Authorization": f"Bearer {mint_token('alice', 'x' * 40)}"},
        "expired": {
            "Authorization": "Bearer "
            + mint_token("alice", JWT_SECRET, ttl_s=60, now=now - timedelta(hours=1))
        },
    }[kind]


# Every route × the three kinds of refusal; the other malformed kinds on one route below.
@pytest.mark.parametrize("kind", ["missing", "forged", "expired"])
@pytest.mark.parametrize(("method", "path", "json"), ROUTES)
async def test_every_route_needs_a_valid_bearer_token(
    api: Api, method: str, path: str, json: dict[str, Any] | None, kind: str
) -> None:
    session_id = await make_live(api)
    response = await api.http.request(
        method, path.format(id=session_id), json=json, headers=_bad_headers(kind)
    )
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"]["code"] == "unauthorized"
    session = await api.store.get(session_id, "alice")
    assert session.state is S.LIVE and session.transcript_final is None
    assert len(await api.store.list("alice")) == 1


@pytest.mark.parametrize("kind", ["empty", "basic", "garbage"])
async def test_malformed_authorization_headers_are_401(api: Api, kind: str) -> None:
    await api.create("alice")
    response = await api.http.get("/live-sessions", headers=_bad_headers(kind))
    assert response.status_code == 401 and "sessions" not in response.json()


async def test_401_says_why_without_echoing_the_token(api: Api) -> None:
    expired = _bad_headers("expired")
    response = await api.http.get("/live-sessions", headers=expired)
    assert response.json()["detail"]["message"] == "token expired"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert expired["Authorization"].split()[1] not in response.text
    missing = await api.http.get("/live-sessions")
    assert missing.json()["detail"]["message"] == "missing bearer token"


# -- secrets ------------------------------------------------------------------------------------


async def test_blurred_secrets_never_leave_the_service(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await api.create("alice", secrets_blurred=SECRETS)
    assert created["secrets_blurred_count"] == 2 and "secrets_blurred" not in created
    sid = created["id"]
    await api.store.transition(sid, "alice", S.LIVE)
    responses = [
        await api.request("GET", f"/live-sessions/{sid}"),
        await api.request("GET", "/live-sessions"),
        await api.request("PUT", f"/live-sessions/{sid}/pause"),
        await api.request("PUT", f"/live-sessions/{sid}/resume"),
        await api.request("PATCH", f"/live-sessions/{sid}", json={"transcript_final": "ok"}),
        await api.request("DELETE", f"/live-sessions/{sid}"),
        await api.request("DELETE", f"/live-sessions/{sid}"),  # 409
        await api.http.get("/openapi.json"),
    ]
    stored = await api.store.get(sid, "alice")
    assert stored.secrets_blurred == SECRETS  # kept for the redactor …
    for text in [r.text for r in responses] + [caplog.text, repr(stored), str(stored)]:
        for secret in SECRETS:
            assert secret not in text  # … but never shown
    assert "secrets_blurred" not in stored.model_dump()


# -- OpenAPI --------------------------------------------------------------------------------------


async def test_openapi_documents_every_endpoint_with_its_errors(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    operations = {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        if path.startswith("/live-sessions")
        for method, op in item.items()
    }
    assert set(operations) == {(m, p.replace("{id}", "{session_id}")) for m, p, _ in ROUTES}
    for (method, path), op in operations.items():
        assert op.get("summary"), (method, path)
        assert {"401", "422"} <= set(op["responses"]), (method, path)
        assert op["security"] == [{"bearer": []}], (method, path)
        if "{session_id}" in path:
            assert "404" in op["responses"], (method, path)
        if path.endswith(("/pause", "/resume")) or method == "DELETE":
            assert "409" in op["responses"], (method, path)
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    session_schema = spec["components"]["schemas"]["LiveSessionView"]["properties"]
    assert "secrets_blurred" not in session_schema and "secrets_blurred_count" in session_schema
    assert {"daily_budget_remaining", "audio_minutes_used"} <= set(session_schema)
