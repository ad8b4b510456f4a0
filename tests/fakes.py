"""In-memory fakes of the ports, for unit tests of the flows, and AWS test helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
from samtranslator.yaml_helper import yaml_parse

from erphub.clients.erp import Accepted, Rejected
from erphub.clients.rossum import AnnotationState
from erphub.errors import TransientError
from erphub.invoices import Invoice

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


def create_table_from_template(logical_id: str = "LedgerTable", name: str = "ledger") -> str:
    """Create a table (in the active moto mock) with the key schema the template declares."""
    properties = yaml_parse(TEMPLATE.read_text())["Resources"][logical_id]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "BillingMode": properties["BillingMode"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
    }
    if "GlobalSecondaryIndexes" in properties:
        kwargs["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    boto3.client("dynamodb").create_table(**kwargs)
    return name


def export_result(
    annotation_id: int, header: dict[str, str], status: str = "confirmed"
) -> dict[str, Any]:
    """One export JSON result in Rossum's documented shape (no id, only url)."""
    return {
        "url": f"https://acme.rossum.app/api/v1/annotations/{annotation_id}",
        "status": status,
        "content": [
            {
                "category": "section",
                "schema_id": "basic_info_section",
                "children": [
                    {"category": "datapoint", "schema_id": k, "value": v, "type": "string"}
                    for k, v in header.items()
                ],
            }
        ],
    }


def valid_header(number: str, vat: str = "DE111") -> dict[str, str]:
    return {
        "document_id": number,
        "date_issue": "2026-11-02",
        "currency": "eur",
        "amount_total_base": "100.00",
        "amount_total_tax": "19.00",
        "amount_total": "119.00",
        "sender_name": "Acme",
        "sender_vat_id": vat,
    }


class FakeRossum:
    """Rossum's export lifecycle in memory."""

    def __init__(self) -> None:
        self.annotations: dict[int, dict[str, Any]] = {}
        self.queue_of: dict[int, int] = {}
        self.export_calls: list[list[int]] = []
        self.failed_export_calls: list[tuple[int, str]] = []

    def add(self, queue_id: int, annotation_id: int, header: dict[str, str]) -> None:
        self.annotations[annotation_id] = export_result(annotation_id, header)
        self.queue_of[annotation_id] = queue_id

    def status(self, annotation_id: int) -> str:
        return str(self.annotations[annotation_id]["status"])

    def confirmed_annotations(self, queue_id: int) -> Iterator[dict[str, Any]]:
        for annotation_id, result in list(self.annotations.items()):
            if self.queue_of[annotation_id] == queue_id and result["status"] == "confirmed":
                yield dict(result)

    def mark_exported(self, queue_id: int, annotation_ids: Sequence[int]) -> dict[int, str]:
        assert 0 < len(annotation_ids) <= 100
        self.export_calls.append(list(annotation_ids))
        out = {}
        for annotation_id in annotation_ids:
            result = self.annotations.get(annotation_id)
            if result is None or self.queue_of[annotation_id] != queue_id:
                continue
            if result["status"] == "confirmed":
                result["status"] = "exported"
            out[annotation_id] = str(result["status"])
        return out

    def mark_failed_export(self, annotation_id: int, message: str) -> None:
        self.failed_export_calls.append((annotation_id, message))
        self.annotations[annotation_id]["status"] = "failed_export"

    def annotation_states(self, annotation_ids: Sequence[int]) -> dict[int, AnnotationState]:
        messages = dict(self.failed_export_calls)
        return {
            i: AnnotationState(
                str(self.annotations[i]["status"]), (messages[i],) if i in messages else ()
            )
            for i in annotation_ids
            if i in self.annotations
        }


class FakeErp:
    """The ERP contract's semantics in memory: one invoice per external reference."""

    def __init__(self, known_vat_ids: Sequence[str] = ("DE111",)) -> None:
        self.known = set(known_vat_ids)
        self.invoices: dict[str, Invoice] = {}
        self.creates: list[str] = []
        self.lookups: list[str] = []
        self.fail_next: int = 0

    def push_invoice(self, invoice: Invoice) -> Accepted | Rejected:
        if self.fail_next:
            self.fail_next -= 1
            msg = "ERP POST /invoices: HTTP 503"
            raise TransientError(msg)
        ref = invoice.external_reference
        if ref in self.invoices:
            return Accepted(erp_id=f"INV-{ref}", already_existed=True)
        if invoice.supplier.vat_id not in self.known:
            return Rejected(
                reasons=[f"supplier.vatId: unknown supplier VAT id {invoice.supplier.vat_id}"]
            )
        self.invoices[ref] = invoice
        self.creates.append(ref)
        return Accepted(erp_id=f"INV-{ref}")

    def find_invoice(self, external_reference: str) -> str | None:
        self.lookups.append(external_reference)
        return f"INV-{external_reference}" if external_reference in self.invoices else None
