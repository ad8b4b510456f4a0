"""eBill upload, step results: output CSVs into S3, failed rows into the ledger, alert or not."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What ebill_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.ebill
import erphub.secrets  # noqa: F401
from erphub.flows.ebill_results import ResultsRequest, collect_results
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Copy every output CSV to S3 and record each failed row; the alert, if any, is returned."""
    request = ResultsRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id, drop=request.job.drop_id)
    return collect_results(request, ebill_deps()).dump()
