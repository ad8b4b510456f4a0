"""Applying a mapping to one source document.

For each level (the document, then each row of each list) the fields are, in order: read from
their first present source and converted; given their default; computed, for those still empty
that have an expression (repeatedly, so one computed field may feed another); checked for
presence. A field that cannot be computed because a field it needs already has a problem is not
reported again: the operator reads the cause, not its echoes. Every problem names the source
field it came from (``document_id``, ``line 2 item_quantity``, ``document.lines.0.quantity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from erphub.expressions import EvaluationError
from erphub.mapfile import FieldType, convert

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pydantic import ValidationError

    from erphub.mapfile import FieldSpec, Section

__all__ = ["Mapped", "Source", "SourceError", "apply"]


class SourceError(ValueError):
    """The source document is not shaped as the mapping expects (a list, an object)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.problem = f"{field}: {message}"


class Source(Protocol):
    """A source document as the mapping reads it."""

    def get(self, path: str) -> Any:
        """The value at ``path`` (a schema id, a dotted path), None when absent."""
        ...

    def rows(self, path: str) -> Sequence[Source] | None:
        """The rows of the list at ``path``, None when absent.

        :meth:`get` and :meth:`rows` raise :class:`SourceError` where the document's shape is
        not the one the paths expect.
        """
        ...

    def name(self, path: str) -> str:
        """How a problem names the field at ``path``."""
        ...


@dataclass
class Mapped:
    """The target fields as a nested dict, the problems, and where each target came from."""

    values: dict[str, Any]
    problems: list[str]
    origins: dict[str, str] = field(default_factory=dict)

    def explain(self, error: ValidationError, fallback: Callable[[str], str]) -> list[str]:
        """The target model's objections, each naming the source field it came from."""
        problems = []
        for detail in error.errors():
            path = ".".join(str(part) for part in detail["loc"])
            problems.append(f"{self.origins.get(path) or fallback(path)}: {detail['msg']}")
        return problems


def _set(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value


def _absent(value: Any, trim: bool) -> bool:
    """None is absent; so is blank text, unless the mapping keeps text exactly as it is."""
    return value is None or (trim and isinstance(value, str) and not value.strip())


class _Level:
    """One level of the target (the document, or one row of a list) being filled."""

    def __init__(
        self,
        fields: Sequence[FieldSpec],
        source: Source,
        trim: bool,
        columns: dict[str, list[Any]] | None = None,
    ) -> None:
        self.fields = fields
        self.source = source
        self.trim = trim
        self.columns = columns or {}
        self.values: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.failed: set[str] = set()
        self.problems: list[str] = []

    # the expression scope
    def value(self, name: str) -> object | None:
        return self.values.get(name)

    def column(self, name: str) -> Sequence[object | None] | None:
        return self.columns.get(name)

    def fail(self, spec: FieldSpec, message: str) -> None:
        self.failed.add(spec.target)
        self.problems.append(f"{self.origins[spec.target]}: {message}")

    def read(self, spec: FieldSpec) -> None:
        raw, used = None, spec.sources[0] if spec.sources else None
        for path in spec.sources:
            try:
                candidate = self.source.get(path)
            except SourceError as error:
                self.origins[spec.target] = self.source.name(path)
                self.failed.add(spec.target)
                if error.problem not in self.problems:
                    self.problems.append(error.problem)
                self.values[spec.target] = None
                return
            if not _absent(candidate, self.trim):
                raw, used = candidate, path
                break
        self.origins[spec.target] = self.source.name(used) if used else spec.target
        if raw is not None and self.trim and isinstance(raw, str):
            raw = raw.strip()
        if raw is not None and spec.values is not None and not isinstance(raw, dict | list):
            key = str(raw).strip()
            if key in spec.values:
                raw = spec.values[key]
        value = None
        if raw is not None:
            value, problem = convert(spec, raw)
            if problem is not None:
                self.fail(spec, problem)
        self.values[spec.target] = value

    def coerce(self, spec: FieldSpec, result: object) -> None:
        if spec.type is FieldType.DECIMAL and not isinstance(result, Decimal):
            self.fail(spec, f"{spec.compute.text if spec.compute else ''} is not a number")
            return
        if spec.type is FieldType.TEXT and isinstance(result, Decimal):
            result = str(result)
        self.values[spec.target] = result

    def compute(self) -> None:
        pending = [
            spec
            for spec in self.fields
            if spec.compute is not None
            and self.values[spec.target] is None
            and spec.target not in self.failed
        ]
        progress = True
        while pending and progress:
            progress = False
            for spec in list(pending):
                assert spec.compute is not None
                try:
                    result = spec.compute.evaluate(self)
                except EvaluationError as error:
                    pending.remove(spec)
                    self.fail(spec, f"cannot compute {error}")
                    continue
                if result is not None:
                    pending.remove(spec)
                    self.origins[spec.target] = f"{spec.target} = {spec.compute.text}"
                    self.coerce(spec, result)
                    progress = True

    def check_required(self) -> None:
        missing = [
            spec
            for spec in self.fields
            if spec.required and self.values[spec.target] is None and spec.target not in self.failed
        ]
        for spec in missing:
            if spec.compute is None:
                self.fail(spec, "missing")
        for spec in missing:
            if spec.compute is None:
                continue
            needs = spec.compute.names | {c.partition(".")[0] for c in spec.compute.columns}
            if needs & self.failed:
                self.failed.add(spec.target)  # its cause is reported already
                continue
            absent = sorted(
                self.origins.get(name, name) for name in needs if self.values.get(name) is None
            )
            hint = f" without {', '.join(absent)}" if absent else ""
            self.fail(spec, f"missing, and {spec.compute.text} cannot be computed{hint}")

    def run(self) -> None:
        for spec in self.fields:
            self.read(spec)
        for spec in self.fields:
            if spec.compute is None and self.values[spec.target] is None:
                self.values[spec.target] = spec.default
        self.compute()
        for spec in self.fields:
            if spec.compute is not None and self.values[spec.target] is None:
                self.values[spec.target] = spec.default
        self.check_required()
        for spec in self.fields:
            value = self.values[spec.target]
            if spec.round is not None and isinstance(value, Decimal):
                exponent = Decimal(1).scaleb(-spec.round)
                try:
                    self.values[spec.target] = value.quantize(exponent, rounding=ROUND_HALF_EVEN)
                except InvalidOperation:
                    self.values[spec.target] = None
                    self.fail(spec, f"{value} is too large to round to {spec.round} places")

    def nested(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for path, value in self.values.items():
            if value is not None:
                _set(result, path, value)
        return result


def apply(section: Section, source: Source, *, trim: bool = True) -> Mapped:
    """Map one source document with ``section``; the problems name their source fields."""
    problems: list[str] = []
    origins: dict[str, str] = {}
    columns: dict[str, list[Any]] = {}
    lists: dict[str, list[dict[str, Any]]] = {}
    for spec in section.lists:
        try:
            rows = source.rows(spec.source)
        except SourceError as error:
            problems.append(error.problem)
            continue
        if rows is None:
            continue
        items: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            level = _Level(spec.fields, row, trim)
            level.run()
            problems += level.problems
            items.append(level.nested())
            origins |= {f"{spec.target}.{index}.{k}": v for k, v in level.origins.items()}
            for name, value in level.values.items():
                columns.setdefault(f"{spec.target}.{name}", []).append(value)
        lists[spec.target] = items
    header = _Level(section.fields, source, trim, columns)
    header.run()
    values = header.nested()
    values.update(lists)
    return Mapped(
        values=values, problems=header.problems + problems, origins=header.origins | origins
    )
