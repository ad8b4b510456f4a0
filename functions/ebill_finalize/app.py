"""eBill upload, step finalize: queue the parent batch (it takes its line items along)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What ebill_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.ebill
import erphub.secrets  # noqa: F401
from erphub.flows.ebill_finalize import FinalizeRequest, finalize_batch
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """BatchFinalize the parent batch once; the output starts the status poll loop."""
    request = FinalizeRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id, drop=request.job.drop_id)
    return finalize_batch(request, ebill_deps()).dump()
