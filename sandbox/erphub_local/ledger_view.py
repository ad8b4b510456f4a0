"""Reading the ledger for operators: `erphub status`."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import boto3
from rich.table import Table

from erphub.ledger import Entry, Ledger, Status
from erphub_local import config

if TYPE_CHECKING:
    from collections.abc import Sequence

#: statuses an operator must look at, or that a later run will retry
NEEDS_ATTENTION = frozenset(
    {
        Status.FAILED_EXPORT,
        Status.FAILED,
        Status.PARTIAL,
        Status.REJECTED,
        Status.DEFERRED,
        Status.PUSHING,
        Status.KEPT_CONFIRMED,
        Status.NOT_CONFIRMED,
        Status.AWAITING_CORRECTION,
    }
)


def _local_table_name() -> str | None:
    """The ledger table of the stack `erphub local up` is running, if any."""
    described = config.STATE_DIR / "stack.json"
    if not described.is_file():
        return None
    name = json.loads(described.read_text())["stack"]["physical_ids"].get("LedgerTable")
    return str(name) if name else None


def entries(
    *, endpoint: str | None, table: str | None, flow: str | None, failed: bool
) -> list[Entry]:
    """Ledger entries, newest first."""
    if endpoint:
        # A local stack accepts any credentials; never send real ones to it.
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            region_name=os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"),
        )
        resource = session.resource("dynamodb", endpoint_url=endpoint)
        table = table or _local_table_name()
    else:
        resource = boto3.resource("dynamodb")
    if not table:
        msg = (
            "no ledger table: pass --table (or LEDGER_TABLE),"
            " or --endpoint of a running local stack"
        )
        raise SystemExit(msg)
    ledger = Ledger(resource.Table(table))
    rows = list(ledger.entries(flow))
    if failed:
        rows = [e for e in rows if e.status in NEEDS_ATTENTION]
    return sorted(rows, key=lambda e: e.updated_at, reverse=True)


def render(rows: Sequence[Entry], *, total: int) -> Table:
    """The entries as a table."""
    table = Table(title=f"Ledger: {len(rows)} of {total} documents")
    for column in (
        "document",
        "flow",
        "status",
        "attempts",
        "external id",
        "updated",
        "last error",
    ):
        table.add_column(column, overflow="fold")
    for entry in rows:
        style = "red" if entry.status in NEEDS_ATTENTION else ""
        table.add_row(
            entry.document_id,
            entry.flow,
            f"[{style}]{entry.status.value}[/{style}]" if style else entry.status.value,
            str(entry.attempts),
            entry.external_id or "",
            entry.updated_at[:19],
            (entry.last_error or "")[:160],
        )
    return table
