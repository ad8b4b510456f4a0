"""Rossum export, step 2: map one chunk of annotations to invoices and push them to the ERP.

The flow and what its steps share are in :mod:`erphub.flows.rossum_export`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from erphub.clients.erp_port import Accepted, ErpGateway, Rejected, Valid
from erphub.dryrun import Preview
from erphub.errors import TransientError
from erphub.faults import checkpoint
from erphub.flows.rossum_export import ChunkItem, DocumentOutcome, PushResult, correlation_id
from erphub.ledger import Status
from erphub.models import CamelModel, annotation_id_from_url
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore

if TYPE_CHECKING:
    from erphub.invoices import Invoice  # noqa: TC004 - the dataclasses never evaluate annotations
    from erphub.mapfile import MappingSpec  # noqa: TC004 - ditto

#: what a document's earlier ledger state says about the ERP holding it already
KNOWN_TO_ERP = frozenset({Status.PUSHED, Status.EXPORTED, Status.NOT_CONFIRMED})
# When every push of a chunk fails for a transient reason (and there were at least this many),
# the ERP is taken to be down: the step fails and Step Functions retries the chunk later.
ERP_DOWN_AFTER = 3


class PushRequest(CamelModel):
    """Input of the push step: one chunk."""

    queue_id: int
    run_id: str
    chunk_key: str
    dry_run: bool = False


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


# --- dry run ----------------------------------------------------------------------------------
# The push makes the same decisions (:func:`_prepare`) and asks the ERP to validate where a real
# run would create.


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
