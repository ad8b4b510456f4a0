"""Rossum export, step push: push one chunk of annotations to the ERP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What push_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.erp
import erphub.mapping
import erphub.secrets  # noqa: F401
from erphub.flows.rossum_push import PushRequest, push_to_erp
from erphub.observability import logger, metrics
from erphub.runtime.rossum import push_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Push one chunk of annotations to the ERP."""
    request = PushRequest.model_validate(event)
    logger.append_keys(queue_id=request.queue_id, run_id=request.run_id)
    return push_to_erp(request, push_deps()).dump()
