import asyncio, json
import pytest
from service.client import VoiceClient
from service.emulator import Scenario, ScriptedTurn
from tests.service.otlp_helpers import exporting_telemetry, wire_usage_by_turn

async def test_explore(start_service):
    with exporting_telemetry(capture=True) as exp:
        svc = await start_service(scenario=Scenario(turns={1: ScriptedTurn(thoughts_tokens=37, tool_use_prompt_tokens=123)}, go_away_after_turn=1, go_away_time_left_s=0.2), telemetry=exp.telemetry)
        s = await svc.create_session("alice", recording_consent=True, secrets_blurred=["hunter2"])
        async with VoiceClient.connect(svc.ws_url(s["id"]), svc.token("alice")) as c:
            await c.wait_for("session_started")
            await c.send("text", text="Find a coffee place nearby and give me directions to the harbour, mail a@b.com hunter2")
            await c.wait_for("turn_complete")
            await asyncio.sleep(1.0)
            await c.send("text", text="Hello again")
            await c.wait_for("turn_complete", count=2)
            await c.send("end")
            await c.wait_for("session_ended")
        spans = exp.spans(s["id"])
        for sp in sorted(spans, key=lambda s: s.start_ns):
            print(sp.name, sp.kind, sp.parent_span_id, sp.status_code, sp.status_message)
            for k, v in sorted(sp.attributes.items()):
                print("   ", k, "=", repr(v)[:200])
            for e in sp.events:
                print("   EV", e)
        print(wire_usage_by_turn(svc.emulator))
        print(exp.telemetry.health())
