"""Mapping a Rossum annotation (the export's datapoint tree) to the canonical :class:`Invoice`.

The schema ids are those of Rossum's standard invoice schema. Every problem is collected, so the
operator sees all of them at once in Rossum, each naming the field it came from.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from pydantic import ValidationError

from erphub.errors import BadInputError
from erphub.models import (
    Datapoint,
    ExportedAnnotation,
    Invoice,
    InvoiceLine,
    Multivalue,
    Supplier,
    TupleNode,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

LINE_ITEMS = "line_items"


class MappingError(BadInputError):
    """The annotation cannot become an invoice; ``problems`` name each field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _header_datapoints(annotation: ExportedAnnotation) -> dict[str, str]:
    values: dict[str, str] = {}
    for section in annotation.content:
        for child in section.children:
            if isinstance(child, Datapoint) and child.schema_id not in values:
                values[child.schema_id] = (child.value or "").strip()
    return values


def _line_items(annotation: ExportedAnnotation) -> Iterator[dict[str, str]]:
    for section in annotation.content:
        for child in section.children:
            if isinstance(child, Multivalue) and child.schema_id == LINE_ITEMS:
                for row in child.children:
                    if isinstance(row, TupleNode):
                        yield {dp.schema_id: (dp.value or "").strip() for dp in row.children}


class _Reader:
    """Reads typed values out of flat datapoints, collecting the problems."""

    def __init__(self, values: dict[str, str], where: str = "") -> None:
        self.values = values
        self.where = where
        self.problems: list[str] = []

    def text(self, schema_id: str, *, required: bool = True) -> str | None:
        value = self.values.get(schema_id) or None
        if value is None and required:
            self.problems.append(f"{self.where}{schema_id}: missing")
        return value

    def decimal(self, schema_id: str, *, required: bool = True) -> Decimal | None:
        raw = self.text(schema_id, required=required)
        if raw is None:
            return None
        try:
            value = Decimal(raw.replace(" ", ""))
        except InvalidOperation:
            self.problems.append(f"{self.where}{schema_id}: {raw!r} is not a number")
            return None
        if not value.is_finite():
            self.problems.append(f"{self.where}{schema_id}: {raw!r} is not a number")
            return None
        return value

    def date(self, schema_id: str, *, required: bool = True) -> date | None:
        raw = self.text(schema_id, required=required)
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.problems.append(f"{self.where}{schema_id}: {raw!r} is not a date (YYYY-MM-DD)")
            return None


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("0.01"))


def _lines(annotation: ExportedAnnotation, problems: list[str]) -> list[InvoiceLine]:
    lines: list[InvoiceLine] = []
    for number, row in enumerate(_line_items(annotation), start=1):
        reader = _Reader(row, where=f"line {number} ")
        description = reader.text("item_description", required=False) or ""
        quantity = reader.decimal("item_quantity", required=False) or Decimal(1)
        unit_price = reader.decimal("item_amount_base")
        rate = reader.decimal("item_rate", required=False)
        amount = reader.decimal("item_total_base", required=False)
        if amount is None and unit_price is not None:
            amount = quantity * unit_price
        problems += reader.problems
        if unit_price is not None and amount is not None:
            lines.append(
                InvoiceLine(
                    description=description,
                    quantity=quantity,
                    unit_price=unit_price,
                    tax_rate=rate,
                    amount=_money(amount) or Decimal(0),
                )
            )
    return lines


def to_invoice(annotation: ExportedAnnotation) -> Invoice:
    """The invoice an annotation describes; raises :class:`MappingError` naming every problem."""
    reader = _Reader(_header_datapoints(annotation))
    number = reader.text("document_id")
    issued = reader.date("date_issue")
    due = reader.date("date_due", required=False)
    currency = reader.text("currency")
    total = reader.decimal("amount_total")
    net = reader.decimal("amount_total_base", required=False)
    tax = reader.decimal("amount_total_tax", required=False)
    supplier_name = reader.text("sender_name")
    vat_id = reader.text("sender_vat_id")
    iban = reader.text("iban", required=False)
    order = reader.text("order_id", required=False)
    # Invoices often print only two of the three amounts.
    if net is None and total is not None and tax is not None:
        net = total - tax
    if tax is None and total is not None and net is not None:
        tax = total - net
    if net is None:
        reader.problems.append("amount_total_base: missing (and amount_total_tax too)")
    problems = reader.problems
    lines = _lines(annotation, problems)
    if problems:
        raise MappingError(problems)
    try:
        return Invoice(
            external_reference=f"rossum:{annotation.id}",
            supplier=Supplier(name=supplier_name or "", vat_id=vat_id or "", iban=iban),
            invoice_number=number or "",
            issue_date=issued or date.min,
            due_date=due,
            currency=(currency or "").upper(),
            net_amount=_money(net) or Decimal(0),
            tax_amount=_money(tax) or Decimal(0),
            total_amount=_money(total) or Decimal(0),
            purchase_order=order,
            lines=lines,
        )
    except ValidationError as error:
        raise MappingError(
            [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        ) from None
