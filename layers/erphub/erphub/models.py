"""Canonical models, the shapes read from external systems, and the step inputs and outputs.

Everything that crosses a boundary (an API response, a file, a Step Functions payload) is parsed
into one of these models on the way in, so a malformed input fails where it enters, with the
field named.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model whose JSON form uses camelCase names, as the ERP contract and our events do."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready camelCase form (decimals as strings, dates as ISO strings)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- Rossum annotation URLs ------------------------------------------------------------------
# (The documents themselves, the export JSON and the invoice, are in erphub.invoices.)

_ANNOTATION_URL = re.compile(r"/annotations/(\d+)/?$")


def annotation_id_from_url(url: str) -> int | None:
    """The annotation id in a Rossum annotation URL, or None if it is not one."""
    match = _ANNOTATION_URL.search(url)
    return int(match.group(1)) if match else None


# --- Step Functions payloads of the Rossum export --------------------------------------------


class ChunkRef(CamelModel):
    """An S3 object holding up to 100 claimed annotations."""

    key: str
    count: int = Field(ge=0)


class PollRequest(CamelModel):
    """Input of the poll step."""

    queue_id: int
    run_id: str = Field(min_length=1, max_length=80)
    #: read and report only: claim nothing, send nothing (see erphub.dryrun)
    dry_run: bool = False


class PollResult(CamelModel):
    """Output of the poll step: keys and counts only (Step Functions payloads are capped)."""

    queue_id: int
    run_id: str
    claimed: int
    leased_elsewhere: int
    unreadable: int
    chunks: list[ChunkRef]


class PushRequest(CamelModel):
    """Input of the push step: one chunk."""

    queue_id: int
    run_id: str
    chunk_key: str
    dry_run: bool = False


class PushResult(CamelModel):
    """Output of the push step for one chunk."""

    chunk_key: str
    result_key: str
    accepted: int
    rejected: int
    deferred: int
    skipped: int


class FinalizeRequest(CamelModel):
    """Input of the finalize step: the results of every chunk of the run."""

    queue_id: int
    run_id: str
    chunks: list[PushResult]
    dry_run: bool = False


class FinalizeResult(CamelModel):
    """Output of the finalize step and of the whole execution."""

    queue_id: int
    run_id: str
    exported: int
    failed_export: int
    kept_confirmed: int
    deferred: int
    no_longer_confirmed: int
    export_calls: int


Outcome = Literal["accepted", "rejected", "deferred", "skipped"]


class DocumentOutcome(CamelModel):
    """What the push step did with one annotation (kept in S3 for the finalize step)."""

    annotation_id: int
    outcome: Outcome
    erp_id: str | None = None
    reasons: list[str] = Field(default_factory=list)
    attempts: int = 0


# --- beqom worker documents ------------------------------------------------------------------

_NO_SEPARATORS = re.compile(r"^[^/\\\x00-\x1f]+$")


class WorkerDocument(CamelModel):
    """A document for one worker in one beqom communication round (one import call each).

    The business key is round/worker/file name: beqom overwrites a document with the same file
    name, so importing the same key again replaces it instead of adding a second one.
    """

    communication_round_code: str = Field(min_length=1, max_length=100, pattern=_NO_SEPARATORS)
    worker_external_id: str = Field(min_length=1, max_length=100, pattern=_NO_SEPARATORS)
    file_name: str = Field(min_length=1, max_length=255, pattern=_NO_SEPARATORS)
    generation_time: datetime
    is_summary: bool = False

    @field_validator("generation_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            msg = "generationTime needs a time zone (e.g. 2026-01-31T00:00:00Z)"
            raise ValueError(msg)
        return value

    @property
    def business_key(self) -> str:
        """``<round>/<worker>/<file name>``: what identifies the document in beqom."""
        return f"{self.communication_round_code}/{self.worker_external_id}/{self.file_name}"


# --- ERP outgoing documents (ERP -> Procuros) --------------------------------------------------

#: The ERP's Procuros status: 201 -> TRANSMITTED, 202 -> NO_ACTION; empty (None) means "send it".
ProcurosStatus = Literal["TRANSMITTED", "NO_ACTION"]


class OutgoingDocument(CamelModel):
    """A document the ERP wants sent to Procuros (``GET /outgoing-documents``).

    ``type`` stays a plain string: an ERP may list types the hub does not send, and those are
    skipped rather than failing the page they came on.
    """

    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    number: str = Field(min_length=1)
    updated_at: str | None = None
    procuros_status: ProcurosStatus | None = None
    error_url: str | None = None
    procuros_transaction_id: str | None = None
    document: dict[str, Any] = Field(default_factory=dict)


class OutgoingUpdate(CamelModel):
    """A ``PATCH /outgoing-documents/{id}``: exactly the fields given are sent (None clears)."""

    procuros_status: ProcurosStatus | None = None
    error_url: str | None = None
    procuros_transaction_id: str | None = None

    def dump(self) -> dict[str, Any]:
        """The fields that were given, ``null`` included."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# --- batch files (S3 drop -> eBill) -----------------------------------------------------------

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
