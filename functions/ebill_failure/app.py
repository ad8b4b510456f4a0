"""eBill upload, failure path: the drop goes FAILED with its reason, and the alert is returned."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erphub.flows.ebill_failure import FailureRequest, record_failure
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_drop_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Record why the execution failed and release what it held."""
    request = FailureRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id, drop=request.state.drop.id)
    return record_failure(request, ebill_drop_deps()).dump()
