"""The ERP port: what the flows need from an ERP, and the answers it gives.

Apart from the adapter (:mod:`erphub.clients.erp`), so that a step which does not talk to the
ERP (Rossum poll and finalize) does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from erphub.models import CamelModel

if TYPE_CHECKING:
    from erphub.invoices import Invoice


class Accepted(BaseModel):
    """The ERP holds the invoice (created now, or found under its external reference)."""

    model_config = ConfigDict(frozen=True)

    erp_id: str
    already_existed: bool = False


class Rejected(BaseModel):
    """The ERP refused the invoice, with its reasons."""

    model_config = ConfigDict(frozen=True)

    reasons: list[str]


class Valid(BaseModel):
    """The ERP would book the invoice (the answer of a validation, which books nothing)."""

    model_config = ConfigDict(frozen=True)


class ErpGateway(Protocol):
    """What the flows need from an ERP."""

    def push_invoice(self, invoice: Invoice) -> Accepted | Rejected:
        """Create the invoice, once: an existing external reference answers Accepted."""
        ...

    def find_invoice(self, external_reference: str) -> str | None:
        """The ERP id of the invoice with this external reference, if the ERP holds one."""
        ...

    def validate_invoice(self, invoice: Invoice) -> Valid | Accepted | Rejected:
        """What :meth:`push_invoice` would answer, without booking anything (dry runs)."""
        ...


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


class Unreadable(BaseModel):
    """A listed outgoing document that does not match the contract (it is left alone)."""

    model_config = ConfigDict(frozen=True)

    document_id: str | None
    problems: list[str]


class OutgoingPage(BaseModel):
    """One page of ``GET /outgoing-documents``."""

    model_config = ConfigDict(frozen=True)

    documents: list[OutgoingDocument]
    unreadable: list[Unreadable] = []
    next_cursor: str | None = None


class ErpOutgoing(Protocol):
    """What the Procuros send flow needs from an ERP: its outgoing documents and their status."""

    def pending_outgoing(self, cursor: str | None = None, limit: int = 100) -> OutgoingPage:
        """One page of the outgoing documents whose Procuros status is empty."""
        ...

    def update_outgoing(self, document_id: str, update: OutgoingUpdate) -> OutgoingDocument:
        """Set the Procuros status, transaction id and/or error URL of one document."""
        ...
