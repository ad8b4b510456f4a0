"""The eBill upload flow against an in-memory eBill and a moto ledger and S3 from the template."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from moto import mock_aws

from erphub import faults
from erphub.clients.ebill_port import (
    BatchProcess,
    DownloadUrlExpired,
    EbillRejected,
    InitSpec,
    UploadSpec,
    UploadUrlExpired,
)
from erphub.clients.workflows import StepFunctionsStarter
from erphub.errors import BadInputError, LeaseLostError, TransientError
from erphub.files import FileStore
from erphub.flows import ebill_upload as flow
from erphub.flows.ebill_failure import FailureRequest, record_failure
from erphub.flows.ebill_finalize import FinalizeRequest, finalize_batch
from erphub.flows.ebill_plan import PlanRequest, plan_drop
from erphub.flows.ebill_poll import PollRequest, poll_status
from erphub.flows.ebill_results import ResultsRequest, ResultsSummary, collect_results
from erphub.flows.ebill_trigger import S3Notification, TriggerDeps, start_drop_executions
from erphub.flows.ebill_upload import (
    FLOW,
    MANIFEST_LIMIT_BYTES,
    MAX_UPLOAD_ATTEMPTS,
    BatchJob,
    DropDeps,
    DropRef,
    EbillDeps,
    PollDeadlineExceeded,
    PollPolicy,
    UploadAttemptsExhausted,
    UploadResult,
    classify,
    execution_name,
    run_batch_init,
)
from erphub.flows.ebill_upload_files import UploadRequest, upload_files
from erphub.ledger import Ledger, Status
from tests.fakes import create_table_from_template

T = TypeVar("T")
REGION = {"LocationConstraint": "eu-west-1"}


class FakeEbill:
    """eBill's batchProcess semantics in memory.

    A finalized batch is Queued, then Processing, then done after ``reads_per_stage`` status
    reads per stage. A row fails when it contains ``BAD``. Upload URLs can be issued expired.
    """

    def __init__(self, reads_per_stage: int = 1) -> None:
        self.reads_per_stage = reads_per_stage
        self.batches: dict[str, dict[str, Any]] = {}
        self.by_job: dict[str, str] = {}
        self.creates: list[UploadSpec] = []
        self.finalizes: list[tuple[str, str]] = []
        self.uploads: list[tuple[str, int]] = []
        self.refused_uploads: list[str] = []
        self.chunk_sizes: list[int] = []
        self.expire_next_urls = 0
        self.fail_next_puts = 0
        self.expire_next_downloads = 0
        self.finds = 0
        self.inits: list[InitSpec] = []

    # --- the port -------------------------------------------------------------------------------

    def create_upload(self, spec: UploadSpec) -> BatchProcess:
        if spec.job_id in self.by_job:
            raise EbillRejected("POST S3FileUpload", 400, [f"jobId {spec.job_id} exists"])
        batch_id = str(len(self.batches) + 1)
        parent = spec.parent_id
        if spec.sub_operation == "Invoice Line Item":
            assert parent is not None and spec.parent_job_id == self.batches[parent]["job_id"]
            self.batches[parent]["children"].append(batch_id)
        else:
            assert parent is None and spec.parent_job_id is None
        self.batches[batch_id] = {
            "job_id": spec.job_id,
            "sub_operation": spec.sub_operation,
            "status": "Draft",
            "content": None,
            "parent": parent,
            "children": [],
            "reads": 0,
            "expired": self.expire_next_urls > 0,
            "output": None,
            "ok": 0,
            "failed": 0,
        }
        self.expire_next_urls = max(0, self.expire_next_urls - 1)
        self.by_job[spec.job_id] = batch_id
        self.creates.append(spec)
        return BatchProcess(
            id=batch_id,
            job_id=spec.job_id,
            status="Draft",
            upload_url=f"https://s3.test/in/{batch_id}?X-Amz-Signature=secret",
        )

    def upload(self, url: str, chunks: Iterable[bytes], length: int) -> None:
        batch_id = url.split("/in/")[1].split("?", maxsplit=1)[0]
        batch = self.batches[batch_id]
        if batch["expired"]:
            self.refused_uploads.append(batch_id)
            msg = "upload to https://s3.test/in: HTTP 403 AccessDenied: Request has expired"
            raise UploadUrlExpired(msg)
        if self.fail_next_puts:
            self.fail_next_puts -= 1
            next(iter(chunks), None)
            msg = "upload: HTTP 503"
            raise TransientError(msg)
        parts = []
        for chunk in chunks:
            self.chunk_sizes.append(len(chunk))
            parts.append(chunk)
        data = b"".join(parts)
        assert len(data) == length
        batch["content"] = data
        self.uploads.append((batch_id, len(data)))

    def finalize(self, batch_id: str, job_id: str) -> BatchProcess:
        self.finalizes.append((batch_id, job_id))
        batch = self.batches[batch_id]
        assert batch["job_id"] == job_id and batch["parent"] is None
        if batch["status"] == "Draft":
            batch["status"] = "Queued" if batch["content"] is not None else "Failed"
            for child in batch["children"]:
                self.batches[child]["status"] = batch["status"]
        return self._view(batch_id, with_children=False)

    def find(
        self, *, batch_id: str | None = None, job_id: str | None = None
    ) -> BatchProcess | None:
        self.finds += 1
        if job_id in {spec.job_id for spec in self.inits}:
            return BatchProcess(id="99", job_id=job_id)
        found = batch_id if batch_id else self.by_job.get(job_id or "")
        if found is None or found not in self.batches:
            return None
        batch = self.batches[found]
        if batch["parent"] is None and batch["status"] in ("Queued", "Processing"):
            batch["reads"] += 1
            if batch["reads"] >= self.reads_per_stage:
                batch["reads"] = 0
                for member in [found, *batch["children"]]:
                    self._step(member)
        return self._view(found)

    @contextmanager
    def download(self, url: str) -> Iterator[Iterator[bytes]]:
        if self.expire_next_downloads:
            self.expire_next_downloads -= 1
            msg = "download: HTTP 403 AccessDenied: Request has expired"
            raise DownloadUrlExpired(msg)
        output: bytes = self.batches[url.split("/out/")[1].split("?", maxsplit=1)[0]]["output"]
        yield iter([output[i : i + 7] for i in range(0, len(output), 7)])

    def init(self, spec: InitSpec) -> BatchProcess:
        self.inits.append(spec)
        return BatchProcess(id="99", job_id=spec.job_id)

    # --- simulation ------------------------------------------------------------------------------

    def _step(self, batch_id: str) -> None:
        batch = self.batches[batch_id]
        if batch["status"] == "Queued":
            batch["status"] = "Processing"
            return
        if batch["status"] != "Processing":
            return
        reader = csv.reader(io.StringIO(batch["content"].decode()))
        header = next(reader)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*header, "Result", "Error Message"])
        for row in reader:
            bad = any("BAD" in cell for cell in row)
            batch["failed" if bad else "ok"] += 1
            writer.writerow([*row, "Failed" if bad else "Success", "bad value" if bad else ""])
        batch["output"] = out.getvalue().encode()
        batch["status"] = (
            "Success"
            if not batch["failed"]
            else ("Failed" if not batch["ok"] else "Partial Success")
        )

    def _view(self, batch_id: str, *, with_children: bool = True) -> BatchProcess:
        batch = self.batches[batch_id]
        done = batch["output"] is not None
        return BatchProcess(
            id=batch_id,
            job_id=batch["job_id"],
            status=batch["status"],
            sub_operation=batch["sub_operation"],
            success_count=batch["ok"],
            fail_count=batch["failed"],
            error_message="Input file not found"
            if batch["status"] == "Failed" and not done
            else None,
            download_url=f"https://s3.test/out/{batch_id}?X-Amz-Signature=secret" if done else None,
            children=tuple(self._view(c) for c in batch["children"]) if with_children else (),
        )


class Spy:
    """Starts named executions once, like Step Functions."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}

    def start(self, name: str, payload: dict[str, Any]) -> str | None:
        if name in self.started:
            return None
        self.started[name] = payload
        return f"arn:execution:{name}"


class Aws:
    """One moto session for the module (clients are slow to build); each test gets its own
    buckets and ledger table."""

    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name="eu-west-1")
        self.dynamodb = boto3.resource("dynamodb", region_name="eu-west-1")
        self.worlds = itertools.count(1)


class World:
    def __init__(self, aws: Aws, clock: list[float]) -> None:
        self.clock = clock
        self.ebill = FakeEbill()
        self.s3 = aws.s3
        n = next(aws.worlds)
        self.drops, self.results = f"drops-{n}", f"results-{n}"
        for bucket in (self.drops, self.results):
            self.s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=REGION)
        self.s3.put_bucket_versioning(
            Bucket=self.drops, VersioningConfiguration={"Status": "Enabled"}
        )
        self.table = aws.dynamodb.Table(create_table_from_template(name=f"ledger-{n}"))
        self.ledger = Ledger(self.table, clock=lambda: clock[0])
        self.files = FileStore(self.s3, chunk_size=1024)
        self.retry_crashes = False
        self.policy = PollPolicy(initial_seconds=10, max_seconds=40, deadline_seconds=600)
        self.drop_deps = DropDeps(self.ledger, self.files, self.policy.lease_seconds)
        self.deps = EbillDeps(
            ebill=self.ebill,
            ledger=self.ledger,
            files=self.files,
            results_bucket=self.results,
            polling=self.policy,
            clock=lambda: clock[0],
            sleep=lambda _: None,
        )

    def put(self, key: str, body: bytes) -> DropRef:
        version = self.s3.put_object(Bucket=self.drops, Key=key, Body=body)["VersionId"]
        kind = classify(key, "ebill/") or "customers"  # line-item files start nothing
        return DropRef(bucket=self.drops, key=key, version_id=version, kind=kind)

    def step(self, call: Callable[[], T]) -> T:
        """Run one step; with ``retry_crashes``, a crashed step runs again (once)."""
        try:
            return call()
        except faults.InjectedCrash:
            if not self.retry_crashes:
                raise
            return call()

    def plan(self, drop: DropRef, run: str = "run-1") -> BatchJob:
        request = PlanRequest(run_id=run, drop=drop)
        return self.step(lambda: plan_drop(request, self.drop_deps))

    def upload(self, job: BatchJob, run: str = "run-1") -> UploadResult:
        request = UploadRequest(run_id=run, job=job)
        for _ in range(10):
            result = self.step(lambda: upload_files(request, self.deps))
            if result.done:
                return result
        raise AssertionError("upload never finished")

    def run(self, drop: DropRef, run: str = "run-1") -> ResultsSummary:
        """One execution, step by step, as the state machine runs it."""
        job = self.plan(drop, run)
        upload = self.upload(job, run)
        finalize = FinalizeRequest(run_id=run, job=job, upload=upload)
        batch = self.step(lambda: finalize_batch(finalize, self.deps))
        waits = []
        while not batch.terminal:
            self.clock[0] += batch.wait_seconds
            waits.append(batch.wait_seconds)
            batch = poll_status(PollRequest(run_id=run, job=job, batch=batch), self.deps)
        self.waits = waits
        results = ResultsRequest(run_id=run, job=job, upload=upload, batch=batch)
        return self.step(lambda: collect_results(results, self.deps))

    def entry(self, document_id: str) -> Any:
        return self.ledger.get(FLOW, document_id)

    def failed_rows(self) -> dict[str, list[str]]:
        return {
            e.document_id: e.reasons
            for e in self.ledger.entries(FLOW)
            if "#row-" in e.document_id and e.status == Status.FAILED
        }


def customers_csv(rows: int, bad: Iterable[int]) -> bytes:
    bad = set(bad)
    lines = ["Account Number,Company Name,Primary Email"]
    lines += [
        f"C{n:05d},Customer {n},{'BAD' if n in bad else f'c{n}@example.com'}"
        for n in range(1, rows + 1)
    ]
    return ("\n".join(lines) + "\n").encode()


def invoice_drop(world: World, folder: str = "ebill/invoices/2026-11/") -> DropRef:
    world.put(folder + "inv.csv", b"Invoice Number,Customer Ref\nI1,C1\nI2,BAD\n")
    world.put(folder + "itm-1.csv", b"Invoice Number,Description\nI1,Consulting\n")
    world.put(folder + "itm-2.csv", b"Invoice Number,Description\nI1,Licence\nI9,BAD\n")
    manifest = {"invoice": "inv.csv", "lineItems": ["itm-1.csv", "itm-2.csv"]}
    return world.put(folder + "manifest.json", json.dumps(manifest).encode())


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


# --- identities and the trigger ----------------------------------------------------------------


def test_drops_are_classified_by_the_layout() -> None:
    assert classify("ebill/customers/aug.csv", "ebill/") == "customers"
    assert classify("ebill/customers/2026/aug.CSV", "ebill/") == "customers"
    assert classify("ebill/invoices/aug/manifest.json", "ebill/") == "invoices"
    assert classify("ebill/invoices/aug/inv.csv", "ebill/") is None
    assert classify("ebill/invoices/manifest.json", "ebill/") is None
    assert classify("ebill/invoices/a/b/manifest.json", "ebill/") is None
    assert classify("beqom/r1/w1/doc.pdf", "ebill/") is None
    assert classify("hub/ebill/customers/x.csv", "hub/ebill/") == "customers"


def test_execution_names_are_readable_unique_per_version_and_valid() -> None:
    drop = DropRef(
        bucket="b", key="ebill/customers/Kunden März 2026.csv", version_id="v1", kind="customers"
    )
    name = execution_name(drop)
    assert name.startswith("ebill-cus-Kunden-M-rz-2026-")
    assert name == execution_name(drop.model_copy())
    assert name != execution_name(drop.model_copy(update={"version_id": "v2"}))
    long = drop.model_copy(
        update={"key": "ebill/invoices/" + "x" * 300 + "/manifest.json", "kind": "invoices"}
    )
    for candidate in (name, execution_name(long)):
        assert len(candidate) <= 80
        assert all(c.isalnum() or c in "-_" for c in candidate)
    assert execution_name(long).endswith(long.digest[:12])
    assert drop.tag == "EH" + drop.digest[:12].upper()


def event(key: str, version: str | None, bucket: str) -> S3Notification:
    obj: dict[str, Any] = {"key": key, "size": 10}
    if version:
        obj["versionId"] = version
    return S3Notification.model_validate(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": obj},
                }
            ]
        }
    )


def test_a_repeated_s3_event_starts_one_execution(world: World) -> None:
    drop = world.put("ebill/customers/aug list.csv", customers_csv(3, []))
    spy = Spy()
    deps = TriggerDeps(starter=spy, files=world.files, prefix="ebill/")
    # AWS form-encodes the key; moto percent-encodes "/" too: both decode to the same key.
    deliveries = [
        event("ebill/customers/aug+list.csv", drop.version_id, world.drops),
        event("ebill%2Fcustomers%2Faug%20list.csv", drop.version_id, world.drops),
        event("ebill/customers/aug+list.csv", drop.version_id, world.drops),
    ]
    results = [start_drop_executions(d, deps) for d in deliveries]
    name = execution_name(drop)
    assert results == [{name: f"arn:execution:{name}"}, {name: None}, {name: None}]
    assert spy.started == {name: {"drop": drop.dump()}}


def test_a_repeated_event_against_step_functions_starts_nothing_twice(world: World) -> None:
    sfn = boto3.client("stepfunctions")
    role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"][
        "Arn"
    ]
    machine = sfn.create_state_machine(
        name="m",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn=role,
    )["stateMachineArn"]
    drop = world.put("ebill/customers/aug.csv", customers_csv(3, []))
    deps = TriggerDeps(StepFunctionsStarter(sfn, machine), world.files, "ebill/")
    for _ in range(3):
        start_drop_executions(event(drop.key, drop.version_id, world.drops), deps)
    assert len(sfn.list_executions(stateMachineArn=machine)["executions"]) == 1


def test_without_a_version_in_the_event_the_current_version_is_used(world: World) -> None:
    # moto's S3 events carry no versionId (AWS's do, for a versioned bucket).
    drop = world.put("ebill/customers/aug.csv", customers_csv(3, []))
    spy = Spy()
    start_drop_executions(
        event(drop.key, None, world.drops), TriggerDeps(spy, world.files, "ebill/")
    )
    assert [p["drop"]["versionId"] for p in spy.started.values()] == [drop.version_id]


def test_moto_s3_events_still_lack_the_version_and_percent_encode_slashes() -> None:
    # The two moto 5.2.5 quirks the trigger copes with (AWS sends versionId and form-encodes).
    from types import SimpleNamespace

    from moto.s3.notifications import _get_s3_event

    bucket = SimpleNamespace(name="drops", arn="arn:aws:s3:::drops", region_name="eu-west-1")
    key = SimpleNamespace(name="ebill/customers/a b.csv", etag='"e"', size=1, version_id="v1")
    record = _get_s3_event("s3:ObjectCreated:Put", bucket, key, "id")["Records"][0]
    assert record["s3"]["object"]["key"] == "ebill%2Fcustomers%2Fa+b.csv"
    assert "versionId" not in record["s3"]["object"]
    parsed = S3Notification.model_validate({"Records": [record]})
    assert parsed.records[0].s3.object.version_id is None


def test_objects_that_are_no_drops_start_nothing(world: World) -> None:
    spy = Spy()
    deps = TriggerDeps(spy, world.files, "ebill/")
    for key in ("ebill/invoices/aug/inv.csv", "beqom/r/w/x.pdf", "ebill/customers/readme.txt"):
        assert start_drop_executions(event(key, "v1", world.drops), deps) == {}
    assert spy.started == {}


# --- plan --------------------------------------------------------------------------------------


def test_an_invoice_batch_is_planned_parent_first_with_pinned_versions(world: World) -> None:
    drop = invoice_drop(world)
    job = world.plan(drop)
    assert [(f.name, f.role, f.suffix) for f in job.files] == [
        ("inv.csv", "invoice", "INV"),
        ("itm-1.csv", "line_items", "ITM_1"),
        ("itm-2.csv", "line_items", "ITM_2"),
    ]
    assert all(f.version_id for f in job.files)
    assert world.entry(drop.id).status == Status.CLAIMED
    assert world.entry(drop.id).attributes["jobIdPrefix"] == drop.tag


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        (b"not json", "invalid manifest"),
        (b'{"lineItems": ["a.csv"]}', "invoice: Field required"),
        (b'{"invoice": "../x.csv"}', "must be a file name in the batch folder"),
        (b'{"invoice": "a.csv", "lineItems": ["b.csv", "b.csv"]}', "names a file twice"),
        (b'{"invoice": "a.csv", "lineItems": ["a.csv"]}', "both the invoice file and a line-item"),
        (b'{"invoice": "a.csv", "extra": 1}', "extra: Extra inputs are not permitted"),
        (b'{"invoice": "missing.csv"}', "ebill/invoices/b/missing.csv does not exist"),
        (b'{"invoice": "empty.csv"}', "empty.csv is empty (0 bytes)"),
    ],
)
def test_a_bad_manifest_fails_with_a_reason_naming_it(
    world: World, manifest: bytes, problem: str
) -> None:
    world.put("ebill/invoices/b/a.csv", b"x\n1\n")
    world.put("ebill/invoices/b/b.csv", b"x\n1\n")
    world.put("ebill/invoices/b/empty.csv", b"")
    drop = world.put("ebill/invoices/b/manifest.json", manifest)
    with pytest.raises(BadInputError) as caught:
        world.plan(drop)
    assert problem in str(caught.value)
    assert "manifest.json" in str(caught.value)


def test_an_empty_customers_file_is_refused_before_ebill_hears_of_it(world: World) -> None:
    drop = world.put("ebill/customers/empty.csv", b"")
    with pytest.raises(BadInputError, match=r"empty\.csv is empty \(0 bytes\)"):
        world.plan(drop)
    assert world.ebill.creates == []


def test_a_huge_manifest_is_refused_without_reading_it(world: World) -> None:
    drop = world.put("ebill/invoices/b/manifest.json", b" " * (MANIFEST_LIMIT_BYTES + 1))
    with pytest.raises(BadInputError, match="at most 65536 are accepted"):
        world.plan(drop)


# --- the whole flow ----------------------------------------------------------------------------


def test_a_customers_file_with_bad_rows_ends_partial_with_exactly_those_rows_failed(
    world: World,
) -> None:
    bad = [17, 404, 999]
    drop = world.put("ebill/customers/aug.csv", customers_csv(1000, bad))
    summary = world.run(drop)
    assert (summary.outcome, summary.ebill_status) == ("PARTIAL", "Partial Success")
    assert (summary.success_count, summary.fail_count, summary.failed_rows_recorded) == (997, 3, 3)
    job_id = f"{drop.tag}_A1_CUS"
    assert world.failed_rows() == {f"{job_id}#row-{n}": ["bad value"] for n in bad}
    row = world.entry(f"{job_id}#row-404")
    assert row.attributes["businessKey"] == "C00404"
    assert row.lease_owner is None
    # the result CSV is in S3, one line per input row
    (result,) = [f.result for f in summary.files]
    assert result == f"s3://{world.results}/ebill-upload/{drop.tag}/{job_id}_output.csv"
    body = world.s3.get_object(Bucket=world.results, Key=result.split("/", 3)[3])["Body"].read()
    assert len(body.decode().strip().splitlines()) == 1001
    # the drop and its file end PARTIAL, with the reason; the alert names the rows
    assert world.entry(drop.id).status == Status.PARTIAL
    assert world.entry(drop.id).reasons == ["aug.csv: Partial Success, 3 failed"]
    assert world.entry(job_id).status == Status.PARTIAL
    assert summary.alert is not None
    assert summary.alert.subject == "erphub eBill customers batch partly failed: aug.csv"
    assert "aug.csv row 17 (Account Number C00017): bad value" in summary.alert.message
    assert "secret" not in summary.alert.message  # no presigned URL leaks
    # growing waits between polls
    assert world.waits == [10, 20]


def test_a_clean_file_is_imported_without_an_alert(world: World) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(50, []))
    summary = world.run(drop)
    assert (summary.outcome, summary.alert) == ("IMPORTED", None)
    assert world.entry(drop.id).status == Status.IMPORTED
    assert world.failed_rows() == {}


def test_an_invoice_batch_is_finalized_once_by_its_parent_and_reports_each_child(
    world: World,
) -> None:
    drop = invoice_drop(world)
    summary = world.run(drop)
    parent_job = f"{drop.tag}_A1_INV"
    assert world.ebill.finalizes == [(world.ebill.by_job[parent_job], parent_job)]
    items = [c for c in world.ebill.creates if c.sub_operation == "Invoice Line Item"]
    assert [(c.job_id, c.parent_id, c.parent_job_id) for c in items] == [
        (f"{drop.tag}_A1_ITM_{n}", world.ebill.by_job[parent_job], parent_job) for n in (1, 2)
    ]
    assert [(f.file, f.status, f.failed_rows) for f in summary.files] == [
        ("inv.csv", "Partial Success", 1),
        ("itm-1.csv", "Success", 0),
        ("itm-2.csv", "Partial Success", 1),
    ]
    assert all(f.result for f in summary.files)
    assert set(world.failed_rows()) == {f"{parent_job}#row-2", f"{drop.tag}_A1_ITM_2#row-2"}
    assert world.entry(f"{drop.tag}_A1_ITM_1").status == Status.IMPORTED


def test_the_upload_body_is_streamed_in_chunks_from_s3(world: World) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(200, []))
    world.upload(world.plan(drop))
    assert len(world.ebill.chunk_sizes) > 5
    assert max(world.ebill.chunk_sizes) <= 1024  # the FileStore's chunk size in this world


# --- failures and retries ----------------------------------------------------------------------


def test_an_expired_upload_url_gets_a_new_one_and_the_file_is_uploaded_once(world: World) -> None:
    world.ebill.expire_next_urls = 1
    drop = world.put("ebill/customers/aug.csv", customers_csv(20, [3]))
    job = world.plan(drop)
    first = upload_files(UploadRequest(run_id="run-1", job=job), world.deps)
    assert (first.done, first.attempt) == (False, 2)
    summary = world.run(drop)
    assert [c.job_id for c in world.ebill.creates] == [f"{drop.tag}_A1_CUS", f"{drop.tag}_A2_CUS"]
    assert world.ebill.refused_uploads == ["1"]
    assert world.ebill.uploads == [("2", len(customers_csv(20, [3])))]
    assert world.ebill.finalizes == [("2", f"{drop.tag}_A2_CUS")]
    assert world.entry(f"{drop.tag}_A1_CUS").status == Status.SUPERSEDED
    assert "expired" in (world.entry(f"{drop.tag}_A1_CUS").last_error or "")
    assert summary.outcome == "PARTIAL"


def test_upload_urls_that_keep_expiring_fail_visibly(world: World) -> None:
    world.ebill.expire_next_urls = MAX_UPLOAD_ATTEMPTS
    drop = world.put("ebill/customers/aug.csv", customers_csv(5, []))
    job = world.plan(drop)
    request = UploadRequest(run_id="run-1", job=job)
    for _ in range(MAX_UPLOAD_ATTEMPTS - 1):
        assert not upload_files(request, world.deps).done
    with pytest.raises(UploadAttemptsExhausted, match="3 upload attempts failed"):
        upload_files(request, world.deps)
    assert world.ebill.uploads == [] and world.ebill.finalizes == []


def test_a_broken_put_is_sent_again_from_a_fresh_s3_stream(world: World) -> None:
    world.ebill.fail_next_puts = 2
    drop = world.put("ebill/customers/aug.csv", customers_csv(30, []))
    world.upload(world.plan(drop))
    assert len(world.ebill.creates) == 1
    assert world.ebill.uploads == [("1", len(customers_csv(30, [])))]


def test_a_crash_before_the_create_posts_the_same_job_id_once(world: World) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(10, []))
    job = world.plan(drop)
    faults.arm("ebill.upload.before_create")
    with pytest.raises(faults.InjectedCrash):
        world.upload(job)
    world.run(drop)
    assert [c.job_id for c in world.ebill.creates] == [f"{drop.tag}_A1_CUS"]
    assert len(world.ebill.finalizes) == 1


@pytest.mark.parametrize("point", ["ebill.upload.after_create", "ebill.upload.after_put"])
def test_a_crash_after_the_create_reconciles_and_starts_over_without_a_duplicate(
    world: World, point: str
) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(10, [2]))
    faults.arm(point)
    with pytest.raises(faults.InjectedCrash):
        world.upload(world.plan(drop))
    summary = world.run(drop)
    # eBill knew A1 (GET ?jobId=) but its upload URL was lost: A2 took over, A1 stays Draft
    assert [c.job_id for c in world.ebill.creates] == [f"{drop.tag}_A1_CUS", f"{drop.tag}_A2_CUS"]
    assert world.ebill.finalizes == [("2", f"{drop.tag}_A2_CUS")]
    assert world.ebill.batches["1"]["status"] == "Draft"
    assert summary.outcome == "PARTIAL" and summary.fail_count == 1


CHECKPOINTS = [
    "ebill.plan.after_claim",
    "ebill.upload.before_create",
    "ebill.upload.after_create",
    "ebill.upload.after_put",
    "ebill.finalize.before",
    "ebill.finalize.after",
    "ebill.results.before_copy",
    "ebill.results.after_rows",
]


def test_the_checkpoint_list_is_complete() -> None:
    sources = Path(flow.__file__).parent.glob("ebill_*.py")
    points = [p for s in sources for p in re.findall(r'checkpoint\("([^"]+)"\)', s.read_text())]
    assert sorted(points) == sorted(CHECKPOINTS)


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_a_crash_at_any_step_boundary_ends_like_a_clean_run(world: World, point: str) -> None:
    drop = invoice_drop(world)
    faults.arm(point)
    world.retry_crashes = True  # as the state machine's Retry on Runtime.ExitError does
    summary = world.run(drop)
    assert faults.hits(point) == 1
    assert len(world.ebill.finalizes) == 1
    assert [(f.file, f.status, f.failed_rows) for f in summary.files] == [
        ("inv.csv", "Partial Success", 1),
        ("itm-1.csv", "Success", 0),
        ("itm-2.csv", "Partial Success", 1),
    ]
    assert len(world.failed_rows()) == 2
    assert world.entry(drop.id).status == Status.PARTIAL
    # at most one batch per file was finalized; an abandoned attempt stays Draft in eBill
    finalized_jobs = {job for _, job in world.ebill.finalizes}
    assert len(finalized_jobs) == 1


def test_finalize_is_sent_once_even_when_the_step_runs_again(world: World) -> None:
    drop = invoice_drop(world)
    job = world.plan(drop)
    upload = world.upload(job)
    request = FinalizeRequest(run_id="run-1", job=job, upload=upload)
    faults.arm("ebill.finalize.after")
    with pytest.raises(faults.InjectedCrash):
        finalize_batch(request, world.deps)
    again = finalize_batch(request, world.deps)
    assert again.status == "Processing"  # read by the reconciling GET: not finalized again
    assert len(world.ebill.finalizes) == 1
    assert world.entry(drop.id).status == Status.SUBMITTED


def test_the_results_step_runs_again_without_recording_rows_twice(world: World) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(30, [5, 6]))
    job = world.plan(drop)
    upload = world.upload(job)
    batch = finalize_batch(FinalizeRequest(run_id="run-1", job=job, upload=upload), world.deps)
    while not batch.terminal:
        batch = poll_status(PollRequest(run_id="run-1", job=job, batch=batch), world.deps)
    request = ResultsRequest(run_id="run-1", job=job, upload=upload, batch=batch)
    faults.arm("ebill.results.after_rows")
    with pytest.raises(faults.InjectedCrash):
        collect_results(request, world.deps)
    summary = collect_results(request, world.deps)
    assert summary.fail_count == 2
    row = world.entry(f"{drop.tag}_A1_CUS#row-5")
    assert [h.status for h in row.history] == ["CLAIM", "FAILED"]


def test_an_expired_download_url_is_read_again_from_the_status(world: World) -> None:
    world.ebill.expire_next_downloads = 1
    drop = world.put("ebill/customers/aug.csv", customers_csv(10, [1]))
    summary = world.run(drop)
    assert summary.files[0].result and summary.failed_rows_recorded == 1


def test_polling_stops_at_the_deadline_with_the_batch_named(
    world: World, clock: list[float]
) -> None:
    world.ebill.reads_per_stage = 1000
    drop = world.put("ebill/customers/aug.csv", customers_csv(5, []))
    job = world.plan(drop)
    upload = world.upload(job)
    batch = finalize_batch(FinalizeRequest(run_id="run-1", job=job, upload=upload), world.deps)
    waits = []
    with pytest.raises(PollDeadlineExceeded) as caught:
        for _ in range(100):
            clock[0] += batch.wait_seconds
            waits.append(batch.wait_seconds)
            batch = poll_status(PollRequest(run_id="run-1", job=job, batch=batch), world.deps)
    assert f"eBill batch {upload.parent.id}" in str(caught.value)  # type: ignore[union-attr]
    assert "still Queued" in str(caught.value) and "deadline 600 s" in str(caught.value)
    assert waits[:4] == [10, 20, 40, 40] and sum(waits) == 600  # the last wait ends at the deadline


def test_wait_intervals_double_up_to_the_maximum_and_never_pass_the_deadline() -> None:
    policy = PollPolicy(initial_seconds=30, max_seconds=900, deadline_seconds=3600)
    assert [policy.wait_after(n, 0) for n in range(7)] == [30, 60, 120, 240, 480, 900, 900]
    assert policy.wait_after(3, 3590) == 10
    assert policy.wait_after(3, 3600) == 1


def test_a_failed_execution_is_recorded_released_and_alerted(world: World) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(5, []))
    job = world.plan(drop)
    world.upload(job)
    cause = json.dumps(
        {"errorType": "PollDeadlineExceeded", "errorMessage": "eBill batch 1 is still Queued"}
    )
    request = FailureRequest.model_validate(
        {
            "runId": "run-1",
            "state": {
                "drop": drop.dump(),
                "job": job.dump(),
                "error": {"Error": "PollDeadlineExceeded", "Cause": cause},
                "upload": {"done": True},
            },
        }
    )
    alert = record_failure(request, world.drop_deps)
    entry = world.entry(drop.id)
    assert entry.status == Status.FAILED and entry.lease_owner is None
    assert entry.last_error == "PollDeadlineExceeded: eBill batch 1 is still Queued"
    assert world.entry(f"{drop.tag}_A1_CUS").lease_owner is None
    assert alert.subject == "erphub eBill customers batch failed: aug.csv"
    assert "Reason: PollDeadlineExceeded: eBill batch 1 is still Queued" in alert.message
    # another execution of the same drop continues without uploading anything again
    summary = world.run(drop, run="run-2")
    assert len(world.ebill.creates) == 1 and len(world.ebill.finalizes) == 1
    assert summary.outcome == "IMPORTED"


def test_a_plan_failure_is_recorded_even_without_a_job(world: World) -> None:
    drop = world.put("ebill/invoices/b/manifest.json", b"{}")
    request = FailureRequest.model_validate(
        {
            "runId": "run-1",
            "state": {
                "drop": drop.dump(),
                "error": {"Error": "BadInputError", "Cause": "plain text"},
            },
        }
    )
    record_failure(request, world.drop_deps)
    assert world.entry(drop.id).last_error == "BadInputError: plain text"


def test_another_execution_cannot_take_a_drop_it_does_not_hold(world: World) -> None:
    drop = world.put("ebill/customers/aug.csv", customers_csv(5, []))
    world.plan(drop, run="run-1")
    with pytest.raises(LeaseLostError, match="held by another execution"):
        world.plan(drop, run="run-2")


# --- BatchInit ---------------------------------------------------------------------------------


def test_batch_init_runs_once_per_job_id(world: World) -> None:
    spec = InitSpec(job_id="AUG_INIT", carry_forward_invoices=True)
    _, started = run_batch_init(spec, world.ebill)
    _, again = run_batch_init(spec, world.ebill)
    assert (started, again) == (True, False)
    assert world.ebill.inits == [spec]


def test_batch_init_with_an_unknown_outcome_is_reconciled(world: World) -> None:
    class Timeout(FakeEbill):
        def init(self, spec: InitSpec) -> BatchProcess:
            super().init(spec)
            msg = "eBill POST BatchInit: ReadTimeout; the outcome is unknown"
            raise TransientError(msg)

    fake = Timeout()
    _, started = run_batch_init(InitSpec(job_id="J", zero_out_customer_balance=True), fake)
    assert started and len(fake.inits) == 1
