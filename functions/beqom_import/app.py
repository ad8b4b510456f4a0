"""beqom import: the drop queue's batch handler, one worker document import per record.

Each record is handled on its own; the ones that must be delivered again are reported in
``batchItemFailures`` (the event source has ``ReportBatchItemFailures``), the others are done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

# What beqom_import_deps() builds, loaded at init like everything each invocation needs.
import erphub.secrets  # noqa: F401
from erphub.flows.beqom_import import import_message
from erphub.observability import logger, metrics
from erphub.runtime.beqom import beqom_import_deps

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Import the documents of one batch of queue records."""
    deps = beqom_import_deps()
    run_id = context.aws_request_id

    def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
        with logger.append_context_keys(message_id=record.message_id):
            return [outcome.dump() for outcome in import_message(record.body, run_id, deps)]

    # One processor per invocation: it holds the batch's state.
    processor = BatchProcessor(event_type=EventType.SQS)
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
