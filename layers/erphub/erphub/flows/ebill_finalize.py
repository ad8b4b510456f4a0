"""eBill upload, step 3: queue the parent batch (it takes its line items along), once.

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from erphub.faults import checkpoint
from erphub.flows.ebill_upload import (
    FLOW,
    BatchJob,
    BatchState,
    EbillDeps,
    UploadResult,
    claim,
    find_batch,
)
from erphub.ledger import Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics


class FinalizeRequest(CamelModel):
    """Input of the finalize step."""

    run_id: str = Field(min_length=1, max_length=80)
    job: BatchJob
    upload: UploadResult

    @model_validator(mode="after")
    def _uploaded(self) -> FinalizeRequest:
        if not self.upload.done or self.upload.parent is None:
            msg = "finalize needs a finished upload with its parent batch"
            raise ValueError(msg)
        return self


def finalize_batch(request: FinalizeRequest, deps: EbillDeps) -> BatchState:
    """Queue the parent batch, which takes its line-item batches along, exactly once."""
    job, run = request.job, request.run_id
    parent = request.upload.parent
    assert parent is not None  # validated
    claim(deps.ledger, job.drop_id, run, deps.polling.lease_seconds)
    # Reconcile first: a finalize whose answer was lost must not be sent again.
    current = find_batch(deps, parent.id, parent.job_id)
    if current.is_draft:
        checkpoint("ebill.finalize.before")
        current = deps.ebill.finalize(parent.id, parent.job_id)
        checkpoint("ebill.finalize.after")
        detail = f"BatchFinalize {parent.job_id}: {current.normalised_status}"
        metrics.add_metric(name="EbillBatchesFinalized", unit=MetricUnit.Count, value=1)
    else:
        detail = f"already finalized: {current.normalised_status}"
    deps.ledger.record(
        FLOW, job.drop_id, owner=run, status=Status.SUBMITTED, external_id=parent.id, detail=detail
    )
    logger.info("batch finalized", extra={"batch": parent.id, "status": current.status})
    return BatchState(
        id=parent.id,
        job_id=parent.job_id,
        status=current.normalised_status,
        terminal=current.is_terminal,
        polls=0,
        wait_seconds=deps.polling.initial_seconds,
        submitted_at=deps.clock(),
    )
