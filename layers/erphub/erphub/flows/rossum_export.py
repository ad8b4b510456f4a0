"""Rossum -> ERP: the "Confirmed tab" export, one queue per execution.

1. :func:`erphub.flows.rossum_poll.poll_confirmed` pages the confirmed annotations, claims each in
   the ledger (which marks it PUSHING: from now on a create may reach the ERP) and stores them in
   S3 in chunks of 100, each with what the ledger knew of it before.
2. :func:`erphub.flows.rossum_push.push_to_erp` maps one chunk to invoices and pushes them to the
   ERP. A document that an earlier run left PUSHING is first looked up in the ERP by its external
   reference.
3. :func:`erphub.flows.rossum_finalize.finalize` moves exactly the ERP-accepted ids to
   ``exported`` (at most 100 per call) and the rejected ones to ``failed_export`` with the ERP's
   reasons, and records every outcome. The calls to Rossum go one after another in the background
   while the ledger records the answers.

Each step is a module of its own, so that each Lambda function loads only its step. This one
holds what the steps share: the schedule, the ids, and the payloads one step writes to S3 for the
next (a chunk's items, a chunk's outcomes).

Each document costs two ledger writes in a clean run (the claim and the outcome): the ledger is
the hub's main running cost, in AWS as in the local emulation.

A dry run (``dryRun`` in the execution input) takes the same three steps and changes nothing:
see the last section of each step's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from erphub.ledger import Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from erphub.clients.workflows import ExecutionStarter

FLOW = "rossum-export"


def correlation_id(annotation_id: int | str) -> str:
    """The id that follows one annotation through every log line and system."""
    return f"rossum:{annotation_id}"


def report_prefix(queue_id: int, run_id: str) -> str:
    """Where a dry run of this queue and run keeps its chunks and its report."""
    return f"{FLOW}/{queue_id}/{run_id}"


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


# --- between the steps ------------------------------------------------------------------------


class Prior(CamelModel):
    """What the ledger knew of a document when this run claimed it."""

    status: Status | None = None
    external_id: str | None = None
    run: str | None = None


class ChunkItem(CamelModel):
    """One claimed annotation as stored in a chunk."""

    annotation: dict[str, Any]
    prior: Prior


Outcome = Literal["accepted", "rejected", "deferred", "skipped"]


class DocumentOutcome(CamelModel):
    """What the push step did with one annotation (kept in S3 for the finalize step)."""

    annotation_id: int
    outcome: Outcome
    erp_id: str | None = None
    reasons: list[str] = Field(default_factory=list)
    attempts: int = 0


class PushResult(CamelModel):
    """Output of the push step for one chunk (the finalize step's input lists them)."""

    chunk_key: str
    result_key: str
    accepted: int
    rejected: int
    deferred: int
    skipped: int
