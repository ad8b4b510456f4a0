"""ERP -> Procuros: send the ERP's outgoing documents, following Procuros' status rules.

The rules (source document "Tracking document status"): only documents whose Procuros status is
empty are picked up; 201 sets it to TRANSMITTED and 202 to NO_ACTION; 400 and 422 leave it empty,
so the document is sent again on the next run, and put the error's portal link in the document's
"Error URL"; errors are reported to Procuros (``POST /v2/errors``) after N failed attempts.

1. :func:`list_pending` pages the ERP's outgoing documents with an empty Procuros status, keeps
   the configured types, claims each in the ledger and stores them in S3 in chunks of 100.
2. :func:`send_chunk` sends each document of a chunk and tells the ERP the outcome. The ledger
   records "accepted by Procuros" *before* the ERP is updated: when the ERP update fails, later
   runs only repeat the update and never send the transaction again. A POST whose answer was
   lost is looked up in Procuros before anything is sent again, and Procuros' "Payload already
   received" is taken as proof of an earlier delivery.

A dry run (``dryRun`` in the execution input) is done by the list step alone: it claims nothing,
maps each document, checks it against the schema of the send body and its receiver against the
parties Procuros' transaction history names, and writes a per-document report (see the last
section of this module).
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
    PartyIdentifier,
    ProcurosHistory,
    ProcurosPort,
    Refused,
    SendOutcome,
    Sent,
    receiver_of,
)
from erphub.dryrun import DryRunSummary, Preview, write_report
from erphub.errors import BadInputError, ErphubError, LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.ledger import Entry, Ledger, Status
from erphub.mapfile import MappingSpec
from erphub.models import CamelModel, ChunkRef
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore
from erphub.procuros_mapping import MappingError, ProcurosTransaction, identifier_of, to_transaction
from erphub.procuros_schema import transaction_schema

FLOW = "procuros-send"
CHUNK_SIZE = 100
#: After this many documents in a row fail for transient reasons Procuros (or the ERP) is taken
#: to be down: the chunk fails as a whole and Step Functions retries it later.
DOWN_AFTER = 3
#: POSTs of one document per run when answers are lost (each looked up before the next): with
#: a 30 s HTTP timeout, three such documents in a row stay well inside the Lambda timeout.
SEND_ATTEMPTS = 2
#: History kept per document; one refused on every run would otherwise outgrow its item.
HISTORY_KEEP = 40
HISTORY_TRIM_AT = 60
#: How far back the list step looks for documents an interrupted run left PUSHED after the ERP
#: had been told (see :func:`settle_told`).
SETTLE_WITHIN_SECONDS = 3 * 86_400
_MAX_REASON_CHARS = 2000
_MAX_CONTEXT_ITEMS = 20

# Ledger attributes of a document.
OUTCOME = "procurosStatus"  # what Procuros answered, TRANSMITTED or NO_ACTION
ERROR_URL = "errorUrl"  # the portal link of the last refusal
ERROR_REPORTED = "errorReportedAt"  # when the error was reported with POST /v2/errors
ERROR_REPORT_URL = "errorReportUrl"


def correlation_id(document_id: str) -> str:
    """The id that follows one ERP document through every log line."""
    return f"erp-outgoing:{document_id}"


# --- step payloads --------------------------------------------------------------------------------


class ListRequest(CamelModel):
    """Input of the list step."""

    run_id: str = Field(min_length=1, max_length=80)
    #: read and report only: claim nothing, send nothing (see erphub.dryrun)
    dry_run: bool = False


class ListResult(CamelModel):
    """Output of the list step: keys and counts only (Step Functions payloads are capped)."""

    run_id: str
    listed: int
    claimed: int
    leased_elsewhere: int
    other_types: int
    unreadable: int
    chunks: list[ChunkRef]
    #: a dry run's summary (its report is in the payload bucket); a dry run claims nothing
    dry_run: DryRunSummary | None = None


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


# --- 1. list ------------------------------------------------------------------------------------


def _today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class ListDeps:
    """What the list step works with."""

    erp: ErpOutgoing
    ledger: Ledger
    payloads: PayloadStore
    lease_seconds: int
    document_types: frozenset[str]
    #: how ERP documents become transactions (None: the packaged default); for dry runs
    mapping: MappingSpec | None = None
    #: failed attempts before Procuros is told (POST /v2/errors); for dry runs
    error_report_after: int = 3
    #: Procuros' transaction history, built when a dry run first reads it (a real list step
    #: never calls Procuros); None: receivers are not checked
    procuros: Callable[[], ProcurosHistory] | None = None
    #: how many days of Procuros transactions a dry run reads to know the receivers Procuros
    #: resolves (0: receivers are not checked)
    known_partners_days: int = 365
    today: Callable[[], date] = _today


def list_pending(request: ListRequest, deps: ListDeps) -> ListResult:
    """Claim every outgoing document with an empty Procuros status; store them in S3 chunks.

    A dry run claims nothing and stores no chunk: see :func:`preview_pending`.
    """
    if request.dry_run:
        return preview_pending(request, deps)
    return _claim_pending(request, deps)


def _claim_pending(request: ListRequest, deps: ListDeps) -> ListResult:
    run = request.run_id
    chunks: list[ChunkRef] = []
    buffer: list[dict[str, Any]] = []
    seen: set[str] = set()
    listed = leased_elsewhere = other_types = unreadable = 0

    def flush() -> None:
        key = f"{FLOW}/{run}/chunk-{len(chunks):04d}.json"
        deps.payloads.put_json(key, buffer)
        chunks.append(ChunkRef(key=key, count=len(buffer)))
        buffer.clear()

    cursor: str | None = None
    while True:
        page = deps.erp.pending_outgoing(cursor, CHUNK_SIZE)
        seen.update(bad.document_id for bad in page.unreadable if bad.document_id)
        for bad in page.unreadable:
            unreadable += 1
            logger.error(
                "outgoing document does not match the ERP contract",
                extra={"document": bad.document_id, "problems": bad.problems[:10]},
            )
        for document in page.documents:
            # Keyset pages do not shift, but an ERP may repeat a document across pages.
            if document.id in seen:
                continue
            seen.add(document.id)
            listed += 1
            if document.procuros_status is not None:
                logger.warning(
                    "listed as pending but has a Procuros status; left alone",
                    extra={"correlation_id": correlation_id(document.id)},
                )
                continue
            if document.type not in deps.document_types:
                other_types += 1
                continue
            entry = deps.ledger.claim(
                FLOW, document.id, owner=run, lease_seconds=deps.lease_seconds
            )
            if entry is None:
                leased_elsewhere += 1
                logger.info(
                    "claimed by another run", extra={"correlation_id": correlation_id(document.id)}
                )
                continue
            buffer.append(document.model_dump(mode="json", by_alias=True))
            if len(buffer) == CHUNK_SIZE:
                flush()
        cursor = page.next_cursor
        if not cursor:
            break
    if buffer:
        flush()
    settled = settle_told(run, deps, seen)
    checkpoint("procuros.after_claim")
    claimed = sum(chunk.count for chunk in chunks)
    metrics.add_metric(name="ProcurosClaimed", unit=MetricUnit.Count, value=claimed)
    logger.info(
        "list done",
        extra={
            "listed": listed,
            "claimed": claimed,
            "leased_elsewhere": leased_elsewhere,
            "settled": settled,
        },
    )
    return ListResult(
        run_id=run,
        listed=listed,
        claimed=claimed,
        leased_elsewhere=leased_elsewhere,
        other_types=other_types,
        unreadable=unreadable,
        chunks=chunks,
    )


def settle_told(run: str, deps: ListDeps, pending: set[str]) -> int:
    """Close documents an interrupted run left PUSHED although the ERP already shows the outcome.

    A run that stops after the ERP took the Procuros status but before the ledger records it
    leaves the document PUSHED, and the ERP no longer lists it as pending: no later run would see
    it again. Once its lease has run out, a PUSHED document the ERP does not list as pending has
    its status in the ERP, so it is done. Returns how many were closed.
    """
    settled = 0
    for entry in deps.ledger.unleased(FLOW, Status.PUSHED, within_seconds=SETTLE_WITHIN_SECONDS):
        if entry.document_id in pending:
            continue
        with logger.append_context_keys(correlation_id=correlation_id(entry.document_id)):
            claimed = deps.ledger.claim(
                FLOW, entry.document_id, owner=run, lease_seconds=deps.lease_seconds
            )
            if claimed is None:
                continue  # another run took it over
            told = claimed.status is Status.PUSHED
            deps.ledger.record(
                FLOW,
                entry.document_id,
                owner=run,
                status=Status.EXPORTED if told else claimed.status,
                release=True,
                detail=(
                    f"the ERP shows its Procuros status; run {entry.lease_owner or 'unknown'}"
                    " stopped before recording it"
                    if told
                    else "released"
                ),
            )
            if told:
                settled += 1
                logger.warning("closed after an interrupted run")
    metrics.add_metric(name="ProcurosSettled", unit=MetricUnit.Count, value=settled)
    return settled


# --- 2. send ------------------------------------------------------------------------------------


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
    today: Callable[[], date] = _today
    #: how ERP documents become transactions (None: the packaged default)
    mapping: MappingSpec | None = None


@dataclass(frozen=True)
class Accepted:
    """Procuros holds the transaction: what the ERP is to be told."""

    status: ProcurosStatus
    transaction_id: str | None
    how: str


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


def _accepted_before(entry: Entry) -> Accepted | None:
    """What an earlier run learned from Procuros, if Procuros already holds the transaction."""
    if entry.status not in (Status.PUSHED, Status.EXPORTED):
        return None
    status: ProcurosStatus = (
        "NO_ACTION" if entry.attributes.get(OUTCOME) == "NO_ACTION" else "TRANSMITTED"
    )
    return Accepted(status=status, transaction_id=entry.external_id, how="recorded in the ledger")


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
        error_reason=reason[:_MAX_REASON_CHARS],
        error_type="DATA",
        error_context=dict(list(full_context.items())[:_MAX_CONTEXT_ITEMS]),
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
        last_error=" | ".join(reasons)[:_MAX_REASON_CHARS],
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
        last_error=" | ".join(reasons)[:_MAX_REASON_CHARS],
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
    accepted = _accepted_before(doc.entry)
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


# --- dry run ----------------------------------------------------------------------------------
# The list step does the whole dry run: it reads the pending documents and the ledger (claiming
# nothing), decides as :func:`_send_one` would, maps each document and checks the transaction
# against the schema of the send body. Procuros is sent nothing. It refuses a receiver it cannot
# resolve (422 "Could not resolve party") only when a transaction is sent, and has no read-only
# check of a trade partner; but every party it resolved before is named in some transaction of
# the connection. So the dry run reads, once, the parties named by the connection's transactions
# (incoming and outgoing) of the last ``known_partners_days`` days, and a transaction whose
# receiver none of them names would probably be refused. When that history cannot be read (or
# the check is off), a transaction the schema accepts "would be sent", Procuros decides its
# delivery then, and the summary says the receivers were not checked.


@dataclass(frozen=True)
class _Receivers:
    """The receivers a dry run expects Procuros to resolve."""

    #: every party identifier the history names; None when the receivers are not checked
    known: frozenset[PartyIdentifier] | None
    #: the history read, in an operator's words ("in the last 365 days")
    window: str = ""
    #: why the receivers are not checked
    unchecked: str | None = None

    def scope(self) -> dict[str, str]:
        if self.known is None:
            return {"receiverCheck": f"not done: {self.unchecked}"}
        return {
            "receiverCheck": f"against the {len(self.known)} party identifiers named by Procuros"
            f" transactions {self.window}"
        }

    def note(self) -> str | None:
        if self.known is not None:
            return None
        return (
            f"the receivers were not checked ({self.unchecked}): a receiver Procuros cannot"
            " resolve shows only when the real run sends"
        )


def _known_receivers(deps: ListDeps) -> _Receivers:
    """The parties Procuros' transaction history names, read once per dry run."""
    days = deps.known_partners_days
    if days <= 0:
        return _Receivers(None, unchecked="PROCUROS_KNOWN_PARTNERS_DAYS is 0")
    if deps.procuros is None:
        return _Receivers(None, unchecked="no Procuros connection")
    today = deps.today()
    window = f"in the last {days} days"
    try:
        # Procuros dates are Berlin time: a day of margin at the end covers the offset.
        known = deps.procuros().known_parties(
            today - timedelta(days=days), today + timedelta(days=1)
        )
    except ErphubError as error:
        logger.warning(
            "Procuros transaction history unavailable: receivers not checked",
            extra={"error": str(error)},
        )
        return _Receivers(
            None, window, f"the Procuros transaction history could not be read: {error}"
        )
    logger.info("Procuros transaction history read", extra={"parties": len(known), "days": days})
    return _Receivers(known, window)


def _refusal_action(entry: Entry | None, deps: ListDeps) -> str:
    attempts = (entry.attempts if entry else 0) + 1
    action = f"would stay empty in the ERP for the next run (failed attempt {attempts})"
    if entry is not None and entry.attributes.get(ERROR_REPORTED):
        return action + "; already reported to Procuros"
    if attempts >= deps.error_report_after:
        return action + "; would be reported to Procuros (POST /v2/errors)"
    return action


def _preview_document(
    document: OutgoingDocument, entry: Entry | None, deps: ListDeps, receivers: _Receivers
) -> Preview:
    common = {"document_id": document.id, "correlation_id": correlation_id(document.id)}
    accepted = _accepted_before(entry) if entry is not None else None
    if accepted is not None:
        return Preview(
            **common,
            verdict="accepted",
            action=f"Procuros holds it ({accepted.how}): only the ERP status would be set to"
            f" {accepted.status}",
        )
    lookup = (
        "an earlier send was interrupted: it would be looked up in Procuros first, then "
        if entry is not None and entry.status is Status.PUSHING
        else ""
    )
    try:
        transaction = to_transaction(document, deps.mapping)
    except MappingError as error:
        reasons = [f"cannot read the ERP document: {problem}" for problem in error.problems]
        return Preview(
            **common, verdict="rejected", action=_refusal_action(entry, deps), reasons=reasons
        )
    payload = {"type": transaction.type, "content": transaction.content}
    problems = transaction_schema().problems(payload)
    if problems:
        return Preview(
            **common,
            verdict="rejected",
            action=_refusal_action(entry, deps),
            reasons=[f"Procuros 422 (by the schema of the send body): {p}" for p in problems],
            payload=payload,
        )
    if receivers.known is None:
        return Preview(
            **common,
            verdict="accepted",
            sends=True,
            action=f"{lookup}would be sent (POST /v2/transactions); Procuros then decides its"
            " delivery (201 TRANSMITTED, 202 NO_ACTION, or a refusal for a receiver it cannot"
            " resolve)",
            payload=payload,
        )
    role, identifiers = receiver_of(transaction.type, transaction.content)
    named = [identifier for identifier in identifiers if identifier in receivers.known]
    if not named:
        return Preview(
            **common,
            verdict="rejected",
            sends=True,
            action=f"{lookup}would be sent (POST /v2/transactions) and probably refused; "
            + _refusal_action(entry, deps),
            reasons=[
                "Procuros would probably refuse it (422 Could not resolve party): no Procuros"
                f" transaction {receivers.window} names {role}"
                f" {' or '.join(map(str, identifiers)) or '(no identifier)'}"
            ],
            payload=payload,
        )
    return Preview(
        **common,
        verdict="accepted",
        sends=True,
        action=f"{lookup}would be sent (POST /v2/transactions); Procuros then decides its"
        f" delivery (201 TRANSMITTED or 202 NO_ACTION); its {role}"
        f" ({', '.join(map(str, named))}) is named by Procuros transactions {receivers.window}",
        payload=payload,
    )


def preview_pending(request: ListRequest, deps: ListDeps) -> ListResult:
    """Dry run: what :func:`list_pending` and :func:`send_chunk` would do, as a report."""
    previews: list[Preview] = []
    seen: set[str] = set()
    listed = leased_elsewhere = other_types = unreadable = 0
    receivers = _known_receivers(deps)
    cursor: str | None = None
    while True:
        page = deps.erp.pending_outgoing(cursor, CHUNK_SIZE)
        unreadable += len(page.unreadable)
        documents = []
        for document in page.documents:
            if document.id not in seen:  # an ERP may repeat a document across pages
                seen.add(document.id)
                documents.append(document)
        listed += len(documents)
        wanted = [
            d for d in documents if d.procuros_status is None and d.type in deps.document_types
        ]
        other_types += sum(
            1 for d in documents if d.procuros_status is None and d.type not in deps.document_types
        )
        entries = deps.ledger.get_many(FLOW, (d.id for d in wanted))
        for document in wanted:
            entry = entries.get(document.id)
            if entry is not None and deps.ledger.held_elsewhere(entry, request.run_id):
                leased_elsewhere += 1
                continue
            previews.append(_preview_document(document, entry, deps, receivers))
        cursor = page.next_cursor
        if not cursor:
            break
    summary = write_report(
        deps.payloads,
        f"{FLOW}/{request.run_id}",
        flow=FLOW,
        run_id=request.run_id,
        documents=previews,
        scope=receivers.scope(),
        note=receivers.note(),
    )
    logger.info("dry run done", extra=summary.dump())
    return ListResult(
        run_id=request.run_id,
        listed=listed,
        claimed=0,
        leased_elsewhere=leased_elsewhere,
        other_types=other_types,
        unreadable=unreadable,
        chunks=[],
        dry_run=summary,
    )
