"""EventBridge schedule -> one Rossum export execution per configured queue.

An event whose ``detail`` is ``{"dryRun": true}`` (sent by hand, or by
``erphub local run rossum-export --dry-run``) starts dry runs instead: they change nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

# What execution_starter() builds, loaded at init like everything each invocation needs.
import erphub.clients.workflows  # noqa: F401
from erphub.flows.rossum_export import start_scheduled_exports
from erphub.observability import logger, metrics
from erphub.runtime.rossum import execution_starter, schedule_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Start the executions of this schedule tick (named after it, so a repeat starts none)."""
    tick = parse(event=event, model=EventBridgeModel)
    dry_run = isinstance(tick.detail, dict) and tick.detail.get("dryRun") is True
    settings = schedule_settings()
    started = start_scheduled_exports(
        settings.queue_ids, tick.time, execution_starter(settings), dry_run=dry_run
    )
    return {"executions": started}
