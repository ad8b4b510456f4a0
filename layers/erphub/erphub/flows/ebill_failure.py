"""eBill upload, failure path: the drop goes FAILED with its reason, and the alert is returned.

The flow and what its steps share are in :mod:`erphub.flows.ebill_upload`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from erphub.flows.ebill_upload import (
    CUSTOMERS,
    FLOW,
    Alert,
    BatchJob,
    DropDeps,
    DropRef,
    alert_subject,
    job_id,
)
from erphub.ledger import Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from erphub.ledger import Ledger


class StepError(BaseModel):
    """What a Step Functions Catch puts under ResultPath: the error name and its cause."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str = Field(default="", alias="Cause")

    def describe(self) -> str:
        """``ErrorType: message`` from a Lambda error's JSON cause, or the raw cause."""
        try:
            cause: Any = json.loads(self.cause)
        except ValueError:
            cause = None
        if isinstance(cause, dict) and cause.get("errorMessage"):
            text = f"{cause.get('errorType') or self.error}: {cause['errorMessage']}"
        else:
            text = f"{self.error}: {self.cause}" if self.cause else self.error
        return text[:1000]


class FailedExecution(CamelModel):
    """The state of an execution when one of its steps failed for good."""

    drop: DropRef
    error: StepError
    job: BatchJob | None = None


class FailureRequest(CamelModel):
    """Input of the failure step."""

    run_id: str = Field(min_length=1, max_length=80)
    state: FailedExecution


def record_failure(request: FailureRequest, deps: DropDeps) -> Alert:
    """Mark the drop FAILED with the reason, release what this execution held, say so."""
    state, run = request.state, request.run_id
    drop = state.drop
    reason = state.error.describe()
    entry = deps.ledger.claim(FLOW, drop.id, owner=run, lease_seconds=deps.lease_seconds)
    if entry is None:
        logger.error(
            "drop held by another execution; failure not recorded", extra={"drop": drop.id}
        )
    else:
        if state.job is not None:
            _release_files(deps.ledger, state.job, max(entry.attempts, 1), run)
        deps.ledger.record(
            FLOW,
            drop.id,
            owner=run,
            status=Status.FAILED,
            last_error=reason,
            reasons=[reason],
            release=True,
            detail=f"execution {run} failed",
        )
    metrics.add_metric(name="EbillBatchesFailed", unit=MetricUnit.Count, value=1)
    logger.error("eBill upload failed", extra={"drop": drop.id, "reason": reason})
    name = drop.key.rsplit("/", 1)[-1] if drop.kind == CUSTOMERS else drop.key.split("/")[-2]
    return Alert(
        subject=alert_subject(f"erphub eBill {drop.kind} batch failed: {name}"),
        message="\n".join(
            [
                f"The eBill upload of s3://{drop.bucket}/{drop.key} (version {drop.version_id})"
                " failed.",
                f"Reason: {reason}",
                f"Execution: {run}",
                "",
                "Nothing more happens to this drop until an operator acts; its state is in the "
                f"ledger: erphub status --flow {FLOW}",
            ]
        ),
    )


def _release_files(ledger: Ledger, job: BatchJob, attempt: int, run: str) -> None:
    """Let a later execution of the same drop take the files over (it reconciles first)."""
    ids = [job_id(job.tag, attempt, f.suffix) for f in job.files]
    for doc, entry in ledger.get_many(FLOW, ids).items():
        if entry.lease_owner == run:
            ledger.record(
                FLOW,
                doc,
                owner=run,
                status=entry.status,
                release=True,
                detail=f"released: execution {run} failed",
            )
