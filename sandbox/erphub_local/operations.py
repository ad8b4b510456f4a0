"""What operators ask of a running hub: what happened to this document, and run it again safely.

Everything here reads the ledger (the ``erphub.ledger`` API, the only code speaking DynamoDB) and
the stack's own resources, found by their template logical ids, on a local stack or in AWS:

- :class:`Target` is one deployed hub: its ledger, its resources, its parameters;
- :func:`find` looks a document up by ``flow#id``, by id across the flows, or by a fragment;
- :func:`advise` says why a document is where it is, where that shows, and how to fix it;
- :func:`describe` renders all of it for ``erphub show``;
- :func:`replay` re-runs one document through its flow's own run (``erphub replay``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.exceptions import ClientError

from erphub.errors import LeaseLostError
from erphub.flows.beqom_import import MANIFEST_FLOW, DocumentTask
from erphub.flows.ebill_upload import MAX_UPLOAD_ATTEMPTS, DropRef, execution_name
from erphub.flows.rossum_finalize import rejection_message
from erphub.ledger import Entry, Ledger, Status

if TYPE_CHECKING:
    from collections.abc import Iterable

    from erphub_local.aws.stack import LocalStack

ROSSUM: Final = "rossum-export"
PROCUROS: Final = "procuros-send"
EBILL: Final = "ebill-upload"
BEQOM: Final = "beqom-import"
#: every flow that writes to the ledger, in the order operators read them
FLOWS: Final = (ROSSUM, PROCUROS, EBILL, BEQOM, MANIFEST_FLOW)
#: the state machine of each flow that has one (template logical ids)
STATE_MACHINES: Final = {
    ROSSUM: "RossumExportStateMachine",
    PROCUROS: "ProcurosSendStateMachine",
    EBILL: "EbillUploadStateMachine",
}
BEQOM_QUEUE: Final = "BeqomImportQueue"
BEQOM_DEAD_LETTERS: Final = "erphub-{stage}-beqom-import-dlq"

DONE: Final = frozenset({Status.EXPORTED, Status.IMPORTED})
#: the target system refused it (or part of it: an eBill Partial Success)
REJECTED: Final = frozenset(
    {
        Status.FAILED_EXPORT,
        Status.AWAITING_CORRECTION,
        Status.KEPT_CONFIRMED,
        Status.REJECTED,
        Status.PARTIAL,
    }
)
FAILED: Final = frozenset({Status.FAILED, Status.NOT_CONFIRMED})
IN_PROGRESS: Final = frozenset(
    {Status.CLAIMED, Status.PUSHING, Status.PUSHED, Status.DEFERRED, Status.SUBMITTED}
)


def category(status: Status) -> str:
    """``done``, ``rejected``, ``failed``, ``in progress`` or ``closed`` (superseded parts)."""
    if status in DONE:
        return "done"
    if status in REJECTED:
        return "rejected"
    if status in FAILED:
        return "failed"
    if status in IN_PROGRESS:
        return "in progress"
    return "closed"


def is_document(entry: Entry) -> bool:
    """Whether an entry is a business document (not an eBill file or row, nor a manifest)."""
    if entry.flow == EBILL:
        return entry.document_id.startswith("s3://")
    return entry.flow in (ROSSUM, PROCUROS, BEQOM)


def _now() -> datetime:
    return datetime.now(UTC)


# --- the hub operators talk to -------------------------------------------------------------------


@dataclass
class Target:
    """One deployed hub (local or in AWS): its ledger, resources and parameters."""

    ledger: Ledger
    label: str
    #: template logical id -> physical id (table name, state machine ARN, queue URL, ...)
    physical: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)
    clients: Callable[[str], Any] | None = None

    def client(self, service: str) -> Any:
        """A boto3 client of this hub's account (or local stack)."""
        if self.clients is None:
            msg = f"{self.label}: only the ledger is known; pass --stack (or --endpoint)"
            raise LookupError(msg)
        return self.clients(service)

    def resource(self, logical_id: str) -> str:
        """The physical id of one of the stack's resources."""
        if logical_id not in self.physical:
            msg = f"{self.label} has no resource {logical_id}; pass --stack (or --endpoint)"
            raise LookupError(msg)
        return self.physical[logical_id]

    @classmethod
    def from_local(cls, local: LocalStack) -> Target:
        """A local stack, started in this process or attached to (``erphub local up``)."""
        try:
            endpoint: str | None = local.endpoint_url
        except RuntimeError:  # in-process: boto3 is mocked, no endpoint
            endpoint = None
        stack = local.stack
        # A local stack accepts any credentials; never send real ones to it.
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            region_name=stack.region,
        )
        table = session.resource("dynamodb", endpoint_url=endpoint).Table(
            stack.physical("LedgerTable")
        )
        parameters = {
            k: v if isinstance(v, str) else ",".join(v) for k, v in stack.parameters.items()
        }
        return cls(
            ledger=Ledger(table),
            label=f"local stack {endpoint or '(in process)'}",
            physical={**stack.physical_ids, **stack.state_machines},
            parameters=parameters,
            clients=local.client,
        )

    @classmethod
    def from_aws(cls, stack_name: str, session: boto3.Session | None = None) -> Target:
        """A stack deployed with ``sam deploy``, read with the usual AWS credentials."""
        session = session or boto3.Session()
        cloudformation = session.client("cloudformation")
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as error:
            raise LookupError(f"stack {stack_name}: {error}") from None
        parameters = {
            p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", ""))
            for p in stacks[0].get("Parameters", [])
        }
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for page in cloudformation.get_paginator("list_stack_resources").paginate(
                StackName=stack_name
            )
            for r in page["StackResourceSummaries"]
            if "PhysicalResourceId" in r
        }
        if "LedgerTable" not in physical:
            raise LookupError(f"stack {stack_name} has no LedgerTable: is it an erphub stack?")
        table = session.resource("dynamodb").Table(physical["LedgerTable"])
        return cls(
            ledger=Ledger(table),
            label=f"stack {stack_name} ({session.region_name})",
            physical=physical,
            parameters=parameters,
            clients=_clients(session),
        )

    @classmethod
    def from_table(cls, table_name: str, session: boto3.Session | None = None) -> Target:
        """Only a ledger table (``show`` and ``report`` work; ``replay`` needs the stack)."""
        session = session or boto3.Session()
        return cls(
            ledger=Ledger(session.resource("dynamodb").Table(table_name)),
            label=f"table {table_name}",
            clients=_clients(session),
        )


def _clients(session: boto3.Session) -> Callable[[str], Any]:
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = session.client(service)  # type: ignore[call-overload]
        return cache[service]

    return client


def connect(
    *,
    endpoint: str | None,
    stack: str | None,
    table: str | None,
    attach: Callable[[str], LocalStack],
) -> Target:
    """The hub the CLI options name: a local stack, a deployed stack, or a bare ledger table."""
    if endpoint:
        return Target.from_local(attach(endpoint))
    if stack:
        return Target.from_aws(stack)
    if table:
        return Target.from_table(table)
    msg = (
        "which hub? pass --stack NAME (or ERPHUB_STACK) for AWS, --endpoint URL for a local"
        " stack (`erphub local up`), or --table NAME for a ledger table alone"
    )
    raise LookupError(msg)


# --- finding a document --------------------------------------------------------------------------


def find(ledger: Ledger, reference: str) -> list[Entry]:
    """The entries ``reference`` names, best match first.

    ``flow#id`` names one document; a bare id is looked up in every flow; otherwise every entry
    whose id, external id or dropped S3 key contains ``reference`` matches (a scan of the ledger).
    """
    flow, separator, rest = reference.partition("#")
    if separator and flow in FLOWS:
        entry = ledger.get(flow, rest)
        return [entry] if entry else []
    exact = [entry for f in FLOWS if (entry := ledger.get(f, reference)) is not None]
    if exact:
        return exact
    matches = [
        entry
        for entry in ledger.entries()
        if reference in entry.document_id
        or reference == entry.external_id
        or reference == entry.attributes.get("key")
    ]
    matches.sort(key=lambda e: e.updated_at, reverse=True)
    return sorted(matches, key=lambda e: not is_document(e))  # documents first, newest first


def related(ledger: Ledger, entry: Entry) -> list[Entry]:
    """The entries one eBill drop is made of (its files, its failed rows), or the drop of a part."""
    if entry.flow != EBILL:
        return []
    if is_document(entry):
        parts = [e for e in ledger.entries(EBILL) if e.attributes.get("drop") == entry.document_id]
        return sorted(parts, key=lambda e: (e.document_id.count("#"), e.document_id))
    drop = entry.attributes.get("drop")
    found = ledger.get(EBILL, drop) if drop else None
    return [found] if found else []


# --- why, where, how to fix ----------------------------------------------------------------------


@dataclass(frozen=True)
class Advice:
    """What an operator needs to know about one document."""

    state: str
    why: list[str]
    where: list[str]
    fix: str


def _reasons(entry: Entry) -> list[str]:
    return list(entry.reasons) or ([entry.last_error] if entry.last_error else [])


def rossum_ui_link(base_url: str | None, annotation_id: str) -> str | None:
    """The annotation in the Rossum app (the API base URL without ``/api``)."""
    if not base_url or not base_url.rstrip("/").endswith("/api"):
        return None
    return f"{base_url.rstrip('/').removesuffix('/api')}/document/{annotation_id}"


def _lease(entry: Entry, now: datetime) -> str | None:
    if entry.lease_owner and entry.lease_until and entry.lease_until > now.timestamp():
        until = datetime.fromtimestamp(entry.lease_until, UTC).isoformat(timespec="seconds")
        return f"run {entry.lease_owner} holds it until {until}"
    return None


def advise(entry: Entry, parameters: Mapping[str, str], now: datetime | None = None) -> Advice:
    """Why ``entry`` is where it is, where an operator sees it, and how to fix it."""
    advisers: dict[str, Callable[[Entry, Mapping[str, str]], Advice]] = {
        ROSSUM: _rossum,
        PROCUROS: _procuros,
        EBILL: _ebill,
        BEQOM: _beqom,
        MANIFEST_FLOW: _beqom_manifest,
    }
    advice = advisers.get(entry.flow, _generic)(entry, parameters)
    held = _lease(entry, now or _now())
    if held and entry.status in IN_PROGRESS:
        return Advice(
            state=f"{advice.state}; {held}",
            why=advice.why,
            where=advice.where,
            fix=f"Wait for that run to finish. {advice.fix}",
        )
    return advice


def _generic(entry: Entry, _parameters: Mapping[str, str]) -> Advice:
    return Advice(
        state=f"{category(entry.status)} ({entry.status.value})",
        why=_reasons(entry),
        where=["the ledger"],
        fix="See the history below.",
    )


def _rossum(entry: Entry, parameters: Mapping[str, str]) -> Advice:
    annotation = entry.document_id
    queue = entry.attributes.get("queueId", "?")
    link = rossum_ui_link(parameters.get("RossumBaseUrl"), annotation)
    in_rossum = f"Rossum: annotation {annotation} in queue {queue}" + (f" ({link})" if link else "")
    erp = f"the ERP: invoice {entry.external_id} (external reference rossum:{annotation})"
    reasons = _reasons(entry)
    unreadable = any(r.startswith("cannot read the invoice") for r in reasons)
    what = (
        "correct the fields named above"
        if unreadable
        else "correct it (or the ERP's master data it refers to, e.g. the supplier)"
    )
    status = entry.status
    if status is Status.EXPORTED:
        return Advice("done: in the ERP and exported in Rossum", [], [erp, in_rossum], "Nothing.")
    if status is Status.FAILED_EXPORT:
        return Advice(
            "rejected: failed_export in Rossum",
            reasons,
            [
                f"{in_rossum}: status failed_export, a red icon on the Exported tab, with the"
                f" message {rejection_message(reasons)!r}"
            ],
            "Fix the invoice in Rossum and confirm it again; the next run exports it: on the"
            " Exported tab, move it back to review (the circle-with-arrow icon), "
            f"{what}, and confirm it.",
        )
    if status is Status.KEPT_CONFIRMED:
        attempts = parameters.get("RejectAttempts", "RejectAttempts")
        return Advice(
            f"rejected {entry.attempts} time(s), kept confirmed for another attempt",
            reasons,
            [f"{in_rossum}: still in the Confirmed tab", "the ledger (this record)"],
            f"Fix it while it is confirmed: {what}. Every run tries it again, and after"
            f" {attempts} rejections it goes to failed_export.",
        )
    if status is Status.REJECTED:
        return Advice(
            "rejected by the ERP, but Rossum refused the switch to failed_export",
            reasons,
            ["the ledger only: Rossum does not show the rejection", in_rossum],
            "Look at the annotation in Rossum: while it is confirmed, every run tries it again;"
            f" {what}.",
        )
    if status is Status.NOT_CONFIRMED:
        return Advice(
            "in the ERP, but no longer confirmed in Rossum",
            reasons,
            [erp, in_rossum],
            "Someone moved the annotation out of the Confirmed tab after the ERP booked it. It is"
            " in the ERP: in Rossum, move it to Exported (do not confirm it again).",
        )
    return _pending(
        entry,
        "the next run looks it up in the ERP by its external reference before sending it again",
    )


def _pending(entry: Entry, then: str) -> Advice:
    reasons = _reasons(entry)
    return Advice(
        f"in progress ({entry.status.value})",
        reasons,
        ["the ledger (this record)"],
        f"Nothing to do: {then}. If it stays here, `erphub replay` runs it now.",
    )


def _procuros(entry: Entry, parameters: Mapping[str, str]) -> Advice:
    document = entry.document_id
    reasons = _reasons(entry)
    error_url = entry.attributes.get("errorUrl")
    reported = entry.attributes.get("errorReportedAt")
    report_url = entry.attributes.get("errorReportUrl")
    status = entry.status
    if status is Status.EXPORTED:
        outcome = entry.attributes.get("procurosStatus", "TRANSMITTED")
        return Advice(
            f"done: {outcome}",
            [],
            [
                f"Procuros: transaction {entry.external_id or '(id not known)'}",
                f"the ERP: outgoing document {document}, Procuros status {outcome}",
            ],
            "Nothing.",
        )
    if status is Status.PUSHED:
        return Advice(
            "in Procuros; the ERP's status update is outstanding",
            reasons,
            [
                f"Procuros: transaction {entry.external_id or '(id not known)'}",
                f"the ERP: outgoing document {document} (Procuros status still empty)",
            ],
            "Procuros holds it: it is never sent again. If the ERP refused the update (see above),"
            " fix that on the ERP side; the next run repeats only the ERP update.",
        )
    if status in (Status.REJECTED, Status.AWAITING_CORRECTION):
        after = parameters.get("ProcurosErrorReportAfter", "ProcurosErrorReportAfter")
        where = [
            f"the ERP: outgoing document {document}, Procuros status empty"
            + (f", Error URL {error_url}" if error_url else "")
        ]
        if reported:
            where.append(
                f"Procuros: error reported at {reported}"
                + (f" ({report_url})" if report_url else "")
            )
        else:
            where.append(f"Procuros: the error is reported after {after} failed attempts")
        unreadable = any(r.startswith("cannot read the ERP document") for r in reasons)
        fix = (
            "Fix the document's fields in the ERP (it does not match the ERP contract);"
            if unreadable
            else "Fix the document in the ERP (the Error URL shows what Procuros refused);"
        )
        return Advice(
            f"refused {entry.attempts} time(s), waiting for a correction",
            reasons,
            where,
            f"{fix} its Procuros status stays empty, so the next run sends it again.",
        )
    return _pending(
        entry, "the next run looks it up in Procuros before sending it again (never twice)"
    )


def _ebill_drop_fix(reasons: list[str]) -> str:
    text = " ".join(reasons)
    if "invalid manifest" in text or "is empty" in text or "does not exist" in text:
        return (
            "Fix the drop: correct the manifest or its files, then write manifest.json again (a"
            " new version is a new batch); if a named file was missing and is now there,"
            " `erphub replay` runs this drop again."
        )
    if "upload attempts failed" in text:
        return "Drop the files again (a new version of the object is a new batch)."
    return (
        "If the cause is gone (eBill was down, a deadline passed), `erphub replay` runs this"
        " drop again: files already in eBill are not uploaded again, a batch is finalized once."
    )


def _ebill(entry: Entry, _parameters: Mapping[str, str]) -> Advice:
    reasons = _reasons(entry)
    status = entry.status
    if not entry.document_id.startswith("s3://"):
        drop = entry.attributes.get("drop", "its drop")
        if "#row-" in entry.document_id:
            column = entry.attributes.get("businessKey")
            file = entry.attributes.get("file", "?")
            row = entry.attributes.get("row", "?")
            return Advice(
                f"{category(status)}: row {row} of {file}",
                reasons,
                [
                    f"eBill's result file {entry.attributes.get('result', '?')} (row {row}"
                    + (f", {column}" if column else "")
                    + ")",
                    f"the drop {drop}",
                ],
                "Correct this row in your source data and drop it again in a new file; the rows"
                " that succeeded are in eBill already.",
            )
        return Advice(
            f"{category(status)}: one file of a batch ({entry.attributes.get('key', '?')})",
            reasons,
            [f"eBill: batch {entry.external_id or '(not created)'}", f"the drop {drop}"],
            f"See the drop: erphub show '{drop}'",
        )
    where = [f"the drop bucket: {entry.document_id}"]
    if entry.external_id:
        where.append(f"eBill: batch {entry.external_id}")
    if status is Status.IMPORTED:
        return Advice("done: eBill processed every row", [], where, "Nothing.")
    if status is Status.PARTIAL:
        return Advice(
            "failed in part: eBill processed the batch with failed rows (Partial Success)",
            reasons,
            [*where, "the alert topic (a mail listing the failed rows)", "the failed rows below"],
            "Correct the failed rows (each one's reason is below) and drop only those rows again"
            " as a new batch; the others are in eBill already.",
        )
    if status is Status.FAILED:
        return Advice(
            "failed",
            reasons,
            [*where, "the alert topic (a mail with the reason)"],
            _ebill_drop_fix(reasons),
        )
    return _pending(entry, "its execution is uploading, finalizing or waiting for eBill")


def _beqom(entry: Entry, parameters: Mapping[str, str]) -> Advice:
    reasons = _reasons(entry)
    key = entry.attributes.get("key", f"beqom/{entry.document_id}")
    where = [f"the drop bucket: {key}"]
    status = entry.status
    if status is Status.IMPORTED:
        overridden = entry.attributes.get("overridden") == "true"
        return Advice(
            "done: in beqom" + (" (it replaced a document of the same name)" if overridden else ""),
            [],
            [f"beqom: document {entry.external_id}", *where],
            "Nothing.",
        )
    if status is Status.FAILED:
        text = " ".join(reasons)
        if "drop layout" in text or "goes to beqom/" in text:
            fix = (
                "Move the file to beqom/<communicationRoundCode>/<workerExternalId>/<file>;"
                " the new object is imported."
            )
        elif "beqom rejected" in text:
            fix = (
                "Fix the cause in beqom (e.g. create the worker, open the round) or correct the"
                " file's path, then `erphub replay` imports it again (beqom overwrites a document"
                " of the same name, so nothing is doubled)."
            )
        else:
            fix = "Correct the file and drop it again under the same key."
        stage = parameters.get("Stage", "<stage>")
        return Advice(
            "failed",
            reasons,
            [*where, f"the alarm erphub-{stage}-beqom-import-failed"],
            fix,
        )
    stage = parameters.get("Stage", "<stage>")
    return _pending(
        entry,
        "SQS delivers it again; after 5 deliveries it waits in the dead-letter queue "
        + BEQOM_DEAD_LETTERS.format(stage=stage),
    )


def _beqom_manifest(entry: Entry, _parameters: Mapping[str, str]) -> Advice:
    reasons = _reasons(entry)
    where = [f"the drop bucket: {entry.document_id}"]
    if entry.status is Status.IMPORTED:
        queued = entry.attributes.get("queued", "?")
        return Advice(
            f"done: {queued} documents queued" + (", some rows rejected" if reasons else ""),
            reasons,
            where,
            "Nothing." if not reasons else "Correct the rejected rows in a new manifest.",
        )
    if entry.status is Status.FAILED:
        return Advice(
            "failed: the manifest could not be read",
            reasons,
            where,
            "Correct the manifest and write it again (a changed manifest is read again).",
        )
    return _pending(entry, "SQS delivers the manifest again")


# --- erphub show ---------------------------------------------------------------------------------


def describe(
    target: Target, entry: Entry, *, others: Iterable[Entry] = (), now: datetime | None = None
) -> str:
    """The full story of one document, as ``erphub show`` prints it."""
    advice = advise(entry, target.parameters, now)
    lines = [
        f"{entry.flow}#{entry.document_id}",
        f"  {'status':<15} {entry.status.value}: {advice.state}",
    ]
    details = [
        ("external id", entry.external_id),
        ("attempts", str(entry.attempts)),
        ("created", entry.created_at),
        ("updated", entry.updated_at),
        ("lease", _lease(entry, now or _now())),
    ]
    lines += [f"  {name:<15} {value}" for name, value in details if value]
    lines += [f"  {name:<15} {value}" for name, value in sorted(entry.attributes.items())]
    lines.append("")
    lines.append("Why")
    lines += [f"  - {reason}" for reason in advice.why] or ["  - (no error recorded)"]
    lines.append("Where")
    lines += [f"  - {place}" for place in advice.where]
    lines.append("How to fix")
    lines.append(f"  {advice.fix}")
    lines.append("")
    lines.append("History")
    lines += [
        f"  {event.at[:23]:<23}  {event.status:<19} run {event.run}"
        + (f"  {event.detail}" if event.detail else "")
        for event in entry.history
    ]
    runs = _runs(target, entry)
    if runs:
        lines.append("")
        lines.append("Runs")
        lines += [f"  {run}" for run in runs]
    parts = related(target.ledger, entry)
    if parts:
        lines.append("")
        lines.append("Related")
        for part in parts:
            reason = _reasons(part)
            lines.append(
                f"  {part.flow}#{part.document_id}  {part.status.value}"
                + (f"  {reason[0][:140]}" if reason else "")
            )
    more = [e for e in others if e is not entry]
    if more:
        lines.append("")
        lines.append("Also matching")
        lines += [f"  {e.flow}#{e.document_id}  {e.status.value}" for e in more[:20]]
    return "\n".join(lines)


def _runs(target: Target, entry: Entry) -> list[str]:
    """The Step Functions executions that touched the document, as they ended (when known)."""
    machine = STATE_MACHINES.get(entry.flow)
    if machine is None or target.clients is None or machine not in target.physical:
        return []
    names = list(dict.fromkeys(event.run for event in entry.history))
    found = []
    for name in names[-10:]:
        execution = _execution(target, entry.flow, name)
        if execution is None:
            continue
        started, stopped = execution.get("startDate"), execution.get("stopDate")
        took = f", {(stopped - started).total_seconds():.1f} s" if started and stopped else ""
        error = (
            f"  {execution.get('error')}: {execution.get('cause', '')[:200]}"
            if execution.get("error")
            else ""
        )
        found.append(f"{name}  {execution['status']}{took}{error}")
    return found


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN of an execution of a state machine."""
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def _execution(target: Target, flow: str, name: str) -> dict[str, Any] | None:
    machine = target.resource(STATE_MACHINES[flow])
    try:
        described = target.client("stepfunctions").describe_execution(
            executionArn=execution_arn(machine, name)
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("ExecutionDoesNotExist", "InvalidArn"):
            return None
        raise
    return dict(described)


# --- erphub replay -------------------------------------------------------------------------------


@dataclass
class Replay:
    """What a replay did (or, with ``dry_run``, would do), or why it refused."""

    document: str
    done: list[str] = field(default_factory=list)
    refused: str | None = None
    notes: list[str] = field(default_factory=list)
    #: (state machine logical id, execution name) of each execution started
    executions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the replay went ahead."""
        return self.refused is None


class _Refused(Exception):
    pass


def _stamp(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def replay(
    target: Target, entry: Entry, *, dry_run: bool = False, now: datetime | None = None
) -> Replay:
    """Run one document again through its flow's own run, where that is safe.

    Nothing is sent from here: the run it starts consults the ledger and reconciles with the
    external system before any create, as a scheduled run does. A lease is released only when
    the run holding it has ended.
    """
    moment = now or _now()
    result = Replay(document=f"{entry.flow}#{entry.document_id}")
    try:
        if entry.status in DONE or entry.status is Status.SUPERSEDED:
            raise _Refused(
                f"it is {entry.status.value}: done, nothing to replay"
                + (
                    " (to import a changed file, drop it again)"
                    if entry.flow in (EBILL, BEQOM)
                    else ""
                )
            )
        if entry.flow == ROSSUM:
            _replay_rossum(target, entry, moment, dry_run, result)
        elif entry.flow == PROCUROS:
            _replay_procuros(target, entry, moment, dry_run, result)
        elif entry.flow == EBILL:
            _replay_ebill(target, entry, moment, dry_run, result)
        elif entry.flow == BEQOM:
            _replay_beqom(target, entry, dry_run, result)
        elif entry.flow == MANIFEST_FLOW:
            _replay_manifest(target, entry, dry_run, result)
        else:
            raise _Refused(f"unknown flow {entry.flow}")
    except _Refused as refused:
        result.refused = str(refused)
    return result


def _free_lease(
    target: Target, entry: Entry, moment: datetime, dry_run: bool, result: Replay
) -> None:
    """Release the lease of a run that has ended; refuse while it is still running."""
    if not (entry.lease_owner and entry.lease_until and entry.lease_until > moment.timestamp()):
        return
    owner = entry.lease_owner
    execution = _execution(target, entry.flow, owner)
    if execution is not None and execution["status"] == "RUNNING":
        raise _Refused(f"run {owner} is working on it right now; let it finish")
    ended = execution["status"] if execution is not None else "no longer listed"
    result.done.append(f"release the lease of run {owner} ({ended})")
    if dry_run:
        return
    try:
        target.ledger.record(
            entry.flow,
            entry.document_id,
            owner=owner,
            status=entry.status,
            release=True,
            detail=f"lease released by erphub replay: run {owner} ended ({ended})",
        )
    except LeaseLostError:
        raise _Refused("another run took it over meanwhile; look again") from None


def _start(
    target: Target,
    machine: str,
    name: str,
    payload: dict[str, Any],
    *,
    dry_run: bool,
    result: Replay,
) -> None:
    result.done.append(f"start execution {name} of {machine} with {json.dumps(payload)}")
    if dry_run:
        return
    target.client("stepfunctions").start_execution(
        stateMachineArn=target.resource(machine), name=name, input=json.dumps(payload)
    )
    result.executions.append((machine, name))


def _replay_rossum(
    target: Target, entry: Entry, moment: datetime, dry_run: bool, result: Replay
) -> None:
    queue = entry.attributes.get("queueId")
    if not queue or not queue.isdigit():
        raise _Refused("the ledger does not say which Rossum queue it is in")
    _free_lease(target, entry, moment, dry_run, result)
    name = f"rossum-{queue}-replay-{_stamp(moment)}"
    _start(
        target,
        STATE_MACHINES[ROSSUM],
        name,
        {"queueId": int(queue)},
        dry_run=dry_run,
        result=result,
    )
    result.notes.append(
        "The export takes what Rossum lists as confirmed in that queue"
        + (
            ": this one is failed_export, so confirm it again in Rossum first."
            if entry.status is Status.FAILED_EXPORT
            else "."
        )
    )


def _replay_procuros(
    target: Target, entry: Entry, moment: datetime, dry_run: bool, result: Replay
) -> None:
    _free_lease(target, entry, moment, dry_run, result)
    name = f"procuros-send-replay-{_stamp(moment)}"
    _start(target, STATE_MACHINES[PROCUROS], name, {}, dry_run=dry_run, result=result)
    result.notes.append(
        "The send takes the ERP's outgoing documents whose Procuros status is empty (and"
        " finishes an ERP update Procuros already accepted)."
    )


def _replay_ebill(
    target: Target, entry: Entry, moment: datetime, dry_run: bool, result: Replay
) -> None:
    if not entry.document_id.startswith("s3://"):
        parent = entry.attributes.get("drop", "its drop")
        raise _Refused(f"this is part of a drop: replay the drop, erphub replay '{parent}'")
    if entry.status is Status.PARTIAL:
        raise _Refused(
            "eBill has processed it (Partial Success): a replay would only read the same"
            " results. Drop the corrected rows as a new batch."
        )
    if entry.attempts >= MAX_UPLOAD_ATTEMPTS and not entry.external_id:
        raise _Refused(
            f"its {MAX_UPLOAD_ATTEMPTS} upload attempts are used up: drop the files again"
            " (a new version of the object is a new batch)"
        )
    bucket = entry.attributes.get("bucket")
    key = entry.attributes.get("key")
    kind = entry.attributes.get("kind")
    version = entry.document_id.rpartition("?versionId=")[2]
    if not (bucket and key and version and kind in ("customers", "invoices")):
        raise _Refused("the ledger does not name the dropped object")
    drop = DropRef(bucket=bucket, key=key, version_id=version, kind=kind)
    _free_lease(target, entry, moment, dry_run, result)
    suffix = f"-replay-{_stamp(moment)}"
    name = execution_name(drop)[: 80 - len(suffix)] + suffix
    _start(
        target, STATE_MACHINES[EBILL], name, {"drop": drop.dump()}, dry_run=dry_run, result=result
    )
    result.notes.append(
        "The execution continues the same batch: files already in eBill are not uploaded again"
        " and the parent batch is finalized at most once."
    )


def _send(target: Target, body: dict[str, Any], dry_run: bool, result: Replay) -> None:
    result.done.append(f"send {json.dumps(body)} to the beqom import queue")
    if dry_run:
        return
    target.client("sqs").send_message(
        QueueUrl=target.resource(BEQOM_QUEUE), MessageBody=json.dumps(body)
    )


def _replay_beqom(target: Target, entry: Entry, dry_run: bool, result: Replay) -> None:
    parts = entry.document_id.split("/")
    bucket, key = entry.attributes.get("bucket"), entry.attributes.get("key")
    if len(parts) != 3 or not bucket or not key:
        raise _Refused(
            "it is not in the drop layout: move the file to"
            " beqom/<communicationRoundCode>/<workerExternalId>/<file>"
        )
    # The current version of the file: an older one must never replace a newer one in beqom.
    task = DocumentTask.model_validate(
        {
            "communicationRoundCode": parts[0],
            "workerExternalId": parts[1],
            "fileName": parts[2],
            "source": {"bucket": bucket, "key": key},
        }
    )
    _send(target, task.dump(), dry_run, result)
    result.notes.append(
        "The import skips a file beqom already holds unchanged, and beqom overwrites a document"
        " of the same name: nothing is doubled."
    )


def _replay_manifest(target: Target, entry: Entry, dry_run: bool, result: Replay) -> None:
    if entry.status is Status.FAILED:
        raise _Refused("the manifest is unreadable: correct it and write it again")
    bucket = entry.attributes.get("bucket")
    if not bucket:
        raise _Refused("the ledger does not name the manifest's bucket")
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": entry.document_id}},
            }
        ]
    }
    _send(target, event, dry_run, result)
