"""eBill upload, step 4: read the batch's status once (the Wait loop is in the state machine).

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

from pydantic import Field

from erphub.flows.ebill_upload import (
    FLOW,
    BatchJob,
    BatchState,
    EbillDeps,
    PollDeadlineExceeded,
    find_batch,
)
from erphub.ledger import Status
from erphub.models import CamelModel


class PollRequest(CamelModel):
    """Input of the poll step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob
    batch: BatchState


def poll_status(request: PollRequest, deps: EbillDeps) -> BatchState:
    """Read the batch's status; raises PollDeadlineExceeded once the deadline has passed."""
    batch = request.batch
    current = find_batch(deps, batch.id, batch.job_id)
    status = current.normalised_status
    polls = batch.polls + 1
    if status != batch.status:
        deps.ledger.record(
            FLOW,
            request.job.drop_id,
            owner=request.run_id,
            status=Status.SUBMITTED,
            detail=f"eBill: {status}",
        )
    elapsed = deps.clock() - batch.submitted_at
    if not current.is_terminal and elapsed >= deps.polling.deadline_seconds:
        msg = (
            f"eBill batch {batch.id} (jobId {batch.job_id}) is still {status or 'without status'}"
            f" {int(elapsed)} s after it was finalized"
            f" (deadline {deps.polling.deadline_seconds} s); look at it in eBill"
        )
        raise PollDeadlineExceeded(msg)
    return batch.model_copy(
        update={
            "status": status,
            "terminal": current.is_terminal,
            "polls": polls,
            "wait_seconds": deps.polling.wait_after(polls, elapsed),
        }
    )
