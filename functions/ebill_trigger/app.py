"""S3 drop -> one eBill upload execution per dropped batch, named after the object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from erphub.flows.ebill_trigger import S3Notification, start_drop_executions
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_trigger_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start the executions of the dropped batches (a repeated event starts none)."""
    notification = S3Notification.model_validate(event)
    return {"executions": start_drop_executions(notification, ebill_trigger_deps())}
