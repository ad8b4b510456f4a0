"""Demo section: ERP -> Procuros outgoing transactions.

Seeds the ERP with outgoing documents of the four types (most valid, some for a trade partner
whose relationship is inactive, some Procuros refuses, a few the hub cannot even read, and some
already sent) and Procuros with the connection's history (an incoming order from each trade
partner; none from the buyer Procuros cannot resolve), runs the send as the schedule would until
the refused ones reach the error-report threshold and once more, and checks the Procuros status
rules after every run. Two ERP status updates fail on the first run, to show that the next run
repeats only the update.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.table import Table

from erphub.settings import HttpSettings
from erphub_local.demo import SimulatedSection
from erphub_local.runner import run_flow
from erphub_local.simulators import ErpSimulator, Fault, ProcurosSimulator

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from erphub_local.aws.stack import Execution, LocalStack
    from erphub_local.demo import DemoReport

__all__ = ["OutgoingSeed", "ProcurosSendDemo", "run_totals", "seed_history", "seed_outgoing"]

SECTION = "procuros-send"
FLOW = "procuros-send"
TYPES = ("INVOICE", "ORDER_RESPONSE", "SHIPPING_NOTICE", "CREDIT_NOTE")
NUMBER_PREFIX = {
    "INVOICE": "INV",
    "ORDER_RESPONSE": "ORS",
    "SHIPPING_NOTICE": "ASN",
    "CREDIT_NOTE": "CRN",
}
#: Why Procuros refuses a seeded document, handed out in turn.
REFUSALS = ("unknown_buyer", "missing_reference", "line_without_gtin")
_FIRST_DAY = date(2026, 3, 2)
_ITEMS = ("Mineral water 0.5 l", "Apple juice 1 l", "Oat biscuits", "Coffee beans 1 kg")


def gs1(body: str) -> str:
    """``body`` plus its GS1 mod-10 check digit (GLN, GTIN-13)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def _party(name: str, gln_body: str, vat: str | None, city: str) -> dict[str, Any]:
    party: dict[str, Any] = {
        "name": name,
        "gln": gs1(gln_body),
        "address": {"street": "Hauptstrasse 1", "city": city, "postalCode": "10115"},
    }
    party["address"]["countryCode"] = "DE"
    if vat:
        party["vatId"] = vat
    return party


SELLER = _party("erphub Demo GmbH", "400000100000", "DE100000001", "Berlin")
PARTNERS = tuple(
    _party(name, f"40123450{n:04d}", f"DE20000000{n}", city)
    for n, (name, city) in enumerate(
        (
            ("Frischmarkt Nord GmbH", "Hamburg"),
            ("Sonnen Drogerie AG", "Munich"),
            ("Kaufhaus Rhein KG", "Cologne"),
            ("Bio Laden eG", "Leipzig"),
            ("Getraenke Express GmbH", "Dresden"),
            ("Markt am Main GmbH", "Frankfurt"),
        ),
        start=1,
    )
)
INACTIVE_PARTNER = _party("Neukunde Sued GmbH", "401234509999", "DE299999999", "Stuttgart")
UNKNOWN_BUYER = _party("Unbekannt Handels GmbH", "409999900001", None, "Bremen")
#: How long before the seeding the trade partners' incoming orders were created.
HISTORY_AGE = timedelta(days=30)


@dataclass
class OutgoingSeed:
    """What :func:`seed_outgoing` created, and the outcome each document must reach."""

    transmit: list[str] = field(default_factory=list)
    no_action: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    already_sent: list[str] = field(default_factory=list)
    numbers: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @property
    def pending(self) -> list[str]:
        """The documents with an empty Procuros status when seeded."""
        return sorted([*self.transmit, *self.no_action, *self.refused, *self.unreadable])

    @property
    def failing(self) -> list[str]:
        """The documents that stay empty: refused by Procuros or unreadable."""
        return sorted([*self.refused, *self.unreadable])


def _lines(rng: random.Random, kind: str) -> list[dict[str, Any]]:
    lines = []
    for number in range(1, rng.randint(1, 3) + 1):
        quantity = rng.randint(1, 40)
        line: dict[str, Any] = {
            "lineNumber": number,
            "gtin": gs1(f"40000{rng.randint(10**6, 10**7 - 1)}"),
            "description": rng.choice(_ITEMS),
            "quantity": str(quantity),
            "unitOfMeasure": "EA",
        }
        if kind in ("INVOICE", "CREDIT_NOTE", "ORDER_RESPONSE"):
            line["unitPrice"] = str(Decimal(rng.randint(50, 5000)) / 100)
        if kind in ("INVOICE", "CREDIT_NOTE"):
            line["taxRate"] = rng.choice(("7", "19"))
        if kind in ("ORDER_RESPONSE", "SHIPPING_NOTICE"):
            line["orderedQuantity"] = str(quantity)
            line["orderLineNumber"] = number
        lines.append(line)
    return lines


def _document(rng: random.Random, kind: str, buyer: dict[str, Any], day: date) -> dict[str, Any]:
    order_day = day - timedelta(days=rng.randint(3, 10))
    document: dict[str, Any] = {
        "documentDate": day.isoformat(),
        "currency": "EUR",
        "seller": SELLER,
        "buyer": buyer,
        "lines": _lines(rng, kind),
    }
    if kind == "CREDIT_NOTE":
        document |= {
            "invoiceNumber": f"INV-2025-{rng.randint(1, 9999):05d}",
            "invoiceDate": (day - timedelta(days=30)).isoformat(),
            "creditNoteType": "CORRECTION",
            "reason": "Damaged goods",
        }
        return document
    document |= {
        "orderNumber": f"PO-{rng.randint(10000, 99999)}",
        "orderDate": order_day.isoformat(),
    }
    if kind == "INVOICE":
        document |= {
            "dueDate": (day + timedelta(days=30)).isoformat(),
            "shippingNoticeNumber": f"ASN-{rng.randint(10000, 99999)}",
            "shippingNoticeDate": (day - timedelta(days=1)).isoformat(),
        }
    elif kind == "ORDER_RESPONSE":
        document |= {
            "responseType": "ACCEPT",
            "deliveryDate": (day + timedelta(days=5)).isoformat(),
        }
    else:
        document |= {
            "despatchDate": day.isoformat(),
            "deliveryDate": (day + timedelta(days=2)).isoformat(),
            "sscc": f"34000{rng.randint(10**12, 10**13 - 1)}",
            "carrier": "DHL",
        }
    return document


def _refuse(document: dict[str, Any], kind: str, reason: str) -> None:
    """Make a document one Procuros refuses, for ``reason``."""
    if reason == "unknown_buyer":
        document["buyer"] = UNKNOWN_BUYER
    elif reason == "missing_reference" and kind == "CREDIT_NOTE":
        document["lines"][0].pop("unitPrice")
    elif reason == "missing_reference":
        document.pop("orderNumber")
    else:
        document["lines"][0].pop("gtin")


def _incoming_order(buyer: dict[str, Any], number: int, day: date) -> dict[str, Any]:
    """The content of an ORDER ``buyer`` sent to the demo seller through Procuros on ``day``."""

    def party(who: dict[str, Any]) -> dict[str, Any]:
        return {"name": who["name"], "identifiers": [{"identifier": who["gln"], "domain": "GS1"}]}

    return {
        "header": {
            "buyer": party(buyer),
            "supplier": party(SELLER),
            "orderIdentifier": f"PO-IN-{number:05d}",
            "orderDate": f"{day.isoformat()}T00:00:00.000000Z",
            "currency": "EUR",
        },
        "items": [
            {
                "lineNumber": 1,
                "identifiers": [{"identifier": gs1(f"400000{number:06d}"), "domain": "GS1"}],
                "isDepositItem": False,
                "quantity": 20,
                "unitOfMeasure": "EA",
            }
        ],
    }


def seed_history(procuros: ProcurosSimulator) -> None:
    """Give every trade partner Procuros knows some history: an incoming ORDER each, created
    :data:`HISTORY_AGE` ago (a test order for the partner whose relationship is not yet live).

    The buyer Procuros cannot resolve has none. A dry run tells the two apart by this history.
    """
    created_at = procuros.clock() - HISTORY_AGE
    day = created_at.date()
    for number, partner in enumerate(PARTNERS, start=1):
        procuros.receive("ORDER", _incoming_order(partner, number, day), created_at=created_at)
    procuros.receive(
        "ORDER",
        _incoming_order(INACTIVE_PARTNER, len(PARTNERS) + 1, day),
        flow="TEST",
        created_at=created_at,
    )


def seed_outgoing(
    erp: ErpSimulator,
    procuros: ProcurosSimulator,
    *,
    count: int = 120,
    inactive_ratio: float = 0.10,
    refused_ratio: float = 0.10,
    unreadable: int = 3,
    already_sent: int = 5,
    rng_seed: int = 11,
    id_prefix: str = "PRC",
) -> OutgoingSeed:
    """Register the trade partners in Procuros with their history (:func:`seed_history`) and
    add outgoing documents to the ERP.

    Works on the simulators' in-memory state (they need not run). The same ``rng_seed`` gives
    the same documents.
    """
    rng = random.Random(rng_seed)
    for partner in PARTNERS:
        procuros.add_trade_partner(partner["gln"])
    procuros.add_trade_partner(INACTIVE_PARTNER["gln"], active=False)
    seed_history(procuros)
    n_inactive, n_refused = round(count * inactive_ratio), round(count * refused_ratio)
    if n_inactive + n_refused + unreadable > count:
        raise ValueError(f"count={count} is too small for the special documents")
    special = rng.sample(range(count), n_inactive + n_refused + unreadable)
    inactive = set(special[:n_inactive])
    refused = dict(
        zip(special[n_inactive : n_inactive + n_refused], REFUSALS * count, strict=False)
    )
    broken = set(special[n_inactive + n_refused :])
    seed = OutgoingSeed()
    for index in range(count + already_sent):
        kind = TYPES[index % len(TYPES)]
        doc_id = f"{id_prefix}-{index + 1:04d}"
        number = f"{NUMBER_PREFIX[kind]}-2026-{index + 1:05d}"
        day = _FIRST_DAY + timedelta(days=rng.randint(0, 200))
        buyer = INACTIVE_PARTNER if index in inactive else rng.choice(PARTNERS)
        document = _document(rng, kind, buyer, day)
        stored: dict[str, Any] = {
            "id": doc_id,
            "type": kind,
            "number": number,
            "updatedAt": f"{day.isoformat()}T08:00:00Z",
            "document": document,
        }
        seed.numbers[doc_id], seed.types[doc_id] = number, kind
        if index >= count:
            stored |= {"procurosStatus": "TRANSMITTED", "procurosTransactionId": f"sent-{index}"}
            seed.already_sent.append(doc_id)
        elif index in refused:
            _refuse(document, kind, refused[index])
            seed.refused[doc_id] = refused[index]
        elif index in broken:
            document["lines"][0]["quantity"] = "twelve"
            seed.unreadable.append(doc_id)
        elif index in inactive:
            seed.no_action.append(doc_id)
        else:
            seed.transmit.append(doc_id)
        erp.add_outgoing(stored)
    return seed


def _progress(status: Status, prefix: str, message: str) -> None:
    status.update(prefix + message)


def run_totals(executions: list[Execution]) -> dict[str, int]:
    """The list and send counts of some executions, summed over their chunks."""
    totals: dict[str, int] = {}
    for execution in executions:
        output = execution.output if isinstance(execution.output, dict) else {}
        parts = [output.get("list") or {}, *(output.get("send") or [])]
        for part in parts:
            for key, value in part.items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
    return totals


class ProcurosSendDemo(SimulatedSection):
    """The Procuros send, run until the refused documents are reported, then once more.

    ``erp`` reuses a running ERP simulator (the stack has one ERP_BASE_URL); without it the
    section starts its own.
    """

    title = "ERP -> Procuros send"

    def __init__(
        self,
        erp: ErpSimulator | None = None,
        *,
        documents: int = 120,
        error_report_after: int = 3,
        id_prefix: str = "PRC",
    ) -> None:
        self.own_erp = erp is None
        self.erp = erp or ErpSimulator()
        self.procuros = ProcurosSimulator()
        self.servers = (self.erp, self.procuros) if self.own_erp else (self.procuros,)
        self.documents = documents
        self.error_report_after = error_report_after
        self.id_prefix = id_prefix

    def env(self) -> dict[str, str]:
        """Point the stack at the Procuros simulator (and at this section's ERP, if it owns one)."""
        variables = {
            **self.procuros.hub_env(),
            "PROCUROS_ERROR_REPORT_AFTER": str(self.error_report_after),
        }
        if self.own_erp:
            variables |= self.erp.hub_env()
        return variables

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        """Seed, run the send until every refused document is reported and once more, verify."""
        seed = seed_outgoing(
            self.erp, self.procuros, count=self.documents, id_prefix=self.id_prefix
        )
        console.print(
            f"Seeded {len(seed.pending) + len(seed.already_sent)} ERP outgoing documents:"
            f" {len(seed.transmit)} valid, {len(seed.no_action)} for an inactive relationship,"
            f" {len(seed.refused)} Procuros refuses, {len(seed.unreadable)} unreadable,"
            f" {len(seed.already_sent)} already sent. Procuros simulator at {self.procuros.url}"
            f" ({self.procuros.schemas.source} schemas), ERP simulator at {self.erp.url}."
        )
        # Two ERP status updates fail on the first run, after Procuros accepted the documents.
        stalled = self.stalled(seed)
        attempts = HttpSettings.model_fields["http_max_attempts"].default
        for doc_id in stalled:
            self.erp.inject(
                Fault(
                    status=503,
                    times=attempts,
                    method="PATCH",
                    path_prefix=f"/outgoing-documents/{doc_id}",
                )
            )
        runs = Table(
            title="Executions",
            caption="201: TRANSMITTED, 202: NO_ACTION, reported: POST /v2/errors,"
            " ERP only: the status update repeated without sending",
        )
        for column in ("run", "status", "claimed", "POSTs", "201", "202", "refused", "reported"):
            runs.add_column(column)
        runs.add_column("ERP only")
        tick = datetime.now(UTC).replace(second=0, microsecond=0)
        n_runs = self.error_report_after + 1
        for number in range(1, n_runs + 1):
            posts_before = self.procuros.count("POST", "/v2/transactions")
            reports_before = len(self.procuros.error_reports)
            with console.status(f"run {number}: sending ...") as status:
                prefix = f"run {number}: "
                executions = run_flow(
                    stack,
                    FLOW,
                    when=tick + timedelta(minutes=15 * number),
                    on_progress=partial(_progress, status, prefix),
                )
            totals = run_totals(executions)
            for execution in executions:
                runs.add_row(
                    str(number),
                    execution.status,
                    *(
                        str(totals.get(k, 0))
                        for k in (
                            "claimed",
                            "posts",
                            "transmitted",
                            "noAction",
                            "refused",
                            "reported",
                            "erpUpdateOnly",
                        )
                    ),
                )
            report.check(
                SECTION,
                f"run {number}: the execution succeeded",
                len(executions) == 1 and executions[0].status == "SUCCEEDED",
                ", ".join(f"{e.name}={e.status}" for e in executions),
            )
            posts = self.procuros.count("POST", "/v2/transactions") - posts_before
            reports = len(self.procuros.error_reports) - reports_before
            if number == 1:
                self._verify_first_run(report, seed, stalled)
            else:
                self._verify_rerun(report, seed, number, posts=posts, reports=reports)
        console.print(runs)
        self._print_outcome(console, seed)

    # --- checks -----------------------------------------------------------------------------

    @staticmethod
    def stalled(seed: OutgoingSeed) -> list[str]:
        """The two valid documents whose ERP update fails on the first run."""
        return [seed.transmit[0], seed.transmit[len(seed.transmit) // 2]]

    def _status(self, doc_id: str) -> dict[str, Any]:
        return self.erp.outgoing(doc_id)

    def _verify_first_run(self, report: DemoReport, seed: OutgoingSeed, stalled: list[str]) -> None:
        held = {
            doc_id: self.procuros.transactions_for(seed.numbers[doc_id], seed.types[doc_id])
            for doc_id in seed.pending
        }
        transmitted = [d for d in seed.transmit if d not in stalled]
        wrong = [
            d
            for d in transmitted
            if self._status(d)["procurosStatus"] != "TRANSMITTED"
            or self._status(d)["procurosTransactionId"] != held[d][0]["procurosTransactionId"]
        ]
        report.check(
            SECTION,
            "201: valid documents are TRANSMITTED with their Procuros transaction id",
            not wrong,
            f"{len(transmitted) - len(wrong)}/{len(transmitted)}"
            + (f"; wrong: {wrong[:5]}" if wrong else ""),
        )
        no_action = [d for d in seed.no_action if self._status(d)["procurosStatus"] == "NO_ACTION"]
        report.check(
            SECTION,
            "202: documents for the inactive trade relationship are NO_ACTION",
            len(no_action) == len(seed.no_action),
            f"{len(no_action)}/{len(seed.no_action)}",
        )
        refused_ok = [
            d
            for d in seed.refused
            if self._status(d)["procurosStatus"] is None
            and str(self._status(d)["errorUrl"] or "").startswith("https://")
        ]
        report.check(
            SECTION,
            "400/422: refused documents stay empty and carry the error URL",
            len(refused_ok) == len(seed.refused),
            f"{len(refused_ok)}/{len(seed.refused)}",
        )
        once = [d for d in [*seed.transmit, *seed.no_action] if len(held[d]) == 1]
        none = [d for d in seed.failing if not held[d]]
        report.check(
            SECTION,
            "Procuros holds exactly one transaction per accepted document, none for the others",
            len(once) == len(seed.transmit) + len(seed.no_action)
            and len(none) == len(seed.failing),
            f"{len(self.procuros.transactions)} transactions for"
            f" {len(seed.transmit) + len(seed.no_action)} accepted documents",
        )
        stalled_ok = [
            d for d in stalled if self._status(d)["procurosStatus"] is None and len(held[d]) == 1
        ]
        report.check(
            SECTION,
            "the ERP update failed for two accepted documents: still empty in the ERP",
            len(stalled_ok) == len(stalled),
            ", ".join(stalled),
        )
        never = [d for d in seed.already_sent if self.procuros.posts_for(seed.numbers[d])]
        report.check(
            SECTION,
            "documents with a Procuros status are never picked up",
            not never,
            f"{len(seed.already_sent)} already TRANSMITTED, {len(never)} sent",
        )

    def _verify_rerun(
        self, report: DemoReport, seed: OutgoingSeed, number: int, *, posts: int, reports: int
    ) -> None:
        report.check(
            SECTION,
            f"run {number}: only the empty documents are sent again",
            posts == len(seed.refused),
            f"{posts} POSTs for {len(seed.refused)} refused documents",
        )
        if number == 2:
            stalled = self.stalled(seed)
            ok = [
                d
                for d in stalled
                if self._status(d)["procurosStatus"] == "TRANSMITTED"
                and self.procuros.posts_for(seed.numbers[d]) == 1
            ]
            report.check(
                SECTION,
                "run 2: the failed ERP updates are repeated alone (one POST per document)",
                len(ok) == len(stalled),
                f"{len(ok)}/{len(stalled)} TRANSMITTED after one POST",
            )
        expected_reports = len(seed.failing) if number == self.error_report_after else 0
        report.check(
            SECTION,
            f"run {number}: {expected_reports} errors reported to Procuros",
            reports == expected_reports,
            f"{reports} POST /v2/errors",
        )
        if number == self.error_report_after + 1:
            once = [
                d
                for d in seed.failing
                if len(self.procuros.error_reports_for(seed.numbers[d])) == 1
            ]
            report.check(
                SECTION,
                "each failing document was reported exactly once",
                len(once) == len(seed.failing),
                f"{len(once)}/{len(seed.failing)}",
            )
            linked = [d for d in seed.unreadable if self._status(d)["errorUrl"]]
            report.check(
                SECTION,
                "unreadable documents were never sent and got the report's error URL",
                len(linked) == len(seed.unreadable)
                and not any(self.procuros.posts_for(seed.numbers[d]) for d in seed.unreadable),
                f"{len(linked)}/{len(seed.unreadable)}",
            )

    def _print_outcome(self, console: Console, seed: OutgoingSeed) -> None:
        table = Table(title="Outgoing documents after the last run")
        for column in ("seeded as", "documents", "ERP status", "with error URL", "reported once"):
            table.add_column(column)
        groups = (
            ("valid", seed.transmit),
            ("inactive relationship", seed.no_action),
            ("refused by Procuros", list(seed.refused)),
            ("unreadable", seed.unreadable),
            ("already sent", seed.already_sent),
        )
        for label, ids in groups:
            statuses = sorted({str(self._status(d)["procurosStatus"] or "empty") for d in ids})
            table.add_row(
                label,
                str(len(ids)),
                ", ".join(statuses),
                str(sum(1 for d in ids if self._status(d)["errorUrl"])),
                str(
                    sum(
                        1 for d in ids if len(self.procuros.error_reports_for(seed.numbers[d])) == 1
                    )
                ),
            )
        console.print(table)
