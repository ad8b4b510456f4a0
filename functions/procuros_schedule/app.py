"""EventBridge schedule -> one Procuros send execution, named after the tick.

An event whose ``detail`` is ``{"dryRun": true}`` (sent by hand, or by
``erphub local run procuros-send --dry-run``) starts a dry run instead: it changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

# What procuros_execution_starter() builds, loaded at init like everything each invocation needs.
import erphub.clients.workflows  # noqa: F401
from erphub.flows.procuros_schedule import start_scheduled_send
from erphub.observability import logger, metrics
from erphub.runtime.procuros import procuros_execution_starter

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start the execution of this schedule tick (named after it, so a repeat starts none)."""
    tick = parse(event=event, model=EventBridgeModel)
    dry_run = isinstance(tick.detail, dict) and tick.detail.get("dryRun") is True
    starter = procuros_execution_starter()
    return {"executions": start_scheduled_send(tick.time, starter, dry_run=dry_run)}
