"""ERP -> Procuros, the schedule: one send execution per EventBridge tick.

Apart from the steps (:mod:`erphub.flows.procuros_list`, :mod:`erphub.flows.procuros_send_chunk`)
so that the schedule function loads neither the Procuros client nor the mapping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from erphub.clients.workflows import ExecutionStarter


def execution_name(scheduled_at: datetime, *, dry_run: bool = False) -> str:
    """One name per schedule tick, so a repeated tick starts nothing twice.

    A dry run has a name of its own: it must never take the name a real run needs.
    """
    suffix = "-dry-run" if dry_run else ""
    return f"procuros-send-{scheduled_at.astimezone(UTC):%Y%m%dT%H%M%SZ}{suffix}"


def start_scheduled_send(
    scheduled_at: datetime, starter: ExecutionStarter, *, dry_run: bool = False
) -> dict[str, str | None]:
    """Start the send execution of this tick; execution name -> ARN (None if it existed)."""
    name = execution_name(scheduled_at, dry_run=dry_run)
    arn = starter.start(name, {"dryRun": dry_run})
    metrics.add_metric(name="ProcurosSendStarted", unit=MetricUnit.Count, value=1 if arn else 0)
    logger.info("send started" if arn else "send already started", extra={"execution": name})
    return {name: arn}
