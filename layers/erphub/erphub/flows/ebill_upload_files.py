"""eBill upload, step 2: a presigned upload URL per file, and each file streamed from S3 to it.

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from erphub.clients.ebill_port import UploadSpec, UploadUrlExpired
from erphub.errors import TransientError
from erphub.faults import checkpoint
from erphub.files import StoredObject
from erphub.flows.ebill_upload import (
    FLOW,
    MAX_UPLOAD_ATTEMPTS,
    MIN_UPLOAD_BYTES_PER_SECOND,
    PUT_TRIES,
    ROW_LEASE_SECONDS,
    SUB_OPERATIONS,
    UPLOAD_TIME_MARGIN_MS,
    BatchFile,
    BatchJob,
    BatchRef,
    EbillDeps,
    UploadAttemptsExhausted,
    UploadResult,
    claim,
    job_id,
)
from erphub.ledger import Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from collections.abc import Callable


class UploadRequest(CamelModel):
    """Input of the upload step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob


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
    entry = claim(
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
    batch = claim(deps.ledger, job.drop_id, run, deps.polling.lease_seconds)
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
