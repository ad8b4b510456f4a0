"""File drop -> beqom on the local stack: files dropped into the DropBucket reach the import queue
through the bucket's notification, the real batch handler imports them into the beqom simulator
over loopback HTTP, and the ledger shows what happened to each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from erphub.flows.beqom_import import FLOW
from erphub.ledger import Entry, Ledger, Status
from erphub_local.aws import inproc_lambda, sqs_batches
from erphub_local.aws.stack import LocalStack
from erphub_local.simulators.base import Fault
from erphub_local.simulators.beqom import IMPORT_PATH, BeqomSimulator

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
OPEN, RUNNING, CLOSED = "PAY-2026-11", "BONUS-2026", "PAY-2025-12"


@dataclass
class Hub:
    local: LocalStack
    sim: BeqomSimulator

    @property
    def bucket(self) -> str:
        return self.local.stack.physical("DropBucket")

    def drop(self, key: str, body: bytes = b"%PDF-1.7 doc", **metadata: str) -> None:
        self.local.client("s3").put_object(
            Bucket=self.bucket, Key=key, Body=body, Metadata=metadata
        )

    def ledger(self) -> Ledger:
        return Ledger(boto3.resource("dynamodb").Table(self.local.stack.physical("LedgerTable")))

    def entry(self, key: str) -> Entry:
        entry = self.ledger().get(FLOW, key)
        assert entry is not None, key
        return entry

    def import_calls(self) -> Counter[tuple[str, str]]:
        return Counter(
            (c.body["communicationRoundCode"], c.body["workerexternalId"])
            for c in self.sim.calls
            if c.path == IMPORT_PATH and isinstance(c.body, dict)
        )

    def dead_letters(self) -> int:
        attributes = self.local.client("sqs").get_queue_attributes(
            QueueUrl=self.local.stack.physical("BeqomImportDeadLetterQueue"),
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with BeqomSimulator() as sim:
        sim.add_workers(*(f"W{i:03d}" for i in range(100)))
        sim.add_round(OPEN, "Open")
        sim.add_round(RUNNING, "In Progress")
        sim.add_round(CLOSED, "Closed")
        sqs_batches.install()
        try:
            with LocalStack(
                TEMPLATE,
                parameters={
                    "Stage": "it",
                    "BeqomTokenUrl": sim.token_url,
                    "BeqomImportUrl": sim.import_url,
                },
                secret_values={
                    "BeqomSecret": {"clientId": sim.client_id, "clientSecret": sim.client_secret}
                },
                env_overrides={"HTTP_BACKOFF_SECONDS": "0", "HTTP_MAX_ATTEMPTS": "2"},
                log_path=tmp_path / "lambda.log",
                state_dir=tmp_path / "state",
            ) as local:
                yield Hub(local, sim)
        finally:
            sqs_batches.uninstall()


def test_the_template_wires_the_drop_bucket_to_the_queue_and_the_queue_to_the_function(
    hub: Hub,
) -> None:
    stack = hub.local.stack
    [notification] = [
        n for n in stack.notifications if n.bucket == "DropBucket" and n.target_kind == "queue"
    ]
    assert (notification.target_kind, notification.prefix) == ("queue", "beqom/")
    assert notification.target_arn == stack.attribute("BeqomImportQueue", "Arn")
    [source] = [e for e in stack.event_sources if e.function == "BeqomImportFunction"]
    assert (source.source_arn, source.batch_size) == (notification.target_arn, 10)
    mapping = hub.local.client("lambda").get_event_source_mapping(UUID=source.uuid)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    redrive = hub.local.client("sqs").get_queue_attributes(
        QueueUrl=stack.physical("BeqomImportQueue"), AttributeNames=["RedrivePolicy"]
    )["Attributes"]["RedrivePolicy"]
    assert stack.attribute("BeqomImportDeadLetterQueue", "Arn") in redrive


def test_dropped_documents_are_imported_once_and_bad_ones_recorded_with_their_reason(
    hub: Hub,
) -> None:
    good = {f"{OPEN if i % 2 else RUNNING}/W{i:03d}/payslip-{i}.pdf" for i in range(40)}
    future = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bad = {
        f"{OPEN}/W999/payslip.pdf": "workerexternalId: Worker 'W999' does not exist.",
        f"{CLOSED}/W001/payslip.pdf": f"Communication round '{CLOSED}' is Closed",
        f"{OPEN}/W002/setup.exe": "file: File type '.exe' is not allowed",
        f"{OPEN}/W003/scan.pdf": "file: The file is not a valid PDF document.",
        f"{OPEN}/W004/later.pdf": "is in the future; beqom imports past dates only",
        f"{OPEN}/W005/empty.pdf": "empty.pdf: the file is empty",
        f"{OPEN}/loose.pdf": "a beqom document goes to beqom/<communicationRoundCode>/",
    }
    bodies = {
        f"{OPEN}/W002/setup.exe": b"MZ",
        f"{OPEN}/W003/scan.pdf": b"not a pdf",
        f"{OPEN}/W005/empty.pdf": b"",
    }

    def drop_all() -> None:
        for key in sorted(good | set(bad)):
            metadata = {"generation-time": future} if key.endswith("later.pdf") else {}
            hub.drop(f"beqom/{key}", bodies.get(key, b"%PDF-1.7 " + key.encode()), **metadata)

    with sqs_batches.held():
        drop_all()
    assert {"/".join(k) for k in hub.sim.documents} == good
    assert all(d.imports == 1 for d in hub.sim.documents.values())
    assert hub.sim.token_requests() == 1
    for key in good:
        entry = hub.entry(key)
        stored = hub.sim.documents[tuple(key.split("/"))]  # type: ignore[index]
        assert (entry.status, entry.external_id) == (Status.IMPORTED, stored.document_id)
        assert entry.attributes["overridden"] == "false"
    for key, reason in bad.items():
        entry = hub.entry(key)
        assert entry.status is Status.FAILED, key
        assert reason in (entry.last_error or ""), (key, entry.last_error)
    batch_sizes = [i for i in inproc_lambda.INVOCATIONS if i.function == "BeqomImportFunction"]
    assert not any(i.errored for i in batch_sizes)
    assert (sqs_batches.in_flight(), hub.dead_letters()) == (0, 0)

    calls_before = hub.import_calls()
    drop_all()  # the same files again
    new_calls = hub.import_calls() - calls_before
    assert all(d.imports == 1 for d in hub.sim.documents.values())
    assert {"/".join(k) for k in hub.sim.documents} == good
    # only the rejected documents were tried again (beqom judges them anew), no good one
    assert set(new_calls) == {(OPEN, "W999"), (CLOSED, "W001"), (OPEN, "W002"), (OPEN, "W003")}
    assert all(hub.entry(key).status is Status.IMPORTED for key in good)
    assert hub.sim.token_requests() == 1


def test_a_failed_delivery_is_retried_by_sqs_and_imports_once(hub: Hub) -> None:
    hub.sim.inject(Fault(503, times=2, path_prefix=IMPORT_PATH))  # both attempts of delivery 1
    hub.drop(f"beqom/{OPEN}/W010/payslip.pdf")
    entry = hub.entry(f"{OPEN}/W010/payslip.pdf")
    assert entry.status is Status.PUSHING
    assert entry.last_error == "beqom import: HTTP 503"
    assert sqs_batches.in_flight() == 1
    assert sqs_batches.redeliver() == 1  # the visibility timeout expires
    assert hub.entry(f"{OPEN}/W010/payslip.pdf").status is Status.IMPORTED
    [stored] = hub.sim.documents.values()
    assert stored.imports == 1
    assert sqs_batches.in_flight() == 0


def test_an_import_stored_before_the_answer_was_lost_is_not_doubled(hub: Hub) -> None:
    hub.sim.inject(Fault(502, path_prefix=IMPORT_PATH, after_processing=True))
    hub.drop(f"beqom/{OPEN}/W011/payslip.pdf")
    entry = hub.entry(f"{OPEN}/W011/payslip.pdf")
    assert entry.status is Status.IMPORTED
    assert entry.attributes["overridden"] == "true"
    [stored] = hub.sim.documents.values()
    assert stored.imports == 2  # stored once, overwritten by the retry: one document


def test_a_token_expiring_mid_run_is_renewed_once(hub: Hub) -> None:
    for i in range(5):
        hub.drop(f"beqom/{OPEN}/W{i:03d}/before.pdf")
    hub.sim.advance(3600)  # beqom's token expires; the hub's cache does not know yet
    for i in range(5):
        hub.drop(f"beqom/{OPEN}/W{i:03d}/after.pdf")
    assert len(hub.sim.documents) == 10
    assert hub.sim.token_requests() == 2
    assert [c.status for c in hub.sim.calls if c.path == IMPORT_PATH].count(401) == 1


def test_a_document_failing_every_delivery_ends_in_the_dead_letter_queue_visibly(
    hub: Hub,
) -> None:
    hub.sim.inject(Fault(503, times=100, path_prefix=IMPORT_PATH))
    hub.drop(f"beqom/{OPEN}/W012/payslip.pdf")
    rounds = 0
    while sqs_batches.redeliver():
        rounds += 1
    assert rounds == 5  # maxReceiveCount deliveries, then the dead-letter queue
    assert hub.dead_letters() == 1
    entry = hub.entry(f"{OPEN}/W012/payslip.pdf")
    assert (entry.status, entry.last_error) == (Status.PUSHING, "beqom import: HTTP 503")
    assert hub.sim.documents == {}


def test_a_manifest_imports_the_documents_it_names(hub: Hub) -> None:
    folder = "beqom/_manifests/2026-11-run"
    rows = ["file,workerExternalId,communicationRoundCode,generationTime"]
    for i in range(25):
        hub.drop(f"{folder}/files/{i}.pdf", b"%PDF-1.7 " + str(i).encode())
        rows.append(f"files/{i}.pdf,W{i:03d},{OPEN},2026-10-31T00:00:00Z")
    rows.append(f"files/missing.pdf,W050,{OPEN},")
    hub.drop(f"{folder}/manifest.csv", ("\n".join(rows) + "\n").encode())
    assert len(hub.sim.documents) == 25
    assert {d.generation_time for d in hub.sim.documents.values()} == {
        datetime(2026, 10, 31, tzinfo=UTC)
    }
    missing = hub.entry(f"{OPEN}/W050/missing.pdf")
    assert missing.status is Status.FAILED
    assert "does not exist" in (missing.last_error or "")
    manifest = hub.ledger().get("beqom-manifest", f"{folder}/manifest.csv")
    assert manifest is not None
    assert manifest.attributes["queued"] == "26"
