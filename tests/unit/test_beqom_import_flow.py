"""The beqom import flow and its batch handler, against in-memory ports and a moto ledger built
from the template: what is imported, skipped, rejected, retried, and reported to SQS."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from erphub import faults
from erphub.clients.beqom import ImportedDocument, ImportRejected, WorkerDocument
from erphub.clients.drops import DropObject, DroppedFile, FileTooLargeError
from erphub.errors import BadInputError, ConfigurationError, TransientError
from erphub.flows import beqom_import as flow
from erphub.ledger import Ledger, Status
from tests.fakes import create_table_from_template

REPO = Path(__file__).resolve().parents[2]
BUCKET = "erphub-test-drops"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


# --- fakes ----------------------------------------------------------------------------------------


class FakeBeqom:
    """beqom's import rules in memory: one document per round/worker/file name, overwritten."""

    def __init__(self) -> None:
        self.workers = {f"W{i}" for i in range(1, 10)}
        self.rounds = {"PAY-11": "Open", "PAY-10": "Closed"}
        self.documents: dict[tuple[str, str, str], tuple[str, bytes, datetime]] = {}
        self.calls: list[WorkerDocument] = []
        self.fail_next = 0

    def import_document(
        self, document: WorkerDocument, content: bytes
    ) -> ImportedDocument | ImportRejected:
        self.calls.append(document)
        if self.fail_next:
            self.fail_next -= 1
            msg = "beqom import: HTTP 503"
            raise TransientError(msg)
        errors = []
        if document.worker_external_id not in self.workers:
            errors.append(
                f"workerexternalId: Worker '{document.worker_external_id}' does not exist."
            )
        if self.rounds.get(document.communication_round_code) != "Open":
            errors.append(
                f"communicationRoundCode: round {document.communication_round_code} is not open."
            )
        if not document.file_name.endswith(".pdf"):
            errors.append("file: File type is not allowed.")
        if errors:
            return ImportRejected(status=400, reasons=errors)
        key = (document.communication_round_code, document.worker_external_id, document.file_name)
        existing = self.documents.get(key)
        document_id = existing[0] if existing else f"doc-{len(self.documents) + 1}"
        self.documents[key] = (document_id, content, document.generation_time)
        return ImportedDocument(
            document_id=document_id,
            overridden=existing is not None,
            import_time="2026-11-21T12:00:00Z",
        )


class FakeDrops:
    """Dropped files in memory."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.reads = 0

    def put(self, key: str, content: bytes, metadata: dict[str, str] | None = None) -> DropObject:
        self.files[key] = (content, metadata or {})
        return self.ref(key)

    def ref(self, key: str) -> DropObject:
        content, _ = self.files[key]
        return DropObject(
            bucket=BUCKET,
            key=key,
            etag=hashlib.md5(content).hexdigest(),
            size=len(content),
            event_time=NOW - timedelta(minutes=5),
        )

    def etag(self, obj: DropObject) -> str:
        if obj.key not in self.files:
            msg = f"{obj.uri} does not exist (any more)"
            raise BadInputError(msg)
        return hashlib.md5(self.files[obj.key][0]).hexdigest()

    def read(self, obj: DropObject, max_bytes: int) -> DroppedFile:
        self.reads += 1
        if obj.key not in self.files:
            msg = f"{obj.uri} does not exist (any more)"
            raise BadInputError(msg)
        content, metadata = self.files[obj.key]
        if len(content) > max_bytes:
            msg = f"{obj.uri} is too large"
            raise FileTooLargeError(msg)
        return DroppedFile(content=content, etag=self.etag(obj), metadata=metadata)


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[Mapping[str, Any]] = []

    def send(self, bodies: Sequence[Mapping[str, Any]]) -> int:
        self.sent.extend(bodies)
        return len(bodies)


def s3_event(*objects: DropObject) -> str:
    """An S3 notification as it reaches the queue (keys form-encoded, as AWS does)."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "eventTime": (obj.event_time or NOW).isoformat().replace("+00:00", "Z"),
                    "s3": {
                        "bucket": {"name": obj.bucket},
                        "object": {"key": quote_plus(obj.key), "size": obj.size, "eTag": obj.etag},
                    },
                }
                for obj in objects
            ]
        }
    )


class World:
    def __init__(self) -> None:
        self.clock = [NOW.timestamp()]
        self.ledger = Ledger(
            boto3.resource("dynamodb").Table(create_table_from_template()),
            clock=lambda: self.clock[0],
        )
        self.beqom = FakeBeqom()
        self.drops = FakeDrops()
        self.queue = FakeQueue()
        self.deps = flow.ImportDeps(
            beqom=self.beqom,
            ledger=self.ledger,
            drops=self.drops,
            queue=self.queue,
            lease_seconds=900,
            clock=lambda: datetime.fromtimestamp(self.clock[0], UTC),
        )

    def deliver(self, body: str, run: str | None = None) -> list[flow.ImportOutcome]:
        return flow.import_message(body, run or str(uuid.uuid4()), self.deps)

    def entry(self, key: str, flow_name: str = flow.FLOW) -> Any:
        entry = self.ledger.get(flow_name, key)
        assert entry is not None, key
        return entry


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


# --- documents ------------------------------------------------------------------------------------


def test_a_dropped_document_is_imported_once_with_its_id_overridden_and_time_recorded(
    world: World,
) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/payslip 2026-11.pdf", b"%PDF-1.7 one")
    [outcome] = world.deliver(s3_event(obj))
    assert outcome.outcome == "imported"
    assert outcome.document_id == "doc-1"
    [call] = world.beqom.calls
    assert call.business_key == "PAY-11/W1/payslip 2026-11.pdf"
    assert call.generation_time == NOW - timedelta(minutes=5)  # the drop time
    entry = world.entry("PAY-11/W1/payslip 2026-11.pdf")
    assert entry.status is Status.IMPORTED
    assert entry.external_id == "doc-1"
    assert entry.lease_owner is None
    assert entry.attributes["documentId"] == "doc-1"
    assert entry.attributes["overridden"] == "false"
    assert entry.attributes["importTime"] == "2026-11-21T12:00:00Z"
    assert entry.attributes["etag"] == obj.etag
    assert entry.attributes["key"] == obj.key


def test_the_same_event_or_the_same_file_dropped_again_imports_nothing(world: World) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF-1.7 one")
    world.deliver(s3_event(obj))
    [again] = world.deliver(s3_event(obj))
    [redropped] = world.deliver(s3_event(world.drops.put(obj.key, b"%PDF-1.7 one")))
    assert (again.outcome, redropped.outcome) == ("duplicate", "duplicate")
    assert again.document_id == "doc-1"
    assert len(world.beqom.calls) == 1
    assert world.drops.reads == 1
    entry = world.entry("PAY-11/W1/a.pdf")
    assert entry.status is Status.IMPORTED
    assert "dropped again unchanged" in entry.history[-1].detail


def test_a_changed_file_under_the_same_name_replaces_the_document_in_beqom(world: World) -> None:
    world.deliver(s3_event(world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF-1.7 v1")))
    [outcome] = world.deliver(s3_event(world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF-1.7 v2")))
    assert (outcome.outcome, outcome.document_id, outcome.overridden) == ("imported", "doc-1", True)
    assert world.beqom.documents["PAY-11", "W1", "a.pdf"][1] == b"%PDF-1.7 v2"
    entry = world.entry("PAY-11/W1/a.pdf")
    assert entry.attributes["overridden"] == "true"
    assert "a changed file replaced the document" in entry.history[-1].detail


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("beqom/PAY-11/W404/a.pdf", "workerexternalId: Worker 'W404' does not exist."),
        ("beqom/PAY-10/W1/a.pdf", "communicationRoundCode: round PAY-10 is not open."),
        ("beqom/PAY-11/W1/a.exe", "file: File type is not allowed."),
    ],
    ids=["unknown-worker", "closed-round", "wrong-file-type"],
)
def test_a_document_beqom_rejects_is_recorded_with_its_reason_and_the_batch_goes_on(
    world: World, key: str, reason: str
) -> None:
    good = world.drops.put("beqom/PAY-11/W2/ok.pdf", b"%PDF-1.7")
    bad = world.drops.put(key, b"%PDF-1.7")
    outcomes = world.deliver(s3_event(bad, good))
    assert [o.outcome for o in outcomes] == ["failed", "imported"]
    assert outcomes[0].reasons == [f"beqom rejected the document: {reason}"]
    entry = world.entry(key.removeprefix("beqom/"))
    assert entry.status is Status.FAILED
    assert entry.reasons == [f"beqom rejected the document: {reason}"]
    assert entry.last_error == f"beqom rejected the document: {reason}"
    assert entry.lease_owner is None


def test_a_future_generation_time_is_refused_before_calling_beqom(world: World) -> None:
    obj = world.drops.put(
        "beqom/PAY-11/W1/a.pdf", b"%PDF-1.7", {"generation-time": "2027-01-31T00:00:00Z"}
    )
    [outcome] = world.deliver(s3_event(obj))
    assert outcome.outcome == "failed"
    assert outcome.reasons == [
        "generationTime 2027-01-31T00:00:00+00:00 is in the future; beqom imports past dates only"
    ]
    assert world.beqom.calls == []


def test_a_file_just_dropped_is_dated_clear_of_now_so_no_clock_takes_it_for_future(
    world: World,
) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF").model_copy(update={"event_time": NOW})
    world.deliver(s3_event(obj))
    assert world.beqom.calls[0].generation_time == NOW - timedelta(minutes=5)


def test_the_generation_time_metadata_is_sent_when_it_is_a_past_date(world: World) -> None:
    obj = world.drops.put(
        "beqom/PAY-11/W1/a.pdf", b"%PDF-1.7", {"generation-time": "2024-01-31T08:00:00+01:00"}
    )
    world.deliver(s3_event(obj))
    assert world.beqom.calls[0].generation_time == datetime(2024, 1, 31, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("content", "metadata", "reason"),
    [
        (b"", {}, "a.pdf: the file is empty"),
        (
            b"%PDF",
            {"generation-time": "yesterday"},
            "x-amz-meta-generation-time 'yesterday' is not",
        ),
        (b"%PDF", {"generation-time": "2024-01-31T00:00:00"}, "has no time zone"),
    ],
    ids=["empty", "bad-date", "naive-date"],
)
def test_files_that_cannot_be_imported_are_recorded_with_a_clear_reason(
    world: World, content: bytes, metadata: dict[str, str], reason: str
) -> None:
    [outcome] = world.deliver(s3_event(world.drops.put("beqom/PAY-11/W1/a.pdf", content, metadata)))
    assert outcome.outcome == "failed"
    assert reason in outcome.reasons[0]
    assert world.entry("PAY-11/W1/a.pdf").status is Status.FAILED
    assert world.beqom.calls == []


def test_a_file_outside_the_layout_is_recorded_against_its_key(world: World) -> None:
    obj = world.drops.put("beqom/PAY-11/payslip.pdf", b"%PDF")
    [outcome] = world.deliver(s3_event(obj))
    assert outcome.outcome == "failed"
    assert "beqom/<communicationRoundCode>/<workerExternalId>/<file>" in outcome.reasons[0]
    assert world.entry("PAY-11/payslip.pdf").status is Status.FAILED


def test_a_file_deleted_before_it_was_read_is_recorded(world: World) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF")
    del world.drops.files[obj.key]
    [outcome] = world.deliver(s3_event(obj))
    assert outcome.reasons == [f"s3://{BUCKET}/beqom/PAY-11/W1/a.pdf does not exist (any more)"]


def test_s3_test_events_folders_and_manifest_data_files_do_nothing(world: World) -> None:
    assert world.deliver(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    folder = DropObject(bucket=BUCKET, key="beqom/PAY-11/", etag="x")
    data = DropObject(bucket=BUCKET, key="beqom/_manifests/b1/files/a.pdf", etag="x")
    outcomes = world.deliver(s3_event(folder, data))
    assert [o.outcome for o in outcomes] == ["ignored", "ignored"]
    assert list(world.ledger.entries()) == []


@pytest.mark.parametrize("body", ["not json", "[1]", json.dumps({"Records": [{"s3": {}}]})])
def test_an_unreadable_message_fails_so_that_it_ends_in_the_dead_letter_queue(
    world: World, body: str
) -> None:
    with pytest.raises(BadInputError, match="message"):
        world.deliver(body)


# --- retries, crashes, overlapping deliveries -----------------------------------------------------


def test_a_transient_failure_is_deferred_and_raised_so_sqs_delivers_it_again(world: World) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF")
    world.beqom.fail_next = 1
    with pytest.raises(TransientError, match="HTTP 503"):
        world.deliver(s3_event(obj))
    entry = world.entry("PAY-11/W1/a.pdf")
    assert entry.status is Status.PUSHING  # the import may have reached beqom
    assert entry.last_error == "beqom import: HTTP 503"
    assert entry.lease_owner is None
    [outcome] = world.deliver(s3_event(obj))
    assert outcome.outcome == "imported"
    assert len(world.beqom.documents) == 1


def test_refused_credentials_leave_every_document_deferred_with_the_reason(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(document: WorkerDocument, content: bytes) -> ImportedDocument:
        msg = "beqom refused the token request (invalid_client): check the client id"
        raise ConfigurationError(msg)

    monkeypatch.setattr(world.beqom, "import_document", refuse)
    with pytest.raises(ConfigurationError, match="invalid_client"):
        world.deliver(s3_event(world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF")))
    entry = world.entry("PAY-11/W1/a.pdf")
    assert entry.status is Status.PUSHING
    assert entry.last_error is not None
    assert "invalid_client" in entry.last_error
    assert entry.lease_owner is None  # the next delivery, once fixed, takes it at once


def test_a_crash_after_beqom_stored_the_document_is_reconciled_by_overridden(
    world: World,
) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF")
    faults.arm("beqom.after_import")
    with pytest.raises(faults.InjectedCrash):
        world.deliver(s3_event(obj), run="crashed-run")
    assert world.entry("PAY-11/W1/a.pdf").status is Status.PUSHING
    # SQS delivers again after the visibility timeout; by then the lease has expired.
    with pytest.raises(flow.DocumentBusyError):
        world.deliver(s3_event(obj), run="too-early")
    world.clock[0] += 901
    [outcome] = world.deliver(s3_event(obj), run="after-timeout")
    assert (outcome.outcome, outcome.overridden) == ("imported", True)
    assert len(world.beqom.documents) == 1
    assert len(world.beqom.calls) == 2
    entry = world.entry("PAY-11/W1/a.pdf")
    assert entry.status is Status.IMPORTED
    assert entry.attempts == 2
    assert "beqom already held it: the last attempt had reached it" in entry.history[-1].detail


def test_a_document_held_by_another_delivery_is_retried_later_not_imported_twice(
    world: World,
) -> None:
    obj = world.drops.put("beqom/PAY-11/W1/a.pdf", b"%PDF")
    assert world.ledger.claim(flow.FLOW, "PAY-11/W1/a.pdf", owner="other", lease_seconds=900)
    with pytest.raises(flow.DocumentBusyError, match="another delivery"):
        world.deliver(s3_event(obj))
    assert world.beqom.calls == []


# --- manifests ------------------------------------------------------------------------------------

MANIFEST = (
    "file,workerExternalId,communicationRoundCode,generationTime\n"
    "files/W1.pdf,W1,PAY-11,2026-10-31T00:00:00Z\n"
    "files/W2.pdf,W2,PAY-11,\n"
    ",W3,PAY-11,\n"
    "../escape.pdf,W4,PAY-11,\n"
    "files/W5.pdf,W5,PAY-11,31/10/2026\n"
    "files/W1.pdf,W1,PAY-11,\n"
)


def test_a_manifest_becomes_one_queue_message_per_document_and_lists_its_bad_rows(
    world: World,
) -> None:
    world.drops.put("beqom/_manifests/b1/files/W1.pdf", b"%PDF-1 W1")
    world.drops.put("beqom/_manifests/b1/files/W2.pdf", b"%PDF-1 W2")
    manifest = world.drops.put("beqom/_manifests/b1/manifest.csv", MANIFEST.encode())
    [outcome] = world.deliver(s3_event(manifest))
    assert outcome.outcome == "queued"
    assert outcome.reasons == [
        "line 4: file empty",
        "line 5: file '../escape.pdf' must be a path inside beqom/_manifests/b1/",
        "line 6: generationTime '31/10/2026' is not an ISO 8601 date",
        "line 7: PAY-11/W1/W1.pdf is named twice",
    ]
    assert [m["workerExternalId"] for m in world.queue.sent] == ["W1", "W2"]
    entry = world.entry("beqom/_manifests/b1/manifest.csv", flow.MANIFEST_FLOW)
    assert entry.status is Status.IMPORTED
    assert entry.attributes["queued"] == "2"
    assert len(entry.reasons) == 4

    outcomes = [o for body in world.queue.sent for o in world.deliver(json.dumps(body))]
    assert [o.outcome for o in outcomes] == ["imported", "imported"]
    assert world.beqom.documents["PAY-11", "W1", "W1.pdf"][2] == datetime(2026, 10, 31, tzinfo=UTC)
    assert world.beqom.documents["PAY-11", "W2", "W2.pdf"][1] == b"%PDF-1 W2"

    [again] = world.deliver(s3_event(manifest))
    assert again.outcome == "duplicate"
    assert len(world.queue.sent) == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"file,worker\nx,y\n", "missing column(s) workerExternalId, communicationRoundCode"),
        (b"file,workerExternalId,communicationRoundCode\n\xff\xfe,W1,R\n", "not UTF-8"),
    ],
    ids=["columns", "encoding"],
)
def test_an_unreadable_manifest_fails_with_its_reason(
    world: World, content: bytes, reason: str
) -> None:
    manifest = world.drops.put("beqom/_manifests/b2/manifest.csv", content)
    [outcome] = world.deliver(s3_event(manifest))
    assert outcome.outcome == "failed"
    assert reason in outcome.reasons[0]
    assert world.queue.sent == []
    assert world.entry(manifest.key, flow.MANIFEST_FLOW).status is Status.FAILED


def test_a_manifest_row_naming_a_missing_file_fails_that_document_alone(world: World) -> None:
    world.drops.put("beqom/_manifests/b3/manifest.csv", b"")
    task = flow.DocumentTask(
        communication_round_code="PAY-11",
        worker_external_id="W1",
        file_name="gone.pdf",
        source=DropObject(bucket=BUCKET, key="beqom/_manifests/b3/gone.pdf"),
    )
    [outcome] = world.deliver(json.dumps(task.dump()))
    assert outcome.outcome == "failed"
    assert "does not exist" in outcome.reasons[0]


# --- the batch handler ----------------------------------------------------------------------------


def load_handler() -> ModuleType:
    path = REPO / "functions" / "beqom_import" / "app.py"
    spec = importlib.util.spec_from_file_location("beqom_import_app_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:beqom-import",
                "awsRegion": "eu-west-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def lambda_context() -> Any:
    return SimpleNamespace(
        function_name="beqom-import",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:beqom-import",
        memory_limit_in_mb=512,
        aws_request_id=str(uuid.uuid4()),
        get_remaining_time_in_millis=lambda: 300_000,
    )


@pytest.fixture
def app(world: World, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The handler module, wired to the world's fakes."""
    module = load_handler()
    monkeypatch.setattr(module, "beqom_import_deps", lambda: world.deps)
    return module


def test_the_handler_reports_exactly_the_records_to_deliver_again(
    world: World, app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = world.beqom.import_document

    def flaky(document: WorkerDocument, content: bytes) -> ImportedDocument | ImportRejected:
        if document.file_name == "flaky.pdf":
            msg = "beqom import: HTTP 503"
            raise TransientError(msg)
        return real_import(document, content)

    monkeypatch.setattr(world.beqom, "import_document", flaky)
    event = sqs_event(
        s3_event(world.drops.put("beqom/PAY-10/W1/closed.pdf", b"%PDF")),
        s3_event(world.drops.put("beqom/PAY-11/W1/flaky.pdf", b"%PDF")),
        "garbage",
        s3_event(world.drops.put("beqom/PAY-11/W2/ok.pdf", b"%PDF")),
    )
    response = app.lambda_handler(event, lambda_context())
    # the closed round is a recorded rejection (done); the 503 and the garbage go round again
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    assert set(world.beqom.documents) == {("PAY-11", "W2", "ok.pdf")}
    assert world.entry("PAY-10/W1/closed.pdf").status is Status.FAILED
    assert world.entry("PAY-11/W1/flaky.pdf").status is Status.PUSHING


def test_a_batch_whose_every_record_fails_fails_the_invocation(app: ModuleType) -> None:
    with pytest.raises(Exception, match="All records failed"):
        app.lambda_handler(sqs_event("garbage", "more garbage"), lambda_context())


def test_the_sample_event_is_what_the_flow_reads() -> None:
    event = json.loads((REPO / "events" / "beqom_import.json").read_text())
    document, task, test_event = (flow.dropped_objects(r["body"]) for r in event["Records"])
    assert isinstance(document, list)
    [obj] = document
    assert obj.key == "beqom/PAY-2026-11/W00042/payslip 2026-11.pdf"  # form-encoded in events
    assert (obj.version_id, obj.etag) == (
        "096fKKXTRTtl3on89fVO.nfljtsv6qko",
        "0f343b0931126a20f133d67c2b018a3b",
    )
    assert isinstance(task, flow.DocumentTask)
    assert task.business_key == "BONUS-2026/W00007/W00007.pdf"
    assert test_event == []
