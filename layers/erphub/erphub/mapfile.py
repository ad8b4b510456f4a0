"""Mapping files: where each field of a target model comes from in a source document.

A mapping file is YAML, one per direction (a Rossum annotation -> an ERP invoice; an ERP outgoing
document -> the fields a Procuros transaction is built from). The packaged defaults in
``erphub/mappings/`` describe the format in their comments. A file is read and checked as a
whole when a step starts (its cold start): every problem is reported at once, each with the file
and line it is on, as a :class:`MappingFileError`.

Where a mapping comes from is a *location*: empty (or ``ssm:`` with no name) for the packaged
default, ``ssm:/parameter/name`` for an SSM Parameter Store parameter, anything else a file path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from erphub.errors import ConfigurationError
from erphub.expressions import Expression, ExpressionError, compile_expression

__all__ = [
    "PACKAGED",
    "DecimalFormat",
    "FieldSpec",
    "FieldType",
    "ListSpec",
    "MappingFileError",
    "MappingSpec",
    "Section",
    "Target",
    "convert",
    "load",
    "packaged",
    "parse",
]

#: Where the default mapping files live (they ship in the layer).
PACKAGED = Path(__file__).resolve().parent / "mappings"
SSM_PREFIX = "ssm:"
_MAX_NODES = 20_000
_MAX_MAGNITUDE = 30
_MAX_BYTES = 256 * 1024


class MappingFileError(ConfigurationError):
    """A mapping file cannot be used; ``problems`` are ``<file>:<line>: <what>`` lines."""

    def __init__(self, origin: str, problems: list[str]) -> None:
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"mapping {origin} has {count}:\n" + "\n".join(problems))
        self.origin = origin
        self.problems = problems


class FieldType(StrEnum):
    """How a source value is converted before it goes into the target field."""

    TEXT = "text"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATE = "date"
    CURRENCY = "currency"
    BOOLEAN = "boolean"
    #: the JSON value as it is; the target model checks it
    ANY = "any"


#: Which conversions may feed a target of a given (inferred) type.
_COMPATIBLE: dict[FieldType, frozenset[FieldType]] = {
    FieldType.TEXT: frozenset({FieldType.TEXT, FieldType.CURRENCY, FieldType.ANY}),
    FieldType.DECIMAL: frozenset({FieldType.DECIMAL, FieldType.ANY}),
    FieldType.INTEGER: frozenset({FieldType.INTEGER, FieldType.ANY}),
    FieldType.DATE: frozenset({FieldType.DATE, FieldType.ANY}),
    FieldType.BOOLEAN: frozenset({FieldType.BOOLEAN, FieldType.ANY}),
    FieldType.ANY: frozenset(FieldType),
}


@dataclass(frozen=True)
class DecimalFormat:
    """How numbers are written in the source: the decimal separator and the grouping marks."""

    separator: str = "."
    group: tuple[str, ...] = ()


@dataclass(frozen=True)
class FieldSpec:
    """One target field: where it comes from and how it is converted."""

    target: str
    sources: tuple[str, ...] = ()
    type: FieldType = FieldType.TEXT
    required: bool = False
    default: Any = None
    compute: Expression | None = None
    values: Mapping[str, Any] | None = None
    round: int | None = None
    decimal: DecimalFormat = DecimalFormat()
    formats: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class ListSpec:
    """A list of the target (invoice lines): one row per item of a source list."""

    target: str
    source: str
    fields: tuple[FieldSpec, ...]
    line: int = 0


@dataclass(frozen=True)
class Section:
    """The fields and lists of a target document."""

    fields: tuple[FieldSpec, ...]
    lists: tuple[ListSpec, ...] = ()


@dataclass(frozen=True)
class MappingSpec:
    """A checked mapping file."""

    kind: str
    origin: str
    trim: bool
    common: Section
    #: per document type (ERP outgoing documents): the common section with the type's changes
    by_type: Mapping[str, Section] = field(default_factory=dict)

    def section(self, document_type: str | None = None) -> Section:
        """The section that applies to a document of ``document_type``."""
        if document_type is not None and document_type in self.by_type:
            return self.by_type[document_type]
        return self.common


@dataclass(frozen=True, eq=False)  # compared (and cached) by identity: one per kind
class Target:
    """What a mapping file of one kind produces: a pydantic model, field names in camelCase."""

    kind: str
    model: type[BaseModel]
    description: str
    default_file: str
    #: target fields erphub sets itself, and why
    reserved: Mapping[str, str] = field(default_factory=dict)
    #: the document types a file may specialise under ``types:`` (None: no such section)
    types: frozenset[str] | None = None


# --- the target model's fields -------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    type: FieldType
    required: bool


@dataclass(frozen=True)
class _Shape:
    scalars: dict[str, _Slot]
    lists: dict[str, _Shape]


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``| None``, and whether None was allowed."""
    origin = get_origin(annotation)
    if origin is Union or origin is UnionType:
        args = [arg for arg in get_args(annotation) if arg is not NoneType]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _scalar_type(annotation: Any) -> FieldType:
    if get_origin(annotation) is Annotated:
        return _scalar_type(get_args(annotation)[0])
    if annotation is bool:
        return FieldType.BOOLEAN
    if annotation is int:
        return FieldType.INTEGER
    if annotation is Decimal:
        return FieldType.DECIMAL
    if annotation is date:
        return FieldType.DATE
    if annotation is str:
        return FieldType.TEXT
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return FieldType.TEXT
    return FieldType.ANY


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@cache
def _shape(model: type[BaseModel]) -> _Shape:
    scalars: dict[str, _Slot] = {}
    lists: dict[str, _Shape] = {}

    def walk(current: type[BaseModel], prefix: str, required: bool) -> None:
        for name, info in current.model_fields.items():
            path = prefix + (info.alias or name)
            inner, _ = _unwrap(info.annotation)
            needed = required and info.is_required()
            if _is_model(inner):
                walk(inner, path + ".", needed)
            elif get_origin(inner) is list and _is_model(get_args(inner)[0]):
                lists[path] = _shape(get_args(inner)[0])
            else:
                scalars[path] = _Slot(_scalar_type(inner), needed)

    walk(model, "", True)
    return _Shape(scalars, lists)


# --- YAML with line numbers ----------------------------------------------------------------


@dataclass(frozen=True)
class _Y:
    """A YAML value with the line it is on (for a mapping entry: the line of its key)."""

    value: Any
    line: int


class _Reader:
    """Composes YAML into :class:`_Y` values, refusing duplicate keys and oversized documents."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.problems: list[str] = []
        self.nodes = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def read(self, text: str) -> _Y | None:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
            line = mark.line + 1 if mark is not None else 1
            problem = getattr(error, "problem", None) or str(error)
            self.problems.append(f"{self.origin}:{line}: not valid YAML: {problem}")
            return None
        if node is None:
            self.problems.append(f"{self.origin}:1: the file is empty")
            return None
        return self.build(node, node.start_mark.line + 1)

    def build(self, node: yaml.Node, line: int) -> _Y:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            msg = f"{self.origin}: more than {_MAX_NODES} YAML nodes (aliases expanding?)"
            raise MappingFileError(self.origin, [msg])
        if isinstance(node, yaml.MappingNode):
            entries: dict[str, _Y] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(f"{self.origin}:{key_line}: a key must be plain text")
                    continue
                key = str(key_node.value)
                if key in entries:
                    first = entries[key].line
                    self.problems.append(
                        f"{self.origin}:{key_line}: {key!r} is given twice (first on line {first})"
                    )
                    continue
                entries[key] = self.build(value_node, key_line)
            return _Y(entries, line)
        if isinstance(node, yaml.SequenceNode):
            return _Y([self.build(item, item.start_mark.line + 1) for item in node.value], line)
        return _Y(self.constructor.construct_object(node, deep=True), line)


# --- conversions ---------------------------------------------------------------------------


def _date_hint(formats: tuple[str, ...]) -> str:
    if not formats:
        return "YYYY-MM-DD"
    parts = {"%d": "DD", "%m": "MM", "%Y": "YYYY", "%y": "YY", "%b": "Mon", "%B": "Month"}

    def hint(fmt: str) -> str:
        for code, text in parts.items():
            fmt = fmt.replace(code, text)
        return fmt

    return " or ".join(hint(fmt) for fmt in formats)


def _to_date(raw: Any, formats: tuple[str, ...]) -> date | None:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not formats:
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _to_decimal(raw: Any, number_format: DecimalFormat) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, Decimal):
        value = raw
    elif isinstance(raw, int | float):
        value = Decimal(str(raw))
    elif isinstance(raw, str):
        text = raw.strip()
        for mark in number_format.group:
            text = text.replace(mark, "")
        if number_format.separator != ".":
            text = text.replace(number_format.separator, ".")
        try:
            value = Decimal(text)
        except ArithmeticError:
            return None
    else:
        return None
    # Beyond any amount or quantity (and a bound on the work a crafted value can cause).
    return value if value.is_finite() and abs(value.adjusted()) <= _MAX_MAGNITUDE else None


def _to_integer(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    number = _to_decimal(raw, DecimalFormat())
    if number is None or number != number.to_integral_value():
        return None
    return int(number)


_TRUE = frozenset({"true", "yes", "1", "y"})
_FALSE = frozenset({"false", "no", "0", "n"})


def _to_boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def convert(spec: FieldSpec, raw: Any) -> tuple[Any, str | None]:
    """``raw`` converted to the field's type, or None and what is wrong with it."""
    kind = spec.type
    if kind is FieldType.ANY:
        return raw, None
    if kind is FieldType.DECIMAL:
        number = _to_decimal(raw, spec.decimal)
        return (number, None) if number is not None else (None, f"{raw!r} is not a number")
    if kind is FieldType.INTEGER:
        integer = _to_integer(raw)
        return (integer, None) if integer is not None else (None, f"{raw!r} is not an integer")
    if kind is FieldType.DATE:
        day = _to_date(raw, spec.formats)
        if day is None:
            return None, f"{raw!r} is not a date ({_date_hint(spec.formats)})"
        return day, None
    if kind is FieldType.BOOLEAN:
        flag = _to_boolean(raw)
        return (flag, None) if flag is not None else (None, f"{raw!r} is not true or false")
    # Whole numbers pass as text (an ERP may keep order numbers or GLNs as numbers); other
    # values would be written in a form nobody chose (2.5, 1e-05, True).
    if isinstance(raw, bool) or not isinstance(raw, str | int | date):
        return None, f"{raw!r} is not text"
    text = raw.isoformat() if isinstance(raw, date) else str(raw)
    if kind is FieldType.CURRENCY:
        code = text.strip().upper()
        if len(code) != 3 or not code.isascii() or not code.isalpha():
            return None, f"{raw!r} is not a currency code (ISO 4217, such as EUR)"
        return code, None
    return text, None


# --- the file format -------------------------------------------------------------------------

_TOP_KEYS = frozenset(
    {"kind", "version", "description", "trim", "decimal", "date", "fields", "lists", "types"}
)
_FIELD_KEYS = frozenset(
    {"from", "type", "required", "default", "compute", "values", "round", "decimal", "formats"}
)
_LIST_KEYS = frozenset({"from", "fields", "description"})
_SECTION_KEYS = frozenset({"fields", "lists", "description"})


@dataclass
class _RawField:
    """A field as written, before its expression can be checked against its section."""

    spec: FieldSpec
    compute: str | None
    compute_line: int


@dataclass
class _RawSection:
    fields: dict[str, _RawField]
    lists: dict[str, tuple[ListSpec, dict[str, _RawField]]]
    fields_line: int


class _Checker:
    """Turns the YAML of a mapping file into a :class:`MappingSpec`, collecting every problem."""

    def __init__(self, origin: str, target: Target) -> None:
        self.origin = origin
        self.target = target
        self.shape = _shape(target.model)
        self.problems: list[str] = []
        self.number_format = DecimalFormat()
        self.date_formats: tuple[str, ...] = ()

    def problem(self, line: int, message: str) -> None:
        text = f"{self.origin}:{line}: {message}"
        if text not in self.problems:
            self.problems.append(text)

    def mapping(self, node: _Y, what: str) -> dict[str, _Y] | None:
        if isinstance(node.value, dict):
            return node.value
        self.problem(node.line, f"{what} must be a mapping of names to values")
        return None

    def unknown_keys(self, entries: dict[str, _Y], allowed: frozenset[str], what: str) -> None:
        for key, value in entries.items():
            if key not in allowed:
                self.problem(
                    value.line, f"{what}: unknown key {key!r} (known: {', '.join(sorted(allowed))})"
                )

    # --- top level -----------------------------------------------------------------------------

    def check(self, root: _Y) -> MappingSpec | None:
        top = self.mapping(root, "the file")
        if top is None:
            return None
        self.unknown_keys(top, _TOP_KEYS, "top level")
        kind = top.get("kind")
        if kind is None:
            self.problem(root.line, f"kind is missing: this file needs 'kind: {self.target.kind}'")
        elif kind.value != self.target.kind:
            self.problem(kind.line, f"kind is {kind.value!r}, expected {self.target.kind!r}")
        version = top.get("version")
        if version is not None and version.value != 1:
            self.problem(version.line, f"version {version.value!r} is not supported (only 1)")
        trim = top.get("trim")
        if trim is not None and not isinstance(trim.value, bool):
            self.problem(trim.line, "trim must be true or false")
        if "decimal" in top:
            self.number_format = self.decimal_format(top["decimal"], DecimalFormat())
        if "date" in top:
            self.date_formats = self.top_date(top["date"])
        common = self.section(top, root.line, "")
        by_type: dict[str, Section] = {}
        types = top.get("types")
        if types is not None and self.target.types is None:
            self.problem(types.line, f"a {self.target.kind} mapping has no 'types' section")
        elif types is not None:
            by_type = self.types(types, common)
        compiled = self.compile(common, "") if common else None
        if common is not None and types is None:
            self.required(common, "")
        if compiled is None or self.problems:
            return None
        return MappingSpec(
            kind=self.target.kind,
            origin=self.origin,
            trim=bool(trim.value) if trim is not None else True,
            common=compiled,
            by_type=by_type,
        )

    def top_date(self, node: _Y) -> tuple[str, ...]:
        entries = self.mapping(node, "date")
        if entries is None:
            return ()
        self.unknown_keys(entries, frozenset({"formats"}), "date")
        return self.formats(entries["formats"]) if "formats" in entries else ()

    def types(self, node: _Y, common: _RawSection | None) -> dict[str, Section]:
        entries = self.mapping(node, "types")
        if entries is None or common is None:
            return {}
        assert self.target.types is not None
        by_type: dict[str, Section] = {}
        for name, body in entries.items():
            if name not in self.target.types:
                known = ", ".join(sorted(self.target.types))
                self.problem(body.line, f"types: {name!r} is not a type erphub maps ({known})")
                continue
            section_entries = self.mapping(body, f"types.{name}")
            if section_entries is None:
                continue
            self.unknown_keys(section_entries, _SECTION_KEYS, f"types.{name}")
            own = self.section(section_entries, body.line, f"types.{name}.")
            if own is None:
                continue
            merged = _RawSection(
                fields={**common.fields, **own.fields},
                lists={**common.lists, **own.lists},
                fields_line=own.fields_line if own.fields else common.fields_line,
            )
            self.required(merged, f"types.{name}: ")
            compiled = self.compile(merged, f"types.{name}.")
            if compiled is not None:
                by_type[name] = compiled
        for name in sorted(self.target.types - set(by_type)):
            self.required(common, f"type {name}: ")
        return by_type

    # --- sections ---------------------------------------------------------------------------

    def section(self, entries: dict[str, _Y], line: int, where: str) -> _RawSection | None:
        fields_node = entries.get("fields")
        fields: dict[str, _RawField] = {}
        if fields_node is None and not where:
            self.problem(line, "fields is missing")
        elif fields_node is not None:
            fields = self.fields(fields_node, self.shape, f"{where}fields")
        lists: dict[str, tuple[ListSpec, dict[str, _RawField]]] = {}
        lists_node = entries.get("lists")
        if lists_node is not None:
            for name, body in (self.mapping(lists_node, f"{where}lists") or {}).items():
                checked = self.list(name, body, f"{where}lists.{name}")
                if checked is not None:
                    lists[name] = checked
        fields_line = fields_node.line if fields_node is not None else line
        return _RawSection(fields, lists, fields_line)

    def list(self, name: str, node: _Y, where: str) -> tuple[ListSpec, dict[str, _RawField]] | None:
        shape = self.shape.lists.get(name)
        if shape is None:
            known = ", ".join(sorted(self.shape.lists)) or "none"
            self.problem(
                node.line, f"{where}: {self.target.description} has no list {name!r} ({known})"
            )
            return None
        entries = self.mapping(node, where)
        if entries is None:
            return None
        self.unknown_keys(entries, _LIST_KEYS, where)
        source = entries.get("from")
        if source is None or not isinstance(source.value, str) or not source.value.strip():
            self.problem(node.line, f"{where}: 'from' must name the source list")
            return None
        fields_node = entries.get("fields")
        if fields_node is None:
            self.problem(node.line, f"{where}: fields is missing")
            return None
        fields = self.fields(fields_node, shape, f"{where}.fields")
        for path, slot in shape.scalars.items():
            if slot.required and path not in fields:
                self.problem(
                    fields_node.line,
                    f"{where}.fields: {path} is required in every item of {name} but not mapped",
                )
        spec = ListSpec(target=name, source=source.value.strip(), fields=(), line=node.line)
        return spec, fields

    def fields(self, node: _Y, shape: _Shape, where: str) -> dict[str, _RawField]:
        entries = self.mapping(node, where)
        if entries is None:
            return {}
        fields: dict[str, _RawField] = {}
        for path, body in entries.items():
            slot = shape.scalars.get(path)
            if path in self.target.reserved and shape is self.shape:
                self.problem(body.line, f"{where}: {path} {self.target.reserved[path]}")
                continue
            if slot is None:
                self.problem(body.line, self.unknown_target(path, shape, where))
                continue
            checked = self.field(path, slot, body, f"{where}.{path}")
            if checked is not None:
                fields[path] = checked
        return fields

    def unknown_target(self, path: str, shape: _Shape, where: str) -> str:
        from difflib import get_close_matches  # noqa: PLC0415 - only on a mistake

        if path in shape.lists:
            return f"{where}: {path} is a list: map it under 'lists'"
        close = get_close_matches(path, list(shape.scalars), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{where}: {self.target.description} has no field {path!r}{hint}"

    # --- one field -------------------------------------------------------------------------------

    def field(self, path: str, slot: _Slot, node: _Y, where: str) -> _RawField | None:
        if isinstance(node.value, str | list):
            entries: dict[str, _Y] = {"from": node}
        else:
            found = self.mapping(node, where)
            if found is None:
                return None
            entries = found
        self.unknown_keys(entries, _FIELD_KEYS, where)
        sources = self.sources(entries.get("from"), where)
        kind = self.field_type(entries.get("type"), slot, where)
        required = slot.required
        if "required" in entries:
            flag = entries["required"]
            if not isinstance(flag.value, bool):
                self.problem(flag.line, f"{where}: required must be true or false")
            elif slot.required and not flag.value:
                self.problem(flag.line, f"{where}: {path} is always required")
            else:
                required = flag.value
        compute = entries.get("compute")
        if compute is not None and not isinstance(compute.value, str):
            self.problem(compute.line, f"{where}: compute must be an expression in quotes")
            compute = None
        if not sources and compute is None and not {"from", "default"} & set(entries):
            self.problem(node.line, f"{where}: give 'from', 'compute' or 'default'")
        number_format = self.number_format
        if "decimal" in entries:
            number_format = self.decimal_format(entries["decimal"], self.number_format)
        formats = self.formats(entries["formats"]) if "formats" in entries else self.date_formats
        places = self.places(entries.get("round"), kind, where)
        spec = FieldSpec(
            target=path,
            sources=sources,
            type=kind,
            required=required,
            values=self.values(entries.get("values"), where),
            round=places,
            decimal=number_format,
            formats=formats,
            line=node.line,
        )
        if "default" in entries:
            spec = self.with_default(spec, entries["default"], where)
        return _RawField(
            spec, compute.value if compute is not None else None, compute.line if compute else 0
        )

    def sources(self, node: _Y | None, where: str) -> tuple[str, ...]:
        if node is None:
            return ()
        items = node.value if isinstance(node.value, list) else [node]
        paths: list[str] = []
        for item in items:
            value = item.value if isinstance(item, _Y) else item
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                self.problem(node.line, f"{where}: 'from' must be a field name or a list of them")
                return ()
            paths.append(value)
        return tuple(paths)

    def field_type(self, node: _Y | None, slot: _Slot, where: str) -> FieldType:
        if node is None:
            return slot.type
        try:
            kind = FieldType(str(node.value))
        except ValueError:
            known = ", ".join(t.value for t in FieldType)
            self.problem(node.line, f"{where}: type {node.value!r} is unknown ({known})")
            return slot.type
        if kind not in _COMPATIBLE[slot.type]:
            self.problem(
                node.line, f"{where}: the field is a {slot.type.value}, it cannot be {kind.value}"
            )
        return kind

    def places(self, node: _Y | None, kind: FieldType, where: str) -> int | None:
        if node is None:
            return None
        if kind is not FieldType.DECIMAL:
            self.problem(node.line, f"{where}: round applies to decimal fields only")
            return None
        if type(node.value) is not int or not 0 <= node.value <= 10:
            self.problem(node.line, f"{where}: round must be a number of places from 0 to 10")
            return None
        return int(node.value)

    def values(self, node: _Y | None, where: str) -> dict[str, Any] | None:
        if node is None:
            return None
        entries = self.mapping(node, f"{where}.values")
        if entries is None:
            return None
        table: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value.value, dict | list):
                self.problem(value.line, f"{where}.values: {key!r} must map to a plain value")
                continue
            table[key] = value.value
        return table

    def with_default(self, spec: FieldSpec, node: _Y, where: str) -> FieldSpec:
        if node.value is None:
            return spec
        value, problem = convert(spec, node.value)
        if problem is not None:
            self.problem(node.line, f"{where}: default {problem}")
            return spec
        return replace(spec, default=value)

    def decimal_format(self, node: _Y, base: DecimalFormat) -> DecimalFormat:
        entries = self.mapping(node, "decimal")
        if entries is None:
            return base
        self.unknown_keys(entries, frozenset({"separator", "group"}), "decimal")
        separator = base.separator
        if "separator" in entries:
            value = entries["separator"].value
            if value not in (".", ","):
                self.problem(entries["separator"].line, "decimal separator must be '.' or ','")
            else:
                separator = value
        group = base.group
        if "group" in entries:
            raw = entries["group"]
            marks = [item.value for item in raw.value] if isinstance(raw.value, list) else []
            if not marks or not all(isinstance(m, str) and len(m) == 1 for m in marks):
                self.problem(raw.line, "decimal group must be a list of single characters")
            else:
                group = tuple(marks)
        if separator in group:
            self.problem(node.line, f"decimal: {separator!r} cannot both separate and group")
        return DecimalFormat(separator, group)

    def formats(self, node: _Y) -> tuple[str, ...]:
        items = node.value if isinstance(node.value, list) else [node]
        formats = tuple(item.value for item in items)
        if not formats or not all(isinstance(f, str) and "%" in f for f in formats):
            self.problem(node.line, "formats must be strptime formats such as '%d.%m.%Y'")
            return ()
        return formats

    # --- whole sections ---------------------------------------------------------------------

    def required(self, section: _RawSection, where: str) -> None:
        for path, slot in self.shape.scalars.items():
            if slot.required and path not in section.fields and path not in self.target.reserved:
                self.problem(
                    section.fields_line,
                    f"{where}fields: {path} is required by {self.target.description}"
                    " but not mapped",
                )

    def compile(self, section: _RawSection, where: str) -> Section | None:
        lists: list[ListSpec] = []
        columns: set[str] = set()
        for spec, fields in section.lists.values():
            names = frozenset(fields)
            at = f"{where}lists.{spec.target}.fields."
            compiled = tuple(self.compiled(f, names, frozenset(), at) for f in fields.values())
            lists.append(ListSpec(spec.target, spec.source, compiled, spec.line))
            columns |= {f"{spec.target}.{name}" for name in fields}
        names = frozenset(section.fields)
        header = tuple(
            self.compiled(f, names, frozenset(columns), f"{where}fields.")
            for f in section.fields.values()
        )
        return Section(fields=header, lists=tuple(lists))

    def compiled(
        self, raw: _RawField, names: frozenset[str], columns: frozenset[str], where: str
    ) -> FieldSpec:
        if raw.compute is None:
            return raw.spec
        try:
            expression = compile_expression(raw.compute, names - {raw.spec.target}, columns)
        except ExpressionError as error:
            self.problem(raw.compute_line, f"{where}{raw.spec.target}: compute: {error}")
            return raw.spec
        if raw.spec.type not in (FieldType.DECIMAL, FieldType.TEXT, FieldType.ANY):
            self.problem(
                raw.compute_line,
                f"{where}{raw.spec.target}: compute gives numbers or text, not {raw.spec.type}",
            )
        return replace(raw.spec, compute=expression)


def _line_of(problem: str) -> int:
    """The line of an ``<origin>:<line>: <what>`` problem (0 when it names none)."""
    number = problem.partition(": ")[0].rpartition(":")[2]
    return int(number) if number.isdigit() else 0


def parse(text: str, origin: str, target: Target) -> MappingSpec:
    """Check the text of a mapping file; raises :class:`MappingFileError` naming every problem."""
    if len(text.encode()) > _MAX_BYTES:
        raise MappingFileError(origin, [f"{origin}: larger than {_MAX_BYTES // 1024} KB"])
    reader = _Reader(origin)
    root = reader.read(text)
    if root is None:
        raise MappingFileError(origin, reader.problems)
    checker = _Checker(origin, target)
    spec = checker.check(root)
    problems = sorted(reader.problems + checker.problems, key=_line_of)
    if spec is None or problems:
        raise MappingFileError(origin, problems or [f"{origin}: not a mapping file"])
    return spec


@cache
def packaged(target: Target) -> MappingSpec:
    """The default mapping shipped with erphub."""
    path = PACKAGED / target.default_file
    return parse(path.read_text(encoding="utf-8"), f"{target.default_file} (packaged)", target)


def _ssm_text(name: str) -> str:
    # Imported here: most steps never read a parameter, and boto3 is slow to import.
    import boto3  # noqa: PLC0415
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    client = boto3.client("ssm", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    provider = parameters.SSMProvider(boto3_client=client)
    try:
        value = provider.get(name, max_age=0)
    except parameters.exceptions.GetParameterError as error:
        cause = type(error.__cause__ or error).__name__
        msg = f"cannot read the mapping from SSM parameter {name}: {cause}"
        raise ConfigurationError(msg) from error
    if not isinstance(value, str):
        msg = f"SSM parameter {name} does not hold a mapping file"
        raise ConfigurationError(msg)
    return value


def load(location: str | None, target: Target) -> MappingSpec:
    """The mapping at ``location`` (see the module docstring), checked.

    Raises :class:`MappingFileError` for a file with problems, ``ConfigurationError`` when it
    cannot be read.
    """
    if not location or location.strip() == SSM_PREFIX:
        return packaged(target)
    if location.startswith(SSM_PREFIX):
        name = location[len(SSM_PREFIX) :].strip()
        return parse(_ssm_text(name), f"ssm:{name}", target)
    path = Path(location)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        msg = f"cannot read the mapping file {location}: {error}"
        raise ConfigurationError(msg) from error
    return parse(text, location, target)
