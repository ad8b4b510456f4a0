"""Mapping a Rossum annotation (the export's datapoint tree) to the canonical :class:`Invoice`.

Which datapoint feeds which invoice field is configuration: a mapping file
(``mappings/rossum-invoice.yaml`` by default, written for Rossum's standard invoice schema; see
:mod:`erphub.mapfile`). Every problem is collected, so the operator sees all of them at once in
Rossum, each naming the field it came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from erphub.errors import BadInputError
from erphub.invoices import Datapoint, ExportedAnnotation, Invoice, Multivalue, TupleNode
from erphub.mapengine import apply
from erphub.mapfile import MappingSpec, Target, load, packaged

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["TARGET", "MappingError", "default_mapping", "load_mapping", "to_invoice"]

#: What a Rossum mapping file produces.
TARGET = Target(
    kind="rossum-invoice",
    model=Invoice,
    description="the invoice",
    default_file="rossum-invoice.yaml",
    reserved={
        "externalReference": "is set by erphub (rossum:<annotation id>), it cannot be mapped",
    },
)


class MappingError(BadInputError):
    """The annotation cannot become an invoice; ``problems`` name each field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Row:
    """One tuple of a multivalue: its datapoints by schema id; problems say ``line <n>``."""

    def __init__(self, values: dict[str, str], number: int) -> None:
        self._values = values
        self._number = number

    def get(self, path: str) -> Any:
        return self._values.get(path)

    def rows(self, path: str) -> Sequence[_Row] | None:
        return None

    def name(self, path: str) -> str:
        return f"line {self._number} {path}"


class _Annotation:
    """The datapoints directly under the sections (the first of each schema id) and the tuples
    of every multivalue, by schema id."""

    def __init__(self, annotation: ExportedAnnotation) -> None:
        self._values: dict[str, str] = {}
        self._tables: dict[str, list[_Row]] = {}
        for section in annotation.content:
            for child in section.children:
                if isinstance(child, Datapoint):
                    self._values.setdefault(child.schema_id, child.value or "")
                elif isinstance(child, Multivalue):
                    rows = self._tables.setdefault(child.schema_id, [])
                    for row in child.children:
                        if isinstance(row, TupleNode):
                            cells = {dp.schema_id: dp.value or "" for dp in row.children}
                            rows.append(_Row(cells, len(rows) + 1))

    def get(self, path: str) -> Any:
        return self._values.get(path)

    def rows(self, path: str) -> Sequence[_Row] | None:
        return self._tables.get(path)

    def name(self, path: str) -> str:
        return path


def default_mapping() -> MappingSpec:
    """The packaged mapping for Rossum's standard invoice schema."""
    return packaged(TARGET)


def load_mapping(location: str | None) -> MappingSpec:
    """The mapping at ``location``: empty for the default, ``ssm:/name`` or a file path."""
    return load(location, TARGET)


def to_invoice(annotation: ExportedAnnotation, mapping: MappingSpec | None = None) -> Invoice:
    """The invoice an annotation describes, by ``mapping`` (default: :func:`default_mapping`).

    Raises :class:`MappingError` naming every problem.
    """
    mapping = mapping or default_mapping()
    source = _Annotation(annotation)
    mapped = apply(mapping.section(), source, trim=mapping.trim)
    if mapped.problems:
        raise MappingError(mapped.problems)
    try:
        return Invoice.model_validate(
            {**mapped.values, "externalReference": f"rossum:{annotation.id}"}
        )
    except ValidationError as error:
        raise MappingError(mapped.explain(error, source.name)) from None
