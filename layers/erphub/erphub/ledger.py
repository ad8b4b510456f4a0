"""The ledger: erphub's state per business document, in DynamoDB.

This is the only module that speaks DynamoDB. One item per document and flow, keyed
``<flow>#<business id>``. Every change is a conditional write:

- a run *claims* a document with a lease; a second run cannot claim it while the lease holds,
  so overlapping runs never push the same document twice;
- a run *records* a step only while it still holds the lease (else :class:`LeaseLostError`);
- a terminal record drops the lease, so the document is free for a later run if it comes back.

Each record appends to the item's ``history``, which is what ``erphub show`` prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from erphub.errors import LeaseLostError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from mypy_boto3_dynamodb.service_resource import Table

_BATCH_GET_LIMIT = 100


class Status(StrEnum):
    """Where a document stands. Terminal ones drop the lease."""

    CLAIMED = "CLAIMED"
    PUSHING = "PUSHING"  # a create was sent, its outcome not yet recorded: reconcile first
    PUSHED = "PUSHED"  # the target system holds it; the source is not yet told
    REJECTED = "REJECTED"  # the target system refused it; the source is not yet told
    DEFERRED = "DEFERRED"  # a transient failure; the next run tries again
    EXPORTED = "EXPORTED"  # terminal: done everywhere
    FAILED_EXPORT = "FAILED_EXPORT"  # terminal: failed, visible in the source system
    KEPT_CONFIRMED = "KEPT_CONFIRMED"  # rejected, left in the source for another attempt
    NOT_CONFIRMED = "NOT_CONFIRMED"  # the source moved it elsewhere before we could finish
    IMPORTED = "IMPORTED"  # terminal: the target system holds it (no source to tell)
    FAILED = "FAILED"  # terminal: failed with its reasons (no source to tell)
    # refused; the source shows why and offers it again, so a later run retries it once fixed
    AWAITING_CORRECTION = "AWAITING_CORRECTION"
    SUBMITTED = "SUBMITTED"  # handed over for asynchronous processing; the outcome comes later
    PARTIAL = "PARTIAL"  # terminal: the target system took part of it; the rest failed (reasons)
    SUPERSEDED = "SUPERSEDED"  # terminal: abandoned unfinished, replaced by a later attempt


class HistoryEvent(BaseModel):
    """One step in a document's life."""

    model_config = ConfigDict(frozen=True)

    at: str
    status: str
    run: str
    detail: str = ""


class Entry(BaseModel):
    """A ledger item."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    flow: str
    document_id: str = Field(alias="documentId")
    status: Status
    attempts: int = 0
    lease_owner: str | None = Field(default=None, alias="leaseOwner")
    lease_until: int | None = Field(default=None, alias="leaseUntil")
    external_id: str | None = Field(default=None, alias="externalId")
    last_error: str | None = Field(default=None, alias="lastError")
    reasons: list[str] = Field(default_factory=list)
    attributes: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    history: list[HistoryEvent] = Field(default_factory=list)


@dataclass(frozen=True)
class Claimed:
    """A claim that succeeded, with the entry as it was before (None for a new document)."""

    previous: Entry | None


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the models want ints."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Ledger:
    """Claims, leases and status transitions of documents, with conditional writes."""

    def __init__(self, table: Table, *, clock: Callable[[], float] = time.time) -> None:
        self._table = table
        self._clock = clock

    @staticmethod
    def key(flow: str, document_id: str) -> str:
        """The partition key of a document in a flow."""
        return f"{flow}#{document_id}"

    def _now(self) -> tuple[int, str]:
        now = self._clock()
        return int(now), datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")

    def claim(
        self,
        flow: str,
        document_id: str,
        *,
        owner: str,
        lease_seconds: int,
        attributes: Mapping[str, str] | None = None,
    ) -> Entry | None:
        """Take the lease on a document, or return None while another run holds it.

        A new document starts CLAIMED; a known one keeps its status, so the next step can see
        what happened to it before (a push whose outcome is unknown, an accepted invoice...).
        """
        item = self._take_lease(
            flow,
            document_id,
            owner=owner,
            lease_seconds=lease_seconds,
            attributes=attributes,
            status="if_not_exists(#status, :status)",
            status_value=Status.CLAIMED,
            attempts="if_not_exists(attempts, :zero)",
            return_values="ALL_NEW",
        )
        return None if item is None else Entry.model_validate(_plain(item))

    def claim_to_send(
        self,
        flow: str,
        document_id: str,
        *,
        owner: str,
        lease_seconds: int,
        attributes: Mapping[str, str] | None = None,
    ) -> Claimed | None:
        """Take the lease and mark the document PUSHING in one write; None if another run holds it.

        From here until its outcome is recorded, the ledger says a create may have reached the
        target system, so a run that finds it so later reconciles before sending it again. What
        the ledger knew before comes back in :attr:`Claimed.previous`: no read is needed.
        """
        epoch, iso = self._now()
        # Most documents are new: one plain conditional put is the cheapest claim.
        first: dict[str, Any] = {
            "pk": self.key(flow, document_id),
            "flow": flow,
            "documentId": document_id,
            "leaseOwner": owner,
            "leaseUntil": epoch + lease_seconds,
            "updatedAt": iso,
            "createdAt": iso,
            "status": Status.PUSHING.value,
            "attempts": 1,
            "history": [HistoryEvent(at=iso, status="CLAIM", run=owner).model_dump()],
        }
        if attributes:
            first["attributes"] = dict(attributes)
        try:
            self._table.put_item(Item=first, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
        else:
            return Claimed(previous=None)
        old = self._take_lease(
            flow,
            document_id,
            owner=owner,
            lease_seconds=lease_seconds,
            attributes=attributes,
            status=":status",
            status_value=Status.PUSHING,
            attempts="if_not_exists(attempts, :zero) + :one",
            return_values="ALL_OLD",
        )
        if old is None:
            return None
        return Claimed(previous=Entry.model_validate(_plain(old)) if old else None)

    def _take_lease(
        self,
        flow: str,
        document_id: str,
        *,
        owner: str,
        lease_seconds: int,
        attributes: Mapping[str, str] | None,
        status: str,
        status_value: Status,
        attempts: str,
        return_values: Literal["ALL_NEW", "ALL_OLD"],
    ) -> dict[str, Any] | None:
        """The conditional update behind both claims; None if another run holds the lease."""
        epoch, iso = self._now()
        names = {"#status": "status", "#history": "history"}
        values: dict[str, Any] = {
            ":owner": owner,
            ":now": epoch,
            ":until": epoch + lease_seconds,
            ":flow": flow,
            ":doc": document_id,
            ":iso": iso,
            ":status": status_value.value,
            ":zero": 0,
            ":empty": [],
            ":event": [HistoryEvent(at=iso, status="CLAIM", run=owner).model_dump()],
        }
        if ":one" in attempts:
            values[":one"] = 1
        sets = [
            "flow = :flow",
            "documentId = :doc",
            "leaseOwner = :owner",
            "leaseUntil = :until",
            "updatedAt = :iso",
            "createdAt = if_not_exists(createdAt, :iso)",
            f"#status = {status}",
            f"attempts = {attempts}",
            "#history = list_append(if_not_exists(#history, :empty), :event)",
        ]
        if attributes:
            sets.append("#attrs = :attrs")
            names["#attrs"] = "attributes"
            values[":attrs"] = dict(attributes)
        try:
            response = self._table.update_item(
                Key={"pk": self.key(flow, document_id)},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR attribute_not_exists(leaseOwner)"
                    " OR leaseOwner = :owner OR leaseUntil < :now"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues=return_values,
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return None
            raise
        return dict(response.get("Attributes", {}))

    def record(
        self,
        flow: str,
        document_id: str,
        *,
        owner: str,
        status: Status,
        detail: str = "",
        external_id: str | None = None,
        last_error: str | None = None,
        reasons: Iterable[str] | None = None,
        count_attempt: bool = False,
        release: bool = False,
        attributes: Mapping[str, str] | None = None,
    ) -> Entry:
        """Move a document to ``status`` while ``owner`` holds its lease; the entry after.

        ``release`` drops the lease (terminal states, or work left for a later run);
        ``attributes`` replaces the entry's attributes.
        Raises :class:`LeaseLostError` if another run has taken the document over.
        """
        item = self._update(
            flow,
            document_id,
            owner=owner,
            status=status,
            detail=detail,
            external_id=external_id,
            last_error=last_error,
            reasons=reasons,
            count_attempt=count_attempt,
            release=release,
            attributes=attributes,
            read_back=True,
        )
        return Entry.model_validate(_plain(item))

    def mark(
        self,
        flow: str,
        document_id: str,
        *,
        owner: str,
        status: Status,
        detail: str = "",
        external_id: str | None = None,
        last_error: str | None = None,
        reasons: Iterable[str] | None = None,
        release: bool = False,
    ) -> None:
        """:meth:`record` without reading the entry back (cheaper, for the hot path)."""
        self._update(
            flow,
            document_id,
            owner=owner,
            status=status,
            detail=detail,
            external_id=external_id,
            last_error=last_error,
            reasons=reasons,
            count_attempt=False,
            release=release,
            attributes=None,
            read_back=False,
        )

    def _update(
        self,
        flow: str,
        document_id: str,
        *,
        owner: str,
        status: Status,
        detail: str,
        external_id: str | None,
        last_error: str | None,
        reasons: Iterable[str] | None,
        count_attempt: bool,
        release: bool,
        attributes: Mapping[str, str] | None,
        read_back: bool,
    ) -> dict[str, Any]:
        _epoch, iso = self._now()
        names = {"#status": "status", "#history": "history"}
        values: dict[str, Any] = {
            ":owner": owner,
            ":status": status.value,
            ":iso": iso,
            ":empty": [],
            ":event": [
                HistoryEvent(at=iso, status=status.value, run=owner, detail=detail).model_dump()
            ],
        }
        sets = [
            "#status = :status",
            "updatedAt = :iso",
            "#history = list_append(if_not_exists(#history, :empty), :event)",
        ]
        removes: list[str] = []
        if external_id is not None:
            sets.append("externalId = :ext")
            values[":ext"] = external_id
        if last_error is not None:
            sets.append("lastError = :err")
            values[":err"] = last_error
        if reasons is not None:
            sets.append("reasons = :reasons")
            values[":reasons"] = list(reasons)
        if count_attempt:
            sets.append("attempts = if_not_exists(attempts, :zero) + :one")
            values[":zero"] = 0
            values[":one"] = 1
        if attributes is not None:
            sets.append("#attrs = :attrs")
            names["#attrs"] = "attributes"
            values[":attrs"] = dict(attributes)
        if release:
            removes += ["leaseOwner", "leaseUntil"]
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        try:
            response = self._table.update_item(
                Key={"pk": self.key(flow, document_id)},
                UpdateExpression=expression,
                ConditionExpression="leaseOwner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW" if read_back else "NONE",
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                msg = f"{flow} {document_id}: the lease of run {owner} was taken over"
                raise LeaseLostError(msg) from error
            raise
        return dict(response.get("Attributes", {}))

    def get(self, flow: str, document_id: str) -> Entry | None:
        """One document's entry, read consistently."""
        item = self._table.get_item(
            Key={"pk": self.key(flow, document_id)}, ConsistentRead=True
        ).get("Item")
        return Entry.model_validate(_plain(item)) if item else None

    def trim_history(self, entry: Entry, *, owner: str, keep: int) -> bool:
        """Drop all but the last ``keep`` history events of ``entry`` while ``owner`` holds it.

        A document retried on every run (one the source offers again until it is fixed) would
        otherwise grow past DynamoDB's item size limit. A no-op if the item changed since
        ``entry`` was read; returns whether events were dropped.
        """
        drop = len(entry.history) - keep
        if drop <= 0:
            return False
        try:
            self._table.update_item(
                Key={"pk": self.key(entry.flow, entry.document_id)},
                UpdateExpression="REMOVE " + ", ".join(f"#history[{i}]" for i in range(drop)),
                ConditionExpression="leaseOwner = :owner AND size(#history) = :size",
                ExpressionAttributeNames={"#history": "history"},
                ExpressionAttributeValues={":owner": owner, ":size": len(entry.history)},
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def get_many(self, flow: str, document_ids: Iterable[str]) -> dict[str, Entry]:
        """Entries of many documents (one BatchGetItem per 100), by document id."""
        ids = list(dict.fromkeys(document_ids))
        found: dict[str, Entry] = {}
        for start in range(0, len(ids), _BATCH_GET_LIMIT):
            keys: list[dict[str, Any]] = [
                {"pk": self.key(flow, i)} for i in ids[start : start + _BATCH_GET_LIMIT]
            ]
            request: dict[str, Any] = {self._table.name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._table.meta.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table.name, []):
                    entry = Entry.model_validate(_plain(item))
                    found[entry.document_id] = entry
                request = dict(response.get("UnprocessedKeys") or {})
        return found

    def unleased(self, flow: str, status: Status, *, within_seconds: int) -> Iterator[Entry]:
        """Entries of ``flow`` left in ``status`` that no run holds, updated in the last
        ``within_seconds``: what a run that stopped between a side effect and its record leaves.

        One query on the byFlow index, bounded to the recent entries of the flow.
        """
        epoch, _ = self._now()
        since = datetime.fromtimestamp(epoch - within_seconds, UTC)
        kwargs: dict[str, Any] = {
            "IndexName": "byFlow",
            "KeyConditionExpression": "flow = :flow AND updatedAt >= :since",
            "FilterExpression": (
                "#status = :status AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)"
            ),
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":flow": flow,
                ":since": since.isoformat(timespec="milliseconds"),
                ":status": status.value,
                ":now": epoch,
            },
        }
        while True:
            page = self._table.query(**kwargs)
            for item in page.get("Items", []):
                yield Entry.model_validate(_plain(item))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def held_elsewhere(self, entry: Entry, owner: str) -> bool:
        """Whether a claim by ``owner`` would fail now: another run holds ``entry``'s lease.

        The claims' own condition, evaluated without writing (dry runs).
        """
        epoch, _ = self._now()
        return (
            entry.lease_owner is not None
            and entry.lease_owner != owner
            and (entry.lease_until or 0) >= epoch
        )

    def entries(self, flow: str | None = None) -> Iterator[Entry]:
        """Every entry (of one flow, newest first, if given)."""
        if flow is not None:
            kwargs: dict[str, Any] = {
                "IndexName": "byFlow",
                "KeyConditionExpression": "flow = :flow",
                "ExpressionAttributeValues": {":flow": flow},
                "ScanIndexForward": False,
            }
            while True:
                page = self._table.query(**kwargs)
                for item in page.get("Items", []):
                    yield Entry.model_validate(_plain(item))
                if "LastEvaluatedKey" not in page:
                    return
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        scan: dict[str, Any] = {}
        while True:
            page = self._table.scan(**scan)
            for item in page.get("Items", []):
                yield Entry.model_validate(_plain(item))
            if "LastEvaluatedKey" not in page:
                return
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]
