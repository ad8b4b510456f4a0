"""Rossum export, step 1: claim the confirmed annotations of one queue, in chunks in S3.

The flow and what its steps share are in :mod:`erphub.flows.rossum_export`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from erphub.clients.rossum_port import RossumPort
from erphub.faults import checkpoint
from erphub.flows.rossum_export import FLOW, ChunkItem, Prior, correlation_id, report_prefix
from erphub.ledger import Ledger, Status
from erphub.models import CamelModel, ChunkRef, annotation_id_from_url
from erphub.observability import MetricUnit, logger, metrics
from erphub.payloads import PayloadStore

CHUNK_SIZE = 100
#: How far back the poll looks for documents an interrupted run left PUSHING after Rossum had
#: moved them on (see :func:`settle_interrupted`).
SETTLE_WITHIN_SECONDS = 3 * 86_400
#: Rossum statuses that settle a document an interrupted run left PUSHING.
_SETTLED_BY_ROSSUM = {
    "exported": Status.EXPORTED,
    "exporting": Status.EXPORTED,
    "failed_export": Status.FAILED_EXPORT,
}


class PollRequest(CamelModel):
    """Input of the poll step."""

    queue_id: int
    run_id: str = Field(min_length=1, max_length=80)
    #: read and report only: claim nothing, send nothing (see erphub.dryrun)
    dry_run: bool = False


class PollResult(CamelModel):
    """Output of the poll step: keys and counts only (Step Functions payloads are capped)."""

    queue_id: int
    run_id: str
    claimed: int
    leased_elsewhere: int
    unreadable: int
    chunks: list[ChunkRef]


@dataclass(frozen=True)
class PollDeps:
    """What the poll step works with."""

    rossum: RossumPort
    ledger: Ledger
    payloads: PayloadStore
    lease_seconds: int


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


# --- dry run ----------------------------------------------------------------------------------
# The poll claims nothing: it reads what the ledger knows, which is what a claim would have
# returned.

DRY_RUN_READ_BATCH = 100


def preview_confirmed(request: PollRequest, deps: PollDeps) -> PollResult:
    """Dry-run poll: store, in chunks, what :func:`poll_confirmed` would claim; claim nothing."""
    chunks: list[ChunkRef] = []
    buffer: list[dict[str, Any]] = []
    batch: list[tuple[int, dict[str, Any]]] = []
    seen: set[int] = set()
    counts = {"leased_elsewhere": 0, "unreadable": 0}

    def flush() -> None:
        key = f"{report_prefix(request.queue_id, request.run_id)}/chunk-{len(chunks):04d}.json"
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
