"""eBill upload, step 5: output CSVs into S3, failed rows into the ledger, an alert or none.

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from erphub.clients.ebill_port import (
    FAILED,
    SUCCESS,
    BatchProcess,
    DownloadUrlExpired,
    RowResult,
    read_output_rows,
)
from erphub.errors import TransientError
from erphub.faults import checkpoint
from erphub.flows.ebill_upload import (
    CUSTOMERS,
    FAILED_ROWS_IN_ALERT,
    FLOW,
    MAX_FAILED_ROWS_RECORDED,
    RESULTS_PREFIX,
    ROW_KEY_COLUMNS,
    ROW_LEASE_SECONDS,
    Alert,
    BatchJob,
    BatchRef,
    BatchState,
    EbillDeps,
    UploadResult,
    alert_subject,
    claim,
    find_batch,
)
from erphub.ledger import Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from collections.abc import Sequence


Outcome = Literal["IMPORTED", "PARTIAL", "FAILED"]


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
            fresh = find_batch(deps, parent_id, ref.job_id)
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
        claim(
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
    claim(deps.ledger, ref.job_id, run, deps.polling.lease_seconds)
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
    subject = alert_subject(f"erphub eBill {job.kind} batch {words[summary.outcome]}: {name}")
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


def collect_results(request: ResultsRequest, deps: EbillDeps) -> ResultsSummary:
    """Copy the output CSVs into S3, record the failed rows, and say whether to alert."""
    job, run, batch = request.job, request.run_id, request.batch
    claim(deps.ledger, job.drop_id, run, deps.polling.lease_seconds)
    # Read the status again: its download URLs are fresh, whatever the waits before.
    current = find_batch(deps, batch.id, batch.job_id)
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
