"""The tool registry and the demo tools: schemas from signatures, validation, safe execution."""

from __future__ import annotations

import asyncio
import threading
from typing import Literal, Optional

import pytest
from voicetrace.demo.tools import demo_registry, navigate_to_location, search_nearby
from voicetrace.service.voice.events import FunctionCall
from voicetrace.service.voice.tools import ToolError, ToolRegistry


def call(name: str, **args: object) -> FunctionCall:
    return FunctionCall(id=f"call-{name}", name=name, args=dict(args))


# -- schemas -------------------------------------------------------------------------------------


def test_schema_maps_every_supported_annotation_and_marks_defaults_optional() -> None:
    registry = ToolRegistry()

    @registry.register
    def book(
        city: str,
        nights: int,
        budget: float,
        breakfast: bool,
        room: Literal["single", "double"],
        guests: list[str],
        note: Optional[str] = None,  # noqa: UP045 — the typing spelling must work too
        floor: int | None = None,
        view: Literal["sea", "city"] = "sea",
    ) -> str:
        """Book a hotel room."""
        return "ok"

    (spec,) = registry.specs()
    assert spec.name == "book"
    assert spec.description == "Book a hotel room."
    assert spec.non_blocking is False
    props = spec.parameters["properties"]
    assert spec.parameters["type"] == "object"
    assert props["city"] == {"type": "string"}
    assert props["nights"] == {"type": "integer"}
    assert props["budget"] == {"type": "number"}
    assert props["breakfast"] == {"type": "boolean"}
    assert props["room"] == {"type": "string", "enum": ["single", "double"]}
    assert props["guests"] == {"type": "array", "items": {"type": "string"}}
    assert props["note"] == {"type": "string", "nullable": True}
    assert props["floor"] == {"type": "integer", "nullable": True}
    assert props["view"] == {"type": "string", "enum": ["sea", "city"], "default": "sea"}
    required = ["city", "nights", "budget", "breakfast", "room", "guests"]
    assert spec.parameters["required"] == required


def test_docstring_gives_the_description_and_per_argument_descriptions() -> None:
    registry = ToolRegistry()

    @registry.register(name="weather.lookup", non_blocking=True)
    async def weather(city: str, days: int = 1) -> dict[str, str]:
        """Look up the forecast.

        Used when the user asks about rain or sun.

        Args:
            city: The city name, as the user said it.
            days (int): How many days ahead,
                counting today.

        Returns:
            The forecast.
        """
        return {}

    spec = registry.spec("weather.lookup")
    assert spec is not None and spec.non_blocking
    assert spec.description == "Look up the forecast. Used when the user asks about rain or sun."
    props = spec.parameters["properties"]
    assert props["city"]["description"] == "The city name, as the user said it."
    assert props["days"]["description"] == "How many days ahead, counting today."
    assert "required" in spec.parameters and spec.parameters["required"] == ["city"]


def test_tool_without_parameters_has_an_empty_object_schema() -> None:
    registry = ToolRegistry()
    registry.register(lambda: "pong", name="ping", description="Check the tools work.")
    assert registry.specs()[0].parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(x: dict) -> None:\n    'd'", "unsupported annotation"),
        ("def f(x) -> None:\n    'd'", "needs a type annotation"),
        ("def f(x: Literal[1, 2]) -> None:\n    'd'", "Literal choices must be strings"),
        ("def f(x: list) -> None:\n    'd'", "item type"),
        ("def f(x: int | str) -> None:\n    'd'", "only Optional"),
        ("def f(*xs: int) -> None:\n    'd'", "not supported"),
        ("def f(x: int) -> None:\n    pass", "needs a description"),
        ("def f(x: 'Missing') -> None:\n    'd'", "cannot resolve annotations"),
    ],
)
def test_unsupported_signatures_fail_at_registration(source: str, message: str) -> None:
    namespace: dict[str, object] = {"Literal": Literal}
    exec(source, namespace)
    with pytest.raises((TypeError, ValueError), match=message):
        ToolRegistry().register(namespace["f"])  # type: ignore[arg-type]


def test_names_scheduling_and_duplicates_are_checked() -> None:
    registry = ToolRegistry()

    def tool() -> None:
        """A tool."""

    with pytest.raises(ValueError, match="invalid tool name"):
        registry.register(tool, name="9 lives")
    with pytest.raises(ValueError, match="scheduling must be one of"):
        registry.register(tool, scheduling="LATER")  # type: ignore[arg-type]
    registry.register(tool)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(tool)
    with pytest.raises(ValueError, match="timeout_s"):
        ToolRegistry(timeout_s=0)


# -- arguments -----------------------------------------------------------------------------------


@pytest.fixture
def echo_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.register
    def echo(
        n: int,
        ratio: float = 1.0,
        loud: bool = False,
        mode: Literal["walking", "driving"] = "walking",
        tags: list[int] | None = None,
        label: str = "x",
    ) -> dict[str, object]:
        """Echo the coerced arguments back."""
        return {"n": n, "ratio": ratio, "loud": loud, "mode": mode, "tags": tags, "label": label}

    return registry


async def test_arguments_are_coerced_to_the_annotations(echo_registry: ToolRegistry) -> None:
    outcome = await echo_registry.run(
        call("echo", n="500", ratio=2, loud="true", mode="Walking", tags=[1.0, "2"], label=7)
    )
    assert outcome.error is None
    assert outcome.response == {
        "result": {
            "n": 500, "ratio": 2.0, "loud": True, "mode": "walking", "tags": [1, 2], "label": "7",
        }
    }  # fmt: skip
    # A JSON number that went through protobuf Struct arrives as a double.
    outcome = await echo_registry.run(call("echo", n=3.0, tags=None))
    assert outcome.response["result"]["n"] == 3
    assert outcome.response["result"]["tags"] is None


async def test_invalid_arguments_are_all_reported_in_one_clear_error(
    echo_registry: ToolRegistry,
) -> None:
    outcome = await echo_registry.run(call("echo", ratio="fast", mode="flying", tags=[1.5], x=1))
    assert outcome.response == {"error": outcome.error}
    error = outcome.error or ""
    assert error.startswith("invalid arguments for echo: ")
    assert "unexpected argument 'x'" in error
    assert "missing required argument 'n'" in error
    assert "ratio must be a number" in error
    assert "mode must be one of 'walking', 'driving' (got \"flying\")" in error
    assert "tags[0] must be an integer" in error


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"n": True}, "n must be an integer"),
        ({"n": 1.5}, "n must be an integer"),
        ({"n": None}, "n must be an integer"),
        ({"n": 1, "loud": "yes"}, "loud must be a boolean"),
        ({"n": 1, "tags": "1,2"}, "tags must be a list"),
        ({"n": 1, "label": ["a"]}, "label must be a string"),
    ],
)
async def test_wrong_types_are_rejected(
    echo_registry: ToolRegistry, args: dict[str, object], fragment: str
) -> None:
    outcome = await echo_registry.run(FunctionCall("c1", "echo", args))
    assert outcome.error is not None and fragment in outcome.error


async def test_non_object_arguments_are_rejected(echo_registry: ToolRegistry) -> None:
    outcome = await echo_registry.run(FunctionCall("c1", "echo", ["n", 1]))  # type: ignore[arg-type]
    assert outcome.error is not None and "arguments must be an object" in outcome.error


# -- execution -----------------------------------------------------------------------------------


async def test_sync_tools_run_in_a_worker_thread_and_async_tools_on_the_loop() -> None:
    registry = ToolRegistry()
    loop_thread = threading.get_ident()

    @registry.register
    def sync_tool() -> int:
        """Report the thread."""
        return threading.get_ident()

    @registry.register
    async def async_tool() -> int:
        """Report the thread."""
        await asyncio.sleep(0)
        return threading.get_ident()

    sync_outcome = await registry.run(call("sync_tool"))
    async_outcome = await registry.run(call("async_tool"))
    assert sync_outcome.response["result"] != loop_thread
    assert async_outcome.response["result"] == loop_thread
    assert sync_outcome.call_id == "call-sync_tool" and sync_outcome.name == "sync_tool"
    assert sync_outcome.duration_s >= 0


async def test_sync_and_async_tools_run_concurrently() -> None:
    registry = ToolRegistry(timeout_s=2)
    barrier = threading.Barrier(2, timeout=2)

    @registry.register
    def meet() -> str:
        """Wait for the other call: only works if both run at once."""
        barrier.wait()
        return "met"

    outcomes = await asyncio.gather(registry.run(call("meet")), registry.run(call("meet")))
    assert [o.response for o in outcomes] == [{"result": "met"}] * 2


async def test_slow_async_tool_times_out_with_an_error_outcome() -> None:
    registry = ToolRegistry(timeout_s=0.05)

    @registry.register
    async def slow() -> str:
        """Never finishes in time."""
        await asyncio.sleep(10)
        return "late"

    outcome = await registry.run(call("slow"))
    assert outcome.error == "tool 'slow' timed out after 0.05 s"
    assert outcome.response == {"error": "tool 'slow' timed out after 0.05 s"}
    assert 0.05 <= outcome.duration_s < 1


async def test_slow_sync_tool_times_out_without_blocking_the_loop() -> None:
    registry = ToolRegistry(timeout_s=0.05)
    release = threading.Event()

    @registry.register
    def stuck() -> str:
        """Blocks its worker thread."""
        release.wait(5)
        return "late"

    try:
        outcome = await registry.run(call("stuck"))
    finally:
        release.set()  # let the worker thread finish: no leaked threads
    assert outcome.error == "tool 'stuck' timed out after 0.05 s"


async def test_exceptions_become_error_responses_and_tool_errors_stay_clean() -> None:
    registry = ToolRegistry()

    @registry.register
    def broken(x: int) -> float:
        """Divide by x."""
        return 1 / x

    @registry.register
    async def picky() -> None:
        """Refuses politely."""
        raise ToolError("the garage is closed on Sundays")

    outcome = await registry.run(call("broken", x=0))
    assert outcome.error == "tool 'broken' failed: ZeroDivisionError"  # no internals leaked
    assert outcome.response == {"error": outcome.error}
    outcome = await registry.run(call("picky"))
    assert outcome.response == {"error": "the garage is closed on Sundays"}


async def test_unknown_tool_is_an_error_naming_the_available_tools() -> None:
    outcome = await demo_registry().run(call("teleport", to="Mars"))
    assert outcome.error == (
        "unknown tool 'teleport' (available: navigate_to_location, search_nearby)"
    )
    assert outcome.name == "teleport" and outcome.call_id == "call-teleport"


async def test_results_that_are_not_json_become_errors_and_dataclasses_are_converted() -> None:
    from dataclasses import dataclass

    @dataclass
    class Point:
        x: int
        y: int

    registry = ToolRegistry()
    registry.register(lambda: object(), name="opaque", description="Returns junk.")
    registry.register(lambda: Point(1, 2), name="point", description="Returns a point.")
    registry.register(lambda: (1, "a"), name="pair", description="Returns a tuple.")

    assert "not JSON" in ((await registry.run(call("opaque"))).error or "")
    assert (await registry.run(call("point"))).response == {"result": {"x": 1, "y": 2}}
    assert (await registry.run(call("pair"))).response == {"result": [1, "a"]}


async def test_cancelling_the_caller_propagates_instead_of_returning_an_outcome() -> None:
    registry = ToolRegistry()
    started = asyncio.Event()

    @registry.register
    async def long_job() -> str:
        """Runs until cancelled."""
        started.set()
        await asyncio.sleep(10)
        return "done"

    task = asyncio.create_task(registry.run(call("long_job")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_tool_cancelling_itself_is_a_cancelled_outcome() -> None:
    registry = ToolRegistry()

    @registry.register
    async def gives_up() -> None:
        """Raises CancelledError on its own (e.g. an inner client was cancelled)."""
        raise asyncio.CancelledError

    outcome = await registry.run(call("gives_up"))
    assert outcome.cancelled and outcome.error == "tool 'gives_up' was cancelled"


async def test_result_for_sets_scheduling_only_for_non_blocking_tools() -> None:
    registry = ToolRegistry()
    registry.register(lambda: 1, name="blocking", description="Blocking.")
    registry.register(
        lambda: 2, name="background", description="Non-blocking.", non_blocking=True,
        scheduling="INTERRUPT",
    )  # fmt: skip
    registry.register(lambda: 3, name="quiet", description="Silent.", non_blocking=True)

    blocking = registry.result_for(await registry.run(call("blocking")))
    background = registry.result_for(await registry.run(call("background")))
    quiet = registry.result_for(await registry.run(call("quiet")))
    assert (blocking.id, blocking.name) == ("call-blocking", "blocking")
    assert blocking.response == {"result": 1}
    assert blocking.scheduling is None
    assert background.scheduling == "INTERRUPT" and background.response == {"result": 2}
    assert quiet.scheduling == "WHEN_IDLE"
    failed = registry.result_for(await registry.run(call("blocking", extra=1)))
    error = "invalid arguments for blocking: unexpected argument 'extra'"
    assert failed.response == {"error": error}


# -- demo tools ----------------------------------------------------------------------------------


def test_demo_registry_declares_both_tools_with_their_parameters() -> None:
    registry = demo_registry(timeout_s=1.5)
    assert registry.timeout_s == 1.5
    specs = {s.name: s for s in registry.specs()}
    assert set(specs) == {"search_nearby", "navigate_to_location"}
    nav = specs["navigate_to_location"].parameters
    assert nav["required"] == ["destination"]
    assert nav["properties"]["mode"]["enum"] == ["driving", "walking", "transit", "cycling"]
    assert nav["properties"]["mode"]["default"] == "walking"
    near = specs["search_nearby"].parameters
    assert near["properties"]["radius_m"] == {
        "type": "integer",
        "description": "Search radius in metres around the user (1 to 20000).",
        "default": 1000,
    }


def test_search_nearby_finds_by_category_synonym_and_plural_sorted_by_distance() -> None:
    coffee = search_nearby("coffee", 2000)
    assert [r["name"] for r in coffee["results"]] == ["Riverside Café", "The Copper Kettle"]
    assert [r["distance_m"] for r in coffee["results"]] == [220, 430]
    pharmacies = search_nearby("pharmacies", 2000)
    assert [r["name"] for r in pharmacies["results"]] == ["Quayside Pharmacy", "Northgate Pharmacy"]
    assert search_nearby("Harbor")["results"][0]["name"] == "Harbor Museum"


def test_search_nearby_respects_the_radius_and_caps_results() -> None:
    assert [r["name"] for r in search_nearby("cafe", 300)["results"]] == ["Riverside Café"]
    assert search_nearby("hospital", 1000)["count"] == 0
    assert search_nearby("hospital", 5000)["count"] == 1
    assert search_nearby("spaceport", 20000) == {
        "query": "spaceport", "radius_m": 20000, "count": 0, "results": [],
    }  # fmt: skip


def test_search_nearby_rejects_bad_input_clearly() -> None:
    with pytest.raises(ToolError, match="radius_m must be between 1 and 20000"):
        search_nearby("cafe", 0)
    with pytest.raises(ToolError, match="query must say what to look for"):
        search_nearby("  the  ")


def test_navigate_is_deterministic_and_eta_depends_on_the_mode() -> None:
    walking = navigate_to_location("City Library")
    assert walking == {
        "destination": "City Library",
        "address": "Scholars Walk 2",
        "mode": "walking",
        "distance_m": 430,
        "eta_min": 6,
        "directions": "Head northeast for about 430 m to Scholars Walk 2.",
    }
    etas = {m: navigate_to_location("Hilltop Observatory", m)["eta_min"] for m in
            ("walking", "cycling", "transit", "driving")}  # fmt: skip
    assert etas == {"walking": 63, "cycling": 21, "transit": 22, "driving": 13}
    here = navigate_to_location("Market Square")
    assert (here["distance_m"], here["directions"]) == (0, "You are already at Market Square.")


def test_navigate_resolves_kinds_and_reports_unknown_or_ambiguous_places() -> None:
    assert navigate_to_location("the hospital")["destination"] == "St. Agnes Hospital"
    assert navigate_to_location("copper kettle")["destination"] == "The Copper Kettle"
    # Speech gives no accents and either spelling.
    assert navigate_to_location("riverside cafe")["destination"] == "Riverside Café"
    assert navigate_to_location("the harbour")["destination"] == "Harbor Museum"
    with pytest.raises(ToolError, match=r"'pharmacy' is ambiguous.*Northgate Pharmacy"):
        navigate_to_location("pharmacy")
    with pytest.raises(ToolError, match="unknown destination 'Atlantis' in Brightwater"):
        navigate_to_location("Atlantis")


async def test_demo_tools_through_the_registry_coerce_and_report_errors() -> None:
    registry = demo_registry()
    ok = await registry.run(call("navigate_to_location", destination="library", mode="Cycling"))
    assert ok.response["result"]["mode"] == "cycling"
    assert ok.response["result"]["eta_min"] == 3
    bad = await registry.run(call("navigate_to_location", destination="Atlantis"))
    assert bad.error is not None and bad.error.startswith("unknown destination 'Atlantis'")
    near = await registry.run(call("search_nearby", query="bakery", radius_m="500"))
    assert near.response["result"]["results"][0]["name"] == "Lindenbaum Bakery"
