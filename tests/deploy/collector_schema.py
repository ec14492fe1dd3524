"""Closed-world checking of a collector config against the components' `config.schema.yaml`.

The collector binary (`otelcol-contrib validate`) is not available offline, so this reads the
upstream schemas copied into tests/data/collector-schemas/ and follows their conventions (see
the README there): a `$ref` is `<package>.<def>` split at the last dot; `/x` is the root of the
same repo, `./x` is relative to the referring file, `go.opentelemetry.io/collector/x` is core,
`github.com/open-telemetry/opentelemetry-collector-contrib/x` is contrib; `<pkg>.config` without
a `$defs.config` is the file's root; `allOf` members are squashed into the parent. `properties`
are treated as closed: an unknown key is an error (the collector rejects them too).

Quirks handled on purpose:
- A non-string field with `x-customType` (e.g. span_metrics' `histogram.unit`, declared as an
  int8 enum but written `s`/`ms`) unmarshals from text in Go: a string value is accepted there.
- `configopaque.map_list` (HTTP/gRPC `headers`) is declared as a list of name/value pairs but
  the collector also reads a plain map, the usual spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORE_PREFIX = "go.opentelemetry.io/collector/"
CONTRIB_PREFIX = "github.com/open-telemetry/opentelemetry-collector-contrib/"
SECTION_CLASS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
    "extensions": "extension",
}
# Go's time.ParseDuration syntax (no sign needed here); `${env:…}` is checked separately.
_DURATION = re.compile(r"^(?:0|(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$")
_ENV_REF = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$")


@dataclass(frozen=True)
class Node:
    """A schema fragment plus the directory of the file it came from (for relative refs)."""

    schema: dict[str, Any]
    where: Path  # e.g. core/exporter/otlphttpexporter


@dataclass(frozen=True)
class Component:
    type: str
    klass: str
    deprecated_type: str | None
    where: Path


class SchemaStore:
    """The copied schema tree: components indexed by (class, type) from their metadata.yaml."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[Path, dict[str, Any]] = {}
        self.components: dict[tuple[str, str], Component] = {}
        self.deprecated: dict[tuple[str, str], str] = {}
        for meta_path in sorted(root.rglob("metadata.yaml")):
            meta = yaml.safe_load(meta_path.read_text()) or {}
            klass = (meta.get("status") or {}).get("class")
            if not meta.get("type") or klass not in SECTION_CLASS.values():
                continue
            where = meta_path.parent.relative_to(root)
            comp = Component(meta["type"], klass, meta.get("deprecated_type"), where)
            self.components[(klass, comp.type)] = comp
            if comp.deprecated_type:
                self.deprecated[(klass, comp.deprecated_type)] = comp.type

    def file(self, where: Path) -> dict[str, Any]:
        if where not in self._files:
            path = self.root / where / "config.schema.yaml"
            if not path.is_file():
                raise LookupError(f"no schema file {path.relative_to(self.root)}")
            self._files[where] = yaml.safe_load(path.read_text()) or {}
        return self._files[where]

    def component_schema(self, klass: str, type_: str) -> Node:
        comp = self.components[(klass, type_)]
        return Node(self.file(comp.where), comp.where)

    def resolve(self, ref: str, here: Path) -> Node:
        pkg, _, name = ref.rpartition(".")
        if not pkg:
            where = here
        elif pkg.startswith(CORE_PREFIX):
            where = Path("core") / pkg.removeprefix(CORE_PREFIX)
        elif pkg.startswith(CONTRIB_PREFIX):
            where = Path("contrib") / pkg.removeprefix(CONTRIB_PREFIX)
        elif pkg.startswith("/"):
            where = Path(here.parts[0]) / pkg[1:]
        elif pkg.startswith("./"):
            where = here / pkg[2:]
        else:
            raise LookupError(f"unsupported $ref {ref!r} in {here}")
        doc = self.file(where)
        defs = doc.get("$defs") or {}
        if name in defs:
            return Node(defs[name], where)
        if name == "config":  # e.g. otlpexporter.config: the file's root schema
            return Node(doc, where)
        raise LookupError(f"$ref {ref!r} from {here}: no $defs.{name} in {where}")

    def expand(self, node: Node) -> Node:
        """Follow `$ref` chains; sibling keys of a `$ref` (description, x-optional) are kept."""
        seen = 0
        while "$ref" in node.schema:
            target = self.resolve(node.schema["$ref"], node.where)
            extra = {k: v for k, v in node.schema.items() if k != "$ref"}
            node = Node({**target.schema, **extra}, target.where)
            seen += 1
            if seen > 20:
                raise LookupError(f"$ref loop at {node.where}")
        return node

    def properties(self, node: Node) -> dict[str, Node] | None:
        """The closed key set of an object schema, allOf squashed in; None if it is open."""
        node = self.expand(node)
        props: dict[str, Node] = {}
        declared = False
        if "properties" in node.schema:
            declared = True
            for key, sub in (node.schema["properties"] or {}).items():
                props[key] = Node(sub, node.where)
        for member in node.schema.get("allOf") or []:
            inner = self.properties(Node(member, node.where))
            if inner is None:
                return None
            declared = True
            props.update(inner)
        return props if declared else None

    # -- validation ------------------------------------------------------------------------------

    def validate(self, value: Any, node: Node, path: str) -> list[str]:
        node = self.expand(node)
        schema = node.schema
        if value is None:  # `health_check:` with nothing under it: all defaults
            return []
        if isinstance(value, str) and _ENV_REF.match(value):
            return []  # typed at load time by the collector; cannot be checked here
        kind = schema.get("type")
        custom = "x-customType" in schema
        if kind == "object" or "properties" in schema or "allOf" in schema:
            if not isinstance(value, dict):
                return [f"{path}: expected a mapping, got {type(value).__name__}"]
            props = self.properties(node)
            if props is None:
                return []
            errors: list[str] = []
            for key, sub in value.items():
                if key not in props:
                    errors.append(f"{path}.{key}: unknown key (allowed: {sorted(props)})")
                else:
                    errors.extend(self.validate(sub, props[key], f"{path}.{key}"))
            return errors
        if kind == "array":
            items = schema.get("items")
            if isinstance(value, dict) and self._is_map_list(items, node):
                return [
                    f"{path}.{k}: header values must be strings"
                    for k, v in value.items()
                    if not isinstance(v, str)
                ]
            if not isinstance(value, list):
                return [f"{path}: expected a list, got {type(value).__name__}"]
            if items is None:
                return []
            errors = []
            for i, item in enumerate(value):
                errors.extend(self.validate(item, Node(items, node.where), f"{path}[{i}]"))
            return errors
        if custom and kind != "string" and isinstance(value, str):
            return []  # a Go type with its own text unmarshalling (e.g. a unit enum)
        return self._scalar(value, kind, schema.get("format"), path)

    def _is_map_list(self, items: Any, node: Node) -> bool:
        if not isinstance(items, dict) or "$ref" not in items:
            return False
        target = self.expand(Node(items, node.where))
        return set(target.schema.get("properties") or {}) == {"name", "value"}

    @staticmethod
    def _scalar(value: Any, kind: str | None, fmt: str | None, path: str) -> list[str]:
        if kind == "string":
            if not isinstance(value, str):
                return [f"{path}: expected a string, got {value!r}"]
            if fmt == "duration" and not _DURATION.match(value):
                return [f"{path}: {value!r} is not a Go duration (e.g. 500ms, 1s, 1m30s)"]
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return [f"{path}: expected an integer, got {value!r}"]
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return [f"{path}: expected a number, got {value!r}"]
        elif kind == "boolean" and not isinstance(value, bool):
            return [f"{path}: expected true/false, got {value!r}"]
        return []


def split_id(component_id: str) -> tuple[str, str | None]:
    """`otlp_http/langfuse` → ("otlp_http", "langfuse")."""
    type_, _, name = component_id.partition("/")
    return type_, name or None


def validate_config(config: dict[str, Any], store: SchemaStore) -> list[str]:
    """Every component key of a collector config checked against its schema; [] when clean."""
    errors: list[str] = []
    for section, klass in SECTION_CLASS.items():
        for component_id, body in (config.get(section) or {}).items():
            type_, _ = split_id(component_id)
            if (klass, type_) in store.deprecated:
                new = store.deprecated[(klass, type_)]
                errors.append(f"{section}.{component_id}: deprecated type, use {new!r}")
                continue
            if (klass, type_) not in store.components:
                errors.append(f"{section}.{component_id}: no {klass} of type {type_!r} known")
                continue
            schema = store.component_schema(klass, type_)
            errors.extend(store.validate(body, schema, f"{section}.{component_id}"))
    unknown = set(config) - {*SECTION_CLASS, "service"}
    errors.extend(f"{key}: unknown top-level section" for key in sorted(unknown))
    return errors


def merge(base: Any, overlay: Any) -> Any:
    """The collector's merge of several --config sources: maps merge key by key, anything else
    (lists included) is replaced by the later source."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return overlay
