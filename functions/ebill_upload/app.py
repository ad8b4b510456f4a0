"""eBill upload, step upload: presigned upload URLs, and each file streamed from S3 to its URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# What ebill_deps() builds, loaded at init like everything each invocation needs.
import erphub.clients.ebill
import erphub.secrets  # noqa: F401
from erphub.flows.ebill_upload_files import UploadRequest, upload_files
from erphub.observability import logger, metrics
from erphub.runtime.ebill import ebill_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Upload the batch's files, parent first, within this invocation's remaining time."""
    request = UploadRequest.model_validate(event)
    logger.append_keys(run_id=request.run_id, drop=request.job.drop_id)
    return upload_files(request, ebill_deps(), context.get_remaining_time_in_millis).dump()
