"""File drop -> beqom Pay Suite: one document import per worker document, through a queue.

Drop layout in the drop bucket:

- ``beqom/<communicationRoundCode>/<workerExternalId>/<file>``: one worker document. Its
  ``generationTime`` is the object's ``generation-time`` metadata (``x-amz-meta-generation-time``,
  ISO 8601) when set, else the time it was dropped (at least five minutes ago: beqom wants a
  past date, and clocks differ).
- ``beqom/_manifests/<batch>/manifest.csv`` (for mass imports, written last): a CSV with the
  columns ``file,workerExternalId,communicationRoundCode[,generationTime]``; ``file`` is a path
  inside ``beqom/_manifests/<batch>/``. The other files of that folder trigger nothing.

S3 sends each new object's event to the import queue; the queue's batch handler calls
:func:`import_message` for each record. A manifest becomes one queue message per document, so a
mass import is spread over many small batches with bounded concurrency. For each document:

1. claim it in the ledger under its business key ``<round>/<worker>/<file name>``;
2. skip it if beqom already holds this very file (same S3 ETag): a repeated event or drop;
3. read it and check what can be checked here (empty file, size, future generation time);
4. import it into beqom (one multipart call) and record ``documentId``, ``overridden`` and
   ``importTime``.

A rejection (unknown worker, closed round, wrong file type...) is recorded against that document
alone. A transient failure raises, so the record is reported as failed and SQS delivers it again
(after ``maxReceiveCount`` deliveries, to the dead-letter queue). Importing again after an
unknown outcome is safe: beqom overwrites a document with the same file name and says so with
``overridden: true``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from erphub.clients.beqom import BeqomPort, ImportedDocument, WorkerDocument
from erphub.clients.drops import DropFiles, DropObject, WorkQueue
from erphub.clients.http import utc_now
from erphub.errors import BadInputError, ConfigurationError, LeaseLostError, TransientError
from erphub.faults import checkpoint
from erphub.ledger import Entry, Ledger, Status
from erphub.models import CamelModel
from erphub.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from collections.abc import Iterator

FLOW = "beqom-import"
MANIFEST_FLOW = "beqom-manifest"
PREFIX = "beqom/"
MANIFESTS = "_manifests"
MANIFEST_NAME = "manifest.csv"
TASK_KIND: Final = "beqom-document"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_MANIFEST_BYTES = 10 * 1024 * 1024
GENERATION_TIME_METADATA = "generation-time"
DROP_TIME_MARGIN = timedelta(minutes=5)
_MANIFEST_COLUMNS = ("file", "workerExternalId", "communicationRoundCode")

OutcomeKind = Literal["imported", "duplicate", "failed", "queued", "ignored"]


class DocumentBusyError(TransientError):
    """Another delivery holds the document right now; this record is retried later."""


def correlation_id(business_key: str) -> str:
    """The id that follows one document through every log line."""
    return f"beqom:{business_key}"


# --- what a queue record carries ----------------------------------------------------------------


class DocumentTask(CamelModel):
    """One worker document to import: the queue message a manifest row becomes."""

    kind: Literal["beqom-document"] = TASK_KIND
    communication_round_code: str
    worker_external_id: str
    file_name: str
    source: DropObject
    generation_time: datetime | None = None
    manifest: str | None = None

    @property
    def business_key(self) -> str:
        """``<round>/<worker>/<file name>``."""
        return f"{self.communication_round_code}/{self.worker_external_id}/{self.file_name}"


class ImportOutcome(CamelModel):
    """What happened to one document (or manifest) of a queue record."""

    key: str
    outcome: OutcomeKind
    document_id: str | None = None
    overridden: bool | None = None
    reasons: list[str] = Field(default_factory=list)


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    key: str
    size: int | None = None
    e_tag: str | None = Field(default=None, alias="eTag")
    version_id: str | None = Field(default=None, alias="versionId")


class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    bucket: _S3Bucket
    object: _S3Object


class _S3Record(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event_name: str = Field(alias="eventName")
    event_time: datetime | None = Field(default=None, alias="eventTime")
    s3: _S3Entity


class _S3Event(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    records: list[_S3Record] = Field(alias="Records")


def dropped_objects(body: str) -> list[DropObject] | DocumentTask:
    """The objects an S3 event names (none for S3's test event), or a manifest's task.

    Raises :class:`BadInputError` for a message that is neither: it fails, and after its
    retries it lands in the dead-letter queue, where an operator sees it.
    """
    try:
        message = json.loads(body)
    except ValueError as error:
        msg = f"the message is not JSON: {error}"
        raise BadInputError(msg) from None
    if not isinstance(message, dict):
        msg = "the message is not a JSON object"
        raise BadInputError(msg)
    if message.get("Event") == "s3:TestEvent":
        return []
    try:
        if message.get("kind") == TASK_KIND:
            return DocumentTask.model_validate(message)
        event = _S3Event.model_validate(message)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        msg = f"unreadable message: {problems}"
        raise BadInputError(msg) from None
    return [
        DropObject(
            bucket=record.s3.bucket.name,
            # AWS form-encodes the key in events (moto percent-encodes): unquote_plus reads both.
            key=unquote_plus(record.s3.object.key),
            version_id=record.s3.object.version_id,
            etag=record.s3.object.e_tag,
            size=record.s3.object.size,
            event_time=record.event_time,
        )
        for record in event.records
        if record.event_name.startswith("ObjectCreated")
    ]


# --- dependencies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportDeps:
    """What the import consumer works with."""

    beqom: BeqomPort
    ledger: Ledger
    drops: DropFiles
    queue: WorkQueue
    lease_seconds: int
    clock: Callable[[], datetime] = field(default=utc_now)


# --- the queue record -----------------------------------------------------------------------------


def import_message(body: str, run_id: str, deps: ImportDeps) -> list[ImportOutcome]:
    """Handle one queue record: an S3 event (documents or a manifest) or a manifest's task.

    Raises :class:`TransientError` (or :class:`ConfigurationError`) when the record must be
    delivered again; everything about a bad document is recorded in the ledger instead.
    """
    found = dropped_objects(body)
    if isinstance(found, DocumentTask):
        return [import_document(found, run_id, deps)]
    return [_dropped(obj, run_id, deps) for obj in found]


def _dropped(obj: DropObject, run_id: str, deps: ImportDeps) -> ImportOutcome:
    parts = obj.key.split("/")
    if not obj.key.startswith(PREFIX) or obj.key.endswith("/"):
        logger.info("not a beqom document, ignored", extra={"key": obj.key})
        return ImportOutcome(key=obj.key, outcome="ignored")
    if parts[1] == MANIFESTS:
        if len(parts) == 4 and parts[3] == MANIFEST_NAME:
            return expand_manifest(obj, run_id, deps)
        return ImportOutcome(key=obj.key, outcome="ignored")  # a file a manifest will name
    if len(parts) != 4:
        reason = (
            f"{obj.key}: a beqom document goes to "
            "beqom/<communicationRoundCode>/<workerExternalId>/<file>"
        )
        return _fail_unplaced(obj, run_id, deps, reason)
    task = DocumentTask(
        communication_round_code=parts[1],
        worker_external_id=parts[2],
        file_name=parts[3],
        source=obj,
    )
    return import_document(task, run_id, deps)


def _fail_unplaced(obj: DropObject, run_id: str, deps: ImportDeps, reason: str) -> ImportOutcome:
    """Record a file that names no document (wrong layout) against its key."""
    key = obj.key.removeprefix(PREFIX)
    if deps.ledger.claim(FLOW, key, owner=run_id, lease_seconds=deps.lease_seconds) is None:
        raise DocumentBusyError(key)
    deps.ledger.record(
        FLOW,
        key,
        owner=run_id,
        status=Status.FAILED,
        reasons=[reason],
        last_error=reason,
        release=True,
        attributes=_source_attributes(obj),
        detail="not in the drop layout",
    )
    metrics.add_metric(name="BeqomFailed", unit=MetricUnit.Count, value=1)
    logger.warning("dropped file not in the layout", extra={"key": obj.key})
    return ImportOutcome(key=key, outcome="failed", reasons=[reason])


def _source_attributes(obj: DropObject, etag: str | None = None) -> dict[str, str]:
    attributes = {"bucket": obj.bucket, "key": obj.key}
    if obj.version_id:
        attributes["versionId"] = obj.version_id
    if etag or obj.etag:
        attributes["etag"] = str(etag or obj.etag)
    return attributes


# --- one document ---------------------------------------------------------------------------------


class _Rejected(Exception):
    """The document cannot be imported; the reasons are recorded against it."""

    def __init__(self, reasons: list[str], detail: str) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.detail = detail


def import_document(task: DocumentTask, run_id: str, deps: ImportDeps) -> ImportOutcome:
    """Import one worker document into beqom, at most once per version of its file."""
    key = task.business_key
    with logger.append_context_keys(correlation_id=correlation_id(key)):
        entry = deps.ledger.claim(FLOW, key, owner=run_id, lease_seconds=deps.lease_seconds)
        if entry is None:
            logger.info("document held by another delivery, retrying later")
            raise DocumentBusyError(f"{key} is being imported by another delivery")
        try:
            return _import_claimed(task, entry, run_id, deps)
        except LeaseLostError as error:
            raise DocumentBusyError(str(error)) from error
        except _Rejected as rejected:
            deps.ledger.record(
                FLOW,
                key,
                owner=run_id,
                status=Status.FAILED,
                reasons=rejected.reasons,
                last_error="; ".join(rejected.reasons),
                release=True,
                attributes=_source_attributes(task.source),
                detail=rejected.detail,
            )
            metrics.add_metric(name="BeqomFailed", unit=MetricUnit.Count, value=1)
            logger.warning("document rejected", extra={"reasons": rejected.reasons})
            return ImportOutcome(key=key, outcome="failed", reasons=rejected.reasons)
        except (TransientError, ConfigurationError) as error:
            _defer(deps.ledger, key, run_id, str(error))
            raise


def _import_claimed(
    task: DocumentTask, entry: Entry, run_id: str, deps: ImportDeps
) -> ImportOutcome:
    key, ledger = task.business_key, deps.ledger
    try:
        etag = task.source.etag or deps.drops.etag(task.source)
    except BadInputError as error:
        raise _Rejected([str(error)], "cannot read the file") from error
    if entry.status is Status.IMPORTED and entry.attributes.get("etag") == etag:
        ledger.record(
            FLOW,
            key,
            owner=run_id,
            status=Status.IMPORTED,
            release=True,
            detail=f"dropped again unchanged; beqom holds it as {entry.external_id}",
        )
        metrics.add_metric(name="BeqomDuplicate", unit=MetricUnit.Count, value=1)
        logger.info("already imported, skipped", extra={"document_id": entry.external_id})
        return ImportOutcome(key=key, outcome="duplicate", document_id=entry.external_id)

    document, content = _prepare(task, deps)
    unknown_outcome = entry.status is Status.PUSHING
    ledger.record(
        FLOW,
        key,
        owner=run_id,
        status=Status.PUSHING,
        count_attempt=True,
        attributes=_source_attributes(task.source, etag),
        detail=f"import {len(content)} bytes"
        + (" again: the last attempt's outcome is unknown" if unknown_outcome else ""),
    )
    checkpoint("beqom.before_import")
    result = deps.beqom.import_document(document, content)
    checkpoint("beqom.after_import")
    if not isinstance(result, ImportedDocument):
        reasons = [f"beqom rejected the document: {reason}" for reason in result.reasons]
        raise _Rejected(reasons, f"beqom answered HTTP {result.status}")
    ledger.record(
        FLOW,
        key,
        owner=run_id,
        status=Status.IMPORTED,
        external_id=result.document_id,
        release=True,
        attributes={
            **_source_attributes(task.source, etag),
            "documentId": result.document_id,
            "overridden": "true" if result.overridden else "false",
            "importTime": result.import_time,
            "generationTime": document.generation_time.isoformat(),
        },
        detail=_imported_detail(result, entry, unknown_outcome),
    )
    metrics.add_metric(name="BeqomImported", unit=MetricUnit.Count, value=1)
    if result.overridden:
        metrics.add_metric(name="BeqomOverridden", unit=MetricUnit.Count, value=1)
    logger.info(
        "document imported",
        extra={"document_id": result.document_id, "overridden": result.overridden},
    )
    return ImportOutcome(
        key=key, outcome="imported", document_id=result.document_id, overridden=result.overridden
    )


def _imported_detail(result: ImportedDocument, entry: Entry, unknown_outcome: bool) -> str:
    if not result.overridden:
        return f"beqom created {result.document_id}"
    if unknown_outcome:
        why = "beqom already held it: the last attempt had reached it"
    elif entry.status is Status.IMPORTED:
        why = "a changed file replaced the document in beqom"
    else:
        why = "replaced a document with the same name in beqom"
    return f"{why} (overridden=true); {result.document_id}"


def _prepare(task: DocumentTask, deps: ImportDeps) -> tuple[WorkerDocument, bytes]:
    """Read the file and build the document; :class:`_Rejected` for what beqom would refuse."""
    try:
        dropped = deps.drops.read(task.source, MAX_FILE_BYTES)
    except BadInputError as error:
        raise _Rejected([str(error)], "cannot read the file") from error
    generated = task.generation_time
    if generated is None and GENERATION_TIME_METADATA in dropped.metadata:
        generated = _parse_time(
            dropped.metadata[GENERATION_TIME_METADATA],
            f"x-amz-meta-{GENERATION_TIME_METADATA}",
        )
    if generated is None:
        # The file was generated before it was dropped; keeping clear of "now" means a clock
        # slightly behind ours (beqom's or the Lambda's) cannot take it for a future date.
        dropped_at = _aware(task.source.event_time or dropped.last_modified or deps.clock())
        generated = min(dropped_at, deps.clock() - DROP_TIME_MARGIN)
    generated = _aware(generated)
    problems = []
    if not dropped.content:
        problems.append(f"{task.file_name}: the file is empty")
    if generated > deps.clock():
        problems.append(
            f"generationTime {generated.isoformat()} is in the future; "
            "beqom imports past dates only"
        )
    try:
        document = WorkerDocument(
            communication_round_code=task.communication_round_code,
            worker_external_id=task.worker_external_id,
            file_name=task.file_name,
            generation_time=generated,
        )
    except ValidationError as error:
        problems += [f"{e['loc'][0]}: {e['msg']}" for e in error.errors() if e["loc"]]
    if problems:
        raise _Rejected(problems, "not importable")
    return document, dropped.content


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f"{name} {value!r} is not an ISO 8601 date"
        raise _Rejected([msg], "bad generation time") from None
    if parsed.tzinfo is None:
        msg = f"{name} {value!r} has no time zone"
        raise _Rejected([msg], "bad generation time")
    return parsed


def _defer(ledger: Ledger, key: str, run_id: str, error: str) -> None:
    """Leave the document for the next delivery, keeping PUSHING if an import may have happened."""
    entry = ledger.get(FLOW, key)
    status = (
        Status.PUSHING if entry is not None and entry.status is Status.PUSHING else Status.DEFERRED
    )
    try:
        ledger.record(
            FLOW,
            key,
            owner=run_id,
            status=status,
            last_error=error,
            release=True,
            detail=f"will be delivered again: {error}",
        )
    except LeaseLostError:
        logger.warning("lease lost while deferring", extra={"error": error})
    metrics.add_metric(name="BeqomDeferred", unit=MetricUnit.Count, value=1)
    logger.warning("import deferred", extra={"error": error})


# --- manifests ------------------------------------------------------------------------------------


def expand_manifest(obj: DropObject, run_id: str, deps: ImportDeps) -> ImportOutcome:
    """Turn a manifest into one queue message per document (once per version of the manifest)."""
    key, ledger = obj.key, deps.ledger
    with logger.append_context_keys(correlation_id=f"beqom-manifest:{key}"):
        entry = ledger.claim(MANIFEST_FLOW, key, owner=run_id, lease_seconds=deps.lease_seconds)
        if entry is None:
            raise DocumentBusyError(f"manifest {key} is being expanded by another delivery")
        etag = obj.etag or deps.drops.etag(obj)
        if entry.status is Status.IMPORTED and entry.attributes.get("etag") == etag:
            ledger.record(
                MANIFEST_FLOW,
                key,
                owner=run_id,
                status=Status.IMPORTED,
                release=True,
                detail="dropped again unchanged; its documents were queued before",
            )
            return ImportOutcome(key=key, outcome="duplicate")
        try:
            tasks, problems = _read_manifest(obj, deps)
        except _Rejected as rejected:
            ledger.record(
                MANIFEST_FLOW,
                key,
                owner=run_id,
                status=Status.FAILED,
                reasons=rejected.reasons,
                last_error="; ".join(rejected.reasons),
                release=True,
                attributes=_source_attributes(obj, etag),
                detail=rejected.detail,
            )
            metrics.add_metric(name="BeqomFailed", unit=MetricUnit.Count, value=1)
            return ImportOutcome(key=key, outcome="failed", reasons=rejected.reasons)
        try:
            sent = deps.queue.send([task.dump() for task in tasks])
        except TransientError as error:
            _defer_manifest(ledger, key, run_id, str(error))
            raise
        checkpoint("beqom.after_manifest_queued")
        ledger.record(
            MANIFEST_FLOW,
            key,
            owner=run_id,
            status=Status.FAILED if problems and not tasks else Status.IMPORTED,
            reasons=problems,
            last_error="; ".join(problems) if problems else None,
            release=True,
            attributes={**_source_attributes(obj, etag), "queued": str(sent)},
            detail=f"queued {sent} documents; {len(problems)} rows rejected",
        )
        metrics.add_metric(name="BeqomQueued", unit=MetricUnit.Count, value=sent)
        logger.info("manifest expanded", extra={"queued": sent, "rejected_rows": len(problems)})
        return ImportOutcome(key=key, outcome="queued", reasons=problems)


def _defer_manifest(ledger: Ledger, key: str, run_id: str, error: str) -> None:
    try:
        ledger.record(
            MANIFEST_FLOW,
            key,
            owner=run_id,
            status=Status.DEFERRED,
            last_error=error,
            release=True,
            detail=f"will be delivered again: {error}",
        )
    except LeaseLostError:
        logger.warning("lease lost while deferring the manifest", extra={"error": error})


def _read_manifest(obj: DropObject, deps: ImportDeps) -> tuple[list[DocumentTask], list[str]]:
    try:
        dropped = deps.drops.read(obj, MAX_MANIFEST_BYTES)
    except BadInputError as error:
        raise _Rejected([str(error)], "cannot read the manifest") from error
    try:
        text = dropped.content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        msg = f"{obj.key}: not UTF-8 (byte {error.start})"
        raise _Rejected([msg], "unreadable manifest") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in _MANIFEST_COLUMNS if c not in columns]
    if missing:
        msg = f"{obj.key}: missing column(s) {', '.join(missing)} (header: {','.join(columns)})"
        raise _Rejected([msg], "unreadable manifest")
    reader.fieldnames = columns
    folder = obj.key.rsplit("/", 1)[0]
    tasks: list[DocumentTask] = []
    problems: list[str] = []
    seen: set[str] = set()
    for line, row in _rows(reader):
        try:
            task = _manifest_task(row, folder, obj, line)
        except _Rejected as rejected:
            problems += rejected.reasons
            continue
        if task.business_key in seen:
            problems.append(f"line {line}: {task.business_key} is named twice")
            continue
        seen.add(task.business_key)
        tasks.append(task)
    return tasks, problems


def _rows(reader: csv.DictReader[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        for row in reader:
            if any((value or "").strip() for value in row.values() if isinstance(value, str)):
                yield reader.line_num, row
    except csv.Error as error:
        msg = f"line {reader.line_num}: {error}"
        raise _Rejected([msg], "unreadable manifest") from None


def _manifest_task(row: dict[str, Any], folder: str, obj: DropObject, line: int) -> DocumentTask:
    values = {k: str(v or "").strip() for k, v in row.items() if isinstance(k, str)}
    empty = [c for c in _MANIFEST_COLUMNS if not values.get(c)]
    if empty:
        raise _Rejected([f"line {line}: {', '.join(empty)} empty"], "bad row")
    path = PurePosixPath(values["file"])
    if path.is_absolute() or ".." in path.parts:
        msg = f"line {line}: file {values['file']!r} must be a path inside {folder}/"
        raise _Rejected([msg], "bad row")
    generated = None
    if values.get("generationTime"):
        try:
            generated = _parse_time(values["generationTime"], "generationTime")
        except _Rejected as rejected:
            raise _Rejected([f"line {line}: {r}" for r in rejected.reasons], "bad row") from None
    return DocumentTask(
        communication_round_code=values["communicationRoundCode"],
        worker_external_id=values["workerExternalId"],
        file_name=path.name,
        source=DropObject(
            bucket=obj.bucket, key=f"{folder}/{path.as_posix()}", event_time=obj.event_time
        ),
        generation_time=generated,
        manifest=obj.key,
    )
