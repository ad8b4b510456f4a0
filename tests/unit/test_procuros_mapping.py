"""ERP outgoing document -> Procuros transaction: properties of the pure mapping."""

from __future__ import annotations

import json
import random
import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from erphub.clients.erp_port import OutgoingDocument
from erphub.procuros_mapping import (
    IDENTIFIER_FIELDS,
    MappingError,
    identifier_of,
    procuros_datetime,
    to_transaction,
)

FALLBACK = Path(__file__).resolve().parents[2] / "contracts" / "procuros-transactions.schema.json"
#: The pattern of the spec's DateTime schema (matched with search, as JSON Schema does).
SPEC_DATETIME = re.compile(r"\d{4}(.\d{2}){2}(\s|T)(\d{2}.){2}\d{2}(.\d{6}(Z?))?")
DATE_FIELDS = re.compile(r"(Date|DueDate)$")
TYPES = sorted(IDENTIFIER_FIELDS)

digits = st.text(alphabet="0123456789", min_size=13, max_size=13)
days = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))
quantities = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**6), places=3)
prices = st.decimals(min_value=Decimal(0), max_value=Decimal(10**5), places=2)
rates = st.sampled_from([Decimal(0), Decimal(7), Decimal(19), Decimal("20.5")])
numbers = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/", min_size=1, max_size=30)


@st.composite
def parties(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(st.text(min_size=1, max_size=40)),
        "gln": draw(digits),
        "vatId": draw(st.sampled_from(["DE123456789", "ATU12345678", "FR40303265045"])),
    }


@st.composite
def lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        {
            "lineNumber": n,
            "gtin": draw(digits),
            "description": draw(st.text(max_size=40)),
            "quantity": str(draw(quantities)),
            "unitPrice": str(draw(prices)),
            "taxRate": str(draw(rates)),
            "unitOfMeasure": "EA",
        }
        for n in range(1, count + 1)
    ]


@st.composite
def complete_documents(draw: st.DrawFn, kind: str | None = None) -> OutgoingDocument:
    """ERP documents with every field Procuros requires for their type."""
    kind = kind or draw(st.sampled_from(TYPES))
    fields: dict[str, Any] = {
        "documentDate": draw(days).isoformat(),
        "currency": "EUR",
        "seller": draw(parties()),
        "buyer": draw(parties()),
        "orderNumber": draw(numbers),
        "orderDate": draw(days).isoformat(),
        "shippingNoticeNumber": draw(numbers),
        "shippingNoticeDate": draw(days).isoformat(),
        "invoiceNumber": draw(numbers),
        "invoiceDate": draw(days).isoformat(),
        "deliveryDate": draw(days).isoformat(),
        "lines": draw(lines()),
    }
    if kind == "ORDER_RESPONSE":
        fields["responseType"] = draw(st.sampled_from(["ACCEPT", "CHANGE", "REJECT"]))
    return OutgoingDocument(
        id=f"OUT-{draw(st.integers(1, 10**6))}",
        type=kind,
        number=draw(numbers),
        document=fields,
    )


def walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (dotted path, leaf value) of a JSON value."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in walk(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in walk(item, f"{path}.{i}")]
    return [(path, value)]


def mapped_lines(content: dict[str, Any]) -> list[dict[str, Any]]:
    if "transportUnits" in content:
        return [item for unit in content["transportUnits"] for item in unit["items"]]
    return list(content.get("items", []))


#: Enough examples to find edge cases (rounding, key order), few enough to stay fast.
PROPERTY = settings(max_examples=50, deadline=None)


@pytest.fixture(scope="module")
def fallback() -> Draft202012Validator:
    return Draft202012Validator(json.loads(FALLBACK.read_text()))


@PROPERTY
@given(complete_documents())
def test_the_type_and_the_document_number_are_kept(document: OutgoingDocument) -> None:
    transaction = to_transaction(document)
    assert transaction.type == document.type
    assert transaction.identifier == document.number
    assert identifier_of(document.type, transaction.content) == document.number


@PROPERTY
@given(complete_documents(), st.randoms(use_true_random=False))
def test_the_same_document_always_maps_to_the_same_bytes(
    document: OutgoingDocument, rng: random.Random
) -> None:
    """Procuros recognises a resend by its bytes: key order in the ERP's JSON must not matter."""

    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rng.shuffle(items)
            return {key: shuffled(item) for key, item in items}
        if isinstance(value, list):
            return [shuffled(item) for item in value]
        return value

    again = document.model_copy(update={"document": shuffled(document.document)})
    assert to_transaction(again).body() == to_transaction(document).body()
    assert json.loads(to_transaction(document).body()) == {
        "type": document.type,
        "content": to_transaction(document).content,
    }


@PROPERTY
@given(complete_documents())
def test_every_line_keeps_its_number_and_quantity(document: OutgoingDocument) -> None:
    content = to_transaction(document).content
    erp_lines = document.document["lines"]
    if document.type == "ORDER_RESPONSE" and document.document["responseType"] == "REJECT":
        assert "items" not in content  # the spec prohibits items on a rejection
        return
    items = mapped_lines(content)
    assert [item["lineNumber"] for item in items] == [line["lineNumber"] for line in erp_lines]
    key = {"ORDER_RESPONSE": "confirmedQuantity", "SHIPPING_NOTICE": "shippedQuantity"}.get(
        document.type, "quantity"
    )
    for item, line in zip(items, erp_lines, strict=True):
        assert Decimal(str(item[key])) == Decimal(line["quantity"])
        assert item["identifiers"] == [{"identifier": line["gtin"], "domain": "GS1"}]


@PROPERTY
@given(complete_documents())
def test_every_date_is_a_spec_datetime_on_the_same_day(document: OutgoingDocument) -> None:
    content = to_transaction(document).content
    dated = [(path, value) for path, value in walk(content) if DATE_FIELDS.search(path)]
    assert dated
    for path, value in dated:
        assert SPEC_DATETIME.search(value), (path, value)
        parsed = datetime.fromisoformat(value)
        assert parsed.tzinfo is not None, (path, value)
        assert parsed.date().isoformat() in {
            v for k, v in document.document.items() if k.endswith("Date")
        }, (path, value)


@PROPERTY
@given(complete_documents())
def test_parties_carry_their_gln_and_only_german_vat_ids(document: OutgoingDocument) -> None:
    header = to_transaction(document).content["header"]
    for side, erp in (("buyer", "buyer"), ("supplier", "seller")):
        identifiers = header[side]["identifiers"]
        party = document.document[erp]
        assert {"identifier": party["gln"], "domain": "GS1"} in identifiers
        vat = [i for i in identifiers if i["domain"] == "VAT_DE"]
        assert vat == (
            [{"identifier": party["vatId"], "domain": "VAT_DE"}]
            if party["vatId"].startswith("DE")
            else []
        )


@PROPERTY
@given(st.one_of(complete_documents("INVOICE"), complete_documents("CREDIT_NOTE")))
def test_the_summary_adds_up(document: OutgoingDocument) -> None:
    content = to_transaction(document).content
    summary = content["summary"]
    cents = Decimal("0.01")

    def money(value: float) -> Decimal:
        return Decimal(str(value)).quantize(cents)

    line_nets = sum(
        (
            (Decimal(line["quantity"]) * Decimal(line["unitPrice"])).quantize(
                cents, rounding=ROUND_HALF_UP
            )
            for line in document.document["lines"]
        ),
        Decimal(0),
    )
    assert money(summary["netAmount"]) == line_nets
    assert money(summary["grossAmount"]) == money(summary["netAmount"]) + money(
        summary["tax"]["total"]
    )
    assert summary["dueAmount"] == summary["grossAmount"]
    per_rate = sum((money(item["taxAmount"]) for item in summary["tax"]["items"]), Decimal(0))
    assert per_rate == money(summary["tax"]["total"])
    item_taxes = sum((money(item["tax"]["amount"]) for item in content["items"]), Decimal(0))
    assert item_taxes == money(summary["tax"]["total"])


@PROPERTY
@given(complete_documents())
def test_complete_documents_satisfy_the_projects_schema(
    fallback: Draft202012Validator, document: OutgoingDocument
) -> None:
    body = json.loads(to_transaction(document).body())
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in fallback.iter_errors(body)]
    assert problems == []


def test_a_document_missing_what_procuros_requires_is_mapped_and_left_to_procuros(
    fallback: Draft202012Validator,
) -> None:
    document = OutgoingDocument(
        id="OUT-7",
        type="INVOICE",
        number="INV-7",
        document={"documentDate": "2026-03-02", "lines": [{"lineNumber": 1, "quantity": "2"}]},
    )
    body = json.loads(to_transaction(document).body())
    missing = {
        ".".join(map(str, e.absolute_path)) + ":" + e.message for e in fallback.iter_errors(body)
    }
    assert "content.header:'orderIdentifier' is a required property" in missing
    assert "content.header.buyer.identifiers:[] should be non-empty" in missing
    assert "content.items.0:'tax' is a required property" in missing
    assert "summary" not in body["content"]  # no prices: no totals to state


@PROPERTY
@given(
    st.sampled_from(TYPES),
    st.sampled_from(["twelve", "1,5", "", "NaN", "Infinity"]),
)
def test_an_unreadable_quantity_is_a_mapping_error_naming_the_document_and_field(
    kind: str, quantity: str
) -> None:
    document = OutgoingDocument(
        id="OUT-9",
        type=kind,
        number="N-9",
        document={"documentDate": "2026-03-02", "lines": [{"lineNumber": 1, "quantity": quantity}]},
    )
    with pytest.raises(MappingError) as raised:
        to_transaction(document)
    assert raised.value.problems
    assert all(p.startswith("OUT-9: document.lines.0.quantity") for p in raised.value.problems)


def test_a_date_that_is_not_a_date_names_its_field() -> None:
    document = OutgoingDocument(
        id="OUT-3", type="CREDIT_NOTE", number="C-3", document={"documentDate": "31.02.2026"}
    )
    with pytest.raises(MappingError, match=r"OUT-3: document.documentDate: "):
        to_transaction(document)


def test_a_type_erphub_does_not_send_is_a_mapping_error() -> None:
    document = OutgoingDocument(id="OUT-4", type="ORDER", number="PO-4", document={})
    with pytest.raises(MappingError, match="type 'ORDER' is not one erphub sends"):
        to_transaction(document)


def test_a_shipping_notice_packs_lines_into_their_transport_units() -> None:
    document = OutgoingDocument(
        id="OUT-5",
        type="SHIPPING_NOTICE",
        number="ASN-5",
        document={
            "documentDate": "2026-03-02",
            "orderNumber": "PO-5",
            "transportUnits": [
                {"sscc": "340000000000000017", "unitType": "EURO_PALLET", "lineNumbers": [2]},
                {"sscc": "340000000000000024", "unitType": "CARTON", "lineNumbers": [1, 3]},
            ],
            "lines": [
                {"lineNumber": n, "gtin": f"400000000000{n}", "quantity": "1"} for n in (1, 2, 3)
            ],
        },
    )
    units = to_transaction(document).content["transportUnits"]
    assert [u["unitIdentifier"] for u in units] == ["340000000000000017", "340000000000000024"]
    assert [[i["lineNumber"] for i in u["items"]] for u in units] == [[2], [1, 3]]
    assert units[0]["unitType"] == "EURO_PALLET"


def test_procuros_datetime_is_midnight_utc_of_the_day() -> None:
    assert procuros_datetime(date(2021, 10, 23)) == "2021-10-23T00:00:00.000000Z"
    assert procuros_datetime(None) is None
