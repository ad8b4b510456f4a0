"""File drop -> eBill batch upload, one drop per execution.

The drop bucket's layout (under ``EBILL_DROP_PREFIX``, default ``ebill/``):

- ``customers/<file>.csv`` is one Customer batch;
- ``invoices/<batch>/`` holds an invoice CSV, its line-item CSVs and a ``manifest.json``
  (``{"invoice": "<file>", "lineItems": ["<file>", ...]}``) written last: the manifest is the
  trigger.

0. :func:`start_drop_executions` (the S3 trigger) starts one execution per drop, named after the
   object's bucket, key and version: a repeated S3 event starts nothing twice.
1. :func:`plan_drop` reads the drop (the manifest of an invoice batch) and pins each file's
   version.
2. :func:`upload_files` asks eBill for a presigned upload URL per file (``S3FileUpload`` with a
   jobId derived from the drop) and streams the file from S3 to it; line-item files name their
   parent. A create whose outcome is unknown is reconciled with ``GET ?jobId=`` first. A URL that
   expired, or was lost in a crash, cannot be asked for again under the same jobId, so the whole
   batch starts over as a new attempt; the old Draft batches are never finalized.
3. :func:`finalize_batch` queues the parent batch (``BatchFinalize`` with its id and jobId), once.
4. :func:`poll_status` reads the status, for a Step Functions Wait loop with growing intervals
   and an overall deadline.
5. :func:`collect_results` copies every output CSV (parent and line items) into S3, records each
   failed row in the ledger and returns an alert for a Partial Success or a Failure.

:func:`record_failure` makes every failed execution visible (ledger + alert), and
:func:`run_batch_init` is the explicit, separate ``BatchInit`` command: never part of a drop.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from erphub.clients.ebill_port import (
    CUSTOMER,
    FAILED,
    INVOICE,
    INVOICE_LINE_ITEM,
    SUCCESS,
    BatchProcess,
    DownloadUrlExpired,
    EbillPort,
    InitSpec,
    RowResult,
    UploadSpec,
    UploadUrlExpired,
    read_output_rows,
)
from erphub.clients.workflows import ExecutionStarter
from erphub.errors import BadInputError, ErphubError, LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.files import NULL_VERSION, FileStore, StoredObject
from erphub.ledger import Entry, Ledger, Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

FLOW = "ebill-upload"
CUSTOMERS: Literal["customers"] = "customers"
INVOICES: Literal["invoices"] = "invoices"
MANIFEST_NAME = "manifest.json"
MANIFEST_LIMIT_BYTES = 64 * 1024
MAX_LINE_ITEM_FILES = 50
MAX_UPLOAD_ATTEMPTS = 3
PUT_TRIES = 3
MAX_FAILED_ROWS_RECORDED = 1000
FAILED_ROWS_IN_ALERT = 10
RESULTS_PREFIX = "ebill-upload"
# Before starting another file in the same invocation, leave time for it at this rate.
MIN_UPLOAD_BYTES_PER_SECOND = 5 * 1024 * 1024
UPLOAD_TIME_MARGIN_MS = 60_000
ROW_LEASE_SECONDS = 60
MAX_EXECUTION_NAME = 80

SUB_OPERATIONS = {"customers": CUSTOMER, "invoice": INVOICE, "line_items": INVOICE_LINE_ITEM}
# The column that identifies a row's business object, per file kind, for the ledger.
ROW_KEY_COLUMNS = {
    CUSTOMER: "Account Number",
    INVOICE: "Invoice Number",
    INVOICE_LINE_ITEM: "Invoice Number",
}

DropKind = Literal["customers", "invoices"]
Outcome = Literal["IMPORTED", "PARTIAL", "FAILED"]
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class PollDeadlineExceeded(ErphubError):
    """eBill has not finished the batch within the configured deadline."""


class EbillBatchMissing(ErphubError):
    """eBill does not know a batch erphub created: an operator must look."""


class UploadAttemptsExhausted(ErphubError):
    """The batch could not be uploaded in MAX_UPLOAD_ATTEMPTS attempts."""


# --- batch files -----------------------------------------------------------------------------

BatchFileRole = Literal["customers", "invoice", "line_items"]


class BatchFile(CamelModel):
    """One dropped file of a batch, pinned to the S3 version the batch was planned with."""

    name: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1)
    version_id: str | None = None
    size: int = Field(gt=0)
    role: BatchFileRole
    #: what tells this file apart within its batch in the target system (CUS, INV, ITM_<n>)
    suffix: str = Field(pattern=r"^(CUS|INV|ITM_\d+)$")


class BatchJob(CamelModel):
    """A drop that becomes one batch in a batch-import system: the parent file first, then its
    line-item files, all read from ``bucket``."""

    drop_id: str = Field(min_length=1)
    #: the prefix of every id the target system gets for this drop (derived from the object)
    tag: str = Field(pattern=r"^EH[0-9A-F]{12}$")
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str = Field(min_length=1)
    kind: Literal["customers", "invoices"]
    files: list[BatchFile] = Field(min_length=1)


# --- identities -----------------------------------------------------------------------------


class DropRef(CamelModel):
    """One dropped object that starts a batch: the execution's input."""

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str = Field(min_length=1)
    kind: DropKind

    @property
    def digest(self) -> str:
        """A stable digest of bucket, key and version (the object's identity, not its content)."""
        identity = f"{self.bucket}/{self.key}?versionId={self.version_id}"
        return hashlib.sha256(identity.encode()).hexdigest()

    @property
    def tag(self) -> str:
        """The prefix of every jobId this drop gives eBill."""
        return "EH" + self.digest[:12].upper()

    @property
    def id(self) -> str:
        """The drop's ledger document id."""
        return f"s3://{self.bucket}/{self.key}?versionId={self.version_id}"


def job_id(tag: str, attempt: int, suffix: str) -> str:
    """The jobId of one file of one attempt, e.g. ``EH3F09A1C2B4D7_A1_ITM_2``."""
    return f"{tag}_A{attempt}_{suffix}"


def classify(key: str, prefix: str) -> DropKind | None:
    """Which kind of drop an object key starts, if any."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    if rest.startswith(f"{CUSTOMERS}/") and rest.lower().endswith(".csv"):
        return CUSTOMERS
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == INVOICES and parts[1] and parts[2] == MANIFEST_NAME:
        return INVOICES
    return None


def execution_name(drop: DropRef) -> str:
    """``ebill-cus-<file>-<digest>`` / ``ebill-inv-<folder>-<digest>``: readable and unique."""
    parts = drop.key.split("/")
    label = parts[-1].rsplit(".", 1)[0] if drop.kind == CUSTOMERS else parts[-2]
    kind = "cus" if drop.kind == CUSTOMERS else "inv"
    suffix = drop.digest[:12]
    room = MAX_EXECUTION_NAME - len(f"ebill-{kind}--{suffix}")
    readable = _NAME_UNSAFE.sub("-", label).strip("-")[:room].strip("-") or "drop"
    return f"ebill-{kind}-{readable}-{suffix}"


# --- 0. trigger -------------------------------------------------------------------------------


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    key: str
    version_id: str | None = Field(default=None, alias="versionId")


class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: _S3Bucket
    object: _S3Object


class S3EventRecord(BaseModel):
    """One record of an S3 event notification (only what the trigger reads)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_name: str = Field(alias="eventName")
    s3: _S3Entity


class S3Notification(BaseModel):
    """An S3 event notification as Lambda receives it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    records: list[S3EventRecord] = Field(alias="Records")


@dataclass(frozen=True)
class TriggerDeps:
    """What the S3 trigger works with."""

    starter: ExecutionStarter
    files: FileStore
    prefix: str


def start_drop_executions(event: S3Notification, deps: TriggerDeps) -> dict[str, str | None]:
    """Start one execution per dropped batch; execution name -> ARN (None if it existed)."""
    started: dict[str, str | None] = {}
    for record in event.records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        bucket = record.s3.bucket.name
        # S3 form-encodes keys in events (moto percent-encodes "/"): decode both.
        key = unquote_plus(record.s3.object.key)
        kind = classify(key, deps.prefix)
        if kind is None:
            logger.info("not a drop, ignored", extra={"key": key})
            continue
        # AWS names the version in the event of a versioned bucket; where it does not (moto),
        # the object's current version is the one that was just written.
        version = (
            record.s3.object.version_id or deps.files.latest_version(bucket, key) or NULL_VERSION
        )
        drop = DropRef(bucket=bucket, key=key, version_id=version, kind=kind)
        name = execution_name(drop)
        started[name] = deps.starter.start(name, {"drop": drop.dump()})
        logger.info(
            "eBill upload started" if started[name] else "eBill upload already started",
            extra={"execution": name, "drop": drop.id},
        )
    metrics.add_metric(
        name="EbillDropsStarted", unit=MetricUnit.Count, value=sum(1 for a in started.values() if a)
    )
    return started


# --- ledger helpers ---------------------------------------------------------------------------


def _claim(
    ledger: Ledger,
    document_id: str,
    run_id: str,
    lease_seconds: int,
    attributes: dict[str, str] | None = None,
) -> Entry:
    entry = ledger.claim(
        FLOW, document_id, owner=run_id, lease_seconds=lease_seconds, attributes=attributes
    )
    if entry is None:
        msg = f"{document_id} is held by another execution"
        raise LeaseLostError(msg)
    return entry


# --- 1. plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropDeps:
    """What the steps that only read the drop and the ledger work with."""

    ledger: Ledger
    files: FileStore
    lease_seconds: int


class PlanRequest(CamelModel):
    """Input of the plan step."""

    run_id: str = Field(min_length=1, max_length=80)
    drop: DropRef


def _plain_name(value: str) -> str:
    if not value or "/" in value or "\\" in value or value in {".", ".."}:
        msg = f"must be a file name in the batch folder, got {value!r}"
        raise ValueError(msg)
    if value == MANIFEST_NAME:
        msg = "must not be the manifest itself"
        raise ValueError(msg)
    return value


class Manifest(BaseModel):
    """``manifest.json`` of an invoice batch."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    invoice: str
    line_items: list[str] = Field(
        default_factory=list, alias="lineItems", max_length=MAX_LINE_ITEM_FILES
    )

    @field_validator("invoice")
    @classmethod
    def _invoice_name(cls, value: str) -> str:
        return _plain_name(value)

    @field_validator("line_items")
    @classmethod
    def _line_item_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _plain_name(name)
        if len(set(value)) != len(value):
            msg = "names a file twice"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _invoice_is_no_line_item(self) -> Manifest:
        if self.invoice in self.line_items:
            msg = f"{self.invoice} is both the invoice file and a line-item file"
            raise ValueError(msg)
        return self


def _read_manifest(files: FileStore, drop: DropRef) -> Manifest:
    obj = files.head(drop.bucket, drop.key, drop.version_id)
    raw = files.read_bytes(obj, limit=MANIFEST_LIMIT_BYTES)
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
            for e in error.errors()
        )
        msg = f"{obj.uri}: invalid manifest: {problems}"
        raise BadInputError(msg) from None


def _batch_file(
    files: FileStore,
    bucket: str,
    key: str,
    *,
    version: str | None,
    role: BatchFileRole,
    suffix: str,
) -> BatchFile:
    obj = files.head(bucket, key, version)
    if obj.size == 0:
        msg = f"{obj.uri} is empty (0 bytes): there is nothing to send"
        raise BadInputError(msg)
    return BatchFile(
        name=key.rsplit("/", 1)[-1],
        key=key,
        version_id=obj.version_id,
        size=obj.size,
        role=role,
        suffix=suffix,
    )


def plan_drop(request: PlanRequest, deps: DropDeps) -> BatchJob:
    """Claim the drop and list its files, parent first, each pinned to its current version."""
    drop = request.drop
    _claim(
        deps.ledger,
        drop.id,
        request.run_id,
        deps.lease_seconds,
        {"bucket": drop.bucket, "key": drop.key, "kind": drop.kind, "jobIdPrefix": drop.tag},
    )
    if drop.kind == CUSTOMERS:
        files = [
            _batch_file(
                deps.files,
                drop.bucket,
                drop.key,
                version=drop.version_id,
                role="customers",
                suffix="CUS",
            )
        ]
    else:
        manifest = _read_manifest(deps.files, drop)
        folder = drop.key.rsplit("/", 1)[0] + "/"
        try:
            files = [
                _batch_file(
                    deps.files,
                    drop.bucket,
                    folder + manifest.invoice,
                    version=None,
                    role="invoice",
                    suffix="INV",
                )
            ]
            files += [
                _batch_file(
                    deps.files,
                    drop.bucket,
                    folder + name,
                    version=None,
                    role="line_items",
                    suffix=f"ITM_{n}",
                )
                for n, name in enumerate(manifest.line_items, start=1)
            ]
        except BadInputError as error:
            msg = f"{error} (named in s3://{drop.bucket}/{drop.key})"
            raise BadInputError(msg) from None
    checkpoint("ebill.plan.after_claim")
    logger.info("drop planned", extra={"drop": drop.id, "files": [f.key for f in files]})
    return BatchJob(
        drop_id=drop.id,
        tag=drop.tag,
        bucket=drop.bucket,
        key=drop.key,
        version_id=drop.version_id,
        kind=drop.kind,
        files=files,
    )


# --- 2. upload --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollPolicy:
    """How often and for how long the status is polled."""

    initial_seconds: int = 30
    max_seconds: int = 900
    deadline_seconds: int = 86_400

    @property
    def lease_seconds(self) -> int:
        """How long an execution holds its drop: its whole expected life."""
        return self.deadline_seconds + 7_200

    def wait_after(self, polls: int, elapsed: float) -> int:
        """Seconds before the next poll: doubling up to the maximum, never past the deadline."""
        grown = min(self.initial_seconds << min(polls, 20), self.max_seconds)
        return max(1, min(grown, int(self.deadline_seconds - elapsed)))


@dataclass(frozen=True)
class EbillDeps:
    """What the steps that talk to eBill work with."""

    ebill: EbillPort
    ledger: Ledger
    files: FileStore
    results_bucket: str
    polling: PollPolicy
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


class UploadRequest(CamelModel):
    """Input of the upload step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob


class BatchRef(CamelModel):
    """One file's batch in eBill."""

    id: str
    job_id: str
    file: str
    sub_operation: str


class UploadResult(CamelModel):
    """Output of the upload step; ``done`` false means: call the step again."""

    done: bool
    attempt: int
    parent: BatchRef | None = None
    children: list[BatchRef] = Field(default_factory=list)


@dataclass(frozen=True)
class _Restart:
    reason: str


def _put_file(deps: EbillDeps, job: BatchJob, file: BatchFile, url: str) -> None:
    """Stream one file from S3 to its upload URL; a broken PUT re-reads the file from S3."""
    obj = StoredObject(job.bucket, file.key, file.version_id, file.size)
    for attempt in range(1, PUT_TRIES + 1):
        with deps.files.open(obj) as stream:
            try:
                deps.ebill.upload(url, stream.chunks, stream.size)
            except TransientError as error:
                if attempt == PUT_TRIES:
                    raise
                logger.warning("upload failed, sending again", extra={"error": str(error)})
                deps.sleep(min(2.0**attempt, 10.0))
                continue
            return


def _upload_one(
    job: BatchJob,
    file: BatchFile,
    *,
    attempt: int,
    parent: BatchRef | None,
    run: str,
    deps: EbillDeps,
) -> BatchRef | _Restart:
    jid = job_id(job.tag, attempt, file.suffix)
    sub_operation = SUB_OPERATIONS[file.role]
    entry = _claim(
        deps.ledger,
        jid,
        run,
        deps.polling.lease_seconds,
        {"drop": job.drop_id, "key": file.key, "subOperation": sub_operation},
    )
    if entry.external_id and entry.status != Status.SUPERSEDED:
        return BatchRef(
            id=entry.external_id, job_id=jid, file=file.name, sub_operation=sub_operation
        )
    if entry.status == Status.SUPERSEDED:
        return _Restart(f"{jid} was superseded")
    if entry.status == Status.PUSHING:
        existing = deps.ebill.find(job_id=jid)
        if existing is not None:
            return _Restart(
                f"{jid} exists in eBill as batch {existing.id}, but whether its file arrived is "
                "unknown (interrupted upload)"
            )
    deps.ledger.record(
        FLOW,
        jid,
        owner=run,
        status=Status.PUSHING,
        count_attempt=True,
        detail=f"S3FileUpload {file.name}",
    )
    checkpoint("ebill.upload.before_create")
    invoice_batch = parent if file.role == "line_items" else None  # line items name theirs
    created = deps.ebill.create_upload(
        UploadSpec(
            job_id=jid,
            sub_operation=sub_operation,
            input_filename=file.name,
            parent_id=invoice_batch.id if invoice_batch else None,
            parent_job_id=invoice_batch.job_id if invoice_batch else None,
        )
    )
    checkpoint("ebill.upload.after_create")
    if not created.id or not created.upload_url:
        missing = "id" if not created.id else "uploadUrl"
        msg = f"eBill S3FileUpload {jid}: the answer has no {missing}"
        raise TransientError(msg)
    try:
        _put_file(deps, job, file, created.upload_url)
    except UploadUrlExpired as error:
        return _Restart(f"the upload URL of {jid} expired: {error}")
    checkpoint("ebill.upload.after_put")
    deps.ledger.record(
        FLOW,
        jid,
        owner=run,
        status=Status.PUSHED,
        external_id=created.id,
        detail=f"{file.size} bytes uploaded to eBill batch {created.id}",
    )
    metrics.add_metric(name="EbillFilesUploaded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="EbillBytesUploaded", unit=MetricUnit.Bytes, value=file.size)
    return BatchRef(id=created.id, job_id=jid, file=file.name, sub_operation=sub_operation)


def _restart(job: BatchJob, attempt: int, reason: str, run: str, deps: EbillDeps) -> UploadResult:
    """Abandon this attempt's Draft batches (never finalized) and start the next attempt."""
    logger.warning("eBill upload starts over", extra={"attempt": attempt, "reason": reason})
    ids = [job_id(job.tag, attempt, f.suffix) for f in job.files]
    for doc, entry in deps.ledger.get_many(FLOW, ids).items():
        if entry.status == Status.SUPERSEDED:
            continue
        # an entry an earlier execution released is taken back before it is closed
        if deps.ledger.claim(FLOW, doc, owner=run, lease_seconds=ROW_LEASE_SECONDS):
            deps.ledger.record(
                FLOW,
                doc,
                owner=run,
                status=Status.SUPERSEDED,
                last_error=reason,
                release=True,
                detail=f"superseded by attempt {attempt + 1}",
            )
    if attempt >= MAX_UPLOAD_ATTEMPTS:
        msg = f"s3://{job.bucket}/{job.key}: {attempt} upload attempts failed; the last: {reason}"
        raise UploadAttemptsExhausted(msg)
    deps.ledger.record(
        FLOW,
        job.drop_id,
        owner=run,
        status=Status.PUSHING,
        count_attempt=True,
        last_error=reason,
        detail=f"attempt {attempt + 1}: {reason}",
    )
    metrics.add_metric(name="EbillUploadRestarts", unit=MetricUnit.Count, value=1)
    return UploadResult(done=False, attempt=attempt + 1)


def _time_for(file: BatchFile, time_left_ms: int) -> bool:
    needed_ms = file.size * 1000 // MIN_UPLOAD_BYTES_PER_SECOND + UPLOAD_TIME_MARGIN_MS
    return time_left_ms >= needed_ms


def upload_files(
    request: UploadRequest, deps: EbillDeps, time_left_ms: Callable[[], int] = lambda: 900_000
) -> UploadResult:
    """Upload every file of the batch, parent first; ``done`` once all are in eBill.

    Returns ``done=False`` to be called again: when the invocation runs short of time (the
    progress is in the ledger), or when the batch starts over as a new attempt.
    """
    job, run = request.job, request.run_id
    batch = _claim(deps.ledger, job.drop_id, run, deps.polling.lease_seconds)
    if batch.attempts == 0:
        batch = deps.ledger.record(
            FLOW,
            job.drop_id,
            owner=run,
            status=Status.PUSHING,
            count_attempt=True,
            detail=f"attempt 1: uploading {len(job.files)} file(s)",
        )
    attempt = batch.attempts
    parent: BatchRef | None = None
    children: list[BatchRef] = []
    for index, file in enumerate(job.files):
        if index and not _time_for(file, time_left_ms()):
            logger.info("out of time, continuing in a new invocation", extra={"file": file.key})
            return UploadResult(done=False, attempt=attempt)
        with logger.append_context_keys(job_id=job_id(job.tag, attempt, file.suffix)):
            outcome = _upload_one(job, file, attempt=attempt, parent=parent, run=run, deps=deps)
        if isinstance(outcome, _Restart):
            return _restart(job, attempt, outcome.reason, run, deps)
        if file.role == "line_items":
            children.append(outcome)
        else:
            parent = outcome
    assert parent is not None  # the plan puts the parent first
    if batch.status not in (Status.SUBMITTED, Status.IMPORTED, Status.PARTIAL):
        deps.ledger.record(
            FLOW,
            job.drop_id,
            owner=run,
            status=Status.PUSHED,
            external_id=parent.id,
            detail=f"attempt {attempt}: {len(job.files)} file(s) in eBill",
        )
    return UploadResult(done=True, attempt=attempt, parent=parent, children=children)


# --- 3. finalize ------------------------------------------------------------------------------


class FinalizeRequest(CamelModel):
    """Input of the finalize step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob
    upload: UploadResult

    @model_validator(mode="after")
    def _uploaded(self) -> FinalizeRequest:
        if not self.upload.done or self.upload.parent is None:
            msg = "finalize needs a finished upload with its parent batch"
            raise ValueError(msg)
        return self


class BatchState(CamelModel):
    """Where the parent batch stands in eBill (the poll loop's state)."""

    id: str
    job_id: str
    status: str
    terminal: bool
    polls: int = Field(ge=0)
    wait_seconds: int = Field(ge=1)
    submitted_at: float


def _find_batch(deps: EbillDeps, batch_id: str, job_id_: str) -> BatchProcess:
    current = deps.ebill.find(batch_id=batch_id)
    if current is None:
        msg = f"eBill does not know batch {batch_id} (jobId {job_id_}) any more"
        raise EbillBatchMissing(msg)
    return current


def finalize_batch(request: FinalizeRequest, deps: EbillDeps) -> BatchState:
    """Queue the parent batch, which takes its line-item batches along, exactly once."""
    job, run = request.job, request.run_id
    parent = request.upload.parent
    assert parent is not None  # validated
    _claim(deps.ledger, job.drop_id, run, deps.polling.lease_seconds)
    # Reconcile first: a finalize whose answer was lost must not be sent again.
    current = _find_batch(deps, parent.id, parent.job_id)
    if current.is_draft:
        checkpoint("ebill.finalize.before")
        current = deps.ebill.finalize(parent.id, parent.job_id)
        checkpoint("ebill.finalize.after")
        detail = f"BatchFinalize {parent.job_id}: {current.normalised_status}"
        metrics.add_metric(name="EbillBatchesFinalized", unit=MetricUnit.Count, value=1)
    else:
        detail = f"already finalized: {current.normalised_status}"
    deps.ledger.record(
        FLOW, job.drop_id, owner=run, status=Status.SUBMITTED, external_id=parent.id, detail=detail
    )
    logger.info("batch finalized", extra={"batch": parent.id, "status": current.status})
    return BatchState(
        id=parent.id,
        job_id=parent.job_id,
        status=current.normalised_status,
        terminal=current.is_terminal,
        polls=0,
        wait_seconds=deps.polling.initial_seconds,
        submitted_at=deps.clock(),
    )


# --- 4. status poll ---------------------------------------------------------------------------


class PollRequest(CamelModel):
    """Input of the poll step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob
    batch: BatchState


def poll_status(request: PollRequest, deps: EbillDeps) -> BatchState:
    """Read the batch's status; raises PollDeadlineExceeded once the deadline has passed."""
    batch = request.batch
    current = _find_batch(deps, batch.id, batch.job_id)
    status = current.normalised_status
    polls = batch.polls + 1
    if status != batch.status:
        deps.ledger.record(
            FLOW,
            request.job.drop_id,
            owner=request.run_id,
            status=Status.SUBMITTED,
            detail=f"eBill: {status}",
        )
    elapsed = deps.clock() - batch.submitted_at
    if not current.is_terminal and elapsed >= deps.polling.deadline_seconds:
        msg = (
            f"eBill batch {batch.id} (jobId {batch.job_id}) is still {status or 'without status'}"
            f" {int(elapsed)} s after it was finalized"
            f" (deadline {deps.polling.deadline_seconds} s); look at it in eBill"
        )
        raise PollDeadlineExceeded(msg)
    return batch.model_copy(
        update={
            "status": status,
            "terminal": current.is_terminal,
            "polls": polls,
            "wait_seconds": deps.polling.wait_after(polls, elapsed),
        }
    )


# --- 5. results -------------------------------------------------------------------------------


class ResultsRequest(CamelModel):
    """Input of the results step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob
    upload: UploadResult
    batch: BatchState


class FileOutcome(CamelModel):
    """How eBill processed one file of the batch."""

    file: str
    job_id: str
    id: str | None = None
    sub_operation: str
    status: str
    success_count: int = 0
    fail_count: int = 0
    failed_rows: int = 0
    result: str | None = None
    error: str | None = None


class Alert(CamelModel):
    """An operator alert (published to the alert topic by the state machine)."""

    subject: str = Field(max_length=100)
    message: str


class ResultsSummary(CamelModel):
    """Output of the results step and of the whole execution."""

    drop: str
    outcome: Outcome
    ebill_status: str
    success_count: int
    fail_count: int
    failed_rows_recorded: int
    files: list[FileOutcome]
    alert: Alert | None = None


def _outcome(statuses: Sequence[str]) -> Outcome:
    if statuses and all(s == SUCCESS for s in statuses):
        return "IMPORTED"
    if statuses and all(s == FAILED for s in statuses):
        return "FAILED"
    return "PARTIAL"


_LEDGER_STATUS = {"IMPORTED": Status.IMPORTED, "PARTIAL": Status.PARTIAL, "FAILED": Status.FAILED}


def _copy_output(
    deps: EbillDeps, parent_id: str, process: BatchProcess, ref: BatchRef, key: str
) -> None:
    """Copy one output CSV into S3 (streamed); an expired URL is read again from the status."""
    url = process.download_url
    for attempt in (1, 2):
        assert url is not None
        try:
            with deps.ebill.download(url) as chunks:
                deps.files.write(deps.results_bucket, key, chunks, content_type="text/csv")
        except DownloadUrlExpired:
            if attempt == 2:
                raise
            fresh = _find_batch(deps, parent_id, ref.job_id)
            again = next(
                (p for p in (fresh, *fresh.children) if p.job_id == ref.job_id or p.id == ref.id),
                None,
            )
            url = again.download_url if again is not None else None
            if not url:
                raise
            continue
        return


def _record_failed_rows(
    deps: EbillDeps, run: str, job: BatchJob, ref: BatchRef, key: str
) -> tuple[int, list[str]]:
    """Record each failed row of an output CSV in the ledger; (failed rows, alert lines)."""
    failed: list[RowResult] = []
    total = 0
    with deps.files.open_text(deps.results_bucket, key) as text:
        for row in read_output_rows(text):
            if row.ok:
                continue
            total += 1
            if len(failed) < MAX_FAILED_ROWS_RECORDED:
                failed.append(row)
    column = ROW_KEY_COLUMNS.get(ref.sub_operation, "")
    docs = {f"{ref.job_id}#row-{row.row}": row for row in failed}
    known = deps.ledger.get_many(FLOW, docs)
    lines: list[str] = []
    for doc, row in docs.items():
        message = row.message or "eBill marked the row as failed without a message"
        business_key = row.values.get(column, "").strip()
        label = f"{ref.file} row {row.row}"
        if business_key:
            label += f" ({column} {business_key})"
        if len(lines) < FAILED_ROWS_IN_ALERT:
            lines.append(f"- {label}: {message}")
        if doc in known and known[doc].status == Status.FAILED:
            continue  # recorded by an earlier attempt of this step
        _claim(
            deps.ledger,
            doc,
            run,
            ROW_LEASE_SECONDS,
            {
                "drop": job.drop_id,
                "file": ref.file,
                "row": str(row.row),
                "jobId": ref.job_id,
                "businessKey": business_key,
                "result": f"s3://{deps.results_bucket}/{key}",
            },
        )
        deps.ledger.record(
            FLOW,
            doc,
            owner=run,
            status=Status.FAILED,
            reasons=[message],
            last_error=message,
            release=True,
            detail=label,
        )
    return total, lines


def _collect_one(
    deps: EbillDeps,
    run: str,
    job: BatchJob,
    *,
    parent_id: str,
    process: BatchProcess,
    ref: BatchRef,
) -> tuple[FileOutcome, list[str]]:
    status = process.normalised_status
    outcome = FileOutcome(
        file=ref.file,
        job_id=ref.job_id,
        id=process.id,
        sub_operation=ref.sub_operation,
        status=status,
        success_count=process.success_count or 0,
        fail_count=process.fail_count or 0,
        error=process.error_message,
    )
    lines: list[str] = []
    if process.download_url:
        key = f"{RESULTS_PREFIX}/{job.tag}/{ref.job_id}_output.csv"
        checkpoint("ebill.results.before_copy")
        _copy_output(deps, parent_id, process, ref, key)
        failed_rows, lines = _record_failed_rows(deps, run, job, ref, key)
        outcome = outcome.model_copy(
            update={"result": f"s3://{deps.results_bucket}/{key}", "failed_rows": failed_rows}
        )
        if process.fail_count is not None and process.fail_count != failed_rows:
            logger.warning(
                "eBill's failCount differs from the failed rows of its output",
                extra={"fail_count": process.fail_count, "failed_rows": failed_rows},
            )
    elif status != SUCCESS:
        lines = [f"- {ref.file}: {process.error_message or 'no output file'}"]
    ledger_status = _LEDGER_STATUS[_outcome([status])]
    # A repeated results step finds the file's lease already released: take it again.
    _claim(deps.ledger, ref.job_id, run, deps.polling.lease_seconds)
    reasons = [f"{ref.file}: {status}, {outcome.fail_count} failed"] + (
        [process.error_message] if process.error_message else []
    )
    deps.ledger.record(
        FLOW,
        ref.job_id,
        owner=run,
        status=ledger_status,
        external_id=process.id,
        reasons=reasons if ledger_status != Status.IMPORTED else [],
        release=True,
        detail=f"eBill {status}: {outcome.success_count} ok, {outcome.fail_count} failed",
    )
    return outcome, lines


def _alert(job: BatchJob, summary: ResultsSummary, lines: list[str]) -> Alert:
    name = job.key.rsplit("/", 1)[-1] if job.kind == CUSTOMERS else job.key.split("/")[-2]
    words = {"PARTIAL": "partly failed", "FAILED": "failed", "IMPORTED": "imported"}
    subject = _subject(f"erphub eBill {job.kind} batch {words[summary.outcome]}: {name}")
    body = [
        f"The eBill upload of s3://{job.bucket}/{job.key} (version {job.version_id}) ended "
        f"{summary.ebill_status}: {summary.success_count} rows succeeded, "
        f"{summary.fail_count} failed.",
        "",
        "Files:",
        *(
            f"- {f.file} (eBill batch {f.id}, jobId {f.job_id}): {f.status}, "
            f"{f.success_count} ok, {f.fail_count} failed"
            + (f"; result {f.result}" if f.result else "")
            + (f"; {f.error}" if f.error else "")
            for f in summary.files
        ),
    ]
    if lines:
        body += ["", f"Failed rows (first {FAILED_ROWS_IN_ALERT}):", *lines[:FAILED_ROWS_IN_ALERT]]
    body += ["", f"Every failed row is in the ledger: erphub status --flow {FLOW}"]
    return Alert(subject=subject, message="\n".join(body))


def _subject(text: str) -> str:
    """An SNS subject: printable ASCII, one line, at most 100 characters."""
    ascii_text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return ascii_text[:100]


def collect_results(request: ResultsRequest, deps: EbillDeps) -> ResultsSummary:
    """Copy the output CSVs into S3, record the failed rows, and say whether to alert."""
    job, run, batch = request.job, request.run_id, request.batch
    _claim(deps.ledger, job.drop_id, run, deps.polling.lease_seconds)
    # Read the status again: its download URLs are fresh, whatever the waits before.
    current = _find_batch(deps, batch.id, batch.job_id)
    if not current.is_terminal:
        msg = f"eBill batch {batch.id} is {current.status}, not finished"
        raise TransientError(msg)
    assert request.upload.parent is not None
    refs = [request.upload.parent, *request.upload.children]
    reported = {p.job_id: p for p in current.children if p.job_id}
    reported[request.upload.parent.job_id] = current
    outcomes: list[FileOutcome] = []
    lines: list[str] = []
    for ref in refs:
        process = reported.get(ref.job_id) or next(
            (p for p in current.children if p.id == ref.id), None
        )
        with logger.append_context_keys(job_id=ref.job_id):
            if process is None:
                message = f"eBill reported no result for {ref.file} (jobId {ref.job_id})"
                outcomes.append(
                    FileOutcome(
                        file=ref.file,
                        job_id=ref.job_id,
                        id=ref.id,
                        sub_operation=ref.sub_operation,
                        status="Missing",
                        error=message,
                    )
                )
                lines.append(f"- {message}")
                continue
            outcome, file_lines = _collect_one(
                deps, run, job, parent_id=batch.id, process=process, ref=ref
            )
        outcomes.append(outcome)
        lines += file_lines
    checkpoint("ebill.results.after_rows")
    overall = _outcome([o.status for o in outcomes])
    summary = ResultsSummary(
        drop=job.drop_id,
        outcome=overall,
        ebill_status=current.normalised_status,
        success_count=sum(o.success_count for o in outcomes),
        fail_count=sum(o.fail_count for o in outcomes),
        failed_rows_recorded=sum(min(o.failed_rows, MAX_FAILED_ROWS_RECORDED) for o in outcomes),
        files=outcomes,
    )
    reasons = [
        f"{o.file}: {o.status}, {o.fail_count} failed" + (f" ({o.error})" if o.error else "")
        for o in outcomes
        if o.status != SUCCESS
    ]
    deps.ledger.record(
        FLOW,
        job.drop_id,
        owner=run,
        status=_LEDGER_STATUS[overall],
        external_id=batch.id,
        reasons=reasons,
        last_error="; ".join(reasons) if reasons else None,
        release=True,
        detail=f"eBill {current.normalised_status}: {summary.success_count} ok, "
        f"{summary.fail_count} failed",
    )
    metrics.add_metric(name=f"EbillBatches{overall.title()}", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="EbillRowsFailed", unit=MetricUnit.Count, value=summary.fail_count)
    logger.info("batch results collected", extra={"outcome": overall, "drop": job.drop_id})
    if overall == "IMPORTED":
        return summary
    return summary.model_copy(update={"alert": _alert(job, summary, lines)})


# --- failures ---------------------------------------------------------------------------------


class StepError(BaseModel):
    """What a Step Functions Catch puts under ResultPath: the error name and its cause."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str = Field(default="", alias="Cause")

    def describe(self) -> str:
        """``ErrorType: message`` from a Lambda error's JSON cause, or the raw cause."""
        try:
            cause: Any = json.loads(self.cause)
        except ValueError:
            cause = None
        if isinstance(cause, dict) and cause.get("errorMessage"):
            text = f"{cause.get('errorType') or self.error}: {cause['errorMessage']}"
        else:
            text = f"{self.error}: {self.cause}" if self.cause else self.error
        return text[:1000]


class FailedExecution(CamelModel):
    """The state of an execution when one of its steps failed for good."""

    drop: DropRef
    error: StepError
    job: BatchJob | None = None


class FailureRequest(CamelModel):
    """Input of the failure step."""

    run_id: str = Field(min_length=1, max_length=80)
    state: FailedExecution


def record_failure(request: FailureRequest, deps: DropDeps) -> Alert:
    """Mark the drop FAILED with the reason, release what this execution held, say so."""
    state, run = request.state, request.run_id
    drop = state.drop
    reason = state.error.describe()
    entry = deps.ledger.claim(FLOW, drop.id, owner=run, lease_seconds=deps.lease_seconds)
    if entry is None:
        logger.error(
            "drop held by another execution; failure not recorded", extra={"drop": drop.id}
        )
    else:
        if state.job is not None:
            _release_files(deps.ledger, state.job, max(entry.attempts, 1), run)
        deps.ledger.record(
            FLOW,
            drop.id,
            owner=run,
            status=Status.FAILED,
            last_error=reason,
            reasons=[reason],
            release=True,
            detail=f"execution {run} failed",
        )
    metrics.add_metric(name="EbillBatchesFailed", unit=MetricUnit.Count, value=1)
    logger.error("eBill upload failed", extra={"drop": drop.id, "reason": reason})
    name = drop.key.rsplit("/", 1)[-1] if drop.kind == CUSTOMERS else drop.key.split("/")[-2]
    return Alert(
        subject=_subject(f"erphub eBill {drop.kind} batch failed: {name}"),
        message="\n".join(
            [
                f"The eBill upload of s3://{drop.bucket}/{drop.key} (version {drop.version_id})"
                " failed.",
                f"Reason: {reason}",
                f"Execution: {run}",
                "",
                "Nothing more happens to this drop until an operator acts; its state is in the "
                f"ledger: erphub status --flow {FLOW}",
            ]
        ),
    )


def _release_files(ledger: Ledger, job: BatchJob, attempt: int, run: str) -> None:
    """Let a later execution of the same drop take the files over (it reconciles first)."""
    ids = [job_id(job.tag, attempt, f.suffix) for f in job.files]
    for doc, entry in ledger.get_many(FLOW, ids).items():
        if entry.lease_owner == run:
            ledger.record(
                FLOW,
                doc,
                owner=run,
                status=entry.status,
                release=True,
                detail=f"released: execution {run} failed",
            )


# --- BatchInit (explicit command only) --------------------------------------------------------


def run_batch_init(spec: InitSpec, ebill: EbillPort) -> tuple[BatchProcess, bool]:
    """Run ``BatchInit`` once per jobId: (the init batch, whether this call started it).

    An init with this jobId that already exists is returned, not run again; a POST whose
    outcome is unknown is reconciled with ``GET ?jobId=`` before the error is reported.
    """
    existing = ebill.find(job_id=spec.job_id)
    if existing is not None:
        return existing, False
    try:
        return ebill.init(spec), True
    except TransientError:
        existing = ebill.find(job_id=spec.job_id)
        if existing is not None:
            return existing, True
        raise
