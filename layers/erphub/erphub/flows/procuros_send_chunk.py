"""Procuros send, step 2: send one chunk of documents and tell the ERP each outcome.

The flow and what its steps share are in :mod:`erphub.flows.procuros_send`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field

from erphub.clients.erp_port import ErpOutgoing, OutgoingDocument, OutgoingUpdate, ProcurosStatus
from erphub.clients.procuros import (
    AlreadyReceived,
    ErrorReport,
    NotForwarded,
    OutcomeUnknown,
    ProcurosPort,
    Refused,
    SendOutcome,
    Sent,
)
from erphub.errors import BadInputError, LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.flows.procuros_send import (
    DOWN_AFTER,
    ERROR_REPORT_URL,
    ERROR_REPORTED,
    ERROR_URL,
    FLOW,
    HISTORY_KEEP,
    HISTORY_TRIM_AT,
    MAX_CONTEXT_ITEMS,
    MAX_REASON_CHARS,
    OUTCOME,
    SEND_ATTEMPTS,
    Accepted,
    accepted_before,
    correlation_id,
    utc_today,
)
from erphub.ledger import Entry, Ledger, Status
from erphub.mapfile import MappingSpec
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore
from erphub.procuros_mapping import MappingError, ProcurosTransaction, identifier_of, to_transaction


class SendRequest(CamelModel):
    """Input of the send step: one chunk."""

    run_id: str = Field(min_length=1, max_length=80)
    chunk_key: str = Field(min_length=1)
    dry_run: bool = False


class SendResult(CamelModel):
    """Output of the send step for one chunk."""

    chunk_key: str
    transmitted: int = 0
    no_action: int = 0
    refused: int = 0
    reported: int = 0
    erp_update_only: int = 0
    reconciled: int = 0
    already_received: int = 0
    erp_update_failed: int = 0
    deferred: int = 0
    skipped: int = 0
    posts: int = 0


@dataclass(frozen=True)
class SendDeps:
    """What the send step works with."""

    erp: ErpOutgoing
    procuros: ProcurosPort
    ledger: Ledger
    payloads: PayloadStore
    error_report_after: int = 3
    send_attempts: int = SEND_ATTEMPTS
    retry_wait_seconds: float = 1.0
    max_wait_seconds: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    today: Callable[[], date] = utc_today
    #: how ERP documents become transactions (None: the packaged default)
    mapping: MappingSpec | None = None


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


class _Document:
    """One document being sent by this run: the ERP's view and the ledger entry, kept current."""

    def __init__(self, document: OutgoingDocument, entry: Entry, run: str, deps: SendDeps) -> None:
        self.document = document
        self.entry = entry
        self.run = run
        self.deps = deps

    @property
    def id(self) -> str:
        return self.document.id

    def record(self, status: Status, **kwargs: Any) -> Entry:
        self.entry = self.deps.ledger.record(FLOW, self.id, owner=self.run, status=status, **kwargs)
        return self.entry

    def attributes(self, **changes: str) -> dict[str, str]:
        return {**self.entry.attributes, **changes}


def _last_send_day(entry: Entry, today: date) -> date:
    sends = [event.at for event in entry.history if event.status == Status.PUSHING.value]
    return date.fromisoformat(sends[-1][:10]) if sends else today


def _look_up(doc: _Document, since: date) -> Accepted | None:
    """The transaction Procuros holds for this document, if it lists one (the reconciliation).

    Procuros dates are Berlin time; a day of margin on both sides covers the offset.
    """
    deps, document = doc.deps, doc.document
    matches = [
        record
        for record in deps.procuros.sent_transactions(
            document.type, since - timedelta(days=1), deps.today() + timedelta(days=1)
        )
        if record.type == document.type
        and identifier_of(record.type, record.content) == document.number
    ]
    if not matches:
        return None
    latest = max(matches, key=lambda record: record.created_at or "")
    # 202 transactions are kept but not forwarded: the listing shows them as dropped.
    status: ProcurosStatus = "NO_ACTION" if latest.status == "DROPPED" else "TRANSMITTED"
    metrics.add_metric(name="ProcurosReconciled", unit=MetricUnit.Count, value=1)
    return Accepted(
        status=status,
        transaction_id=latest.transaction_id,
        how=f"found in Procuros as {latest.transaction_id} ({latest.status})",
    )


def _accept(doc: _Document, accepted: Accepted) -> None:
    """Record that Procuros holds it, before the ERP is told: it is never sent again."""
    doc.record(
        Status.PUSHED,
        external_id=accepted.transaction_id,
        attributes=doc.attributes(**{OUTCOME: accepted.status}),
        detail=f"accepted by Procuros: {accepted.how}",
    )


def _tell_erp(doc: _Document, accepted: Accepted, tally: _Tally) -> None:
    """Set the ERP's Procuros status (and transaction id); the old error URL is cleared."""
    changes: dict[str, Any] = {"procuros_status": accepted.status, "error_url": None}
    if accepted.transaction_id:
        changes["procuros_transaction_id"] = accepted.transaction_id
    try:
        doc.deps.erp.update_outgoing(doc.id, OutgoingUpdate(**changes))
    except BadInputError as error:
        # Procuros holds it; the ledger keeps PUSHED so a later run repeats only this update.
        doc.record(
            Status.PUSHED,
            last_error=str(error),
            release=True,
            detail="the ERP refused the status update",
        )
        tally.add("erp_update_failed")
        metrics.add_metric(name="ProcurosErpUpdateFailed", unit=MetricUnit.Count, value=1)
        logger.error("ERP refused the status update", extra={"error": str(error)})
        return
    checkpoint("procuros.after_erp_update")
    doc.record(Status.EXPORTED, release=True, detail=f"ERP status {accepted.status}")
    tally.add("transmitted" if accepted.status == "TRANSMITTED" else "no_action")


def _transmit(
    doc: _Document, transaction: ProcurosTransaction, tally: _Tally
) -> SendOutcome | Accepted:
    """POST the transaction; after a lost answer, look it up before each new attempt."""
    deps = doc.deps
    doc.record(
        Status.PUSHING, detail=f"POST /v2/transactions {doc.document.type} {doc.document.number}"
    )
    attempt = 1
    while True:
        checkpoint("procuros.before_send")
        tally.add("posts")
        try:
            return deps.procuros.send_transaction(transaction)
        except OutcomeUnknown as error:
            logger.warning("send outcome unknown", extra={"error": str(error), "attempt": attempt})
            if attempt >= deps.send_attempts:
                raise
            backoff = deps.retry_wait_seconds * 2 ** (attempt - 1)
            deps.sleep(min(max(backoff, error.retry_after or 0.0), deps.max_wait_seconds))
            found = _look_up(doc, deps.today())
            if found is not None:
                tally.add("reconciled")
                return found
            attempt += 1


def _error_report(doc: _Document, reasons: list[str], context: dict[str, str]) -> ErrorReport:
    document = doc.document
    reason = (
        f"{document.type} {document.number} (ERP document {document.id}) failed"
        f" {doc.entry.attempts} times: " + " | ".join(reasons)
    )
    full_context = {
        "erpDocumentId": document.id,
        "erpDocumentNumber": document.number,
        "attempts": str(doc.entry.attempts),
        **context,
    }
    return ErrorReport(
        error_reason=reason[:MAX_REASON_CHARS],
        error_type="DATA",
        error_context=dict(list(full_context.items())[:MAX_CONTEXT_ITEMS]),
        transaction_identifier=document.number,
        transaction_type=document.type,
    )


def _report_if_due(
    doc: _Document, reasons: list[str], context: dict[str, str], tally: _Tally
) -> str | None:
    """``POST /v2/errors`` once, when the document has failed ``error_report_after`` times.

    An answer lost on the way back leaves it unreported, so a later failure reports it again:
    the customer may hear of an error twice, but never not at all.
    """
    deps = doc.deps
    if doc.entry.attempts < deps.error_report_after or doc.entry.attributes.get(ERROR_REPORTED):
        return None
    checkpoint("procuros.before_error_report")
    try:
        error_url = deps.procuros.report_error(_error_report(doc, reasons, context))
    except (TransientError, BadInputError) as error:
        logger.warning(
            "error report failed; a later failure reports it", extra={"error": str(error)}
        )
        return None
    checkpoint("procuros.after_error_report")
    reported_at = datetime.now(UTC).isoformat(timespec="seconds")
    changes = {ERROR_REPORTED: reported_at, **({ERROR_REPORT_URL: error_url} if error_url else {})}
    doc.record(
        doc.entry.status,
        attributes=doc.attributes(**changes),
        detail=f"reported to Procuros after {doc.entry.attempts} failures",
    )
    tally.add("reported")
    metrics.add_metric(name="ProcurosErrorsReported", unit=MetricUnit.Count, value=1)
    return error_url


def _show_error_url(doc: _Document, error_url: str) -> None:
    """Put the portal link into the ERP document's "Error URL" (its status stays empty)."""
    try:
        doc.deps.erp.update_outgoing(doc.id, OutgoingUpdate(error_url=error_url))
    except BadInputError as error:
        logger.error("ERP refused the error URL", extra={"error": str(error)})


def _refused(doc: _Document, refusal: Refused, tally: _Tally) -> None:
    reasons = [f"Procuros {refusal.status}: {reason}" for reason in refusal.reasons]
    changes = {ERROR_URL: refusal.error_url} if refusal.error_url else {}
    doc.record(
        Status.REJECTED,
        reasons=reasons,
        last_error=" | ".join(reasons)[:MAX_REASON_CHARS],
        count_attempt=True,
        attributes=doc.attributes(**changes),
        detail=f"refused by Procuros ({refusal.status})",
    )
    checkpoint("procuros.after_refusal")
    if refusal.error_url:
        _show_error_url(doc, refusal.error_url)
    context = {"httpStatus": str(refusal.status), "message": refusal.message}
    if refusal.error_url:
        context["errorUrl"] = refusal.error_url
    context |= {f"errors.{key}": "; ".join(texts) for key, texts in refusal.errors.items()}
    _report_if_due(doc, reasons, context, tally)
    _await_correction(doc, f"left empty in the ERP after {doc.entry.attempts} refusal(s)")
    tally.add("refused")
    metrics.add_metric(name="ProcurosRefused", unit=MetricUnit.Count, value=1)


def _unmappable(doc: _Document, error: MappingError, tally: _Tally) -> None:
    """The ERP document cannot be read: nothing is sent; Procuros hears of it after N tries."""
    reasons = [f"cannot read the ERP document: {problem}" for problem in error.problems]
    doc.record(
        Status.REJECTED,
        reasons=reasons,
        last_error=" | ".join(reasons)[:MAX_REASON_CHARS],
        count_attempt=True,
        detail="mapping failed",
    )
    error_url = _report_if_due(doc, reasons, {"stage": "mapping"}, tally)
    if error_url:
        _show_error_url(doc, error_url)
    _await_correction(doc, f"unreadable {doc.entry.attempts} time(s)")
    tally.add("refused")
    metrics.add_metric(name="ProcurosUnmappable", unit=MetricUnit.Count, value=1)


def _await_correction(doc: _Document, detail: str) -> None:
    """Release the document until the next run; its history is trimmed while still held."""
    if len(doc.entry.history) >= HISTORY_TRIM_AT:
        doc.deps.ledger.trim_history(doc.entry, owner=doc.run, keep=HISTORY_KEEP)
    doc.record(Status.AWAITING_CORRECTION, release=True, detail=detail)


def _send_one(doc: _Document, tally: _Tally) -> None:
    deps, document = doc.deps, doc.document
    accepted = accepted_before(doc.entry)
    if accepted is not None:
        # An earlier run got Procuros' acceptance but could not update the ERP (or the ERP
        # cleared the status since): tell the ERP again, never Procuros.
        tally.add("erp_update_only")
        _tell_erp(doc, accepted, tally)
        return
    if doc.entry.status is Status.PUSHING:
        found = _look_up(doc, _last_send_day(doc.entry, deps.today()))
        if found is not None:
            tally.add("reconciled")
            _accept(doc, found)
            _tell_erp(doc, found, tally)
            return
    try:
        transaction = to_transaction(document, deps.mapping)
    except MappingError as error:
        _unmappable(doc, error, tally)
        return
    outcome = _transmit(doc, transaction, tally)
    if isinstance(outcome, Refused):
        _refused(doc, outcome, tally)
        return
    if isinstance(outcome, Accepted):
        accepted = outcome
    elif isinstance(outcome, Sent):
        accepted = Accepted("TRANSMITTED", outcome.transaction_id, "201 Created")
    elif isinstance(outcome, NotForwarded):
        accepted = Accepted("NO_ACTION", outcome.transaction_id, f"202 {outcome.message}")
    else:
        accepted = _already_received(doc, outcome, tally)
    checkpoint("procuros.after_accept")
    _accept(doc, accepted)
    checkpoint("procuros.before_erp_update")
    _tell_erp(doc, accepted, tally)


def _already_received(doc: _Document, answer: AlreadyReceived, tally: _Tally) -> Accepted:
    """An earlier POST of these bytes arrived (its answer was lost): it was sent, never again."""
    tally.add("already_received")
    sent = Accepted("TRANSMITTED", None, f"400 {answer.message}: sent before")
    _accept(doc, sent)
    try:
        found = _look_up(doc, _last_send_day(doc.entry, doc.deps.today()))
    except TransientError as error:
        logger.warning("could not look the transaction up", extra={"error": str(error)})
        found = None
    if found is None:
        logger.warning("Procuros has the payload but does not list it; marked as transmitted")
        return sent
    tally.add("reconciled")
    return found


def _defer(ledger: Ledger, document_id: str, run: str, error: str) -> None:
    """Leave the document for the next run, keeping what the ledger knows about Procuros."""
    entry = ledger.get(FLOW, document_id)
    keep = entry is not None and entry.status in (Status.PUSHING, Status.PUSHED)
    status = entry.status if keep and entry is not None else Status.DEFERRED
    with contextlib.suppress(LeaseLostError):
        ledger.record(
            FLOW,
            document_id,
            owner=run,
            status=status,
            last_error=error,
            release=True,
            detail=f"deferred: {error}",
        )


def send_chunk(request: SendRequest, deps: SendDeps) -> SendResult:
    """Send one chunk of claimed documents and tell the ERP each outcome.

    A dry run's list step stores no chunks; should one reach this step, nothing is sent.
    """
    if request.dry_run:
        return SendResult(chunk_key=request.chunk_key)
    documents = [
        OutgoingDocument.model_validate(raw) for raw in deps.payloads.get_json(request.chunk_key)
    ]
    entries = deps.ledger.get_many(FLOW, (document.id for document in documents))
    tally = _Tally()
    transient_in_a_row = 0
    for document in documents:
        entry = entries.get(document.id)
        with logger.append_context_keys(correlation_id=correlation_id(document.id)):
            if entry is None or entry.lease_owner != request.run_id:
                tally.add("skipped")
                continue
            try:
                _send_one(_Document(document, entry, request.run_id, deps), tally)
                transient_in_a_row = 0
            except LeaseLostError as error:
                logger.warning(
                    "lease lost, leaving the document to the other run", extra={"error": str(error)}
                )
                tally.add("skipped")
            except TransientError as error:
                transient_in_a_row += 1
                tally.add("deferred")
                logger.warning("send deferred", extra={"error": str(error)})
                _defer(deps.ledger, document.id, request.run_id, str(error))
                if transient_in_a_row >= DOWN_AFTER:
                    # Step Functions retries on the class name: give up as a TransientError.
                    msg = f"{DOWN_AFTER} documents in a row failed transiently; last: {error}"
                    raise TransientError(msg) from error
    result = SendResult(chunk_key=request.chunk_key, **tally.counts)
    for name, metric in (
        ("transmitted", "ProcurosTransmitted"),
        ("no_action", "ProcurosNoAction"),
        ("deferred", "ProcurosDeferred"),
    ):
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=tally.counts.get(name, 0))
    logger.info("send done", extra=result.dump())
    return result
