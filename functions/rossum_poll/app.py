"""Rossum export, step poll: claim the confirmed annotations of one queue."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What poll_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.rossum
import erphub.secrets  # noqa: F401
from erphub.flows.rossum_poll import PollRequest, poll_confirmed
from erphub.observability import logger, metrics
from erphub.runtime.rossum import poll_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Claim the confirmed annotations of one queue and store them in S3 in chunks."""
    request = PollRequest.model_validate(event)
    logger.append_keys(queue_id=request.queue_id, run_id=request.run_id)
    return poll_confirmed(request, poll_deps()).dump()
