"""End to end through the service and the emulator: the chat spans, the ledger, the costs API and
the client's `session_ended` summary agree to the token and to 1e-9 USD — at any sampling rate,
with usage that arrives after `turnComplete`, and with the span emitter's queue overflowing
(the ledger is fed by the settled-turn callback, not by the droppable span queue)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select
from voicetrace.emulator import Scenario
from voicetrace.service.client import VoiceClient
from voicetrace.service.ledger import LedgerEntry, LedgerStore, Usage
from voicetrace.service.ledger.tables import usage_ledger
from voicetrace.service.sessions.db import Database
from voicetrace.telemetry import PriceTable, VoiceTelemetry

TURNS = 3
USD_TOLERANCE = 1e-9


class RecordedSpans(SpanProcessor):
    """Every span that ended — sampled or not — as the SDK hands it to processors (the built-in
    exporting processors skip unsampled ones; this is what the ledger must equal)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _chats(spans: list[ReadableSpan]) -> tuple[int, int, Decimal]:
    chats = [s for s in spans if s.name.startswith("chat ")]
    tokens_in = sum(int(s.attributes.get("gen_ai.usage.input_tokens", 0)) for s in chats)
    tokens_out = sum(int(s.attributes.get("gen_ai.usage.output_tokens", 0)) for s in chats)
    cost = sum(
        (Decimal(s.attributes["voice.cost.usd_decimal"]) for s in chats), Decimal(0)
    )  # exact, as the span carries it
    return tokens_in, tokens_out, cost


async def _conversation(svc, user: str, turns: int = TURNS) -> dict:
    session = await svc.create_session(user)
    async with VoiceClient.connect(svc.ws_url(session["id"]), svc.token(user)) as client:
        await client.wait_for("session_started")
        for n in range(1, turns + 1):
            await client.send("text", text=f"Question number {n}, please answer briefly")
            await client.wait_for("turn_complete", count=n, timeout=15)
        await client.send("end")
        ended = await client.wait_for("session_ended", timeout=15)
    return ended["summary"]


async def _ledger_settled(svc, recorded: int) -> dict:
    """Wait until the ledger wrote every settled turn (health says so)."""
    for _ in range(200):
        health = (await svc.http.get("/api/observability/health")).json()
        ledger = health["ledger"]
        if ledger["recorded"] >= recorded and ledger["buffered"] == 0:
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(f"ledger never caught up: {health}")


async def _costs(svc, user: str, **params: str) -> dict:
    r = await svc.http.get(
        "/api/observability/costs",
        params=params,
        headers={"Authorization": f"Bearer {svc.token(user)}"},
    )
    assert r.status_code == 200, r.text
    return r.json()


async def _ledger_total(svc, user: str):
    db = Database(f"sqlite+aiosqlite:///{svc.settings.sqlite_path}")
    try:
        (row,) = await LedgerStore(db).costs([], user_id=user)
        return row.usage
    finally:
        await db.dispose()


def _assert_all_agree(summary: dict, ledger, api_total: dict, chats: tuple[int, int, Decimal]):
    tokens_in, tokens_out, cost = chats
    assert ledger.turns == TURNS and api_total["turns"] == TURNS
    assert tokens_in > 0 and cost > 0
    # tokens: exact everywhere
    assert summary["input_tokens"] == ledger.input_tokens == api_total["input_tokens"] == tokens_in
    assert (
        summary["output_tokens"] == ledger.output_tokens == api_total["output_tokens"] == tokens_out
    )
    # money: exact Decimal between spans, ledger and API; the client's float within 1e-9
    assert ledger.cost_usd == Decimal(api_total["cost_usd_decimal"]) == cost
    assert abs(summary["cost_usd"] - float(cost)) < USD_TOLERANCE
    assert abs(api_total["cost_usd"] - float(cost)) < USD_TOLERANCE


@pytest.mark.parametrize(
    ("delivery", "ratio"),
    [
        ("with_turn_complete", "1.0"),
        ("after_turn_complete", "1.0"),
        ("after_turn_complete", "0.1"),
        ("with_turn_complete", "0.0"),
        ("after_turn_complete", "0.0"),
    ],
)
async def test_spans_ledger_costs_api_and_session_summary_agree(
    start_service, monkeypatch: pytest.MonkeyPatch, delivery: str, ratio: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
    recorded = RecordedSpans()
    svc = await start_service(scenario=Scenario(usage=delivery), extra_processors=(recorded,))
    summary = await _conversation(svc, "alice")
    await _ledger_settled(svc, TURNS)
    exported = svc.finished_spans()
    chats = _chats(recorded.spans)  # every chat span, exported or sampled out
    _assert_all_agree(
        summary, await _ledger_total(svc, "alice"), (await _costs(svc, "alice"))["total"], chats
    )
    exported_chats = [s for s in exported if s.name.startswith("chat ")]
    if ratio == "1.0":
        assert _chats(exported) == chats  # all exported: the export equals the ledger
    elif ratio == "0.0":
        assert exported_chats == []  # nothing exported, nothing lost from the ledger


async def test_a_full_span_queue_loses_spans_but_no_usage(start_service) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # A one-job emitter queue: most span jobs of every turn are dropped (and counted).
    telemetry = VoiceTelemetry(
        provider, pricing=PriceTable.load(None), usage_wait_s=0.5, max_emit_queue=1
    )
    try:
        svc = await start_service(
            scenario=Scenario(usage="after_turn_complete"), telemetry=telemetry
        )
        summary = await _conversation(svc, "dora")
        health = await _ledger_settled(svc, TURNS)
        assert health["exporter"]["emit_dropped"] > 0  # spans were lost…
        assert "telemetry: emit_dropped" in " ".join(health["degraded"])
        ledger = await _ledger_total(svc, "dora")  # …usage was not
        api = (await _costs(svc, "dora"))["total"]
        assert ledger.turns == api["turns"] == TURNS
        assert summary["input_tokens"] == ledger.input_tokens == api["input_tokens"] > 0
        assert abs(summary["cost_usd"] - float(ledger.cost_usd)) < USD_TOLERANCE
        assert Decimal(api["cost_usd_decimal"]) == ledger.cost_usd
    finally:
        telemetry.shutdown(2.0)


async def test_a_replayed_settlement_is_not_counted_twice(start_service) -> None:
    """The same settled turns recorded again (a replayed callback, a retried batch) change
    nothing: the ledger is keyed by (session, turn)."""
    svc = await start_service(scenario=Scenario(usage="after_turn_complete"))
    summary = await _conversation(svc, "ella")
    await _ledger_settled(svc, TURNS)
    before = await _ledger_total(svc, "ella")
    policy = svc.server.app.state.budgets
    db = Database(f"sqlite+aiosqlite:///{svc.settings.sqlite_path}")
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(select(usage_ledger))).mappings().all()
        replays = [
            LedgerEntry(
                session_id=r["session_id"],
                turn=r["turn"],
                user_id=r["user_id"],
                model=r["model"],
                price_model=r["price_model"],
                day=r["day"],
                settled_at=r["settled_at"],
                usage_received=r["usage_received"],
                usage_estimated=r["usage_estimated"],
                cost_known=r["cost_known"],
                cost_estimated=r["cost_estimated"],
                usage=Usage.from_row(r),
            )
            for r in rows
        ]
    finally:
        await db.dispose()
    assert len(replays) == TURNS
    for entry in replays:
        policy.writer.record(entry)
    health = await _ledger_settled(svc, 2 * TURNS)
    assert health["ledger"]["replayed"] == TURNS
    after = await _ledger_total(svc, "ella")
    assert after == before and after.input_tokens == summary["input_tokens"]
