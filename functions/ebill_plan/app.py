"""eBill upload, step plan: claim the drop and list its files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erphub.flows.ebill_plan import PlanRequest, plan_drop
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_drop_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Claim the drop and list its files, parent first, each at its current version."""
    request = PlanRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id, drop=request.drop.id)
    return plan_drop(request, ebill_drop_deps()).dump()
