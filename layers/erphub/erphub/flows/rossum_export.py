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

A dry run (``dryRun`` in the execution input) takes the same three steps and changes nothing:
see the last section of this module.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from erphub.clients.erp_port import Accepted, ErpGateway, Rejected, Valid
from erphub.clients.rossum_port import MAX_IDS_PER_EXPORT, RossumError, RossumPort
from erphub.dryrun import DryRunSummary, Preview, write_report
from erphub.errors import LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.ledger import Ledger, Status
from erphub.models import (
    CamelModel,
    ChunkRef,
    DocumentOutcome,
    FinalizeRequest,
    FinalizeResult,
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
    from erphub.invoices import Invoice  # noqa: TC004 - the dataclasses never evaluate annotations
    from erphub.mapfile import MappingSpec  # noqa: TC004 - ditto

FLOW = "rossum-export"
#: what a document's earlier ledger state says about the ERP holding it already
KNOWN_TO_ERP = frozenset({Status.PUSHED, Status.EXPORTED, Status.NOT_CONFIRMED})
CHUNK_SIZE = 100
# When every push of a chunk fails for a transient reason (and there were at least this many),
# the ERP is taken to be down: the step fails and Step Functions retries the chunk later.
ERP_DOWN_AFTER = 3
#: How far back the poll looks for documents an interrupted run left PUSHING after Rossum had
#: moved them on (see :func:`settle_interrupted`).
SETTLE_WITHIN_SECONDS = 3 * 86_400
#: Rossum statuses that settle a document an interrupted run left PUSHING.
_SETTLED_BY_ROSSUM = {
    "exported": Status.EXPORTED,
    "exporting": Status.EXPORTED,
    "failed_export": Status.FAILED_EXPORT,
}

T = TypeVar("T")


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def correlation_id(annotation_id: int | str) -> str:
    """The id that follows one annotation through every log line and system."""
    return f"rossum:{annotation_id}"


# --- schedule ---------------------------------------------------------------------------------


def execution_name(queue_id: int, scheduled_at: datetime, *, dry_run: bool = False) -> str:
    """One name per queue and schedule tick, so a repeated tick starts nothing twice.

    A dry run has a name of its own: it must never take the name a real run needs.
    """
    suffix = "-dry-run" if dry_run else ""
    return f"rossum-{queue_id}-{scheduled_at:%Y%m%dT%H%M%SZ}{suffix}"


def start_scheduled_exports(
    queue_ids: Iterable[int],
    scheduled_at: datetime,
    starter: ExecutionStarter,
    *,
    dry_run: bool = False,
) -> dict[str, str | None]:
    """Start one export execution per queue; execution name -> ARN (None if it existed)."""
    started: dict[str, str | None] = {}
    for queue_id in queue_ids:
        name = execution_name(queue_id, scheduled_at, dry_run=dry_run)
        started[name] = starter.start(name, {"queueId": queue_id, "dryRun": dry_run})
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
    if request.dry_run:
        return preview_confirmed(request, deps)
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
    settled = settle_interrupted(request, deps, seen)
    checkpoint("poll.after_claim")
    claimed_total = sum(chunk.count for chunk in chunks)
    metrics.add_metric(name="RossumClaimed", unit=MetricUnit.Count, value=claimed_total)
    logger.info(
        "poll done",
        extra={
            "queue": request.queue_id,
            "claimed": claimed_total,
            "leased_elsewhere": leased_elsewhere,
            "settled": settled,
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


def settle_interrupted(request: PollRequest, deps: PollDeps, confirmed: set[int]) -> int:
    """Record Rossum's status for documents an interrupted run of this queue left PUSHING.

    A run that stops after Rossum's export call (or the switch to failed_export) but before the
    ledger records it leaves documents PUSHING that Rossum no longer offers as confirmed: no
    later poll would see them again. Once their lease has run out they are settled from what
    Rossum shows. A settled document that comes back to confirmed is looked up in the ERP
    before anything is pushed. Returns how many were settled.
    """
    queue = str(request.queue_id)
    stale = {
        int(entry.document_id): entry.lease_owner
        for entry in deps.ledger.unleased(
            FLOW, Status.PUSHING, within_seconds=SETTLE_WITHIN_SECONDS
        )
        if entry.attributes.get("queueId") == queue
        and entry.document_id.isdigit()
        and int(entry.document_id) not in confirmed
    }
    if not stale:
        return 0
    states = deps.rossum.annotation_states(list(stale))
    settled = 0
    for annotation_id, stopped_run in stale.items():
        state = states.get(annotation_id)
        if state is not None and state.status == "confirmed":
            continue  # confirmed since this poll read the queue: the next poll takes it
        document = str(annotation_id)
        with logger.append_context_keys(correlation_id=correlation_id(annotation_id)):
            entry = deps.ledger.claim(
                FLOW, document, owner=request.run_id, lease_seconds=deps.lease_seconds
            )
            if entry is None:
                continue  # another run took it over
            if entry.status is not Status.PUSHING:  # recorded meanwhile: leave it as it is
                deps.ledger.mark(
                    FLOW, document, owner=request.run_id, status=entry.status, release=True
                )
                continue
            rossum_status = state.status if state is not None else "not found"
            status = _SETTLED_BY_ROSSUM.get(rossum_status, Status.NOT_CONFIRMED)
            why = f"run {stopped_run or 'unknown'} stopped before recording it"
            if status is Status.FAILED_EXPORT:
                reasons = list(state.errors) if state and state.errors else ["failed_export"]
                deps.ledger.mark(
                    FLOW,
                    document,
                    owner=request.run_id,
                    status=status,
                    reasons=reasons,
                    last_error="; ".join(reasons),
                    release=True,
                    detail=f"Rossum failed_export; {why}",
                )
            elif status is Status.EXPORTED:
                deps.ledger.mark(
                    FLOW,
                    document,
                    owner=request.run_id,
                    status=status,
                    release=True,
                    detail=f"Rossum {rossum_status}; {why}",
                )
            else:
                deps.ledger.mark(
                    FLOW,
                    document,
                    owner=request.run_id,
                    status=status,
                    last_error=f"Rossum status {rossum_status}",
                    release=True,
                    detail=f"no longer confirmed in Rossum; {why}",
                )
            logger.warning(
                "settled after an interrupted run",
                extra={"status": status.value, "rossum_status": rossum_status},
            )
            settled += 1
    metrics.add_metric(name="RossumSettled", unit=MetricUnit.Count, value=settled)
    return settled


# --- 2. push ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushDeps:
    """What the push step works with."""

    erp: ErpGateway
    payloads: PayloadStore
    #: ERP requests in flight at once
    concurrency: int = 8
    #: how annotations become invoices (None: the packaged default)
    mapping: MappingSpec | None = None


@dataclass(frozen=True)
class _Pending:
    """A document to be sent to the ERP."""

    annotation_id: int
    invoice: Invoice


def _prepare(item: ChunkItem, request: PushRequest, deps: PushDeps) -> DocumentOutcome | _Pending:
    """Decide what to do with one document from what the ledger knew of it."""
    # Only the push step maps (functions/rossum_push loads the mapping at its cold start).
    from erphub.invoices import ExportedAnnotation  # noqa: PLC0415
    from erphub.mapping import MappingError, to_invoice  # noqa: PLC0415

    annotation_id = annotation_id_from_url(str(item.annotation.get("url", "")))
    assert annotation_id is not None  # the poll step kept only results with an id
    prior = item.prior
    # The ERP already holds it: an earlier run got this far, then Rossum offered it again.
    if prior.status in KNOWN_TO_ERP and prior.external_id:
        return DocumentOutcome(
            annotation_id=annotation_id, outcome="accepted", erp_id=prior.external_id
        )
    # An earlier run stopped after it may have sent it (or it was settled from Rossum's status
    # without the ERP's id): ask the ERP before sending it again.
    if (prior.status is Status.PUSHING and prior.run != request.run_id) or (
        prior.status in KNOWN_TO_ERP
    ):
        erp_id = deps.erp.find_invoice(correlation_id(annotation_id))
        if erp_id is not None:
            metrics.add_metric(name="RossumReconciled", unit=MetricUnit.Count, value=1)
            logger.info("found in the ERP after an interrupted push", extra={"erp_id": erp_id})
            return DocumentOutcome(annotation_id=annotation_id, outcome="accepted", erp_id=erp_id)
    try:
        invoice = to_invoice(ExportedAnnotation.model_validate(item.annotation), deps.mapping)
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
    if request.dry_run:
        return preview_push(request, deps)
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


def finalize(request: FinalizeRequest, deps: FinalizeDeps) -> FinalizeResult | DryRunSummary:
    """Tell Rossum the outcome (exported in batches of 100, failed_export one by one), record it.

    A dry run tells Rossum nothing: it writes the per-document report instead.
    """
    if request.dry_run:
        return preview_finalize(request, deps)
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


# --- dry run ----------------------------------------------------------------------------------
# The same three steps, reading everything and changing nothing. The poll claims nothing: it
# reads what the ledger knows, which is what a claim would have returned. The push makes the same
# decisions (:func:`_prepare`) and asks the ERP to validate where a real run would create.
# Finalize tells Rossum nothing and writes the per-document report (:mod:`erphub.dryrun`).

DRY_RUN_READ_BATCH = 100


def _report_prefix(queue_id: int, run_id: str) -> str:
    return f"{FLOW}/{queue_id}/{run_id}"


def preview_confirmed(request: PollRequest, deps: PollDeps) -> PollResult:
    """Dry-run poll: store, in chunks, what :func:`poll_confirmed` would claim; claim nothing."""
    chunks: list[ChunkRef] = []
    buffer: list[dict[str, Any]] = []
    batch: list[tuple[int, dict[str, Any]]] = []
    seen: set[int] = set()
    counts = {"leased_elsewhere": 0, "unreadable": 0}

    def flush() -> None:
        key = f"{_report_prefix(request.queue_id, request.run_id)}/chunk-{len(chunks):04d}.json"
        deps.payloads.put_json(key, buffer)
        chunks.append(ChunkRef(key=key, count=len(buffer)))
        buffer.clear()

    def decide() -> None:
        entries = deps.ledger.get_many(FLOW, (str(i) for i, _ in batch))
        for annotation_id, result in batch:
            entry = entries.get(str(annotation_id))
            if entry is not None and deps.ledger.held_elsewhere(entry, request.run_id):
                counts["leased_elsewhere"] += 1
                continue
            prior = Prior(
                status=entry.status if entry else None,
                external_id=entry.external_id if entry else None,
                run=entry.lease_owner if entry else None,
            )
            buffer.append(ChunkItem(annotation=result, prior=prior).dump())
            if len(buffer) == CHUNK_SIZE:
                flush()
        batch.clear()

    for result in deps.rossum.confirmed_annotations(request.queue_id):
        annotation_id = annotation_id_from_url(str(result.get("url", "")))
        if annotation_id is None:
            counts["unreadable"] += 1
            continue
        if annotation_id not in seen:
            seen.add(annotation_id)
            batch.append((annotation_id, result))
        if len(batch) == DRY_RUN_READ_BATCH:
            decide()
    decide()
    if buffer:
        flush()
    claimable = sum(chunk.count for chunk in chunks)
    logger.info("dry-run poll done", extra={"queue": request.queue_id, "claimable": claimable})
    return PollResult(
        queue_id=request.queue_id,
        run_id=request.run_id,
        claimed=claimable,
        chunks=chunks,
        **counts,
    )


def _preview_decided(outcome: DocumentOutcome) -> Preview:
    """What a decision taken without the ERP's answer to a create means for the report."""
    annotation_id = outcome.annotation_id
    common = {"document_id": str(annotation_id), "correlation_id": correlation_id(annotation_id)}
    if outcome.outcome == "accepted":
        return Preview(
            **common,
            verdict="accepted",
            action=f"already in the ERP as {outcome.erp_id}; would be moved to exported",
        )
    return Preview(**common, verdict="rejected", action="", reasons=outcome.reasons)


def _validate(pending: _Pending, erp: ErpGateway) -> Valid | Accepted | Rejected | TransientError:
    """One ERP validation; runs in a worker thread, so it only talks to the ERP."""
    try:
        return erp.validate_invoice(pending.invoice)
    except TransientError as error:
        return error


def _preview_answer(
    pending: _Pending, answer: Valid | Accepted | Rejected | TransientError
) -> Preview:
    annotation_id = pending.annotation_id
    common = {
        "document_id": str(annotation_id),
        "correlation_id": correlation_id(annotation_id),
        "payload": pending.invoice.dump(),
    }
    if isinstance(answer, TransientError):
        return Preview(
            **common,
            verdict="deferred",
            action="would be left for the next run",
            reasons=[str(answer)],
        )
    if isinstance(answer, Valid):
        return Preview(**common, verdict="accepted", sends=True, action="would be created")
    if isinstance(answer, Accepted):
        return Preview(
            **common,
            verdict="accepted",
            action=f"already in the ERP as {answer.erp_id}; would be moved to exported",
        )
    reasons = [f"ERP rejected the invoice: {reason}" for reason in answer.reasons]
    return Preview(**common, verdict="rejected", action="", reasons=reasons)


def preview_push(request: PushRequest, deps: PushDeps) -> PushResult:
    """Dry-run push: the decisions of :func:`push_to_erp`, with ERP validations, not creates."""
    items = [ChunkItem.model_validate(raw) for raw in deps.payloads.get_json(request.chunk_key)]
    previews: dict[int, Preview] = {}
    pending: list[_Pending] = []
    order: list[int] = []
    for item in items:
        annotation_id = annotation_id_from_url(str(item.annotation.get("url", ""))) or 0
        order.append(annotation_id)
        try:
            decided = _prepare(item, request, deps)
        except TransientError as error:
            previews[annotation_id] = Preview(
                document_id=str(annotation_id),
                correlation_id=correlation_id(annotation_id),
                verdict="deferred",
                action="would be left for the next run",
                reasons=[str(error)],
            )
            continue
        if isinstance(decided, _Pending):
            pending.append(decided)
        else:
            previews[annotation_id] = _preview_decided(decided)
    with ThreadPoolExecutor(max_workers=max(1, deps.concurrency)) as pool:
        answers = list(pool.map(lambda p: _validate(p, deps.erp), pending))
    failures = sum(1 for answer in answers if isinstance(answer, TransientError))
    if failures >= ERP_DOWN_AFTER and failures == len(pending):
        msg = f"ERP unavailable: {failures} of {len(pending)} validations failed ({answers[0]})"
        raise TransientError(msg)
    for sent, answer in zip(pending, answers, strict=True):
        previews[sent.annotation_id] = _preview_answer(sent, answer)
    ordered = [previews[i] for i in order]
    result_key = request.chunk_key.replace("/chunk-", "/result-")
    deps.payloads.put_json(result_key, [p.dump() for p in ordered])
    counts = {
        kind: sum(1 for p in ordered if p.verdict == kind)
        for kind in ("accepted", "rejected", "deferred", "skipped")
    }
    return PushResult(chunk_key=request.chunk_key, result_key=result_key, **counts)


def _supplier_invoice(preview: Preview) -> tuple[str, str] | None:
    """Supplier VAT id and invoice number of an invoice a run would create (for duplicates)."""
    payload = preview.payload or {}
    supplier = payload.get("supplier") or {}
    vat, number = supplier.get("vatId"), payload.get("invoiceNumber")
    if not (isinstance(vat, str) and isinstance(number, str)):
        return None
    return "".join(ch for ch in vat if ch not in " .-\t").upper(), number.strip()


def _duplicates_within_the_run(previews: list[Preview]) -> list[Preview]:
    """The ERP books one invoice number per supplier. Validation checks each invoice against
    what the ERP holds, not against the others of this run: of several creates with the same
    supplier and number, a real run books one (whichever reaches the ERP first: chunks are
    pushed in parallel) and the ERP rejects the others. The report counts the first in Rossum's
    order as the booked one."""
    first: dict[tuple[str, str], str] = {}
    checked: list[Preview] = []
    for preview in previews:
        key = _supplier_invoice(preview) if preview.sends else None
        if key is None:
            checked.append(preview)
        elif key not in first:
            first[key] = preview.document_id
            checked.append(preview)
        else:
            reason = (
                f"ERP rejected the invoice: invoiceNumber: invoice number {key[1]} of supplier"
                f" {key[0]} is also on annotation {first[key]} of this run; the ERP books the"
                " one that reaches it first and rejects the other"
            )
            checked.append(
                preview.model_copy(
                    update={"verdict": "rejected", "sends": False, "reasons": [reason]}
                )
            )
    return checked


def preview_finalize(request: FinalizeRequest, deps: FinalizeDeps) -> DryRunSummary:
    """Dry-run finalize: what Rossum would be told about each document, written as the report."""
    previews = _duplicates_within_the_run(
        [
            Preview.model_validate(item)
            for chunk in request.chunks
            for item in deps.payloads.get_json(chunk.result_key)
        ]
    )
    rejected = [p.document_id for p in previews if p.verdict == "rejected"]
    entries = (
        deps.ledger.get_many(FLOW, rejected)
        if deps.reject_policy is RejectPolicy.KEEP_CONFIRMED
        else {}
    )
    final: list[Preview] = []
    for preview in previews:
        if preview.verdict == "accepted" and preview.sends:
            action = "would be created in the ERP, then moved to exported"
        elif preview.verdict == "rejected":
            entry = entries.get(preview.document_id)
            attempt = (entry.attempts if entry else 0) + 1  # the claim counts one
            if deps.reject_policy is RejectPolicy.KEEP_CONFIRMED and attempt < deps.reject_attempts:
                action = f"would stay confirmed (rejection {attempt} of {deps.reject_attempts})"
            else:
                action = "would be moved to failed_export, its reasons shown in Rossum"
        else:
            action = preview.action
        final.append(preview.model_copy(update={"action": action}))
    summary = write_report(
        deps.payloads,
        _report_prefix(request.queue_id, request.run_id),
        flow=FLOW,
        run_id=request.run_id,
        documents=final,
        scope={"queueId": str(request.queue_id)},
    )
    logger.info("dry run done", extra=summary.dump())
    return summary
