"""Dry runs of the two scheduled flows against in-memory ports and a moto ledger: the steps read
and report, and write nothing anywhere but their report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from erphub.clients.erp import Accepted, Rejected, Valid
from erphub.clients.procuros import PartyIdentifier
from erphub.dryrun import DryRunSummary
from erphub.errors import TransientError
from erphub.flows import procuros_send
from erphub.flows.procuros_list import ListDeps, ListRequest, ListResult, list_pending
from erphub.flows.procuros_schedule import start_scheduled_send
from erphub.flows.rossum_export import FLOW, start_scheduled_exports
from erphub.flows.rossum_finalize import FinalizeDeps, FinalizeRequest, finalize
from erphub.flows.rossum_poll import PollDeps, PollRequest, poll_confirmed
from erphub.flows.rossum_push import PushDeps, PushRequest, push_to_erp
from erphub.invoices import Invoice
from erphub.ledger import Ledger, Status
from erphub.payloads import PayloadStore
from erphub.settings.rossum import RejectPolicy
from tests.fakes import FakeErp, FakeRossum, create_table_from_template, valid_header
from tests.unit.test_procuros_send_flow import FakeErpOutgoing

QUEUE = 7
NOW = 1_800_000_000.0


class ValidatingErp(FakeErp):
    """The fake ERP with the contract's side-effect-free validation."""

    def __init__(self) -> None:
        super().__init__()
        self.validations: list[str] = []
        self.down = False

    def validate_invoice(self, invoice: Invoice) -> Valid | Accepted | Rejected:
        self.validations.append(invoice.external_reference)
        if self.down:
            msg = "ERP POST /invoices/validate: HTTP 503"
            raise TransientError(msg)
        if invoice.external_reference in self.invoices:
            return Accepted(erp_id=f"INV-{invoice.external_reference}", already_existed=True)
        if invoice.supplier.vat_id not in self.known:
            return Rejected(
                reasons=[f"supplier.vatId: unknown supplier VAT id {invoice.supplier.vat_id}"]
            )
        return Valid()


class World:
    def __init__(self) -> None:
        self.rossum = FakeRossum()
        self.erp = ValidatingErp()
        self.table = boto3.resource("dynamodb").Table(create_table_from_template())
        self.ledger = Ledger(self.table, clock=lambda: NOW)
        boto3.client("s3").create_bucket(
            Bucket="payloads", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        self.payloads = PayloadStore(boto3.client("s3"), "payloads")
        self.policy = RejectPolicy.FAILED_EXPORT

    def run(self, run_id: str, *, dry_run: bool) -> Any:
        poll = poll_confirmed(
            PollRequest(queue_id=QUEUE, run_id=run_id, dry_run=dry_run),
            PollDeps(self.rossum, self.ledger, self.payloads, 900),
        )
        pushes = [
            push_to_erp(
                PushRequest(queue_id=QUEUE, run_id=run_id, chunk_key=c.key, dry_run=dry_run),
                PushDeps(self.erp, self.payloads),
            )
            for c in poll.chunks
        ]
        result = finalize(
            FinalizeRequest(queue_id=QUEUE, run_id=run_id, chunks=pushes, dry_run=dry_run),
            FinalizeDeps(self.rossum, self.ledger, self.payloads, self.policy, 3),
        )
        return poll, result

    def report(self, summary: DryRunSummary) -> dict[str, dict[str, Any]]:
        report = self.payloads.get_json(summary.report_key)
        return {d["documentId"]: d for d in report["documents"]}

    def ledger_items(self) -> list[dict[str, Any]]:
        return self.table.scan()["Items"]


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


def test_a_dry_run_writes_nothing_but_its_report(world: World) -> None:
    for i in range(1, 151):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}", vat="DE111" if i % 10 else "XX999"))

    poll, summary = world.run("dry-1", dry_run=True)

    assert (poll.claimed, [c.count for c in poll.chunks]) == (150, [100, 50])
    assert isinstance(summary, DryRunSummary)
    assert (summary.accepted, summary.rejected, summary.sends) == (135, 15, 135)
    assert summary.report_key == f"rossum-export/{QUEUE}/dry-1/dry-run-report.json"
    assert world.ledger_items() == []
    assert world.rossum.export_calls == world.rossum.failed_export_calls == []
    assert world.erp.creates == [] and len(world.erp.validations) == 150
    documents = world.report(summary)
    assert documents["10"]["reasons"] == [
        "ERP rejected the invoice: supplier.vatId: unknown supplier VAT id XX999"
    ]
    assert documents["10"]["action"] == (
        "would be moved to failed_export, its reasons shown in Rossum"
    )
    assert documents["1"]["payload"]["invoiceNumber"] == "N1"

    _, real = world.run("real-1", dry_run=False)
    assert (real.exported, real.failed_export) == (135, 15)


def test_it_predicts_from_what_the_ledger_knows(world: World) -> None:
    for i in (1, 2, 3):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}"))
    world.run("real-1", dry_run=False)  # 1..3 exported
    world.rossum.annotations[1]["status"] = "confirmed"  # offered again
    world.rossum.add(QUEUE, 4, valid_header("N4"))
    world.rossum.add(QUEUE, 5, valid_header("N5"))
    world.ledger.claim(FLOW, "5", owner="another-run", lease_seconds=600)

    poll, summary = world.run("dry-2", dry_run=True)

    assert (poll.claimed, poll.leased_elsewhere) == (2, 1)
    documents = world.report(summary)
    assert documents["1"]["verdict"] == "accepted" and not documents["1"]["sends"]
    assert documents["1"]["action"] == (
        "already in the ERP as INV-rossum:1; would be moved to exported"
    )
    assert documents["4"]["sends"]
    assert world.erp.validations == ["rossum:4"]  # only what a real run would create


def test_two_invoices_of_one_run_with_the_same_number_cannot_both_be_booked(
    world: World,
) -> None:
    world.rossum.add(QUEUE, 1, valid_header("N-1"))
    world.rossum.add(QUEUE, 2, valid_header("N-2"))
    world.rossum.add(QUEUE, 3, valid_header("N-1"))
    _, summary = world.run("dry-1", dry_run=True)
    documents = world.report(summary)
    assert [documents[i]["verdict"] for i in "123"] == ["accepted", "accepted", "rejected"]
    assert (
        "invoice number N-1 of supplier DE111 is also on annotation 1 of this run"
        in (documents["3"]["reasons"][0])
    )


def test_the_reject_policy_decides_the_predicted_action(world: World) -> None:
    world.policy = RejectPolicy.KEEP_CONFIRMED
    world.rossum.add(QUEUE, 1, valid_header("N1", vat="XX999"))
    _, summary = world.run("dry-1", dry_run=True)
    assert world.report(summary)["1"]["action"] == "would stay confirmed (rejection 1 of 3)"


def test_an_unreadable_annotation_is_rejected_with_its_fields(world: World) -> None:
    world.rossum.add(QUEUE, 1, valid_header("N1") | {"date_issue": "yesterday"})
    _, summary = world.run("dry-1", dry_run=True)
    document = world.report(summary)["1"]
    assert document["reasons"] == [
        "cannot read the invoice: date_issue: 'yesterday' is not a date (YYYY-MM-DD)"
    ]
    assert "payload" not in document and world.erp.validations == []


def test_an_erp_that_is_down_fails_the_dry_run_chunk_for_a_retry(world: World) -> None:
    for i in range(1, 5):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}"))
    world.erp.down = True
    with pytest.raises(TransientError, match="ERP unavailable: 4 of 4 validations failed"):
        world.run("dry-1", dry_run=True)
    assert world.ledger_items() == []


def test_a_dry_run_is_named_apart_from_the_real_run_of_its_tick() -> None:
    class Starter:
        def __init__(self) -> None:
            self.started: dict[str, Any] = {}

        def start(self, name: str, payload: Any) -> str:
            self.started[name] = payload
            return name

    tick = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    starter = Starter()
    start_scheduled_exports([1001], tick, starter)
    start_scheduled_exports([1001], tick, starter, dry_run=True)
    start_scheduled_send(tick, starter, dry_run=True)
    assert starter.started == {
        "rossum-1001-20261121T120000Z": {"queueId": 1001, "dryRun": False},
        "rossum-1001-20261121T120000Z-dry-run": {"queueId": 1001, "dryRun": True},
        "procuros-send-20261121T120000Z-dry-run": {"dryRun": True},
    }


# --- Procuros ------------------------------------------------------------------------------------


def test_the_procuros_dry_run_reports_without_claiming_or_sending(world: World) -> None:
    erp = FakeErpOutgoing()
    for doc_id in ("A", "B", "C", "D", "E"):
        erp.add(doc_id)
    erp.docs["B"]["document"]["lines"][0]["quantity"] = "twelve"
    del erp.docs["C"]["document"]["orderNumber"]
    erp.add("F", "ORDER")
    world.ledger.claim(procuros_send.FLOW, "D", owner="other", lease_seconds=600)
    world.ledger.claim(procuros_send.FLOW, "E", owner="old", lease_seconds=0)
    world.ledger.record(
        procuros_send.FLOW,
        "E",
        owner="old",
        status=Status.PUSHED,
        external_id="tx-1",
        release=True,
    )
    world.ledger.claim(procuros_send.FLOW, "C", owner="old", lease_seconds=0)
    world.ledger.record(
        procuros_send.FLOW, "C", owner="old", status=Status.REJECTED, count_attempt=True
    )
    world.ledger.record(
        procuros_send.FLOW, "C", owner="old", status=Status.AWAITING_CORRECTION, release=True
    )
    before = world.ledger_items()

    result = list_pending(
        ListRequest(run_id="dry-1", dry_run=True),
        ListDeps(
            erp, world.ledger, world.payloads, 900, frozenset({"INVOICE"}), error_report_after=2
        ),
    )

    assert (result.claimed, result.chunks, result.leased_elsewhere) == (0, [], 1)
    assert result.other_types == 1
    assert result.dry_run is not None
    assert (result.dry_run.accepted, result.dry_run.rejected, result.dry_run.sends) == (2, 2, 1)
    assert world.ledger_items() == before
    assert erp.patches == []
    documents = world.report(result.dry_run)
    assert documents["A"]["sends"] and documents["A"]["payload"]["type"] == "INVOICE"
    assert documents["B"]["reasons"] == [
        "cannot read the ERP document: B: document.lines.0.quantity: 'twelve' is not a number"
    ]
    assert documents["C"]["reasons"] == [
        "Procuros 422 (by the schema of the send body): content.header.orderIdentifier: is required"
    ]
    assert documents["C"]["action"].endswith(
        "(failed attempt 2); would be reported to Procuros (POST /v2/errors)"
    )
    assert documents["E"]["action"] == (
        "Procuros holds it (recorded in the ledger): only the ERP status would be set to"
        " TRANSMITTED"
    )


class FakeHistory:
    """Procuros' transaction history: the parties it names, or a failure."""

    def __init__(self, *glns: str, error: Exception | None = None) -> None:
        self.known = frozenset(PartyIdentifier(domain="GS1", identifier=g) for g in glns)
        self.error = error
        self.windows: list[tuple[date, date]] = []

    def known_parties(self, created_from: date, created_to: date) -> frozenset[PartyIdentifier]:
        self.windows.append((created_from, created_to))
        if self.error is not None:
            raise self.error
        return self.known


UNKNOWN = "4099999000018"


def procuros_dry_run(
    world: World, history: FakeHistory | None, days: int = 30
) -> tuple[ListResult, dict[str, dict[str, Any]]]:
    erp = FakeErpOutgoing()
    erp.add("A")
    erp.add("B", buyer=UNKNOWN)
    erp.add("C", "CREDIT_NOTE", buyer=UNKNOWN)
    del erp.docs["C"]["document"]["lines"][0]["unitPrice"]  # refused by the schema first
    built: list[FakeHistory] = []

    def connect() -> FakeHistory:
        assert history is not None
        built.append(history)
        return history

    result = list_pending(
        ListRequest(run_id="dry-1", dry_run=True),
        ListDeps(
            erp,
            world.ledger,
            world.payloads,
            900,
            frozenset({"INVOICE", "CREDIT_NOTE"}),
            procuros=None if history is None else connect,
            known_partners_days=days,
            today=lambda: date(2026, 11, 21),
        ),
    )
    assert len(built) <= 1  # read once per run
    assert result.dry_run is not None
    assert erp.patches == [] and world.ledger_items() == []
    return result, world.report(result.dry_run)


def test_the_procuros_dry_run_predicts_the_refusal_of_a_receiver_no_transaction_names(
    world: World,
) -> None:
    history = FakeHistory("4012345000019", "4000001000005")

    result, documents = procuros_dry_run(world, history)

    assert history.windows == [(date(2026, 10, 22), date(2026, 11, 22))]
    assert result.dry_run is not None
    summary = result.dry_run
    assert (summary.accepted, summary.rejected, summary.sends, summary.note) == (1, 2, 2, None)
    assert documents["A"]["verdict"] == "accepted"
    assert documents["A"]["action"].endswith(
        "its buyer (GLN 4012345000019) is named by Procuros transactions in the last 30 days"
    )
    assert documents["B"]["verdict"] == "rejected" and documents["B"]["sends"]
    assert documents["B"]["reasons"] == [
        "Procuros would probably refuse it (422 Could not resolve party): no Procuros transaction"
        f" in the last 30 days names buyer GLN {UNKNOWN}"
    ]
    assert documents["B"]["action"] == (
        "would be sent (POST /v2/transactions) and probably refused; would stay empty in the ERP"
        " for the next run (failed attempt 1)"
    )
    assert documents["C"]["reasons"][0].startswith("Procuros 422 (by the schema of the send body)")
    assert not documents["C"]["sends"]
    report = world.payloads.get_json(summary.report_key)
    assert report["scope"] == {
        "receiverCheck": "against the 2 party identifiers named by Procuros transactions in the"
        " last 30 days"
    }


def test_a_procuros_dry_run_whose_history_fails_predicts_as_before_and_says_so(
    world: World,
) -> None:
    failing = FakeHistory(error=TransientError("Procuros GET /all-transactions: HTTP 503"))

    result, documents = procuros_dry_run(world, failing)

    assert result.dry_run is not None
    summary = result.dry_run
    assert (summary.accepted, summary.rejected, summary.sends) == (2, 1, 2)
    assert summary.note == (
        "the receivers were not checked (the Procuros transaction history could not be read:"
        " Procuros GET /all-transactions: HTTP 503): a receiver Procuros cannot resolve shows"
        " only when the real run sends"
    )
    assert documents["B"]["verdict"] == "accepted"
    assert documents["B"]["action"].endswith(
        "(201 TRANSMITTED, 202 NO_ACTION, or a refusal for a receiver it cannot resolve)"
    )
    report = world.payloads.get_json(summary.report_key)
    assert report["scope"]["receiverCheck"].startswith(
        "not done: the Procuros transaction history could not be read"
    )


@pytest.mark.parametrize(
    ("history", "days", "why"),
    [
        (FakeHistory(), 0, "PROCUROS_KNOWN_PARTNERS_DAYS is 0"),
        (None, 365, "no Procuros connection"),
    ],
)
def test_without_the_receiver_check_procuros_is_not_read(
    world: World, history: FakeHistory | None, days: int, why: str
) -> None:
    result, documents = procuros_dry_run(world, history, days)

    assert history is None or history.windows == []
    assert result.dry_run is not None
    assert result.dry_run.note is not None and f"({why})" in result.dry_run.note
    assert documents["B"]["verdict"] == "accepted"
