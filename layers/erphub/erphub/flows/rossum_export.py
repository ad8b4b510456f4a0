"""Rossum -> ERP: the "Confirmed tab" export, one queue per execution.

1. :func:`poll_confirmed` pages the confirmed annotations, claims each in the ledger (which marks
   it PUSHING: from now on a create may reach the ERP) and stores them in S3 in chunks of 100,
   each with what the ledger knew of it before.
2. :func:`push_to_erp` maps one chunk to invoices and pushes them to the ERP. A document that an
   earlier run left PUSHING is first looked up in the ERP by its external reference.
3. :func:`finalize` moves exactly the ERP-accepted ids to ``exported`` (at most 100 per call) and
   the rejected ones to ``failed_export`` with the ERP's reasons, and records every outcome.

Each document costs two ledger writes in a clean run (the claim and the outcome): the ledger is
the hub's main running cost, in AWS as in the local emulation.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from erphub.clients.erp import Accepted, ErpGateway, Rejected
from erphub.clients.rossum import MAX_IDS_PER_EXPORT, RossumError, RossumPort
from erphub.errors import LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.ledger import Ledger, Status
from erphub.mapping import MappingError, to_invoice
from erphub.models import (
    CamelModel,
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
#: what a document's earlier ledger state says about the ERP holding it already
KNOWN_TO_ERP = frozenset({Status.PUSHED, Status.EXPORTED, Status.NOT_CONFIRMED})
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


class Prior(CamelModel):
    """What the ledger knew of a document when this run claimed it."""

    status: Status | None = None
    external_id: str | None = None
    run: str | None = None


class ChunkItem(CamelModel):
    """One claimed annotation as stored in a chunk."""

    annotation: dict[str, Any]
    prior: Prior


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
        claimed = deps.ledger.claim_to_send(
            FLOW,
            str(annotation_id),
            owner=request.run_id,
            lease_seconds=deps.lease_seconds,
            attributes={"queueId": str(request.queue_id)},
        )
        if claimed is None:
            leased_elsewhere += 1
            logger.info(
                "claimed by another run", extra={"correlation_id": correlation_id(annotation_id)}
            )
            continue
        before = claimed.previous
        prior = Prior(
            status=before.status if before else None,
            external_id=before.external_id if before else None,
            run=before.lease_owner if before else None,
        )
        buffer.append(ChunkItem(annotation=result, prior=prior).dump())
        if len(buffer) == CHUNK_SIZE:
            flush()
    if buffer:
        flush()
    checkpoint("poll.after_claim")
    claimed_total = sum(chunk.count for chunk in chunks)
    metrics.add_metric(name="RossumClaimed", unit=MetricUnit.Count, value=claimed_total)
    logger.info(
        "poll done",
        extra={
            "queue": request.queue_id,
            "claimed": claimed_total,
            "leased_elsewhere": leased_elsewhere,
        },
    )
    return PollResult(
        queue_id=request.queue_id,
        run_id=request.run_id,
        claimed=claimed_total,
        leased_elsewhere=leased_elsewhere,
        unreadable=unreadable,
        chunks=chunks,
    )


# --- 2. push ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushDeps:
    """What the push step works with."""

    erp: ErpGateway
    payloads: PayloadStore
    #: ERP requests in flight at once
    concurrency: int = 8


@dataclass(frozen=True)
class _Pending:
    """A document to be sent to the ERP."""

    annotation_id: int
    invoice: Invoice


def _prepare(item: ChunkItem, request: PushRequest, deps: PushDeps) -> DocumentOutcome | _Pending:
    """Decide what to do with one document from what the ledger knew of it."""
    annotation_id = annotation_id_from_url(str(item.annotation.get("url", "")))
    assert annotation_id is not None  # the poll step kept only results with an id
    prior = item.prior
    # The ERP already holds it: an earlier run got this far, then Rossum offered it again.
    if prior.status in KNOWN_TO_ERP and prior.external_id:
        return DocumentOutcome(
            annotation_id=annotation_id, outcome="accepted", erp_id=prior.external_id
        )
    # An earlier run stopped after it may have sent it: ask the ERP before sending it again.
    if prior.status is Status.PUSHING and prior.run != request.run_id:
        erp_id = deps.erp.find_invoice(correlation_id(annotation_id))
        if erp_id is not None:
            metrics.add_metric(name="RossumReconciled", unit=MetricUnit.Count, value=1)
            logger.info("found in the ERP after an interrupted push", extra={"erp_id": erp_id})
            return DocumentOutcome(annotation_id=annotation_id, outcome="accepted", erp_id=erp_id)
    try:
        invoice = to_invoice(ExportedAnnotation.model_validate(item.annotation))
    except (MappingError, ValidationError) as error:
        problems = (
            error.problems
            if isinstance(error, MappingError)
            else [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        )
        reasons = [f"cannot read the invoice: {p}" for p in problems]
        return DocumentOutcome(annotation_id=annotation_id, outcome="rejected", reasons=reasons)
    return _Pending(annotation_id=annotation_id, invoice=invoice)


def _send(pending: _Pending, erp: ErpGateway) -> Accepted | Rejected | TransientError:
    """One ERP create; runs in a worker thread, so it only talks to the ERP."""
    try:
        return erp.push_invoice(pending.invoice)
    except TransientError as error:
        return error


def push_to_erp(request: PushRequest, deps: PushDeps) -> PushResult:
    """Push one chunk, ``concurrency`` creates at a time; write the outcomes to S3.

    The push writes nothing to the ledger: the claim already says PUSHING, which is exactly what a
    crash at any point in here must leave behind.
    """
    items = [ChunkItem.model_validate(raw) for raw in deps.payloads.get_json(request.chunk_key)]
    outcomes: dict[int, DocumentOutcome] = {}
    pending: list[_Pending] = []
    order: list[int] = []
    for item in items:
        annotation_id = annotation_id_from_url(str(item.annotation.get("url", ""))) or 0
        order.append(annotation_id)
        with logger.append_context_keys(correlation_id=correlation_id(annotation_id)):
            try:
                decided = _prepare(item, request, deps)
            except TransientError as error:
                logger.warning("push deferred", extra={"error": str(error)})
                decided = DocumentOutcome(
                    annotation_id=annotation_id, outcome="deferred", reasons=[str(error)]
                )
        if isinstance(decided, _Pending):
            pending.append(decided)
        else:
            outcomes[annotation_id] = decided

    checkpoint("push.before_erp")
    with ThreadPoolExecutor(max_workers=max(1, deps.concurrency)) as pool:
        answers = list(pool.map(lambda p: _send(p, deps.erp), pending))
    checkpoint("push.after_erp_accept")

    failures = 0
    for sent, answer in zip(pending, answers, strict=True):
        if isinstance(answer, TransientError):
            failures += 1
            outcome = DocumentOutcome(
                annotation_id=sent.annotation_id, outcome="deferred", reasons=[str(answer)]
            )
        elif isinstance(answer, Accepted):
            outcome = DocumentOutcome(
                annotation_id=sent.annotation_id, outcome="accepted", erp_id=answer.erp_id
            )
        else:
            outcome = DocumentOutcome(
                annotation_id=sent.annotation_id,
                outcome="rejected",
                reasons=[f"ERP rejected the invoice: {r}" for r in answer.reasons],
            )
        outcomes[sent.annotation_id] = outcome
    if failures >= ERP_DOWN_AFTER and failures == len(pending):
        # Nothing got through: the ERP is down. Step Functions retries the chunk later.
        msg = f"ERP unavailable: {failures} of {len(pending)} pushes failed ({answers[0]})"
        raise TransientError(msg)

    ordered = [outcomes[i] for i in order]
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


@dataclass
class _Tally:
    exported: int = 0
    failed: int = 0
    kept: int = 0
    deferred: int = 0
    no_longer_confirmed: int = 0
    calls: int = 0


def _record(deps: FinalizeDeps, run: str, annotation_id: int, **fields: Any) -> bool:
    """Record an outcome while the run holds the lease; False if another run took over."""
    with logger.append_context_keys(correlation_id=correlation_id(annotation_id)):
        try:
            deps.ledger.mark(FLOW, str(annotation_id), owner=run, release=True, **fields)
        except LeaseLostError as error:
            logger.warning("lease lost at finalize", extra={"error": str(error)})
            return False
    return True


def _export_accepted(
    request: FinalizeRequest, deps: FinalizeDeps, accepted: Sequence[DocumentOutcome], tally: _Tally
) -> None:
    for batch in _batches(accepted, MAX_IDS_PER_EXPORT):
        checkpoint("finalize.before_export")
        statuses = deps.rossum.mark_exported(request.queue_id, [o.annotation_id for o in batch])
        tally.calls += 1
        checkpoint("finalize.after_export")
        for outcome in batch:
            status = statuses.get(outcome.annotation_id)
            if status in ("exported", "exporting"):
                if _record(
                    deps,
                    request.run_id,
                    outcome.annotation_id,
                    status=Status.EXPORTED,
                    external_id=outcome.erp_id,
                    detail=f"ERP {outcome.erp_id}; Rossum {status}",
                ):
                    tally.exported += 1
            elif _record(
                deps,
                request.run_id,
                outcome.annotation_id,
                status=Status.NOT_CONFIRMED,
                external_id=outcome.erp_id,
                last_error=f"Rossum status {status or 'unknown'}",
                detail="no longer confirmed in Rossum; the ERP holds it",
            ):
                tally.no_longer_confirmed += 1


def _fail_rejected(
    request: FinalizeRequest,
    deps: FinalizeDeps,
    outcome: DocumentOutcome,
    attempts: int,
    tally: _Tally,
) -> None:
    run, annotation_id = request.run_id, outcome.annotation_id
    common: dict[str, Any] = {"reasons": outcome.reasons, "last_error": "; ".join(outcome.reasons)}
    if deps.reject_policy is RejectPolicy.KEEP_CONFIRMED and attempts < deps.reject_attempts:
        if _record(
            deps,
            run,
            annotation_id,
            status=Status.KEPT_CONFIRMED,
            detail=f"rejected {attempts}/{deps.reject_attempts} times, kept",
            **common,
        ):
            tally.kept += 1
        return
    try:
        deps.rossum.mark_failed_export(annotation_id, rejection_message(outcome.reasons))
    except RossumError as error:
        _record(
            deps,
            run,
            annotation_id,
            status=Status.REJECTED,
            reasons=outcome.reasons,
            last_error=f"could not switch to failed_export: {error}",
            detail="Rossum refused failed_export",
        )
        logger.error("failed_export refused", extra={"error": str(error)})
        return
    checkpoint("finalize.after_failed_export")
    if _record(
        deps,
        run,
        annotation_id,
        status=Status.FAILED_EXPORT,
        detail="Rossum failed_export",
        **common,
    ):
        tally.failed += 1


def finalize(request: FinalizeRequest, deps: FinalizeDeps) -> FinalizeResult:
    """Tell Rossum the outcome (exported in batches of 100, failed_export one by one), record it."""
    outcomes = [
        DocumentOutcome.model_validate(item)
        for chunk in request.chunks
        for item in deps.payloads.get_json(chunk.result_key)
    ]
    tally = _Tally()
    _export_accepted(request, deps, [o for o in outcomes if o.outcome == "accepted"], tally)
    rejected = [o for o in outcomes if o.outcome == "rejected"]
    attempts = (
        {
            e.document_id: e.attempts
            for e in deps.ledger.get_many(FLOW, (str(o.annotation_id) for o in rejected)).values()
        }
        if deps.reject_policy is RejectPolicy.KEEP_CONFIRMED
        else {}
    )
    for outcome in rejected:
        _fail_rejected(request, deps, outcome, attempts.get(str(outcome.annotation_id), 1), tally)
    for outcome in outcomes:
        if outcome.outcome == "deferred" and _record(
            deps,
            request.run_id,
            outcome.annotation_id,
            status=Status.PUSHING,
            last_error="; ".join(outcome.reasons),
            detail="deferred to the next run; it will be looked up in the ERP first",
        ):
            tally.deferred += 1

    metrics.add_metric(name="RossumExported", unit=MetricUnit.Count, value=tally.exported)
    metrics.add_metric(name="RossumFailedExport", unit=MetricUnit.Count, value=tally.failed)
    metrics.add_metric(name="RossumExportCalls", unit=MetricUnit.Count, value=tally.calls)
    logger.info(
        "finalize done",
        extra={"exported": tally.exported, "failed_export": tally.failed, "kept": tally.kept},
    )
    return FinalizeResult(
        queue_id=request.queue_id,
        run_id=request.run_id,
        exported=tally.exported,
        failed_export=tally.failed,
        kept_confirmed=tally.kept,
        deferred=tally.deferred,
        no_longer_confirmed=tally.no_longer_confirmed,
        export_calls=tally.calls,
    )
