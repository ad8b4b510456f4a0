"""A queue with a customised schema exports after a change of the mapping file alone.

The Rossum simulator is seeded with annotations of a customer's own schema: German schema ids,
dates as DD.MM.YYYY, amounts written 1.234,56, currency symbols, no net amount, and the line
items in a multivalue of another name. The same template, handlers and code run; only
ROSSUM_MAPPING points at a mapping file for that schema (a file path, or an SSM parameter).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from erphub.invoices import ExportedAnnotation
from erphub.mapping import MappingError, load_mapping, to_invoice
from erphub_local import config
from erphub_local.aws.stack import LocalStack
from erphub_local.runner import run_flow
from erphub_local.simulators import ErpSimulator, RossumSimulator

pytestmark = pytest.mark.integration

QUEUE = 2001
TICK = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SUPPLIERS = {"DE 123 456 789": "Acme Industriebedarf GmbH", "ATU12345678": "Donau Papier GmbH"}

MAPPING = """\
# The customer's schema: German ids, European number and date formats, lines in "positionen".
kind: rossum-invoice
version: 1
decimal: {separator: ",", group: ["."]}
date: {formats: ["%d.%m.%Y"]}
fields:
  invoiceNumber: rechnungsnummer
  issueDate: rechnungsdatum
  dueDate: [faellig_am, zahlbar_bis]
  currency:
    from: waehrung
    type: currency
    values: {"€": EUR, "£": GBP, "Kč": CZK}
  supplier.name: lieferant_name
  supplier.vatId: lieferant_ust_id
  totalAmount: {from: betrag_brutto, round: 2}
  taxAmount: {from: betrag_mwst, round: 2}
  # Not on these invoices: computed from the lines, or from the two totals.
  netAmount:
    compute: "coalesce(sum(lines.amount), totalAmount - taxAmount)"
    round: 2
  purchaseOrder: {from: bestellnummer, default: "ohne"}
lists:
  lines:
    from: positionen
    fields:
      description: {from: pos_text, default: ""}
      quantity: {from: pos_menge, default: 1}
      unitPrice: pos_einzelpreis
      taxRate: {from: pos_steuersatz, default: 19}
      amount: {from: pos_betrag, compute: "quantity * unitPrice", round: 2}
"""


def dp(schema_id: str, value: str) -> dict[str, Any]:
    return {"category": "datapoint", "schema_id": schema_id, "value": value, "type": "string"}


def euro(amount: Decimal) -> str:
    """1234.5 -> '1.234,50'."""
    whole, cents = f"{amount:.2f}".split(".")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return ".".join(groups) + "," + cents


def custom_content(
    number: str, vat: str, lines: list[tuple[str, int, Decimal]], **extra: str
) -> list[dict[str, Any]]:
    """An annotation of the customer's schema; ``lines`` are (text, quantity, unit price)."""
    net = sum((q * p for _, q, p in lines), Decimal(0))
    tax = (net * Decimal("0.19")).quantize(Decimal("0.01"))
    header = {
        "rechnungsnummer": number,
        "rechnungsdatum": "02.11.2026",
        "zahlbar_bis": "02.12.2026",
        "waehrung": "€",
        "lieferant_name": SUPPLIERS.get(vat, "Unbekannt GmbH"),
        "lieferant_ust_id": vat,
        "betrag_brutto": euro(net + tax),
        "betrag_mwst": euro(tax),
        **extra,
    }
    rows = [
        {
            "category": "tuple",
            "schema_id": "position",
            "children": [
                dp("pos_text", text),
                dp("pos_menge", str(quantity)),
                dp("pos_einzelpreis", euro(price)),
            ],
        }
        for text, quantity, price in lines
    ]
    return [
        {
            "category": "section",
            "schema_id": "kopfdaten",
            "children": [dp(k, v) for k, v in header.items()],
        },
        {
            "category": "section",
            "schema_id": "tabelle",
            "children": [{"category": "multivalue", "schema_id": "positionen", "children": rows}],
        },
    ]


@dataclass
class Queue:
    rossum: RossumSimulator
    erp: ErpSimulator
    valid: dict[int, str]
    invalid: dict[int, str]


def seed(rossum: RossumSimulator, erp: ErpSimulator, count: int = 24) -> Queue:
    for vat, name in SUPPLIERS.items():
        erp.add_supplier(vat, name)
    queue = Queue(rossum, erp, {}, {})
    for n in range(count):
        vat = list(SUPPLIERS)[n % 2]
        lines = [("Beratung", 1 + n % 3, Decimal("1250.00")), ("Reisekosten", 1, Decimal("89.90"))]
        annotation_id = rossum.add_annotation(QUEUE, custom_content(f"RE-{n:04d}", vat, lines))
        queue.valid[annotation_id] = f"RE-{n:04d}"
    broken = {
        "a date that is not DD.MM.YYYY": custom_content(
            "RE-9001", "ATU12345678", [("x", 1, Decimal(1))], rechnungsdatum="2026-11-02"
        ),
        "an unknown supplier": custom_content("RE-9002", "DE999000111", [("x", 1, Decimal(1))]),
    }
    for why, content in broken.items():
        queue.invalid[rossum.add_annotation(QUEUE, content)] = why
    return queue


@pytest.fixture
def sims() -> Iterator[tuple[RossumSimulator, ErpSimulator]]:
    with RossumSimulator() as rossum, ErpSimulator() as erp:
        yield rossum, erp


def stack_for(rossum: RossumSimulator, erp: ErpSimulator, **variables: str) -> LocalStack:
    settings = config.load(
        {
            **rossum.hub_env(),
            "ROSSUM_QUEUE_IDS": str(QUEUE),
            **erp.hub_env(),
            "HTTP_BACKOFF_SECONDS": "0.01",
            **variables,
        },
        env_file=config.STATE_DIR / "none",
    )
    return LocalStack(
        config.TEMPLATE,
        parameters=settings.parameters,
        secret_values=settings.secret_values,
        env_overrides=settings.env_overrides,
    )


def check_exported(queue: Queue) -> None:
    statuses = queue.rossum.statuses(QUEUE)
    assert {i: statuses[i] for i in queue.valid} == dict.fromkeys(queue.valid, "exported")
    assert {i: statuses[i] for i in queue.invalid} == dict.fromkeys(queue.invalid, "failed_export")
    booked = {inv["externalReference"]: inv for inv in queue.erp.invoices.values()}
    assert set(booked) == {f"rossum:{i}" for i in queue.valid}
    first = booked[f"rossum:{min(queue.valid)}"]
    assert first["invoiceNumber"] == "RE-0000"
    assert (first["issueDate"], first["dueDate"], first["currency"]) == (
        "2026-11-02",
        "2026-12-02",
        "EUR",
    )
    assert (first["netAmount"], first["taxAmount"], first["totalAmount"]) == (
        "1339.90",
        "254.58",
        "1594.48",
    )
    assert first["purchaseOrder"] == "ohne"
    assert [(line["description"], line["amount"]) for line in first["lines"]] == [
        ("Beratung", "1250.00"),
        ("Reisekosten", "89.90"),
    ]
    messages = {i: queue.rossum.annotation(i)["messages"][0]["content"] for i in queue.invalid}
    dated = next(i for i, why in queue.invalid.items() if why.startswith("a date"))
    assert "rechnungsdatum: '2026-11-02' is not a date (DD.MM.YYYY)" in messages[dated]
    unknown = next(i for i, why in queue.invalid.items() if why == "an unknown supplier")
    assert "Unknown supplier VAT id DE999000111" in messages[unknown]


def test_the_default_mapping_cannot_read_the_custom_schema(sims: tuple[Any, Any]) -> None:
    rossum, erp = sims
    queue = seed(rossum, erp, count=1)
    annotation_id = next(iter(queue.valid))
    annotation = ExportedAnnotation.model_validate(
        {"url": f"https://x/api/v1/annotations/{annotation_id}", "status": "confirmed"}
        | {"content": rossum.annotation(annotation_id)["content"]}
    )
    with pytest.raises(MappingError, match="document_id: missing"):
        to_invoice(annotation)


def test_a_custom_schema_exports_with_a_mapping_file(sims: tuple[Any, Any], tmp_path: Path) -> None:
    rossum, erp = sims
    queue = seed(rossum, erp)
    mapping = tmp_path / "acme-rossum.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    load_mapping(str(mapping))  # what `erphub map check` does

    with stack_for(rossum, erp, ROSSUM_MAPPING=str(mapping)) as stack:
        executions = run_flow(stack, "rossum-export", when=TICK)

    assert [e.status for e in executions] == ["SUCCEEDED"]
    assert executions[0].output["finalize"]["exported"] == len(queue.valid)
    check_exported(queue)


def test_a_custom_schema_exports_with_a_mapping_in_parameter_store(
    sims: tuple[Any, Any],
) -> None:
    rossum, erp = sims
    queue = seed(rossum, erp)
    name = "/erphub/test/mappings/rossum"

    with stack_for(rossum, erp, ROSSUM_MAPPING_PARAMETER=name) as stack:
        stack.client("ssm").put_parameter(Name=name, Value=MAPPING, Type="String")
        dry = run_flow(stack, "rossum-export", when=TICK, dry_run=True)
        assert dry[0].output["finalize"]["accepted"] == len(queue.valid)
        assert not erp.invoices
        executions = run_flow(stack, "rossum-export", when=TICK + timedelta(minutes=5))

    assert [e.status for e in executions] == ["SUCCEEDED"]
    check_exported(queue)


def test_a_broken_mapping_fails_the_run_naming_its_line(
    sims: tuple[Any, Any], tmp_path: Path
) -> None:
    rossum, erp = sims
    queue = seed(rossum, erp, count=2)
    mapping = tmp_path / "broken.yaml"
    text = MAPPING.replace("taxAmount: {from: betrag_mwst", "taxAmont: {from: x")
    mapping.write_text(text, encoding="utf-8")
    line = text.splitlines().index("  taxAmont: {from: x, round: 2}") + 1

    with stack_for(rossum, erp, ROSSUM_MAPPING=str(mapping)) as stack:
        (execution,) = run_flow(stack, "rossum-export", when=TICK)

    assert execution.status == "FAILED"
    assert execution.error == "MappingFileError"
    cause = execution.cause or ""
    assert f"{mapping}:{line}: fields: the invoice has no field 'taxAmont'" in cause
    assert "taxAmount is required by the invoice but not mapped" in cause
    assert not erp.invoices
    # Claimed, not sent: the next run (with a fixed mapping) looks each one up first.
    assert set(queue.rossum.statuses(QUEUE).values()) == {"confirmed"}
