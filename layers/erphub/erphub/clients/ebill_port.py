"""eBill batch uploads: the wire constants, models and errors, and the port the flow uses.

Apart from the HTTP adapter (:mod:`erphub.clients.ebill`), so that the steps that never call
eBill (trigger, plan, failure) do not load httpx and tenacity.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pydantic import Field

from erphub.errors import BadInputError, ErphubError
from erphub.models import CamelModel

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager


PATH = "/rest/batchProcess"
OPERATION = "eBill-Import"
INPUT_TYPE = "API"
CUSTOMER = "Customer"
INVOICE = "Invoice"
INVOICE_LINE_ITEM = "Invoice Line Item"
SUB_OPERATIONS = frozenset({CUSTOMER, INVOICE, INVOICE_LINE_ITEM})
DRAFT = "Draft"
SUCCESS = "Success"
PARTIAL_SUCCESS = "Partial Success"
FAILED = "Failed"
TERMINAL_STATUSES = frozenset({SUCCESS, PARTIAL_SUCCESS, FAILED})

# Columns the output CSV adds to each input row. The vendor does not publish the layout; these
# are the names our reading of it relies on, checked case-insensitively, first match wins.
RESULT_COLUMNS = ("result", "record status", "import status")
MESSAGE_COLUMNS = ("error message", "message", "error", "reason")
FAILED_RESULTS = frozenset({"failed", "failure", "error", "rejected"})


# --- models ------------------------------------------------------------------------------------


def normalise_status(status: str | None) -> str:
    """A status with case and spacing as the contract spells it (``partial  success`` too)."""
    text = " ".join((status or "").split())
    for known in (DRAFT, "Queued", "Processing", *TERMINAL_STATUSES):
        if text.lower() == known.lower():
            return known
    return text


class BatchProcess(CamelModel):
    """One ``<batchProcess>`` (or a BatchInit child such as ``<carryForwardInvoice>``)."""

    id: str | None = None
    job_id: str | None = None
    status: str | None = None
    operation: str | None = None
    sub_operation: str | None = None
    success_count: int | None = None
    fail_count: int | None = None
    success_message: str | None = None
    error_message: str | None = None
    upload_url: str | None = Field(default=None, repr=False)
    download_url: str | None = Field(default=None, repr=False)
    element: str = "batchProcess"
    children: tuple[BatchProcess, ...] = ()

    @property
    def normalised_status(self) -> str:
        """The status as the contract spells it."""
        return normalise_status(self.status)

    @property
    def is_draft(self) -> bool:
        """Created, not yet finalized."""
        return self.normalised_status == DRAFT

    @property
    def is_terminal(self) -> bool:
        """Success, Partial Success or Failed: the output CSV (if any) is ready."""
        return self.normalised_status in TERMINAL_STATUSES


class UploadSpec(CamelModel):
    """What ``S3FileUpload`` creates: one Draft batch for one file."""

    job_id: str = Field(min_length=1, max_length=100)
    sub_operation: str
    input_filename: str = Field(min_length=1, max_length=255)
    parent_id: str | None = None
    parent_job_id: str | None = None


class InitSpec(CamelModel):
    """What ``BatchInit`` does; every flag defaults to doing nothing."""

    job_id: str = Field(min_length=1, max_length=100)
    carry_forward_invoices: bool = False
    carry_forward_credit_memos: bool = False
    carry_forward_debit_memos: bool = False
    zero_out_customer_balance: bool = False


@dataclass(frozen=True)
class RowResult:
    """One row of an output CSV: its number (1 = first data row), outcome and values."""

    row: int
    ok: bool
    message: str
    values: dict[str, str]


# --- errors ------------------------------------------------------------------------------------


class EbillRejected(BadInputError):
    """eBill refused a request (400/404 with its error XML); nothing was created."""

    def __init__(self, what: str, status: int, messages: list[str]) -> None:
        self.status = status
        self.messages = messages
        super().__init__(f"eBill {what}: HTTP {status}: {'; '.join(messages)}")


class EbillProtocolError(ErphubError):
    """An answer erphub must not read (a DTD or entities in the XML): not retried."""


class UploadUrlExpired(ErphubError):
    """The presigned upload URL has expired (S3 403 "Request has expired"): ask for a new one."""


class DownloadUrlExpired(ErphubError):
    """The presigned download URL has expired: read the status again for a fresh one."""


class PresignedUrlRefused(ErphubError):
    """S3 refused a presigned request for another reason (signature, headers, length)."""


# --- the port ----------------------------------------------------------------------------------


class EbillPort(Protocol):
    """What the eBill flow needs from eBill."""

    def create_upload(self, spec: UploadSpec) -> BatchProcess:
        """``POST ?mode=S3FileUpload``, once: a Draft batch with its ``uploadUrl``."""
        ...

    def upload(self, url: str, chunks: Iterable[bytes], length: int) -> None:
        """``PUT`` the file to its presigned URL, streaming ``chunks`` (``length`` bytes)."""
        ...

    def finalize(self, batch_id: str, job_id: str) -> BatchProcess:
        """``PUT ?mode=BatchFinalize`` with both ``id`` and ``jobId``, once."""
        ...

    def find(
        self, *, batch_id: str | None = None, job_id: str | None = None
    ) -> BatchProcess | None:
        """``GET ?id=`` or ``GET ?jobId=``: the batch with its children, or None if unknown."""
        ...

    def download(self, url: str) -> AbstractContextManager[Iterator[bytes]]:
        """``GET`` a presigned download URL: the body as a stream of chunks."""
        ...

    def init(self, spec: InitSpec) -> BatchProcess:
        """``POST ?mode=BatchInit``, once (destructive: never as a side effect of a drop)."""
        ...


# --- the output CSV ----------------------------------------------------------------------------


def _column(header: list[str], candidates: tuple[str, ...]) -> int | None:
    lowered = [name.strip().lower() for name in header]
    for candidate in candidates:
        if candidate in lowered:
            return len(lowered) - 1 - lowered[::-1].index(candidate)  # the last one: appended
    return None


def read_output_rows(lines: Iterable[str]) -> Iterator[RowResult]:
    """The rows of an output CSV, one per input row, in order.

    Raises :class:`EbillProtocolError` if the file has no result column.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    result_at = _column(header, RESULT_COLUMNS)
    if result_at is None:
        msg = f"eBill output CSV has no result column (columns: {', '.join(header)[:300]})"
        raise EbillProtocolError(msg)
    message_at = _column(header, MESSAGE_COLUMNS)
    for number, row in enumerate(reader, start=1):
        if not any(cell.strip() for cell in row):
            continue
        result = row[result_at].strip().lower() if result_at < len(row) else ""
        has_message = message_at is not None and message_at < len(row)
        message = row[message_at].strip() if has_message and message_at is not None else ""
        values = {name: row[i] for i, name in enumerate(header) if i < len(row)}
        yield RowResult(row=number, ok=result not in FAILED_RESULTS, message=message, values=values)
