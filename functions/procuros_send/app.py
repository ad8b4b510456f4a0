"""Procuros send, step send: send one chunk of documents and tell the ERP each outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What procuros_send_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.erp
import erphub.secrets  # noqa: F401
from erphub.flows.procuros_send_chunk import SendRequest, send_chunk
from erphub.observability import logger, metrics
from erphub.runtime.procuros import procuros_send_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Send one chunk to Procuros (POST /v2/transactions) and update the ERP's status."""
    request = SendRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id)
    return send_chunk(request, procuros_send_deps()).dump()
