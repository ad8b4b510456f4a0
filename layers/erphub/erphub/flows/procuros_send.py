"""ERP -> Procuros: send the ERP's outgoing documents, following Procuros' status rules.

The rules (source document "Tracking document status"): only documents whose Procuros status is
empty are picked up; 201 sets it to TRANSMITTED and 202 to NO_ACTION; 400 and 422 leave it empty,
so the document is sent again on the next run, and put the error's portal link in the document's
"Error URL"; errors are reported to Procuros (``POST /v2/errors``) after N failed attempts.

1. :func:`erphub.flows.procuros_list.list_pending` pages the ERP's outgoing documents with an
   empty Procuros status, keeps the configured types, claims each in the ledger and stores them
   in S3 in chunks of 100.
2. :func:`erphub.flows.procuros_send_chunk.send_chunk` sends each document of a chunk and tells
   the ERP the outcome. The ledger records "accepted by Procuros" *before* the ERP is updated:
   when the ERP update fails, later runs only repeat the update and never send the transaction
   again. A POST whose answer was lost is looked up in Procuros before anything is sent again,
   and Procuros' "Payload already received" is taken as proof of an earlier delivery.

A dry run (``dryRun`` in the execution input) is done by the list step alone: it claims nothing,
maps each document, checks it against the schema of the send body and its receiver against the
parties Procuros' transaction history names, and writes a per-document report (see the last
section of :mod:`erphub.flows.procuros_list`).

Each step is a module of its own, so that each Lambda function loads only its step. This one
holds what the steps share: the ledger attributes of a document, and what Procuros accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from erphub.clients.erp_port import ProcurosStatus
from erphub.ledger import Entry, Status

FLOW = "procuros-send"
CHUNK_SIZE = 100
#: After this many documents in a row fail for transient reasons Procuros (or the ERP) is taken
#: to be down: the chunk fails as a whole and Step Functions retries it later.
DOWN_AFTER = 3
#: POSTs of one document per run when answers are lost (each looked up before the next): with
#: a 30 s HTTP timeout, three such documents in a row stay well inside the Lambda timeout.
SEND_ATTEMPTS = 2
#: History kept per document; one refused on every run would otherwise outgrow its item.
HISTORY_KEEP = 40
HISTORY_TRIM_AT = 60
#: How far back the list step looks for documents an interrupted run left PUSHED after the ERP
#: had been told (see :func:`settle_told`).
SETTLE_WITHIN_SECONDS = 3 * 86_400
MAX_REASON_CHARS = 2000
MAX_CONTEXT_ITEMS = 20

# Ledger attributes of a document.
OUTCOME = "procurosStatus"  # what Procuros answered, TRANSMITTED or NO_ACTION
ERROR_URL = "errorUrl"  # the portal link of the last refusal
ERROR_REPORTED = "errorReportedAt"  # when the error was reported with POST /v2/errors
ERROR_REPORT_URL = "errorReportUrl"


def correlation_id(document_id: str) -> str:
    """The id that follows one ERP document through every log line."""
    return f"erp-outgoing:{document_id}"


def utc_today() -> date:
    """Today in UTC (the day Procuros' transaction dates are compared with)."""
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class Accepted:
    """Procuros holds the transaction: what the ERP is to be told."""

    status: ProcurosStatus
    transaction_id: str | None
    how: str


def accepted_before(entry: Entry) -> Accepted | None:
    """What an earlier run learned from Procuros, if Procuros already holds the transaction."""
    if entry.status not in (Status.PUSHED, Status.EXPORTED):
        return None
    status: ProcurosStatus = (
        "NO_ACTION" if entry.attributes.get(OUTCOME) == "NO_ACTION" else "TRANSMITTED"
    )
    return Accepted(status=status, transaction_id=entry.external_id, how="recorded in the ledger")
