"""Deterministic demo data for the simulators: confirmed Rossum invoices and ERP suppliers.

The Rossum datapoint schema ids used here are the ones the hub's mapping reads:

* ``basic_info_section``: ``document_id``, ``date_issue``, ``date_due``, ``currency``, ``order_id``
* ``amounts_section``: ``amount_total_base``, ``amount_total_tax``, ``amount_total``
* ``vendor_section``: ``sender_name``, ``sender_vat_id``, ``iban``
* ``line_items_section`` > multivalue ``line_items`` > tuple ``line_item``: ``item_description``,
  ``item_quantity``, ``item_amount_base``, ``item_rate``, ``item_total_base``

Values are normalised the way Rossum exports them: ISO dates, decimals with ``.``, lowercase
currency codes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from erphub_local.simulators.erp import ErpSimulator
    from erphub_local.simulators.rossum import RossumSimulator

__all__ = [
    "ERP_REJECTION",
    "REASONS",
    "SUPPLIERS",
    "DemoSeed",
    "LineItem",
    "Supplier",
    "build_annotation_content",
    "datapoint",
    "seed_demo",
    "seed_outgoing_demo",
]

JsonDict = dict[str, Any]
CENT = Decimal("0.01")

#: Why a seeded document must be rejected, in the order they are handed out.
REASONS = (
    "unknown_supplier",
    "totals_mismatch",
    "unsupported_currency",
    "missing_invoice_number",
    "duplicate_invoice_number",
)

#: For each reason, the ERP error detail ``(field, code)`` it produces once mapped and pushed.
ERP_REJECTION: dict[str, tuple[str, str]] = {
    "unknown_supplier": ("supplier.vatId", "unknown_supplier"),
    "totals_mismatch": ("totalAmount", "totals_mismatch"),
    "unsupported_currency": ("currency", "unsupported_currency"),
    "missing_invoice_number": ("invoiceNumber", "missing_field"),
    "duplicate_invoice_number": ("invoiceNumber", "duplicate_invoice_number"),
}


@dataclass(frozen=True)
class Supplier:
    """A supplier as it appears on invoices."""

    name: str
    vat_id: str
    iban: str


@dataclass(frozen=True)
class LineItem:
    """One invoice line; ``amount`` is the line net (quantity x unit price)."""

    description: str
    quantity: str
    unit_price: str
    tax_rate: str
    amount: str


def _iban(country: str, bban: str) -> str:
    """An IBAN with correct ISO 13616 check digits."""
    rearranged = bban + country + "00"
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


SUPPLIERS: tuple[Supplier, ...] = (
    Supplier("Acme Industriebedarf GmbH", "DE123456789", _iban("DE", "370400440532013000")),
    Supplier("Bergmann Logistik AG", "DE811907980", _iban("DE", "500105175407324931")),
    Supplier("Donau Papier GmbH", "ATU12345678", _iban("AT", "1904300234573201")),
    Supplier("Hollands Kantoor B.V.", "NL123456789B01", _iban("NL", "ABNA0417164300")),
    Supplier("Lumière Services SAS", "FR40303265045", _iban("FR", "20041010050500013M02606")),
    Supplier("Vltava Components s.r.o.", "CZ25596641", _iban("CZ", "08000000192000145399")),
    Supplier("Milano Forniture S.p.A.", "IT07643520567", _iban("IT", "X0542811101000000123456")),
    Supplier("Thames Office Supplies Ltd", "GB980780684", _iban("GB", "NWBK60161331926819")),
)

#: Not registered in the ERP.
UNKNOWN_SUPPLIERS: tuple[Supplier, ...] = (
    Supplier("Nordwind Handelskontor GmbH", "DE999000111", _iban("DE", "100100100123456789")),
    Supplier("Ostsee Maschinenbau KG", "DE999000222", _iban("DE", "200200200123456789")),
)

_ITEMS = (
    "Consulting hours",
    "Office paper A4, 500 sheets",
    "Toner cartridge",
    "Freight and handling",
    "Maintenance contract",
    "Safety gloves, size L",
    "Software licence, annual",
    "Pallet rental",
    "Cable set",
    "Packaging material",
)
_CURRENCIES = ("eur", "eur", "eur", "eur", "usd", "gbp", "chf", "czk")
_UNBOOKED_CURRENCIES = ("jpy", "pln", "sek")
_TAX_RATES = ("0", "7", "19", "21")
_FIRST_ISSUE_DATE = date(2026, 1, 5)
_EXPORT_PAGE = 100


def _gs1(body: str) -> str:
    """Append the GS1 mod-10 check digit (GLN, GTIN-13)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def datapoint(
    schema_id: str, value: str, type_: str = "string", rir_confidence: float = 0.97
) -> JsonDict:
    """One export datapoint node."""
    return {
        "category": "datapoint",
        "schema_id": schema_id,
        "value": value,
        "type": type_,
        "rir_confidence": rir_confidence,
    }


def _section(schema_id: str, children: list[JsonDict]) -> JsonDict:
    return {"category": "section", "schema_id": schema_id, "children": children}


def build_annotation_content(
    *,
    invoice_number: str = "INV-2026-00001",
    issue_date: str = "2026-03-02",
    due_date: str = "2026-04-01",
    currency: str = "eur",
    order_id: str = "",
    net: str = "100.00",
    tax: str = "19.00",
    total: str = "119.00",
    supplier_name: str = SUPPLIERS[0].name,
    supplier_vat_id: str = SUPPLIERS[0].vat_id,
    iban: str = SUPPLIERS[0].iban,
    lines: Sequence[LineItem] = (LineItem("Consulting hours", "1", "100.00", "19", "100.00"),),
    rir_confidence: float = 0.97,
) -> list[JsonDict]:
    """The export ``content`` tree (section > [multivalue > tuple >] datapoint) of an invoice."""
    conf = rir_confidence

    def dp(schema_id: str, value: str, type_: str = "string") -> JsonDict:
        return datapoint(schema_id, value, type_, conf)

    line_tuples = [
        {
            "category": "tuple",
            "schema_id": "line_item",
            "children": [
                dp("item_description", line.description),
                dp("item_quantity", line.quantity, "number"),
                dp("item_amount_base", line.unit_price, "number"),
                dp("item_rate", line.tax_rate, "number"),
                dp("item_total_base", line.amount, "number"),
            ],
        }
        for line in lines
    ]
    return [
        _section(
            "basic_info_section",
            [
                dp("document_id", invoice_number),
                dp("date_issue", issue_date, "date"),
                dp("date_due", due_date, "date"),
                dp("currency", currency),
                dp("order_id", order_id),
            ],
        ),
        _section(
            "amounts_section",
            [
                dp("amount_total_base", net, "number"),
                dp("amount_total_tax", tax, "number"),
                dp("amount_total", total, "number"),
            ],
        ),
        _section(
            "vendor_section",
            [
                dp("sender_name", supplier_name),
                dp("sender_vat_id", supplier_vat_id),
                dp("iban", iban),
            ],
        ),
        _section(
            "line_items_section",
            [{"category": "multivalue", "schema_id": "line_items", "children": line_tuples}],
        ),
    ]


@dataclass
class DemoSeed:
    """What :func:`seed_demo` created, for assertions."""

    queue_ids: tuple[int, ...]
    valid_ids: list[int] = field(default_factory=list)
    invalid: dict[int, str] = field(default_factory=dict)
    #: duplicate-number annotation id -> id of the earlier valid annotation it repeats
    duplicate_of: dict[int, int] = field(default_factory=dict)
    #: annotation id -> queue id
    queue_of: dict[int, int] = field(default_factory=dict)
    #: suppliers registered in the ERP, VAT id -> name
    suppliers: dict[str, str] = field(default_factory=dict)

    @property
    def all_ids(self) -> list[int]:
        """Every seeded annotation id, ascending."""
        return sorted([*self.valid_ids, *self.invalid])


@dataclass
class _Draft:
    """The fields of one generated invoice before it becomes a content tree."""

    supplier: Supplier
    invoice_number: str
    issue: date
    currency: str
    order_id: str
    lines: list[LineItem]
    net: Decimal
    tax: Decimal
    confidence: float

    @property
    def total(self) -> Decimal:
        return self.net + self.tax

    def content(self, *, total: Decimal | None = None) -> list[JsonDict]:
        return build_annotation_content(
            invoice_number=self.invoice_number,
            issue_date=self.issue.isoformat(),
            due_date=(self.issue + timedelta(days=30)).isoformat(),
            currency=self.currency,
            order_id=self.order_id,
            net=str(self.net),
            tax=str(self.tax),
            total=str(self.total if total is None else total),
            supplier_name=self.supplier.name,
            supplier_vat_id=self.supplier.vat_id,
            iban=self.supplier.iban,
            lines=self.lines,
            rir_confidence=self.confidence,
        )


def _draft(rng: random.Random, supplier: Supplier, number: str) -> _Draft:
    lines: list[LineItem] = []
    tax = Decimal(0)
    for _ in range(rng.randint(1, 4)):
        quantity = rng.randint(1, 20)
        unit_price = (Decimal(rng.randint(250, 60000)) / 100).quantize(CENT)
        rate = rng.choice(_TAX_RATES)
        amount = (unit_price * quantity).quantize(CENT)
        tax += (amount * Decimal(rate) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        lines.append(
            LineItem(rng.choice(_ITEMS), str(quantity), str(unit_price), rate, str(amount))
        )
    net = sum((Decimal(line.amount) for line in lines), Decimal(0))
    return _Draft(
        supplier=supplier,
        invoice_number=number,
        issue=_FIRST_ISSUE_DATE + timedelta(days=rng.randint(0, 300)),
        currency=rng.choice(_CURRENCIES),
        order_id=f"PO-{rng.randint(1000, 9999)}" if rng.random() < 0.6 else "",
        lines=lines,
        net=net,
        tax=tax.quantize(CENT),
        confidence=round(rng.uniform(0.80, 0.995), 3),
    )


def _plan(rng: random.Random, per_queue: int, invalid_ratio: float) -> dict[int, str]:
    """Position in the queue -> rejection reason; duplicates sit late, after their originals."""
    n_invalid = round(per_queue * invalid_ratio)
    reasons = [REASONS[i % len(REASONS)] for i in range(n_invalid)]
    n_duplicates = reasons.count("duplicate_invoice_number")
    # Each duplicate needs an earlier valid original, so the invalid ones need room.
    if n_invalid and per_queue < n_invalid + n_duplicates + 1:
        raise ValueError(f"per_queue={per_queue} is too small for {n_invalid} invalid documents")
    # The first positions stay valid: they are the originals the duplicates repeat. The
    # duplicates go past the first export page when the queue is long enough (so a client
    # working page by page books the original first), else into the last quarter.
    if per_queue - n_duplicates >= _EXPORT_PAGE:
        tail_start = _EXPORT_PAGE
    else:
        tail_start = max(n_duplicates + 1, per_queue - max(per_queue // 4, n_duplicates))
    duplicate_slots = rng.sample(range(tail_start, per_queue), n_duplicates)
    free = [pos for pos in range(n_duplicates, per_queue) if pos not in duplicate_slots]
    other_slots = rng.sample(free, n_invalid - n_duplicates)
    plan = dict.fromkeys(duplicate_slots, "duplicate_invoice_number")
    others = [reason for reason in reasons if reason != "duplicate_invoice_number"]
    plan.update(zip(other_slots, others, strict=True))
    return plan


def seed_demo(
    rossum: RossumSimulator,
    erp: ErpSimulator,
    *,
    queue_ids: Sequence[int] = (1001, 1002),
    per_queue: int = 130,
    invalid_ratio: float = 0.10,
    rng_seed: int = 7,
) -> DemoSeed:
    """Register the suppliers in the ERP and add confirmed invoices to each Rossum queue.

    About ``invalid_ratio`` of each queue's documents are built to be rejected by the ERP, for
    the reasons in :data:`REASONS` (handed out in turn). Works on the simulators' in-memory
    state, so the servers do not need to run. The same ``rng_seed`` gives the same documents.
    """
    rng = random.Random(rng_seed)
    seed = DemoSeed(queue_ids=tuple(queue_ids))
    for supplier in SUPPLIERS:
        erp.add_supplier(supplier.vat_id, supplier.name)
        seed.suppliers[supplier.vat_id] = supplier.name
    number = 0
    for queue_id in queue_ids:
        rossum.add_queue(queue_id)
        plan = _plan(rng, per_queue, invalid_ratio)
        # Valid documents in queue order; the n-th duplicate repeats the n-th of them.
        originals: list[tuple[int, _Draft]] = []
        for position in range(per_queue):
            number += 1
            reason = plan.get(position)
            draft = _draft(rng, rng.choice(SUPPLIERS), f"INV-2026-{number:05d}")
            total: Decimal | None = None
            original_id: int | None = None
            if reason == "unknown_supplier":
                draft.supplier = rng.choice(UNKNOWN_SUPPLIERS)
            elif reason == "totals_mismatch":
                total = draft.total + Decimal(rng.randint(1, 5000)) / 100
            elif reason == "unsupported_currency":
                draft.currency = rng.choice(_UNBOOKED_CURRENCIES)
            elif reason == "missing_invoice_number":
                draft.invoice_number = ""
            elif reason == "duplicate_invoice_number":
                n_done = sum(1 for dup in seed.duplicate_of if seed.queue_of[dup] == queue_id)
                original_id, original = originals[n_done % len(originals)]
                draft.supplier = original.supplier
                draft.invoice_number = original.invoice_number
                draft.currency = original.currency
            annotation_id = rossum.add_annotation(
                queue_id, draft.content(total=total), status="confirmed"
            )
            seed.queue_of[annotation_id] = queue_id
            if reason is None:
                seed.valid_ids.append(annotation_id)
                originals.append((annotation_id, draft))
                continue
            seed.invalid[annotation_id] = reason
            if original_id is not None:
                seed.duplicate_of[annotation_id] = original_id
    return seed


def seed_outgoing_demo(erp: ErpSimulator, count: int = 12, rng_seed: int = 7) -> list[str]:
    """Add ERP outgoing documents with an empty Procuros status; returns their ids."""
    rng = random.Random(rng_seed)
    types = ("INVOICE", "ORDER_RESPONSE", "SHIPPING_NOTICE", "CREDIT_NOTE")
    ids: list[str] = []
    for index in range(count):
        doc_type = types[index % len(types)]
        doc_id = f"OUT-{1001 + index}"
        buyer = SUPPLIERS[index % len(SUPPLIERS)]
        lines = [
            {
                "lineNumber": n + 1,
                "gtin": _gs1(f"40{rng.randint(10**9, 10**10 - 1)}"),
                "description": rng.choice(_ITEMS),
                "quantity": str(rng.randint(1, 50)),
                "unitPrice": str((Decimal(rng.randint(100, 20000)) / 100).quantize(CENT)),
                "taxRate": "19",
            }
            for n in range(rng.randint(1, 3))
        ]
        document_date = _FIRST_ISSUE_DATE + timedelta(days=rng.randint(0, 300))
        erp.add_outgoing(
            {
                "id": doc_id,
                "type": doc_type,
                "number": f"SI-2026-{1001 + index}",
                "updatedAt": f"{document_date.isoformat()}T10:00:00Z",
                "document": {
                    "documentDate": document_date.isoformat(),
                    "currency": "EUR",
                    "seller": {
                        "name": "erphub Demo GmbH",
                        "gln": _gs1("400000100000"),
                        "vatId": "DE100000001",
                    },
                    "buyer": {
                        "name": buyer.name,
                        "gln": _gs1(f"40{rng.randint(10**9, 10**10 - 1)}"),
                        "vatId": buyer.vat_id,
                    },
                    "lines": lines,
                },
            }
        )
        ids.append(doc_id)
    return ids
