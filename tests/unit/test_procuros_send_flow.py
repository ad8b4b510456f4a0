"""The Procuros send flow against in-memory ports and a moto ledger built from the template."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from erphub import faults
from erphub.clients.erp import OutgoingPage
from erphub.clients.erp_port import OutgoingDocument, OutgoingUpdate
from erphub.clients.procuros import (
    AlreadyReceived,
    ErrorReport,
    NotForwarded,
    OutcomeUnknown,
    Refused,
    SendOutcome,
    Sent,
    SentRecord,
)
from erphub.errors import BadInputError, TransientError
from erphub.flows import procuros_list
from erphub.flows.procuros_list import ListDeps, ListRequest, list_pending
from erphub.flows.procuros_schedule import start_scheduled_send
from erphub.flows.procuros_send import ERROR_REPORT_URL, ERROR_URL, FLOW, HISTORY_TRIM_AT, OUTCOME
from erphub.flows.procuros_send_chunk import SendDeps, SendRequest, send_chunk
from erphub.ledger import Ledger, Status
from erphub.payloads import PayloadStore
from erphub.procuros_mapping import ProcurosTransaction
from tests.fakes import create_table_from_template

ACTIVE = "4012345000019"
INACTIVE = "4012345000026"
TYPES = frozenset({"INVOICE", "ORDER_RESPONSE", "SHIPPING_NOTICE", "CREDIT_NOTE"})


def erp_document(
    doc_id: str, kind: str = "INVOICE", *, buyer: str = ACTIVE, quantity: str = "3"
) -> dict[str, Any]:
    """An outgoing document with everything Procuros requires for its type."""
    return {
        "id": doc_id,
        "type": kind,
        "number": f"N-{doc_id}",
        "procurosStatus": None,
        "errorUrl": None,
        "procurosTransactionId": None,
        "document": {
            "documentDate": "2026-03-02",
            "currency": "EUR",
            "seller": {"name": "Seller", "gln": "4000001000005"},
            "buyer": {"name": "Buyer", "gln": buyer},
            "orderNumber": "PO-1",
            "orderDate": "2026-02-25",
            "shippingNoticeNumber": "ASN-1",
            "shippingNoticeDate": "2026-03-01",
            "lines": [
                {
                    "lineNumber": 1,
                    "gtin": "4000000000017",
                    "quantity": quantity,
                    "unitPrice": "2.50",
                    "taxRate": "19",
                }
            ],
        },
    }


class FakeErpOutgoing:
    """The ERP contract's outgoing documents in memory (keyset pages by id)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.fail_patches: dict[str, int] = {}
        self.refuse_patches: set[str] = set()

    def add(self, doc_id: str, kind: str = "INVOICE", **kwargs: Any) -> str:
        self.docs[doc_id] = erp_document(doc_id, kind, **kwargs)
        return f"N-{doc_id}"

    def status(self, doc_id: str) -> tuple[str | None, str | None, str | None]:
        doc = self.docs[doc_id]
        return doc["procurosStatus"], doc["procurosTransactionId"], doc["errorUrl"]

    def pending_outgoing(self, cursor: str | None = None, limit: int = 100) -> OutgoingPage:
        ids = sorted(
            i
            for i, d in self.docs.items()
            if d["procurosStatus"] is None and (cursor is None or i > cursor)
        )
        page = ids[:limit]
        return OutgoingPage(
            documents=[OutgoingDocument.model_validate(self.docs[i]) for i in page],
            next_cursor=page[-1] if len(ids) > limit else None,
        )

    def update_outgoing(self, document_id: str, update: OutgoingUpdate) -> OutgoingDocument:
        self.patches.append((document_id, update.dump()))
        if self.fail_patches.get(document_id):
            self.fail_patches[document_id] -= 1
            msg = f"ERP PATCH /outgoing-documents/{document_id}: HTTP 503"
            raise TransientError(msg)
        if document_id in self.refuse_patches:
            msg = f"ERP refused the update of outgoing document {document_id}: gone"
            raise BadInputError(msg)
        self.docs[document_id].update(update.dump())
        return OutgoingDocument.model_validate(self.docs[document_id])


class FakeProcuros:
    """Procuros' answers in memory: dedupe by bytes, refusals by number, lost answers."""

    def __init__(self) -> None:
        self.refuse: dict[str, dict[str, list[str]]] = {}
        self.stored: list[SentRecord] = []
        self.bodies: set[bytes] = set()
        self.posts: list[str | None] = []
        self.reports: list[ErrorReport] = []
        self.lookups = 0
        self.lose_answers = 0  # processed, but the answer never arrives
        self.fail_sends = 0  # the answer never arrives and nothing was processed
        self.fail_reports = 0
        self.unlisted = False  # processed transactions do not show in the listing yet
        self.retry_after: float | None = None
        self.windows: list[tuple[date, date]] = []

    def posts_for(self, number: str) -> int:
        return self.posts.count(number)

    def held(self, number: str) -> list[SentRecord]:
        return [r for r in self.stored if r.content["header"].get("invoiceIdentifier") == number]

    def send_transaction(self, transaction: ProcurosTransaction) -> SendOutcome:
        self.posts.append(transaction.identifier)
        if self.fail_sends:
            self.fail_sends -= 1
            raise OutcomeUnknown("Procuros POST /transactions: ReadTimeout", self.retry_after)
        body = transaction.body()
        if body in self.bodies:
            return AlreadyReceived(message="Payload already received")
        number = transaction.identifier or ""
        if number in self.refuse:
            return Refused(
                status=422,
                message="The given data was invalid.",
                errors=self.refuse[number],
                error_url=f"https://portal.test/errors/{len(self.posts)}",
            )
        buyer = transaction.content["header"]["buyer"]["identifiers"][0]["identifier"]
        record = SentRecord(
            procurosTransactionId=f"tx-{len(self.stored) + 1}",
            type=transaction.type,
            status="DROPPED" if buyer == INACTIVE else "SUCCESS",
            createdAt=datetime.now(UTC).isoformat(),
            content=transaction.content,
        )
        self.stored.append(record)
        self.bodies.add(body)
        if self.lose_answers:
            self.lose_answers -= 1
            raise OutcomeUnknown("Procuros POST /transactions: ReadTimeout", self.retry_after)
        if record.status == "DROPPED":
            return NotForwarded(
                message="Trade relationship not yet active.", transaction_id=record.transaction_id
            )
        return Sent(transaction_id=record.transaction_id)

    def sent_transactions(
        self, transaction_type: str, created_from: date, created_to: date
    ) -> Iterator[SentRecord]:
        self.lookups += 1
        self.windows.append((created_from, created_to))
        if self.unlisted:
            return iter([])
        return iter([r for r in self.stored if r.type == transaction_type])

    def report_error(self, report: ErrorReport) -> str | None:
        if self.fail_reports:
            self.fail_reports -= 1
            raise OutcomeUnknown("Procuros POST /errors: ReadTimeout")
        self.reports.append(report)
        return f"https://portal.test/reported/{len(self.reports)}"


class Aws:
    """One moto for the module; each test gets its own table and bucket (fast and isolated)."""

    def __init__(self) -> None:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
        )
        self.dynamodb = session.resource("dynamodb")
        self.s3 = session.client("s3")
        self.count = 0

    def fresh(self) -> tuple[Any, str]:
        self.count += 1
        table = create_table_from_template(name=f"ledger-{self.count}")
        bucket = f"payloads-{self.count}"
        self.s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        return self.dynamodb.Table(table), bucket


class World:
    def __init__(self, aws: Aws, clock: list[float]) -> None:
        self.clock = clock
        self.erp = FakeErpOutgoing()
        self.procuros = FakeProcuros()
        table, bucket = aws.fresh()
        self.ledger = Ledger(table, clock=lambda: clock[0])
        self.payloads = PayloadStore(aws.s3, bucket)
        self.sleeps: list[float] = []
        self.report_after = 3
        self.types = TYPES
        self.runs = 0

    def send_deps(self) -> SendDeps:
        return SendDeps(
            erp=self.erp,
            procuros=self.procuros,
            ledger=self.ledger,
            payloads=self.payloads,
            error_report_after=self.report_after,
            send_attempts=3,
            retry_wait_seconds=0.5,
            max_wait_seconds=10,
            sleep=self.sleeps.append,
            today=self.today,
        )

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock[0], UTC).date()

    def run(self, run_id: str | None = None, *, lease: int = 900) -> dict[str, int]:
        """One execution, step by step, as the state machine runs it."""
        self.runs += 1
        run = run_id or f"run-{self.runs}"
        listed = list_pending(
            ListRequest(run_id=run),
            ListDeps(self.erp, self.ledger, self.payloads, lease, self.types),
        )
        totals = {k: v for k, v in listed.model_dump().items() if isinstance(v, int)}
        for chunk in listed.chunks:
            result = send_chunk(SendRequest(run_id=run, chunk_key=chunk.key), self.send_deps())
            for key, value in result.model_dump().items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
        return totals

    def entry(self, doc_id: str) -> Any:
        entry = self.ledger.get(FLOW, doc_id)
        assert entry is not None
        return entry


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with mock_aws():
        yield Aws()


@pytest.fixture
def world(aws: Aws, clock: list[float]) -> World:
    return World(aws, clock)


# --- the status rules ----------------------------------------------------------------------------


def test_201_sets_transmitted_with_the_id_and_202_no_action(world: World) -> None:
    world.erp.add("OUT-1")
    world.erp.add("OUT-2", "ORDER_RESPONSE", buyer=INACTIVE)
    summary = world.run()
    assert (summary["transmitted"], summary["no_action"]) == (1, 1)
    assert world.erp.status("OUT-1") == ("TRANSMITTED", "tx-1", None)
    assert world.erp.status("OUT-2") == ("NO_ACTION", "tx-2", None)
    assert world.erp.patches[0] == (
        "OUT-1",
        {"procurosStatus": "TRANSMITTED", "errorUrl": None, "procurosTransactionId": "tx-1"},
    )
    entry = world.entry("OUT-2")
    assert (entry.status, entry.external_id, entry.lease_owner) == (Status.EXPORTED, "tx-2", None)
    assert entry.attributes[OUTCOME] == "NO_ACTION"


def test_a_refusal_leaves_the_status_empty_with_the_error_url_and_counts_the_attempt(
    world: World,
) -> None:
    number = world.erp.add("OUT-1")
    world.procuros.refuse[number] = {
        "buyer": ["Could not resolve party using provided identifiers"]
    }
    summary = world.run()
    assert summary["refused"] == 1 and summary["transmitted"] == 0
    status, transaction_id, error_url = world.erp.status("OUT-1")
    assert (status, transaction_id) == (None, None)
    assert error_url == "https://portal.test/errors/1"
    entry = world.entry("OUT-1")
    assert (entry.status, entry.attempts, entry.lease_owner) == (
        Status.AWAITING_CORRECTION,
        1,
        None,
    )
    assert entry.reasons == [
        "Procuros 422: buyer: Could not resolve party using provided identifiers"
    ]
    assert entry.attributes[ERROR_URL] == error_url


def test_only_documents_with_an_empty_status_and_a_configured_type_are_picked_up(
    world: World,
) -> None:
    world.erp.add("OUT-1")
    world.erp.add("OUT-2", "CREDIT_NOTE")
    world.erp.add("OUT-3")
    world.erp.docs["OUT-3"]["procurosStatus"] = "TRANSMITTED"
    world.types = frozenset({"INVOICE"})
    summary = world.run()
    assert (summary["listed"], summary["claimed"], summary["other_types"]) == (2, 1, 1)
    assert world.procuros.posts == ["N-OUT-1"]
    assert world.ledger.get(FLOW, "OUT-2") is None


def test_pages_of_the_erp_are_followed_and_chunked(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(procuros_list, "CHUNK_SIZE", 3)  # pages and chunks of 3 instead of 100
    for n in range(1, 9):
        world.erp.add(f"OUT-{n}")
    listed = list_pending(
        ListRequest(run_id="run-1"),
        ListDeps(world.erp, world.ledger, world.payloads, 900, TYPES),
    )
    assert [chunk.count for chunk in listed.chunks] == [3, 3, 2]
    stored = [world.payloads.get_json(chunk.key) for chunk in listed.chunks]
    assert [doc["id"] for chunk in stored for doc in chunk] == [f"OUT-{n}" for n in range(1, 9)]
    for chunk in listed.chunks:
        send_chunk(SendRequest(run_id="run-1", chunk_key=chunk.key), world.send_deps())
    assert len(world.procuros.stored) == 8
    assert world.run()["claimed"] == 0  # nothing is empty any more


def test_refused_documents_are_sent_again_each_run_and_reported_once_at_the_threshold(
    world: World,
) -> None:
    refused = world.erp.add("OUT-1")
    world.erp.add("OUT-2")
    world.procuros.refuse[refused] = {"content.header.orderIdentifier": ["required"]}
    posts, reports = [], []
    for _ in range(6):
        summary = world.run()
        posts.append(summary["posts"])
        reports.append(summary.get("reported", 0))
    assert posts == [2, 1, 1, 1, 1, 1]  # re-sends only the empty one
    assert reports == [0, 0, 1, 0, 0, 0]
    assert len(world.procuros.reports) == 1
    report = world.procuros.reports[0]
    assert report.transaction_identifier == refused
    assert report.transaction_type == "INVOICE"
    assert report.error_type == "DATA"
    assert report.error_reason.startswith(f"INVOICE {refused} (ERP document OUT-1) failed 3 times")
    assert "content.header.orderIdentifier: required" in report.error_reason
    assert report.error_context["errorUrl"].startswith("https://portal.test/errors/")
    assert report.error_context["errors.content.header.orderIdentifier"] == "required"
    assert report.error_context["attempts"] == "3"
    assert all(isinstance(v, str) for v in report.error_context.values())
    entry = world.entry("OUT-1")
    assert entry.attempts == 6
    assert entry.attributes[ERROR_REPORT_URL] == "https://portal.test/reported/1"


def test_a_document_fixed_in_the_erp_is_transmitted_and_its_error_url_cleared(
    world: World,
) -> None:
    number = world.erp.add("OUT-1")
    world.procuros.refuse[number] = {"buyer": ["unknown"]}
    world.run()
    assert world.erp.status("OUT-1")[2] is not None
    del world.procuros.refuse[number]
    world.run()
    assert world.erp.status("OUT-1") == ("TRANSMITTED", "tx-1", None)


def test_an_error_report_whose_answer_is_lost_is_reported_on_a_later_failure(
    world: World,
) -> None:
    world.report_after = 1
    number = world.erp.add("OUT-1")
    world.procuros.refuse[number] = {"buyer": ["unknown"]}
    world.procuros.fail_reports = 1
    assert world.run().get("reported", 0) == 0
    assert world.run()["reported"] == 1
    assert world.run().get("reported", 0) == 0
    assert len(world.procuros.reports) == 1


# --- nothing sent twice --------------------------------------------------------------------------


def test_accepted_but_erp_update_failed_is_never_posted_again(world: World) -> None:
    number = world.erp.add("OUT-1")
    world.erp.fail_patches["OUT-1"] = 2
    first = world.run()
    assert (first["posts"], first["deferred"]) == (1, 1)
    assert world.erp.status("OUT-1")[0] is None
    entry = world.entry("OUT-1")
    assert (entry.status, entry.external_id, entry.lease_owner) == (Status.PUSHED, "tx-1", None)
    second = world.run()
    assert (second.get("posts", 0), second["erp_update_only"], second["deferred"]) == (0, 1, 1)
    third = world.run()
    assert (third.get("posts", 0), third["erp_update_only"], third["transmitted"]) == (0, 1, 1)
    for _ in range(3):
        assert world.run()["claimed"] == 0
    assert world.procuros.posts_for(number) == 1
    assert world.erp.status("OUT-1") == ("TRANSMITTED", "tx-1", None)


def test_a_refused_erp_update_keeps_what_procuros_said_for_the_next_run(world: World) -> None:
    number = world.erp.add("OUT-1", buyer=INACTIVE)
    world.erp.refuse_patches.add("OUT-1")
    assert world.run()["erp_update_failed"] == 1
    entry = world.entry("OUT-1")
    assert entry.status is Status.PUSHED
    assert "ERP refused the update of outgoing document OUT-1: gone" in (entry.last_error or "")
    world.erp.refuse_patches.clear()
    assert world.run()["erp_update_only"] == 1
    assert world.erp.status("OUT-1") == ("NO_ACTION", "tx-1", None)
    assert world.procuros.posts_for(number) == 1


@pytest.mark.parametrize(
    ("point", "expect_lookup"),
    [
        ("procuros.after_accept", True),  # Procuros holds it, the ledger does not know yet
        ("procuros.before_erp_update", False),  # the ledger knows: only the ERP update is left
        ("procuros.after_erp_update", False),
    ],
)
def test_a_crash_after_procuros_accepted_never_posts_again(
    world: World, clock: list[float], point: str, expect_lookup: bool
) -> None:
    number = world.erp.add("OUT-1")
    faults.arm(point)
    with pytest.raises(faults.InjectedCrash):
        world.run()
    assert world.run()["claimed"] == 0  # the crashed run's lease still holds
    clock[0] += 901  # the lease runs out
    world.run()
    for _ in range(3):
        world.run()
    assert world.procuros.posts_for(number) == 1
    assert world.erp.status("OUT-1") == ("TRANSMITTED", "tx-1", None)
    assert (world.procuros.lookups > 0) is expect_lookup


def test_a_crash_before_the_post_sends_after_looking(world: World, clock: list[float]) -> None:
    number = world.erp.add("OUT-1")
    faults.arm("procuros.before_send")
    with pytest.raises(faults.InjectedCrash):
        world.run()
    clock[0] += 901
    world.run()
    assert world.procuros.lookups == 1  # nothing listed: it was never sent
    assert world.procuros.posts_for(number) == 1
    assert world.erp.status("OUT-1")[0] == "TRANSMITTED"


def test_timeout_then_duplicate_answer_is_treated_as_sent(world: World) -> None:
    number = world.erp.add("OUT-1")
    world.procuros.lose_answers = 1
    world.procuros.unlisted = True  # the lookup after the timeout finds nothing yet
    summary = world.run()
    assert world.procuros.posts_for(number) == 2  # the resend was answered "already received"
    assert len(world.procuros.stored) == 1
    assert (summary["already_received"], summary["transmitted"]) == (1, 1)
    assert world.erp.status("OUT-1") == ("TRANSMITTED", None, None)
    assert world.sleeps == [0.5]  # backoff before looking and sending again
    for _ in range(3):
        world.run()
    assert world.procuros.posts_for(number) == 2
    entry = world.entry("OUT-1")
    assert entry.status is Status.EXPORTED
    assert any("Payload already received" in e.detail for e in entry.history)


def test_timeout_then_duplicate_takes_the_id_from_the_listing_when_it_shows(world: World) -> None:
    world.erp.add("OUT-1")
    world.procuros.lose_answers = 1
    world.procuros.unlisted = True
    original = world.procuros.sent_transactions

    def listed_from_the_second_lookup(*args: Any) -> Iterator[SentRecord]:
        world.procuros.unlisted = world.procuros.lookups < 1
        return original(*args)

    world.procuros.sent_transactions = listed_from_the_second_lookup  # type: ignore[method-assign]
    summary = world.run()
    assert (summary["already_received"], summary["reconciled"]) == (1, 1)
    assert world.erp.status("OUT-1") == ("TRANSMITTED", "tx-1", None)


def test_a_lost_answer_found_in_the_listing_is_not_sent_again(world: World) -> None:
    number = world.erp.add("OUT-1", buyer=INACTIVE)
    world.procuros.lose_answers = 1
    world.procuros.retry_after = 4
    summary = world.run()
    assert world.procuros.posts_for(number) == 1
    assert summary["reconciled"] == 1
    assert world.sleeps == [4]  # the server's Retry-After over the 0.5 s backoff
    assert world.erp.status("OUT-1") == ("NO_ACTION", "tx-1", None)  # dropped -> 202


def test_every_answer_lost_defers_and_the_next_run_looks_before_sending(world: World) -> None:
    number = world.erp.add("OUT-1")
    world.procuros.fail_sends = 3
    summary = world.run()
    assert (summary["deferred"], summary["posts"]) == (1, 3)
    assert world.sleeps == [0.5, 1.0]
    entry = world.entry("OUT-1")
    assert (entry.status, entry.lease_owner) == (Status.PUSHING, None)
    world.run()
    assert world.procuros.lookups == 3  # two in the first run, then one before sending again
    assert world.procuros.posts_for(number) == 4
    assert world.erp.status("OUT-1")[0] == "TRANSMITTED"
    today = world.today()
    assert world.procuros.windows == [(today - timedelta(days=1), today + timedelta(days=1))] * 3


def test_the_lookup_window_starts_the_day_before_the_lost_send(
    world: World, clock: list[float]
) -> None:
    world.erp.add("OUT-1")
    world.procuros.fail_sends = 3
    world.run()
    sent_on = world.today()
    clock[0] += 3 * 86400  # the next run is three days later
    world.run()
    assert world.procuros.windows[-1] == (
        sent_on - timedelta(days=1),
        world.today() + timedelta(days=1),
    )


def test_procuros_down_fails_the_chunk_after_three_documents(world: World) -> None:
    for n in range(1, 6):
        world.erp.add(f"OUT-{n}")
    world.procuros.fail_sends = 100
    with pytest.raises(TransientError) as raised:
        world.run()
    # Step Functions' Retry matches the class name exactly: not a subclass.
    assert type(raised.value) is TransientError
    assert str(raised.value).startswith("3 documents in a row failed transiently; last: ")
    deferred = [world.entry(f"OUT-{n}") for n in range(1, 4)]
    assert all(e.status is Status.PUSHING and e.lease_owner is None for e in deferred)
    assert world.entry("OUT-4").status is Status.CLAIMED  # untouched, still leased to the run


def test_overlapping_runs_claim_each_document_once(world: World) -> None:
    world.erp.add("OUT-1")
    first = list_pending(
        ListRequest(run_id="run-a"),
        ListDeps(world.erp, world.ledger, world.payloads, 900, TYPES),
    )
    second = list_pending(
        ListRequest(run_id="run-b"),
        ListDeps(world.erp, world.ledger, world.payloads, 900, TYPES),
    )
    assert (first.claimed, second.claimed, second.leased_elsewhere) == (1, 0, 1)
    result = send_chunk(
        SendRequest(run_id="run-a", chunk_key=first.chunks[0].key), world.send_deps()
    )
    assert result.transmitted == 1


# --- documents the hub cannot read ---------------------------------------------------------------


def test_an_unreadable_document_is_never_sent_and_reported_with_a_link_at_the_threshold(
    world: World,
) -> None:
    number = world.erp.add("OUT-1", quantity="twelve")
    for _ in range(4):
        world.run()
    assert world.procuros.posts_for(number) == 0
    assert len(world.procuros.reports) == 1
    report = world.procuros.reports[0]
    assert report.error_context["stage"] == "mapping"
    assert "cannot read the ERP document: OUT-1: document.lines.0.quantity" in report.error_reason
    assert world.erp.status("OUT-1") == (None, None, "https://portal.test/reported/1")
    assert world.entry("OUT-1").status is Status.AWAITING_CORRECTION


def test_the_history_of_a_document_refused_on_every_run_stays_bounded(world: World) -> None:
    number = world.erp.add("OUT-1")
    world.procuros.refuse[number] = {"buyer": ["unknown"]}
    for _ in range(16):
        world.run()
    entry = world.entry("OUT-1")
    assert entry.attempts == 16
    assert len(entry.history) < HISTORY_TRIM_AT
    assert entry.history[-1].status == Status.AWAITING_CORRECTION.value


def test_trimming_the_history_keeps_the_last_events_and_needs_the_lease(world: World) -> None:
    ledger = world.ledger
    entry = ledger.claim(FLOW, "OUT-1", owner="run-a", lease_seconds=900)
    assert entry is not None
    for n in range(5):
        entry = ledger.record(FLOW, "OUT-1", owner="run-a", status=Status.PUSHING, detail=str(n))
    assert len(entry.history) == 6
    stale = entry
    entry = ledger.record(FLOW, "OUT-1", owner="run-a", status=Status.PUSHED, detail="5")
    assert ledger.trim_history(stale, owner="run-a", keep=2) is False  # changed since read
    assert ledger.trim_history(entry, owner="run-b", keep=2) is False  # not its lease
    assert ledger.trim_history(entry, owner="run-a", keep=2) is True
    kept = world.entry("OUT-1").history
    assert [(e.status, e.detail) for e in kept] == [("PUSHING", "4"), ("PUSHED", "5")]
    assert ledger.trim_history(world.entry("OUT-1"), owner="run-a", keep=2) is False


# --- schedule ------------------------------------------------------------------------------------


class FakeStarter:
    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}

    def start(self, name: str, payload: dict[str, Any]) -> str | None:
        if name in self.started:
            return None
        self.started[name] = payload
        return f"arn:aws:states:eu-west-1:1:execution:send:{name}"


def test_one_execution_per_tick_named_after_it() -> None:
    starter = FakeStarter()
    tick = datetime(2026, 11, 21, 12, 15, tzinfo=UTC)
    first = start_scheduled_send(tick, starter)
    again = start_scheduled_send(tick, starter)
    assert list(first) == ["procuros-send-20261121T121500Z"]
    assert first["procuros-send-20261121T121500Z"] is not None
    assert again == {"procuros-send-20261121T121500Z": None}
    assert starter.started == {"procuros-send-20261121T121500Z": {"dryRun": False}}
