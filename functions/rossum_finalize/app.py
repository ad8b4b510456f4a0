"""Rossum export, step finalize: tell Rossum exported or failed_export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What finalize_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.rossum
import erphub.secrets  # noqa: F401
from erphub.flows.rossum_finalize import FinalizeRequest, finalize
from erphub.observability import logger, metrics
from erphub.runtime.rossum import finalize_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Move the accepted annotations to exported and the rejected ones to failed_export."""
    request = FinalizeRequest.model_validate(event)
    logger.append_keys(queue_id=request.queue_id, run_id=request.run_id)
    return finalize(request, finalize_deps()).dump()
