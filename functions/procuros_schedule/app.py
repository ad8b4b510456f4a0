"""EventBridge schedule -> one Procuros send execution, named after the tick."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from erphub.flows.procuros_send import start_scheduled_send
from erphub.observability import logger, metrics
from erphub.runtime import procuros_execution_starter

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start the execution of this schedule tick (named after it, so a repeat starts none)."""
    tick = parse(event=event, model=EventBridgeModel)
    return {"executions": start_scheduled_send(tick.time, procuros_execution_starter())}
