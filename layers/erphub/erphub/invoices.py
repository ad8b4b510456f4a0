"""The Rossum export's documents: the export JSON read from Rossum, and the invoice the ERP
contract books, which :mod:`erphub.mapping` makes of it.

Apart from :mod:`erphub.models` because only the push step maps: the other steps do not build
these models at their cold start.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from erphub.models import CamelModel, annotation_id_from_url

# --- canonical business documents -----------------------------------------------------------

Money = Annotated[Decimal, Field(max_digits=18, decimal_places=2)]


class Supplier(CamelModel):
    """The issuer of a supplier invoice."""

    name: str = Field(min_length=1)
    vat_id: str = Field(min_length=1)
    iban: str | None = None


class InvoiceLine(CamelModel):
    """One line of a supplier invoice."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal | None = None
    amount: Money


class Invoice(CamelModel):
    """A supplier invoice as the ERP contract books it."""

    external_reference: str = Field(min_length=1)
    supplier: Supplier
    invoice_number: str = Field(min_length=1)
    issue_date: date
    due_date: date | None = None
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    net_amount: Money
    tax_amount: Money
    total_amount: Money
    purchase_order: str | None = None
    lines: list[InvoiceLine] = Field(default_factory=list)


# --- Rossum export JSON ----------------------------------------------------------------------


class _Node(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_id: str


class Datapoint(_Node):
    """A leaf of the annotation tree; export values are normalised (ISO dates, '.' decimals)."""

    category: Literal["datapoint"]
    value: str | None = None
    type: str | None = None


class TupleNode(_Node):
    """One row of a multivalue table (a line item)."""

    category: Literal["tuple"]
    children: list[Datapoint] = Field(default_factory=list)


class Multivalue(_Node):
    """A repeated field: a table of tuples or a list of datapoints."""

    category: Literal["multivalue"]
    children: list[Annotated[TupleNode | Datapoint, Field(discriminator="category")]] = Field(
        default_factory=list
    )


class Section(_Node):
    """A top-level group of fields."""

    category: Literal["section"]
    children: list[Annotated[Datapoint | Multivalue, Field(discriminator="category")]] = Field(
        default_factory=list
    )


class ExportedAnnotation(BaseModel):
    """One result of ``GET /v1/queues/{id}/export?format=json``; its id lives only in ``url``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str
    status: str
    content: list[Section] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _annotation_url(cls, value: str) -> str:
        if annotation_id_from_url(value) is None:
            msg = f"not an annotation URL: {value!r}"
            raise ValueError(msg)
        return value

    @property
    def id(self) -> int:
        """The annotation id, parsed from ``url``."""
        annotation_id = annotation_id_from_url(self.url)
        assert annotation_id is not None  # checked by the validator
        return annotation_id
