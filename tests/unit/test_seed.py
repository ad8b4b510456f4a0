"""Demo seed: counts, reasons, determinism, and that each document is (in)valid as labelled.

Runs on the simulators' in-memory state and Flask's test client: no socket is opened.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from erphub_local.seed import (
    ERP_REJECTION,
    REASONS,
    SUPPLIERS,
    DemoSeed,
    build_annotation_content,
    seed_demo,
    seed_outgoing_demo,
)
from erphub_local.simulators import ErpSimulator, RossumSimulator

SCHEMA_IDS = {
    "basic_info_section": ["document_id", "date_issue", "date_due", "currency", "order_id"],
    "amounts_section": ["amount_total_base", "amount_total_tax", "amount_total"],
    "vendor_section": ["sender_name", "sender_vat_id", "iban"],
}
LINE_IDS = ["item_description", "item_quantity", "item_amount_base", "item_rate", "item_total_base"]


def _seeded(**kwargs: Any) -> tuple[RossumSimulator, ErpSimulator, DemoSeed]:
    rossum, erp = RossumSimulator(), ErpSimulator()
    return rossum, erp, seed_demo(rossum, erp, **kwargs)


def _fields(content: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Header datapoints by schema id, and the line-item tuples."""
    header: dict[str, str] = {}
    lines: list[dict[str, str]] = []
    for section in content:
        for node in section["children"]:
            if node["category"] == "datapoint":
                header[node["schema_id"]] = node["value"]
            else:
                lines += [
                    {dp["schema_id"]: dp["value"] for dp in row["children"]}
                    for row in node["children"]
                ]
    return header, lines


def _to_erp(annotation_id: int, content: list[dict[str, Any]]) -> dict[str, Any]:
    """A straightforward mapping to the ERP contract, enough to check the seed's labels."""
    header, lines = _fields(content)
    body: dict[str, Any] = {
        "externalReference": f"rossum:{annotation_id}",
        "supplier": {
            "name": header["sender_name"],
            "vatId": header["sender_vat_id"],
            "iban": header["iban"],
        },
        "invoiceNumber": header["document_id"],
        "issueDate": header["date_issue"],
        "dueDate": header["date_due"],
        "currency": header["currency"].upper(),
        "netAmount": header["amount_total_base"],
        "taxAmount": header["amount_total_tax"],
        "totalAmount": header["amount_total"],
        "purchaseOrder": header["order_id"] or None,
        "lines": [
            {
                "description": line["item_description"],
                "quantity": line["item_quantity"],
                "unitPrice": line["item_amount_base"],
                "taxRate": line["item_rate"],
                "amount": line["item_total_base"],
            }
            for line in lines
        ],
    }
    return body


def test_content_tree_uses_the_agreed_schema_ids() -> None:
    content = build_annotation_content(invoice_number="INV-1", currency="usd")

    assert [section["schema_id"] for section in content] == [
        *SCHEMA_IDS,
        "line_items_section",
    ]
    for section in content[:3]:
        assert section["category"] == "section"
        assert [dp["schema_id"] for dp in section["children"]] == SCHEMA_IDS[section["schema_id"]]
        assert all(dp["category"] == "datapoint" for dp in section["children"])
        assert all(dp["type"] in {"string", "date", "number"} for dp in section["children"])
    (multivalue,) = content[3]["children"]
    assert (multivalue["category"], multivalue["schema_id"]) == ("multivalue", "line_items")
    (row,) = multivalue["children"]
    assert (row["category"], row["schema_id"]) == ("tuple", "line_item")
    assert [dp["schema_id"] for dp in row["children"]] == LINE_IDS
    header, _ = _fields(content)
    assert header["document_id"] == "INV-1"
    assert header["currency"] == "usd"


def test_counts_and_reasons_per_queue() -> None:
    rossum, erp, seed = _seeded()

    assert seed.queue_ids == (1001, 1002)
    assert len(seed.all_ids) == 260
    assert set(seed.valid_ids).isdisjoint(seed.invalid)
    assert len(seed.invalid) == 26
    for queue_id in seed.queue_ids:
        statuses = rossum.statuses(queue_id)
        assert len(statuses) == 130
        assert set(statuses.values()) == {"confirmed"}
        reasons = Counter(r for i, r in seed.invalid.items() if seed.queue_of[i] == queue_id)
        assert set(reasons) == set(REASONS)
        assert sum(reasons.values()) == 13
    assert set(erp.suppliers.values()) == {s.name for s in SUPPLIERS}


def test_same_seed_same_documents_other_seed_other_documents() -> None:
    first_rossum, _, first = _seeded(rng_seed=11)
    second_rossum, _, second = _seeded(rng_seed=11)
    other_rossum, _, other = _seeded(rng_seed=12)

    def contents(rossum: RossumSimulator, seed: DemoSeed) -> list[Any]:
        return [rossum.annotation(i)["content"] for i in seed.all_ids]

    assert first == second
    assert contents(first_rossum, first) == contents(second_rossum, second)
    assert contents(first_rossum, first) != contents(other_rossum, other)


def test_duplicates_follow_their_valid_original_on_a_later_page() -> None:
    rossum, _, seed = _seeded()

    assert set(seed.duplicate_of) == {
        i for i, r in seed.invalid.items() if r == "duplicate_invoice_number"
    }
    for duplicate, original in seed.duplicate_of.items():
        assert original in seed.valid_ids
        assert original < duplicate
        assert seed.queue_of[original] == seed.queue_of[duplicate]
        queue_ids = sorted(rossum.statuses(seed.queue_of[duplicate]))
        # More than one export page (100) apart: a page-by-page client books the original first.
        assert queue_ids.index(duplicate) >= 100 > queue_ids.index(original)
        dup_header, _ = _fields(rossum.annotation(duplicate)["content"])
        orig_header, _ = _fields(rossum.annotation(original)["content"])
        assert dup_header["document_id"] == orig_header["document_id"]
        assert dup_header["sender_vat_id"] == orig_header["sender_vat_id"]


def test_the_erp_accepts_the_valid_and_rejects_the_invalid_for_the_labelled_reason() -> None:
    rossum, erp, seed = _seeded()
    client = erp.app.test_client()
    headers = {"Authorization": f"Bearer {erp.token}"}

    outcomes: dict[int, Any] = {}
    for annotation_id in seed.all_ids:
        body = _to_erp(annotation_id, rossum.annotation(annotation_id)["content"])
        outcomes[annotation_id] = client.post("/invoices", json=body, headers=headers)

    for annotation_id in seed.valid_ids:
        assert outcomes[annotation_id].status_code == 201, outcomes[annotation_id].json
    for annotation_id, reason in seed.invalid.items():
        response = outcomes[annotation_id]
        assert response.status_code == 422, (reason, response.json)
        details = [(d["field"], d["code"]) for d in response.json["details"]]
        assert details == [ERP_REJECTION[reason]], reason
    assert len(erp.invoices) == len(seed.valid_ids)


def test_small_queues_and_ratio_zero() -> None:
    _, _, small = _seeded(queue_ids=(5,), per_queue=10)
    _, _, clean = _seeded(queue_ids=(5,), per_queue=20, invalid_ratio=0.0)

    assert len(small.all_ids) == 10
    assert list(small.invalid.values()) == ["unknown_supplier"]
    assert clean.invalid == {}
    with pytest.raises(ValueError, match="too small"):
        _seeded(queue_ids=(5,), per_queue=4, invalid_ratio=1.0)


def test_outgoing_demo_documents_wait_for_procuros() -> None:
    erp = ErpSimulator()

    ids = seed_outgoing_demo(erp, count=6)

    docs = erp.outgoing_documents
    assert sorted(docs) == sorted(ids)
    assert {doc["procurosStatus"] for doc in docs.values()} == {None}
    assert {doc["type"] for doc in docs.values()} == {
        "INVOICE",
        "ORDER_RESPONSE",
        "SHIPPING_NOTICE",
        "CREDIT_NOTE",
    }
    assert all(doc["document"]["lines"] for doc in docs.values())
