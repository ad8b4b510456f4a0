"""Procuros send, step list: claim the ERP's outgoing documents with an empty Procuros status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What procuros_list_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.erp
import erphub.secrets  # noqa: F401
from erphub.flows.procuros_list import ListRequest, list_pending
from erphub.observability import logger, metrics
from erphub.runtime.procuros import procuros_list_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Claim the pending outgoing documents and store them in S3 in chunks."""
    request = ListRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id)
    return list_pending(request, procuros_list_deps()).dump()
