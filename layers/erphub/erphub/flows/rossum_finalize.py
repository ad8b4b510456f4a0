"""Rossum export, step 3: tell Rossum exported or failed_export, and record every outcome.

The flow and what its steps share are in :mod:`erphub.flows.rossum_export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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
    from collections.abc import Iterator, Sequence

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
