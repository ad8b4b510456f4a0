"""Rossum export, step 3: tell Rossum exported or failed_export, and record every outcome.

The calls to Rossum go one after another in the background while the ledger records the answers.

The flow and what its steps share are in :mod:`erphub.flows.rossum_export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from erphub.background import one_after_another
from erphub.clients.rossum_port import MAX_IDS_PER_EXPORT, RossumError, RossumPort
from erphub.dryrun import DryRunSummary, Preview, write_report
from erphub.errors import LeaseLostError
from erphub.faults import checkpoint
from erphub.flows.rossum_export import (
    FLOW,
    DocumentOutcome,
    PushResult,
    correlation_id,
    report_prefix,
)
from erphub.ledger import Ledger, Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore
from erphub.settings.rossum import RejectPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

T = TypeVar("T")


class FinalizeRequest(CamelModel):
    """Input of the finalize step: the results of every chunk of the run."""

    queue_id: int
    run_id: str
    chunks: list[PushResult]
    dry_run: bool = False


class FinalizeResult(CamelModel):
    """Output of the finalize step and of the whole execution."""

    queue_id: int
    run_id: str
    exported: int
    failed_export: int
    kept_confirmed: int
    deferred: int
    no_longer_confirmed: int
    export_calls: int


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


@dataclass(frozen=True)
class _Exported:
    """Rossum's answer to one export call: the status of each id it was given."""

    batch: tuple[DocumentOutcome, ...]
    statuses: dict[int, str]


@dataclass(frozen=True)
class _Failed:
    """Rossum's answer to one switch to failed_export: None, or why it refused."""

    outcome: DocumentOutcome
    refused: RossumError | None


def _export(queue_id: int, batch: Sequence[DocumentOutcome], rossum: RossumPort) -> _Exported:
    checkpoint("finalize.before_export")
    statuses = rossum.mark_exported(queue_id, [o.annotation_id for o in batch])
    checkpoint("finalize.after_export")
    return _Exported(tuple(batch), statuses)


def _fail(outcome: DocumentOutcome, rossum: RossumPort) -> _Failed:
    try:
        rossum.mark_failed_export(outcome.annotation_id, rejection_message(outcome.reasons))
    except RossumError as error:
        return _Failed(outcome, error)
    checkpoint("finalize.after_failed_export")
    return _Failed(outcome, None)


def _record_exported(deps: FinalizeDeps, run: str, answer: _Exported, tally: _Tally) -> None:
    for outcome in answer.batch:
        status = answer.statuses.get(outcome.annotation_id)
        if status in ("exported", "exporting"):
            if _record(
                deps,
                run,
                outcome.annotation_id,
                status=Status.EXPORTED,
                external_id=outcome.erp_id,
                detail=f"ERP {outcome.erp_id}; Rossum {status}",
            ):
                tally.exported += 1
        elif _record(
            deps,
            run,
            outcome.annotation_id,
            status=Status.NOT_CONFIRMED,
            external_id=outcome.erp_id,
            last_error=f"Rossum status {status or 'unknown'}",
            detail="no longer confirmed in Rossum; the ERP holds it",
        ):
            tally.no_longer_confirmed += 1


def _record_failed(deps: FinalizeDeps, run: str, answer: _Failed, tally: _Tally) -> None:
    outcome = answer.outcome
    if answer.refused is not None:
        _record(
            deps,
            run,
            outcome.annotation_id,
            status=Status.REJECTED,
            reasons=outcome.reasons,
            last_error=f"could not switch to failed_export: {answer.refused}",
            detail="Rossum refused failed_export",
        )
        logger.error("failed_export refused", extra={"error": str(answer.refused)})
        return
    if _record(
        deps,
        run,
        outcome.annotation_id,
        status=Status.FAILED_EXPORT,
        detail="Rossum failed_export",
        reasons=outcome.reasons,
        last_error="; ".join(outcome.reasons),
    ):
        tally.failed += 1


def _kept(deps: FinalizeDeps, rejected: Sequence[DocumentOutcome]) -> dict[int, int]:
    """The rejected documents left confirmed for another attempt, with their attempts so far."""
    if deps.reject_policy is not RejectPolicy.KEEP_CONFIRMED:
        return {}
    entries = deps.ledger.get_many(FLOW, (str(o.annotation_id) for o in rejected))
    attempts = {o.annotation_id: 1 for o in rejected}
    attempts.update({int(e.document_id): e.attempts for e in entries.values()})
    return {i: n for i, n in attempts.items() if n < deps.reject_attempts}


def finalize(request: FinalizeRequest, deps: FinalizeDeps) -> FinalizeResult | DryRunSummary:
    """Tell Rossum the outcome (exported in batches of 100, failed_export one by one), record it.

    Rossum is told in the background, one call after another, while the ledger records what it
    answered to the calls before: the ledger's writes wait for no request to Rossum. Each outcome
    is recorded only after Rossum took it, and a call that fails stops the calls after it.
    A dry run tells Rossum nothing: it writes the per-document report instead.
    """
    if request.dry_run:
        return preview_finalize(request, deps)
    outcomes = [
        DocumentOutcome.model_validate(item)
        for chunk in request.chunks
        for item in deps.payloads.get_json(chunk.result_key)
    ]
    run, rossum = request.run_id, deps.rossum
    tally = _Tally()
    accepted = [o for o in outcomes if o.outcome == "accepted"]
    rejected = [o for o in outcomes if o.outcome == "rejected"]
    kept = _kept(deps, rejected)
    calls: list[Callable[[], _Exported | _Failed]] = [
        partial(_export, request.queue_id, batch, rossum)
        for batch in _batches(accepted, MAX_IDS_PER_EXPORT)
    ]
    calls += [partial(_fail, o, rossum) for o in rejected if o.annotation_id not in kept]
    with one_after_another(calls) as answers:
        for outcome in rejected:
            attempts = kept.get(outcome.annotation_id)
            if attempts is not None and _record(
                deps,
                run,
                outcome.annotation_id,
                status=Status.KEPT_CONFIRMED,
                detail=f"rejected {attempts}/{deps.reject_attempts} times, kept",
                reasons=outcome.reasons,
                last_error="; ".join(outcome.reasons),
            ):
                tally.kept += 1
        for outcome in outcomes:
            if outcome.outcome == "deferred" and _record(
                deps,
                run,
                outcome.annotation_id,
                status=Status.PUSHING,
                last_error="; ".join(outcome.reasons),
                detail="deferred to the next run; it will be looked up in the ERP first",
            ):
                tally.deferred += 1
        for answer in answers:
            if isinstance(answer, _Exported):
                tally.calls += 1
                _record_exported(deps, run, answer, tally)
            else:
                _record_failed(deps, run, answer, tally)

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
# Finalize tells Rossum nothing and writes the per-document report (:mod:`erphub.dryrun`).


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
        report_prefix(request.queue_id, request.run_id),
        flow=FLOW,
        run_id=request.run_id,
        documents=final,
        scope={"queueId": str(request.queue_id)},
    )
    logger.info("dry run done", extra=summary.dump())
    return summary
