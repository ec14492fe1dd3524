"""Every `voicetrace …` command and every `VOICETRACE_*` variable the docs mention exists.

Commands are taken from code in README.md and docs/*.md (fenced blocks and `inline` spans) and
checked against the real CLI parser: the subcommand and each `--flag`. Variables are checked
against the Settings class (field names with the VOICETRACE_ prefix), plus the few that only the
container entry point reads (deploy/docker-entrypoint.sh) or the telemetry library reads itself.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from voicetrace.service.cli import build_parser
from voicetrace.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`([^`\n]+)`")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
_VARIABLE = re.compile(r"\bVOICETRACE_[A-Z0-9_]+\b")


def code_of(text: str) -> list[str]:
    fenced = _FENCE.findall(text)
    rest = _FENCE.sub("", text)
    return fenced + _INLINE.findall(rest)


_SEPARATORS = {"&&", "||", ";", "|"}
_BEFORE = {"$", "sudo", "time", *_SEPARATORS}  # what may stand before a command


def commands(text: str) -> list[tuple[str, list[str]]]:
    """(subcommand, --flags) of each `voicetrace` invocation in the code of `text`: the word
    in command position (line start, after `&&`/`;`/`|`, or `docker compose exec|run SERVICE`),
    as a bare name or a path (`.venv/bin/voicetrace`). Prose like a span name
    `invoke_agent voicetrace` or a compose service list is not a command."""
    found = []
    for code in code_of(text):
        for line in code.splitlines():
            tokens = line.split("#", 1)[0].split()  # shell comments are prose
            for i, token in enumerate(tokens[:-1]):
                if token != "voicetrace" and not token.endswith("/voicetrace"):
                    continue
                in_position = i == 0 or tokens[i - 1] in _BEFORE
                in_container = i >= 2 and tokens[i - 2] in ("exec", "run")
                if not (in_position or in_container) or tokens[i + 1] == "voicetrace":
                    continue
                args = []
                for arg in tokens[i + 2 :]:
                    if arg in _SEPARATORS:
                        break
                    args.append(arg)
                flags = [m for a in args for m in _FLAG.findall(a.split("=", 1)[0])]
                found.append((tokens[i + 1], flags))
    return found


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """A (sub)command's flags, with those of its own subcommands (`langfuse sync-models …`)."""
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for nested in action.choices.values():
                flags |= _flags(nested)
    return flags


def cli_options() -> dict[str, set[str]]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: _flags(sub) for name, sub in subparsers.choices.items()}


def known_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        names.add(f"VOICETRACE_{name.upper()}")
    script = ENTRYPOINT.read_text()
    names |= set(re.findall(r"\$\{(VOICETRACE_[A-Z0-9_]+)", script))
    # The telemetry library cannot use the service's Settings: it reads its own few switches
    # from the environment, by name (string constants in its source).
    for source in (REPO / "telemetry" / "voicetrace" / "telemetry").glob("*.py"):
        names |= set(re.findall(r"[\"'](VOICETRACE_[A-Z0-9_]+)[\"']", source.read_text()))
    return names


def documented_commands() -> list[tuple[str, str, list[str]]]:
    return [(doc.name, sub, flags) for doc in DOCS for sub, flags in commands(doc.read_text())]


def test_the_docs_mention_commands_and_variables_at_all():
    subs = {sub for _, sub, _ in documented_commands()}
    assert {"serve", "token", "emulator", "demo"} <= subs
    assert sum(len(_VARIABLE.findall(d.read_text())) for d in DOCS) > 20


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_voicetrace_command_exists(doc: Path):
    options = cli_options()
    for sub, flags in commands(doc.read_text()):
        assert sub in options, f"{doc.name}: `voicetrace {sub}` is not a command"
        unknown = set(flags) - options[sub] - {"--help"}
        assert not unknown, f"{doc.name}: `voicetrace {sub}` has no {sorted(unknown)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_documented_voicetrace_variable_exists(doc: Path):
    unknown = set(_VARIABLE.findall(doc.read_text())) - known_variables()
    assert not unknown, f"{doc.name}: no such setting {sorted(unknown)}"


def test_the_check_catches_a_wrong_command_flag_and_variable():
    text = (
        "```bash\nvoicetrace serv --port 1\nvoicetrace token --username x\n```\n"
        "Set `VOICETRACE_JWT_SECRETS`."
    )
    options = cli_options()
    (first, second) = commands(text)
    assert first[0] not in options
    assert set(second[1]) - options[second[0]] == {"--username"}
    assert set(_VARIABLE.findall(text)) - known_variables() == {"VOICETRACE_JWT_SECRETS"}


def test_the_compose_service_sets_only_variables_that_exist():
    compose = (REPO / "docker-compose.yml").read_text()
    assert set(_VARIABLE.findall(compose)) - known_variables() == set()


@pytest.mark.parametrize("name", ["operations.md", "grafana.md", "emulator.md"])
def test_operator_docs_point_only_to_files_users_have(name: str):
    """No DESIGN.md sections or other files outside the repository; every repository path the
    doc names in backticks exists."""
    text = (REPO / "docs" / name).read_text()
    assert "DESIGN" not in text and "../shared" not in text
    for path in re.findall(r"`((?:deploy|docs|tests|bench|telemetry|service)/[\w./-]+)`", text):
        assert (REPO / path).exists(), f"{name}: {path} does not exist"
