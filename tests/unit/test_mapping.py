"""Rossum datapoint tree -> Invoice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erphub.invoices import ExportedAnnotation
from erphub.mapping import MappingError, to_invoice


def dp(schema_id: str, value: str, kind: str = "string") -> dict[str, Any]:
    return {"category": "datapoint", "schema_id": schema_id, "value": value, "type": kind}


def annotation(
    overrides: dict[str, str | None] | None = None, lines: list[dict[str, str]] | None = None
) -> ExportedAnnotation:
    header = {
        "document_id": "INV-1",
        "date_issue": "2026-11-02",
        "date_due": "2026-12-02",
        "currency": "eur",
        "order_id": "PO-1",
        "amount_total_base": "100.00",
        "amount_total_tax": "19.00",
        "amount_total": "119.00",
        "sender_name": "Acme GmbH",
        "sender_vat_id": "DE123456789",
        "iban": "DE02120300000000202051",
    }
    header.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for key, value in (overrides or {}).items():
        if value is None:
            header.pop(key)
    rows = (
        lines
        if lines is not None
        else [
            {
                "item_description": "Consulting",
                "item_quantity": "1",
                "item_amount_base": "100.00",
                "item_rate": "19",
                "item_total_base": "100.00",
            }
        ]
    )
    content = [
        {
            "category": "section",
            "schema_id": "basic_info_section",
            "children": [dp(k, v) for k, v in header.items()],
        },
        {
            "category": "section",
            "schema_id": "line_items_section",
            "children": [
                {
                    "category": "multivalue",
                    "schema_id": "line_items",
                    "children": [
                        {
                            "category": "tuple",
                            "schema_id": "line_item",
                            "children": [dp(k, v) for k, v in row.items()],
                        }
                        for row in rows
                    ],
                }
            ],
        },
    ]
    return ExportedAnnotation.model_validate(
        {
            "url": "https://x.rossum.app/api/v1/annotations/315777",
            "status": "confirmed",
            "content": content,
        }
    )


def test_maps_the_standard_schema_to_an_invoice() -> None:
    invoice = to_invoice(annotation())
    assert invoice.external_reference == "rossum:315777"
    assert invoice.currency == "EUR"
    assert invoice.supplier.vat_id == "DE123456789"
    assert invoice.total_amount == Decimal("119.00")
    assert [line.amount for line in invoice.lines] == [Decimal("100.00")]
    assert invoice.dump()["netAmount"] == "100.00"
    assert invoice.dump()["issueDate"] == "2026-11-02"


def test_net_is_derived_from_total_minus_tax_when_absent() -> None:
    invoice = to_invoice(annotation({"amount_total_base": None}))
    assert invoice.net_amount == Decimal("100.00")


def test_every_problem_is_named_with_its_field() -> None:
    with pytest.raises(MappingError) as caught:
        to_invoice(
            annotation({"document_id": None, "date_issue": "02/11/2026", "amount_total": "12,x"})
        )
    problems = caught.value.problems
    assert "document_id: missing" in problems
    assert "date_issue: '02/11/2026' is not a date (YYYY-MM-DD)" in problems
    assert "amount_total: '12,x' is not a number" in problems


def test_a_line_without_unit_price_is_reported_with_its_number() -> None:
    with pytest.raises(MappingError) as caught:
        to_invoice(annotation(lines=[{"item_description": "x"}]))
    assert caught.value.problems == ["line 1 item_amount_base: missing"]


def test_the_id_comes_from_the_url() -> None:
    with pytest.raises(ValueError, match="not an annotation URL"):
        ExportedAnnotation.model_validate(
            {"url": "https://x/api/v1/documents/1", "status": "confirmed"}
        )


@given(
    net=st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    tax=st.decimals(min_value=0, max_value=10**8, places=2, allow_nan=False, allow_infinity=False),
)
def test_amounts_survive_the_mapping_exactly(net: Decimal, tax: Decimal) -> None:
    total = net + tax
    invoice = to_invoice(
        annotation(
            {
                "amount_total_base": str(net),
                "amount_total_tax": str(tax),
                "amount_total": str(total),
            },
            lines=[],
        )
    )
    assert (invoice.net_amount, invoice.tax_amount, invoice.total_amount) == (net, tax, total)
    assert invoice.net_amount + invoice.tax_amount == invoice.total_amount
