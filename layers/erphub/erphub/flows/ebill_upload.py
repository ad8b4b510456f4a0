"""File drop -> eBill batch upload, one drop per execution.

The drop bucket's layout (under ``EBILL_DROP_PREFIX``, default ``ebill/``):

- ``customers/<file>.csv`` is one Customer batch;
- ``invoices/<batch>/`` holds an invoice CSV, its line-item CSVs and a ``manifest.json``
  (``{"invoice": "<file>", "lineItems": ["<file>", ...]}``) written last: the manifest is the
  trigger.

0. :mod:`~erphub.flows.ebill_trigger` (the S3 trigger) starts one execution per drop, named after
   the object's bucket, key and version: a repeated S3 event starts nothing twice.
1. :mod:`~erphub.flows.ebill_plan` reads the drop (the manifest of an invoice batch) and pins
   each file's version.
2. :mod:`~erphub.flows.ebill_upload_files` asks eBill for a presigned upload URL per file
   (``S3FileUpload`` with a jobId derived from the drop) and streams the file from S3 to it;
   line-item files name their parent. A create whose outcome is unknown is reconciled with
   ``GET ?jobId=`` first. A URL that expired, or was lost in a crash, cannot be asked for again
   under the same jobId, so the whole batch starts over as a new attempt; the old Draft batches
   are never finalized.
3. :mod:`~erphub.flows.ebill_finalize` queues the parent batch (``BatchFinalize`` with its id and
   jobId), once.
4. :mod:`~erphub.flows.ebill_poll` reads the status, for a Step Functions Wait loop with growing
   intervals and an overall deadline.
5. :mod:`~erphub.flows.ebill_results` copies every output CSV (parent and line items) into S3,
   records each failed row in the ledger and returns an alert for a Partial Success or a Failure.

:mod:`~erphub.flows.ebill_failure` makes every failed execution visible (ledger + alert), and
:func:`run_batch_init` is the explicit, separate ``BatchInit`` command: never part of a drop.

Each step is a module of its own, so that each Lambda function loads only its step. This one
holds what the steps share: the identities, the batch job and the state passed between steps.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from erphub.clients.ebill_port import (
    CUSTOMER,
    INVOICE,
    INVOICE_LINE_ITEM,
    BatchProcess,
    EbillPort,
    InitSpec,
)
from erphub.errors import ErphubError, LeaseLostError, TransientError
from erphub.files import FileStore
from erphub.ledger import Entry, Ledger
from erphub.models import CamelModel

FLOW = "ebill-upload"
CUSTOMERS: Literal["customers"] = "customers"
INVOICES: Literal["invoices"] = "invoices"
MANIFEST_NAME = "manifest.json"
MANIFEST_LIMIT_BYTES = 64 * 1024
MAX_LINE_ITEM_FILES = 50
MAX_UPLOAD_ATTEMPTS = 3
PUT_TRIES = 3
MAX_FAILED_ROWS_RECORDED = 1000
FAILED_ROWS_IN_ALERT = 10
RESULTS_PREFIX = "ebill-upload"
# Before starting another file in the same invocation, leave time for it at this rate.
MIN_UPLOAD_BYTES_PER_SECOND = 5 * 1024 * 1024
UPLOAD_TIME_MARGIN_MS = 60_000
ROW_LEASE_SECONDS = 60
MAX_EXECUTION_NAME = 80

SUB_OPERATIONS = {"customers": CUSTOMER, "invoice": INVOICE, "line_items": INVOICE_LINE_ITEM}
# The column that identifies a row's business object, per file kind, for the ledger.
ROW_KEY_COLUMNS = {
    CUSTOMER: "Account Number",
    INVOICE: "Invoice Number",
    INVOICE_LINE_ITEM: "Invoice Number",
}

DropKind = Literal["customers", "invoices"]
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class PollDeadlineExceeded(ErphubError):
    """eBill has not finished the batch within the configured deadline."""


class EbillBatchMissing(ErphubError):
    """eBill does not know a batch erphub created: an operator must look."""


class UploadAttemptsExhausted(ErphubError):
    """The batch could not be uploaded in MAX_UPLOAD_ATTEMPTS attempts."""


BatchFileRole = Literal["customers", "invoice", "line_items"]


class BatchFile(CamelModel):
    """One dropped file of a batch, pinned to the S3 version the batch was planned with."""

    name: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1)
    version_id: str | None = None
    size: int = Field(gt=0)
    role: BatchFileRole
    #: what tells this file apart within its batch in the target system (CUS, INV, ITM_<n>)
    suffix: str = Field(pattern=r"^(CUS|INV|ITM_\d+)$")


class BatchJob(CamelModel):
    """A drop that becomes one batch in a batch-import system: the parent file first, then its
    line-item files, all read from ``bucket``."""

    drop_id: str = Field(min_length=1)
    #: the prefix of every id the target system gets for this drop (derived from the object)
    tag: str = Field(pattern=r"^EH[0-9A-F]{12}$")
    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str = Field(min_length=1)
    kind: Literal["customers", "invoices"]
    files: list[BatchFile] = Field(min_length=1)


# --- identities -----------------------------------------------------------------------------


class DropRef(CamelModel):
    """One dropped object that starts a batch: the execution's input."""

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    version_id: str = Field(min_length=1)
    kind: DropKind

    @property
    def digest(self) -> str:
        """A stable digest of bucket, key and version (the object's identity, not its content)."""
        identity = f"{self.bucket}/{self.key}?versionId={self.version_id}"
        return hashlib.sha256(identity.encode()).hexdigest()

    @property
    def tag(self) -> str:
        """The prefix of every jobId this drop gives eBill."""
        return "EH" + self.digest[:12].upper()

    @property
    def id(self) -> str:
        """The drop's ledger document id."""
        return f"s3://{self.bucket}/{self.key}?versionId={self.version_id}"


def job_id(tag: str, attempt: int, suffix: str) -> str:
    """The jobId of one file of one attempt, e.g. ``EH3F09A1C2B4D7_A1_ITM_2``."""
    return f"{tag}_A{attempt}_{suffix}"


def classify(key: str, prefix: str) -> DropKind | None:
    """Which kind of drop an object key starts, if any."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix) :]
    if rest.startswith(f"{CUSTOMERS}/") and rest.lower().endswith(".csv"):
        return CUSTOMERS
    parts = rest.split("/")
    if len(parts) == 3 and parts[0] == INVOICES and parts[1] and parts[2] == MANIFEST_NAME:
        return INVOICES
    return None


def execution_name(drop: DropRef) -> str:
    """``ebill-cus-<file>-<digest>`` / ``ebill-inv-<folder>-<digest>``: readable and unique."""
    parts = drop.key.split("/")
    label = parts[-1].rsplit(".", 1)[0] if drop.kind == CUSTOMERS else parts[-2]
    kind = "cus" if drop.kind == CUSTOMERS else "inv"
    suffix = drop.digest[:12]
    room = MAX_EXECUTION_NAME - len(f"ebill-{kind}--{suffix}")
    readable = _NAME_UNSAFE.sub("-", label).strip("-")[:room].strip("-") or "drop"
    return f"ebill-{kind}-{readable}-{suffix}"


# --- what the steps work with and pass on ----------------------------------------------------


def claim(
    ledger: Ledger,
    document_id: str,
    run_id: str,
    lease_seconds: int,
    attributes: dict[str, str] | None = None,
) -> Entry:
    """Claim ``document_id`` for this run; LeaseLostError if another execution holds it."""
    entry = ledger.claim(
        FLOW, document_id, owner=run_id, lease_seconds=lease_seconds, attributes=attributes
    )
    if entry is None:
        msg = f"{document_id} is held by another execution"
        raise LeaseLostError(msg)
    return entry


@dataclass(frozen=True)
class DropDeps:
    """What the steps that only read the drop and the ledger work with."""

    ledger: Ledger
    files: FileStore
    lease_seconds: int


@dataclass(frozen=True)
class PollPolicy:
    """How often and for how long the status is polled."""

    initial_seconds: int = 30
    max_seconds: int = 900
    deadline_seconds: int = 86_400

    @property
    def lease_seconds(self) -> int:
        """How long an execution holds its drop: its whole expected life."""
        return self.deadline_seconds + 7_200

    def wait_after(self, polls: int, elapsed: float) -> int:
        """Seconds before the next poll: doubling up to the maximum, never past the deadline."""
        grown = min(self.initial_seconds << min(polls, 20), self.max_seconds)
        return max(1, min(grown, int(self.deadline_seconds - elapsed)))


@dataclass(frozen=True)
class EbillDeps:
    """What the steps that talk to eBill work with."""

    ebill: EbillPort
    ledger: Ledger
    files: FileStore
    results_bucket: str
    polling: PollPolicy
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


class BatchRef(CamelModel):
    """One file's batch in eBill."""

    id: str
    job_id: str
    file: str
    sub_operation: str


class UploadResult(CamelModel):
    """Output of the upload step; ``done`` false means: call the step again."""

    done: bool
    attempt: int
    parent: BatchRef | None = None
    children: list[BatchRef] = Field(default_factory=list)


class BatchState(CamelModel):
    """Where the parent batch stands in eBill (the poll loop's state)."""

    id: str
    job_id: str
    status: str
    terminal: bool
    polls: int = Field(ge=0)
    wait_seconds: int = Field(ge=1)
    submitted_at: float


def find_batch(deps: EbillDeps, batch_id: str, job_id_: str) -> BatchProcess:
    """The batch as eBill has it now; EbillBatchMissing if eBill no longer knows it."""
    current = deps.ebill.find(batch_id=batch_id)
    if current is None:
        msg = f"eBill does not know batch {batch_id} (jobId {job_id_}) any more"
        raise EbillBatchMissing(msg)
    return current


class Alert(CamelModel):
    """An operator alert (published to the alert topic by the state machine)."""

    subject: str = Field(max_length=100)
    message: str


def alert_subject(text: str) -> str:
    """An SNS subject: printable ASCII, one line, at most 100 characters."""
    ascii_text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return ascii_text[:100]


# --- BatchInit (explicit command only) --------------------------------------------------------


def run_batch_init(spec: InitSpec, ebill: EbillPort) -> tuple[BatchProcess, bool]:
    """Run ``BatchInit`` once per jobId: (the init batch, whether this call started it).

    An init with this jobId that already exists is returned, not run again; a POST whose
    outcome is unknown is reconciled with ``GET ?jobId=`` before the error is reported.
    """
    existing = ebill.find(job_id=spec.job_id)
    if existing is not None:
        return existing, False
    try:
        return ebill.init(spec), True
    except TransientError:
        existing = ebill.find(job_id=spec.job_id)
        if existing is not None:
            return existing, True
        raise
