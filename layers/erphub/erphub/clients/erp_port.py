"""The ERP port: what the flows need from an ERP, and the answers it gives.

Apart from the adapter (:mod:`erphub.clients.erp`), so that a step which does not talk to the
ERP (Rossum poll and finalize) does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict

from erphub.models import OutgoingDocument

if TYPE_CHECKING:
    from erphub.invoices import Invoice
    from erphub.models import OutgoingUpdate


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
