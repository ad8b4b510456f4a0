"""Rossum -> ERP: the "Confirmed tab" export, one queue per execution.

1. :func:`poll_confirmed` pages the confirmed annotations, claims each in the ledger and stores
   them in S3 in chunks of 100.
2. :func:`push_to_erp` maps one chunk to invoices and pushes them to the ERP. A document whose
   earlier push has an unknown outcome is first looked up in the ERP by its external reference.
3. :func:`finalize` moves exactly the ERP-accepted ids to ``exported`` (at most 100 per call) and
   the rejected ones to ``failed_export`` with the ERP's reasons.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from erphub.clients.erp import Accepted, ErpGateway, Rejected
from erphub.clients.rossum import MAX_IDS_PER_EXPORT, RossumError, RossumPort
from erphub.errors import LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.ledger import Entry, Ledger, Status
from erphub.mapping import MappingError, to_invoice
from erphub.models import (
    ChunkRef,
    DocumentOutcome,
    ExportedAnnotation,
    FinalizeRequest,
    FinalizeResult,
    Invoice,
    PollRequest,
    PollResult,
    PushRequest,
    PushResult,
    annotation_id_from_url,
)
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore
from erphub.settings import RejectPolicy

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from erphub.clients.workflows import ExecutionStarter

FLOW = "rossum-export"
CHUNK_SIZE = 100
# When every push of a chunk fails for a transient reason (and there were at least this many),
# the ERP is taken to be down: the step fails and Step Functions retries the chunk later.
ERP_DOWN_AFTER = 3

T = TypeVar("T")


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def correlation_id(annotation_id: int | str) -> str:
    """The id that follows one annotation through every log line and system."""
    return f"rossum:{annotation_id}"


# --- schedule ---------------------------------------------------------------------------------


def execution_name(queue_id: int, scheduled_at: datetime) -> str:
    """One name per queue and schedule tick, so a repeated tick starts nothing twice."""
    return f"rossum-{queue_id}-{scheduled_at:%Y%m%dT%H%M%SZ}"


def start_scheduled_exports(
    queue_ids: Iterable[int], scheduled_at: datetime, starter: ExecutionStarter
) -> dict[str, str | None]:
    """Start one export execution per queue; execution name -> ARN (None if it existed)."""
    started: dict[str, str | None] = {}
    for queue_id in queue_ids:
        name = execution_name(queue_id, scheduled_at)
        started[name] = starter.start(name, {"queueId": queue_id})
        logger.info(
            "export started" if started[name] else "export already started",
            extra={"execution": name},
        )
    metrics.add_metric(
        name="RossumExportsStarted",
        unit=MetricUnit.Count,
        value=sum(1 for arn in started.values() if arn),
    )
    return started


# --- 1. poll ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PollDeps:
    """What the poll step works with."""

    rossum: RossumPort
    ledger: Ledger
    payloads: PayloadStore
    lease_seconds: int


def poll_confirmed(request: PollRequest, deps: PollDeps) -> PollResult:
    """Claim every confirmed annotation of the queue and store the claimed ones in S3."""
    chunks: list[ChunkRef] = []
    buffer: list[dict[str, Any]] = []
    seen: set[int] = set()
    leased_elsewhere = unreadable = 0

    def flush() -> None:
        key = f"rossum-export/{request.queue_id}/{request.run_id}/chunk-{len(chunks):04d}.json"
        deps.payloads.put_json(key, buffer)
        chunks.append(ChunkRef(key=key, count=len(buffer)))
        buffer.clear()

    for result in deps.rossum.confirmed_annotations(request.queue_id):
        annotation_id = annotation_id_from_url(str(result.get("url", "")))
        if annotation_id is None:
            unreadable += 1
            logger.error(
                "export result without an annotation url", extra={"queue": request.queue_id}
            )
            continue
        if annotation_id in seen:  # pages shift when documents are confirmed while we read
            continue
        seen.add(annotation_id)
        entry = deps.ledger.claim(
            FLOW,
            str(annotation_id),
            owner=request.run_id,
            lease_seconds=deps.lease_seconds,
            attributes={"queueId": str(request.queue_id)},
        )
        if entry is None:
            leased_elsewhere += 1
            logger.info(
                "claimed by another run", extra={"correlation_id": correlation_id(annotation_id)}
            )
            continue
        buffer.append(result)
        if len(buffer) == CHUNK_SIZE:
            flush()
    if buffer:
        flush()
    checkpoint("poll.after_claim")
    claimed = sum(chunk.count for chunk in chunks)
    metrics.add_metric(name="RossumClaimed", unit=MetricUnit.Count, value=claimed)
    logger.info(
        "poll done",
        extra={"queue": request.queue_id, "claimed": claimed, "leased_elsewhere": leased_elsewhere},
    )
    return PollResult(
        queue_id=request.queue_id,
        run_id=request.run_id,
        claimed=claimed,
        leased_elsewhere=leased_elsewhere,
        unreadable=unreadable,
        chunks=chunks,
    )


# --- 2. push ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushDeps:
    """What the push step works with."""

    erp: ErpGateway
    ledger: Ledger
    payloads: PayloadStore
    #: ERP requests in flight at once; the rest of the step is sequential
    concurrency: int = 8


@dataclass(frozen=True)
class _Pending:
    """A document recorded PUSHING, about to be sent to the ERP."""

    annotation_id: int
    invoice: Invoice
    attempts: int


def _prepare(
    raw: dict[str, Any], entry: Entry | None, request: PushRequest, deps: PushDeps
) -> DocumentOutcome | _Pending:
    """Decide what to do with one document; record PUSHING before it may be sent."""
    annotation_id = annotation_id_from_url(str(raw.get("url", "")))
    assert annotation_id is not None  # the poll step kept only results with an id
    doc, ledger, run = str(annotation_id), deps.ledger, request.run_id
    if entry is None or entry.lease_owner != run:
        return DocumentOutcome(annotation_id=annotation_id, outcome="skipped")

    # The ERP already holds it: an earlier run got this far and then stopped.
    if entry.status in (Status.PUSHED, Status.EXPORTED, Status.NOT_CONFIRMED) and entry.external_id:
        return DocumentOutcome(
            annotation_id=annotation_id, outcome="accepted", erp_id=entry.external_id
        )
    # An earlier push may have reached the ERP: ask before sending it again.
    if entry.status in (Status.PUSHING, Status.DEFERRED) and entry.attempts > 0:
        erp_id = deps.erp.find_invoice(correlation_id(annotation_id))
        if erp_id is not None:
            ledger.record(
                FLOW,
                doc,
                owner=run,
                status=Status.PUSHED,
                external_id=erp_id,
                detail=f"found in the ERP as {erp_id} after an interrupted push",
            )
            metrics.add_metric(name="RossumReconciled", unit=MetricUnit.Count, value=1)
            return DocumentOutcome(annotation_id=annotation_id, outcome="accepted", erp_id=erp_id)

    try:
        invoice = to_invoice(ExportedAnnotation.model_validate(raw))
    except (MappingError, ValidationError) as error:
        problems = (
            error.problems
            if isinstance(error, MappingError)
            else [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        )
        reasons = [f"cannot read the invoice: {p}" for p in problems]
        entry = ledger.record(
            FLOW,
            doc,
            owner=run,
            status=Status.REJECTED,
            reasons=reasons,
            last_error="; ".join(reasons),
            count_attempt=True,
            detail="mapping failed",
        )
        return DocumentOutcome(
            annotation_id=annotation_id,
            outcome="rejected",
            reasons=reasons,
            attempts=entry.attempts,
        )

    entry = ledger.record(
        FLOW,
        doc,
        owner=run,
        status=Status.PUSHING,
        count_attempt=True,
        detail=f"POST /invoices {invoice.invoice_number}",
    )
    return _Pending(annotation_id=annotation_id, invoice=invoice, attempts=entry.attempts)


def _send(pending: _Pending, erp: ErpGateway) -> Accepted | Rejected | TransientError:
    """One ERP create; runs in a worker thread, so it only talks to the ERP."""
    try:
        return erp.push_invoice(pending.invoice)
    except TransientError as error:
        return error


def _conclude(
    pending: _Pending, result: Accepted | Rejected, request: PushRequest, deps: PushDeps
) -> DocumentOutcome:
    """Record what the ERP answered."""
    doc, run = str(pending.annotation_id), request.run_id
    if isinstance(result, Accepted):
        checkpoint("push.after_erp_accept")
        detail = f"ERP {'already held' if result.already_existed else 'created'} {result.erp_id}"
        deps.ledger.record(
            FLOW, doc, owner=run, status=Status.PUSHED, external_id=result.erp_id, detail=detail
        )
        return DocumentOutcome(
            annotation_id=pending.annotation_id,
            outcome="accepted",
            erp_id=result.erp_id,
            attempts=pending.attempts,
        )
    reasons = [f"ERP rejected the invoice: {r}" for r in result.reasons]
    deps.ledger.record(
        FLOW,
        doc,
        owner=run,
        status=Status.REJECTED,
        reasons=reasons,
        last_error="; ".join(reasons),
        detail="ERP rejected",
    )
    return DocumentOutcome(
        annotation_id=pending.annotation_id,
        outcome="rejected",
        reasons=reasons,
        attempts=pending.attempts,
    )


def _deferred(annotation_id: int, error: Exception, deps: PushDeps, run: str) -> DocumentOutcome:
    logger.warning("push deferred", extra={"error": str(error)})
    _defer(deps.ledger, str(annotation_id), run, str(error))
    return DocumentOutcome(annotation_id=annotation_id, outcome="deferred", reasons=[str(error)])


def push_to_erp(request: PushRequest, deps: PushDeps) -> PushResult:
    """Push one chunk; write each document's outcome to S3 for the finalize step.

    Three phases: decide and record PUSHING (sequential), send to the ERP (``concurrency`` at a
    time), record the answers (sequential). A crash anywhere leaves every sent document in
    PUSHING, which the next run reconciles with the ERP before sending anything again.
    """
    raws: list[dict[str, Any]] = deps.payloads.get_json(request.chunk_key)
    ids = [int(str(annotation_id_from_url(str(raw.get("url", ""))))) for raw in raws]
    entries = deps.ledger.get_many(FLOW, [str(i) for i in ids])
    outcomes: dict[int, DocumentOutcome] = {}
    pending: list[_Pending] = []
    for raw, annotation_id in zip(raws, ids, strict=True):
        with logger.append_context_keys(correlation_id=correlation_id(annotation_id)):
            try:
                decided = _prepare(raw, entries.get(str(annotation_id)), request, deps)
            except LeaseLostError as error:
                logger.warning(
                    "lease lost, leaving the document to the other run", extra={"error": str(error)}
                )
                decided = DocumentOutcome(annotation_id=annotation_id, outcome="skipped")
            except TransientError as error:
                decided = _deferred(annotation_id, error, deps, request.run_id)
        if isinstance(decided, _Pending):
            pending.append(decided)
        else:
            outcomes[annotation_id] = decided

    checkpoint("push.before_erp")
    with ThreadPoolExecutor(max_workers=max(1, deps.concurrency)) as pool:
        answers = list(pool.map(lambda p: _send(p, deps.erp), pending))

    failures = 0
    for item, answer in zip(pending, answers, strict=True):
        with logger.append_context_keys(correlation_id=correlation_id(item.annotation_id)):
            try:
                if isinstance(answer, TransientError):
                    failures += 1
                    outcomes[item.annotation_id] = _deferred(
                        item.annotation_id, answer, deps, request.run_id
                    )
                else:
                    outcomes[item.annotation_id] = _conclude(item, answer, request, deps)
            except LeaseLostError as error:
                logger.warning("lease lost after the push", extra={"error": str(error)})
                outcomes[item.annotation_id] = DocumentOutcome(
                    annotation_id=item.annotation_id, outcome="skipped"
                )
    if failures >= ERP_DOWN_AFTER and failures == len(pending):
        # Nothing got through: the ERP is down. Step Functions retries the chunk later.
        msg = f"ERP unavailable: {failures} of {len(pending)} pushes failed ({answers[0]})"
        raise TransientError(msg)

    ordered = [outcomes[i] for i in ids]
    result_key = request.chunk_key.replace("/chunk-", "/result-")
    deps.payloads.put_json(result_key, [o.dump() for o in ordered])
    counts = {
        kind: sum(1 for o in ordered if o.outcome == kind)
        for kind in ("accepted", "rejected", "deferred", "skipped")
    }
    metrics.add_metric(name="RossumAcceptedByErp", unit=MetricUnit.Count, value=counts["accepted"])
    metrics.add_metric(name="RossumRejectedByErp", unit=MetricUnit.Count, value=counts["rejected"])
    metrics.add_metric(name="RossumDeferred", unit=MetricUnit.Count, value=counts["deferred"])
    return PushResult(chunk_key=request.chunk_key, result_key=result_key, **counts)


def _defer(ledger: Ledger, doc: str, run: str, error: str) -> None:
    """Leave the document for the next run, keeping PUSHING if a create may have happened."""
    entry = ledger.get(FLOW, doc)
    status = (
        Status.PUSHING if entry is not None and entry.status == Status.PUSHING else Status.DEFERRED
    )
    with contextlib.suppress(LeaseLostError):
        ledger.record(
            FLOW,
            doc,
            owner=run,
            status=status,
            last_error=error,
            release=True,
            detail=f"deferred: {error}",
        )


# --- 3. finalize ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalizeDeps:
    """What the finalize step works with."""

    rossum: RossumPort
    ledger: Ledger
    payloads: PayloadStore
    reject_policy: RejectPolicy
    reject_attempts: int


def rejection_message(reasons: Sequence[str]) -> str:
    """The text an operator reads in Rossum next to the red icon."""
    return "erphub could not export this document. " + " | ".join(reasons)


def finalize(request: FinalizeRequest, deps: FinalizeDeps) -> FinalizeResult:
    """Tell Rossum the outcome: exported (ids in batches of 100) or failed_export (one by one)."""
    outcomes = [
        DocumentOutcome.model_validate(item)
        for chunk in request.chunks
        for item in deps.payloads.get_json(chunk.result_key)
    ]
    ledger, run = deps.ledger, request.run_id
    # A retried finalize must not tell Rossum twice: keep only what this run still holds.
    held = {
        doc
        for doc, entry in ledger.get_many(FLOW, (str(o.annotation_id) for o in outcomes)).items()
        if entry.lease_owner == run
    }
    accepted = [
        o.annotation_id
        for o in outcomes
        if o.outcome == "accepted" and str(o.annotation_id) in held
    ]
    rejected = [o for o in outcomes if o.outcome == "rejected" and str(o.annotation_id) in held]
    exported = no_longer_confirmed = failed = kept = calls = 0

    for batch in _batches(accepted, MAX_IDS_PER_EXPORT):
        checkpoint("finalize.before_export")
        statuses = deps.rossum.mark_exported(request.queue_id, batch)
        calls += 1
        checkpoint("finalize.after_export")
        for annotation_id in batch:
            status = statuses.get(annotation_id)
            with logger.append_context_keys(correlation_id=correlation_id(annotation_id)):
                try:
                    if status in ("exported", "exporting"):
                        ledger.record(
                            FLOW,
                            str(annotation_id),
                            owner=run,
                            status=Status.EXPORTED,
                            release=True,
                            detail=f"Rossum {status}",
                        )
                        exported += 1
                    else:
                        ledger.record(
                            FLOW,
                            str(annotation_id),
                            owner=run,
                            status=Status.NOT_CONFIRMED,
                            release=True,
                            last_error=f"Rossum status {status or 'unknown'}",
                            detail="no longer confirmed in Rossum; the ERP holds it",
                        )
                        no_longer_confirmed += 1
                        logger.warning(
                            "annotation left confirmed before export", extra={"status": status}
                        )
                except LeaseLostError as error:
                    logger.warning("lease lost at finalize", extra={"error": str(error)})

    for outcome in rejected:
        doc = str(outcome.annotation_id)
        with logger.append_context_keys(correlation_id=correlation_id(doc)):
            try:
                if (
                    deps.reject_policy is RejectPolicy.KEEP_CONFIRMED
                    and outcome.attempts < deps.reject_attempts
                ):
                    ledger.record(
                        FLOW,
                        doc,
                        owner=run,
                        status=Status.KEPT_CONFIRMED,
                        release=True,
                        detail=f"rejected {outcome.attempts}/{deps.reject_attempts} times, kept",
                    )
                    kept += 1
                    continue
                deps.rossum.mark_failed_export(
                    outcome.annotation_id, rejection_message(outcome.reasons)
                )
                checkpoint("finalize.after_failed_export")
                ledger.record(
                    FLOW,
                    doc,
                    owner=run,
                    status=Status.FAILED_EXPORT,
                    release=True,
                    detail="Rossum failed_export",
                )
                failed += 1
            except RossumError as error:
                ledger.record(
                    FLOW,
                    doc,
                    owner=run,
                    status=Status.REJECTED,
                    release=True,
                    last_error=f"could not switch to failed_export: {error}",
                    detail="Rossum refused failed_export",
                )
                logger.error("failed_export refused", extra={"error": str(error)})
            except LeaseLostError as error:
                logger.warning("lease lost at finalize", extra={"error": str(error)})

    deferred = sum(1 for o in outcomes if o.outcome == "deferred")
    metrics.add_metric(name="RossumExported", unit=MetricUnit.Count, value=exported)
    metrics.add_metric(name="RossumFailedExport", unit=MetricUnit.Count, value=failed)
    metrics.add_metric(name="RossumExportCalls", unit=MetricUnit.Count, value=calls)
    logger.info(
        "finalize done", extra={"exported": exported, "failed_export": failed, "kept": kept}
    )
    return FinalizeResult(
        queue_id=request.queue_id,
        run_id=run,
        exported=exported,
        failed_export=failed,
        kept_confirmed=kept,
        deferred=deferred,
        no_longer_confirmed=no_longer_confirmed,
        export_calls=calls,
    )
