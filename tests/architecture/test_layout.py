"""The package layout is the architecture: these pin its rules on the source itself."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = (ROOT / "service", ROOT / "telemetry")
MAX_LINES = 400
LONG_REASON = "Long because"  # a module over MAX_LINES says why in its docstring
# What the telemetry library may import at module level: the standard library, OpenTelemetry and
# itself. (Optional extras such as `langfuse` are imported inside functions, when configured.)
TELEMETRY_ALLOWED = {"opentelemetry", "voicetrace"}
# The drop-in instrumentor's SDK mapping reads google-genai types (and websockets, the SDK's own
# transport, for its close codes); it is imported only by code that already uses the SDK.
TELEMETRY_SDK_MODULES = {
    "voicetrace.telemetry.instrumentation.genai_mapping": {"google", "websockets"},
    "voicetrace.telemetry.instrumentation.genai_session": {"google", "websockets"},
}


def modules() -> Iterator[tuple[str, Path]]:
    for root in SOURCE_ROOTS:
        for path in sorted((root / "voicetrace").rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            yield ".".join(parts), path


MODULES = dict(modules())


def imports_of(name: str, path: Path, *, top_level_only: bool = False) -> set[str]:
    """Modules of ours that `name` imports (TYPE_CHECKING blocks and function bodies count,
    unless `top_level_only`)."""
    tree = ast.parse(path.read_text("utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from pkg import mod` depends on `pkg.mod`; `from pkg import name` on `pkg`. (The
            # parent package's __init__ always runs first; that is how packages work, not a
            # dependency of this module's.)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


def our_imports(name: str, path: Path) -> set[str]:
    return {m for m in imports_of(name, path) if m in MODULES and m != name}


def test_every_module_is_under_the_voicetrace_namespace() -> None:
    assert MODULES, "no modules found"
    assert all(name.startswith("voicetrace.") for name in MODULES)
    tops = {name.split(".")[1] for name in MODULES}
    assert tops == {"service", "telemetry", "emulator", "demo"}
    # No `voicetrace/__init__.py` in either root: `voicetrace` is a namespace both share.
    assert "voicetrace" not in MODULES


def test_no_import_cycles_among_the_modules() -> None:
    graph = {name: our_imports(name, path) for name, path in MODULES.items()}
    # A package's __init__ importing its own submodules is how packages re-export; a cycle
    # through it is still a cycle, so it is not excused.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(10_000)
    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_telemetry_imports_only_opentelemetry_and_the_standard_library() -> None:
    offenders = {}
    for name, path in MODULES.items():
        if not name.startswith("voicetrace.telemetry"):
            continue
        for module in imports_of(name, path, top_level_only=True):
            top = module.split(".")[0]
            allowed = TELEMETRY_ALLOWED | TELEMETRY_SDK_MODULES.get(name, set())
            if top in sys.stdlib_module_names or top in allowed or top == "__future__":
                if top == "voicetrace" and not module.startswith("voicetrace.telemetry"):
                    offenders[name] = module
                continue
            offenders[name] = module
    assert not offenders, f"telemetry must not import these: {offenders}"


def test_the_dependency_arrow_points_from_service_to_telemetry_only() -> None:
    back = {
        name: sorted(m for m in our_imports(name, path) if not m.startswith("voicetrace.telemetry"))
        for name, path in MODULES.items()
        if name.startswith("voicetrace.telemetry")
    }
    assert not any(back.values()), back
    # The service never imports the demo (its tools are passed in) or the emulator.
    leaks = {
        name: sorted(m for m in our_imports(name, path) if m.split(".")[1] in ("demo", "emulator"))
        for name, path in MODULES.items()
        if name.startswith("voicetrace.service") and not name.endswith((".cli", ".dev"))
    }
    assert not any(leaks.values()), leaks


def test_no_module_is_over_400_lines_without_saying_why() -> None:
    long = {}
    for name, path in MODULES.items():
        lines = path.read_text("utf-8").count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text("utf-8"))) or ""
        if lines > MAX_LINES and LONG_REASON not in doc:
            long[name] = lines
    assert not long, (
        f"modules over {MAX_LINES} lines without '{LONG_REASON}' in the docstring: {long}"
    )


def test_only_the_gemini_adapter_imports_google_genai() -> None:
    users = {
        name
        for name, path in MODULES.items()
        if any(m.split(".")[:2] == ["google", "genai"] for m in imports_of(name, path))
        and not name.startswith("voicetrace.emulator")  # the emulator speaks the wire protocol
    }
    assert users <= {
        "voicetrace.service.voice.gemini",
        "voicetrace.service.voice.gemini_events",
        "voicetrace.service.voice.gemini_frames",
        "voicetrace.service.voice.gemini_tokens",
        # The drop-in instrumentor: the SDK mapping it shares with the adapter, its per-session
        # state, and `instrument()` (which imports the SDK inside the call, not at import time).
        *TELEMETRY_SDK_MODULES,
        "voicetrace.telemetry.instrumentation.genai_live",
    }, users
