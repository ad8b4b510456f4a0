"""eBill upload, step status poll: read the batch's status once (the Wait loop is in the ASL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What ebill_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.ebill
import erphub.secrets  # noqa: F401
from erphub.flows.ebill_poll import PollRequest, poll_status
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The batch's status and the seconds to wait before asking again."""
    request = PollRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id, drop=request.job.drop_id)
    return poll_status(request, ebill_deps()).dump()
