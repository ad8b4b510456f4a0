"""Procuros send, step 1: claim the ERP's outgoing documents with an empty Procuros status.

The flow and what its steps share are in :mod:`erphub.flows.procuros_send`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydantic import Field

from erphub.clients.erp_port import ErpOutgoing, OutgoingDocument
from erphub.clients.procuros import (
    PartyIdentifier,
    ProcurosHistory,
    receiver_of,
)
from erphub.dryrun import DryRunSummary, Preview, write_report
from erphub.errors import ErphubError
from erphub.faults import checkpoint
from erphub.flows.procuros_send import (
    CHUNK_SIZE,
    ERROR_REPORTED,
    FLOW,
    SETTLE_WITHIN_SECONDS,
    accepted_before,
    correlation_id,
    utc_today,
)
from erphub.ledger import Entry, Ledger, Status
from erphub.mapfile import MappingSpec
from erphub.models import CamelModel, ChunkRef
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore
from erphub.procuros_mapping import MappingError, to_transaction
from erphub.procuros_schema import transaction_schema


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
    today: Callable[[], date] = utc_today


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


# --- dry run ----------------------------------------------------------------------------------


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
    accepted = accepted_before(entry) if entry is not None else None
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
