"""Typed Python callables → Gemini function declarations and argument coercion.

A tool is a plain function (sync or async) whose parameters are annotated with `str`, `int`,
`float`, `bool`, `Literal[...]` (of strings), `list[...]` or `Optional[...]`; parameters with a
default are optional, and the docstring is the description the model reads (a Google-style
`Args:` section describes the parameters). `build_tool` turns the signature into a JSON schema
(the OpenAPI subset Gemini accepts) and a binder that validates and coerces the model's
arguments against it. The registry (`voice.tools`) runs the calls.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from voicetrace.service.voice.events import Scheduling

# Gemini's rule for function names (FunctionDeclaration.name).
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")
_ARG_RE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")  # "name (type): text"
_SCHEDULINGS: frozenset[str] = frozenset(typing.get_args(Scheduling))

ToolFn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What the model is told about one tool (SDK-independent).

    `parameters` is a JSON schema of type `object` restricted to the keys Gemini's `Schema`
    accepts (type, properties, required, items, enum, nullable, description, default).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    non_blocking: bool = False


class ArgumentError(ValueError):
    """The model's arguments do not match the tool's signature."""


# -- parameters: annotation → schema + coercion ---------------------------------------------------

Coercer = Callable[[Any, str], Any]


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    schema: dict[str, Any]
    coerce: Coercer
    required: bool
    default: Any


def _coerce_str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    # Numbers are unambiguous as text; anything else (lists, objects, null) is a model mistake.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ArgumentError(f"{where} must be a string (got {show_value(value)})")


def _coerce_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"{where} must be an integer (got {show_value(value)})")
    if isinstance(value, int):
        return value
    # JSON numbers may travel through protobuf Struct as doubles: 500.0 is the integer 500.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ArgumentError(f"{where} must be an integer (got {show_value(value)})")


def _coerce_float(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ArgumentError(f"{where} must be a number (got {show_value(value)})")


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ArgumentError(f"{where} must be a boolean (got {show_value(value)})")


_SCALARS: dict[type, tuple[str, Coercer]] = {
    str: ("string", _coerce_str),
    int: ("integer", _coerce_int),
    float: ("number", _coerce_float),
    bool: ("boolean", _coerce_bool),
}


def show_value(value: Any) -> str:
    """A short JSON rendering of a value for error messages."""
    text: str = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _schema_for(annotation: Any, where: str) -> tuple[dict[str, Any], Coercer]:
    """Map one annotation to (schema, coercer); unsupported annotations fail at registration."""
    if annotation in _SCALARS:
        kind, coerce = _SCALARS[annotation]
        return {"type": kind}, coerce
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        if not args or not all(isinstance(a, str) for a in args):
            raise TypeError(f"{where}: Literal choices must be strings (Gemini enums are strings)")
        return {"type": "string", "enum": list(args)}, _literal_coercer(args)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) != 1 or len(args) != 2:
            raise TypeError(f"{where}: only Optional[X] unions are supported, not {annotation!r}")
        schema, inner = _schema_for(members[0], where)

        def coerce_optional(value: Any, at: str) -> Any:
            return None if value is None else inner(value, at)

        return {**schema, "nullable": True}, coerce_optional
    if origin in (list, typing.List):  # noqa: UP006 — `typing.List[...]` annotations too
        if len(args) != 1:
            raise TypeError(f"{where}: lists need an item type, e.g. list[str]")
        item_schema, item = _schema_for(args[0], f"{where}[]")

        def coerce_list(value: Any, at: str) -> list[Any]:
            if not isinstance(value, list | tuple):
                raise ArgumentError(f"{at} must be a list (got {show_value(value)})")
            return [item(v, f"{at}[{i}]") for i, v in enumerate(value)]

        return {"type": "array", "items": item_schema}, coerce_list
    if annotation is list:
        raise TypeError(f"{where}: lists need an item type, e.g. list[str]")
    raise TypeError(
        f"{where}: unsupported annotation {annotation!r} "
        "(use str, int, float, bool, Literal[...], list[...] or Optional[...])"
    )


def _literal_coercer(choices: tuple[str, ...]) -> Coercer:
    by_fold = {c.casefold(): c for c in choices}
    shown = ", ".join(repr(c) for c in choices)

    def coerce(value: Any, where: str) -> str:
        if isinstance(value, str):
            if value in choices:
                return value
            # Speech models capitalise freely ("Walking"); a case-only mismatch is not an error.
            folded = by_fold.get(value.strip().casefold())
            if folded is not None:
                return folded
        raise ArgumentError(f"{where} must be one of {shown} (got {show_value(value)})")

    return coerce


def _describe(fn: ToolFn) -> tuple[str, dict[str, str]]:
    """(summary, per-parameter descriptions) from a Google-style docstring."""
    doc = inspect.getdoc(fn) or ""
    summary_lines: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section, current, arg_indent = "args", None, None
            continue
        if stripped in ("Returns:", "Raises:", "Yields:", "Example:", "Examples:", "Note:"):
            section, current = "other", None
            continue
        if section is None:
            summary_lines.append(line)
        elif section == "args" and stripped:
            match = _ARG_RE.match(stripped)
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(1)
                params[current] = match.group(2)
            elif current is not None:  # a continuation line of the current argument
                params[current] = f"{params[current]} {stripped}".strip()
    summary = " ".join(" ".join(summary_lines).split())
    return summary, params


# -- registered tools ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tool:
    spec: FunctionSpec
    fn: ToolFn
    is_async: bool
    params: tuple[_Param, ...]
    scheduling: Scheduling

    def bind(self, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate and coerce the model's arguments; all problems are reported at once."""
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise ArgumentError(f"arguments must be an object (got {show_value(args)})")
        known = {p.name for p in self.params}
        problems = [f"unexpected argument '{k}'" for k in args if k not in known]
        kwargs: dict[str, Any] = {}
        for param in self.params:
            if param.name not in args:
                if param.required:
                    problems.append(f"missing required argument '{param.name}'")
                continue
            value = args[param.name]
            if value is None and not param.required and not param.schema.get("nullable"):
                continue  # an explicit null for an optional parameter means "use the default"
            try:
                kwargs[param.name] = param.coerce(value, param.name)
            except ArgumentError as exc:
                problems.append(str(exc))
        if problems:
            raise ArgumentError("; ".join(problems))
        return kwargs


def build_tool(
    fn: ToolFn,
    name: str | None,
    description: str | None,
    non_blocking: bool,
    scheduling: str,
) -> Tool:
    tool_name: str = name or str(getattr(fn, "__name__", ""))
    if not _NAME_RE.match(tool_name):
        raise ValueError(
            f"invalid tool name {tool_name!r}: start with a letter or '_', then letters, digits, "
            "'_', '.', ':' or '-', at most 128 characters"
        )
    if scheduling not in _SCHEDULINGS:
        raise ValueError(f"scheduling must be one of {sorted(_SCHEDULINGS)}, not {scheduling!r}")
    summary, param_docs = _describe(fn)
    desc = (description or summary).strip()
    if not desc:
        raise ValueError(f"tool {tool_name!r} needs a description (a docstring or description=)")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolved forward references and the like
        raise TypeError(f"tool {tool_name!r}: cannot resolve annotations: {exc}") from exc

    params: list[_Param] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        where = f"tool {tool_name!r} parameter {p.name!r}"
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"{where}: *args, **kwargs and positional-only are not supported")
        if p.name not in hints:
            raise TypeError(f"{where}: needs a type annotation")
        schema, coerce = _schema_for(hints[p.name], where)
        if p.name in param_docs:
            schema = {**schema, "description": param_docs[p.name]}
        is_required = p.default is inspect.Parameter.empty
        if not is_required and _json_default(p.default):
            schema = {**schema, "default": p.default}
        properties[p.name] = schema
        if is_required:
            required.append(p.name)
        params.append(_Param(p.name, schema, coerce, is_required, p.default))

    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    spec = FunctionSpec(tool_name, desc, parameters, non_blocking)
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 — async callable objects
    )
    return Tool(spec, fn, is_async, tuple(params), typing.cast(Scheduling, scheduling))


def _json_default(value: Any) -> bool:
    return value is not None and isinstance(value, str | int | float | bool)
