"""Demo section: S3 drop -> eBill batch upload.

Drops a customers file (1,000 rows, a few of them invalid for different reasons) and an invoice
batch (an invoice file, two line-item files and the manifest) into the local drop bucket, lets
the S3 trigger and the state machine do the rest, and checks the outcome in eBill, S3 and the
ledger. Then it delivers every S3 event again, to show that nothing is sent twice.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import boto3
from rich.table import Table

from erphub.flows.ebill_upload import FLOW
from erphub.ledger import Entry, Ledger, Status
from erphub_local.demo import SimulatedSection
from erphub_local.drops import Dropped, drop, wait_for
from erphub_local.simulators.ebill import EbillSimulator

if TYPE_CHECKING:
    from rich.console import Console

    from erphub_local.aws.stack import Execution, LocalStack
    from erphub_local.demo import DemoReport

SECTION = "ebill-upload"
CUSTOMER_COLUMNS = ["Account Number", "Company Name", "Primary Email", "Login", "Password"]
INVOICE_COLUMNS = ["Invoice Number", "Customer Ref", "Invoice Date", "Due Date", "Amount"]
LINE_ITEM_COLUMNS = ["Invoice Number", "Description", "Quantity", "Unit Price"]
# One of each way a customer row can be wrong, in this order.
BAD_CUSTOMER_KINDS = (
    "invalid e-mail",
    "duplicate account number",
    "missing name",
    "weak password",
    "short login",
    "missing account number",
    "missing e-mail",
)


@dataclass(frozen=True)
class CustomersFile:
    """A customers CSV and the rows eBill must reject (row number -> why)."""

    content: bytes
    rows: int
    bad: dict[int, str]


@dataclass(frozen=True)
class InvoiceBatch:
    """An invoice batch's files (name -> content, manifest last) and what must fail."""

    files: dict[str, bytes]
    bad_invoices: dict[int, str]
    bad_line_items: dict[str, dict[int, str]] = field(default_factory=dict)


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def customers_file(count: int = 1000, bad: int = 7, prefix: str = "C") -> CustomersFile:
    """``count`` customers; ``bad`` of them (spread out) invalid, each for another reason."""
    rows: list[list[str]] = []
    wrong: dict[int, str] = {}
    step = max(count // (bad + 1), 2)
    bad_at = {step * (i + 1): BAD_CUSTOMER_KINDS[i % len(BAD_CUSTOMER_KINDS)] for i in range(bad)}
    for number in range(1, count + 1):
        account = f"{prefix}{number:05d}"
        row = [account, f"Customer {number} Ltd", f"billing{number}@example.com", "", ""]
        kind = bad_at.get(number)
        if kind == "invalid e-mail":
            row[2] = "billing.example.com"
        elif kind == "duplicate account number":
            row[0] = f"{prefix}{1:05d}"
        elif kind == "missing name":
            row[1] = ""
        elif kind == "weak password":
            row[4] = "password"
        elif kind == "short login":
            row[3] = "abc"
        elif kind == "missing account number":
            row[0] = ""
        elif kind == "missing e-mail":
            row[2] = ""
        if kind:
            wrong[number] = kind
        rows.append(row)
    return CustomersFile(_csv(CUSTOMER_COLUMNS, rows), count, wrong)


def invoice_batch(accounts: list[str], invoices: int = 40, prefix: str = "INV") -> InvoiceBatch:
    """Invoices for ``accounts`` (two invalid) and two line-item files (one orphan line)."""
    invoice_rows: list[list[str]] = []
    bad: dict[int, str] = {}
    for number in range(1, invoices + 1):
        row = [
            f"{prefix}-{number:04d}",
            accounts[number % len(accounts)],
            "2026-11-02",
            "",
            "119.00",
        ]
        if number == 7:
            row[1], bad[number] = "NO-SUCH-CUSTOMER", "unknown customer"
        elif number == 13:
            row[2], bad[number] = "02/11/2026", "invalid invoice date"
        invoice_rows.append(row)
    good = [r[0] for i, r in enumerate(invoice_rows, start=1) if i not in bad]
    half = len(good) // 2
    first = [[n, "Consulting", "1", "100.00"] for n in good[:half]]
    second = [[n, "Licence", "2", "9.50"] for n in good[half:]]
    second.append([f"{prefix}-9999", "Orphan line", "1", "1.00"])
    manifest = {"invoice": "invoices.csv", "lineItems": ["items-1.csv", "items-2.csv"]}
    return InvoiceBatch(
        files={
            "invoices.csv": _csv(INVOICE_COLUMNS, invoice_rows),
            "items-1.csv": _csv(LINE_ITEM_COLUMNS, first),
            "items-2.csv": _csv(LINE_ITEM_COLUMNS, second),
            "manifest.json": json.dumps(manifest).encode(),
        },
        bad_invoices=bad,
        bad_line_items={"items-2.csv": {len(second): "orphan line"}},
    )


def s3_event(bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    """The S3 ObjectCreated event of one object, as S3 delivers it (keys form-encoded)."""
    obj: dict[str, Any] = {"key": quote_plus(key), "size": 1}
    if version_id:
        obj["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
            }
        ]
    }


def ledger_entries(stack: LocalStack) -> list[Entry]:
    """Every entry of the eBill flow in the local stack's ledger."""
    table = boto3.resource("dynamodb", region_name=stack.stack.region).Table(
        stack.stack.physical("LedgerTable")
    )
    return list(Ledger(table).entries(FLOW))


def failed_rows(entries: list[Entry], job_id: str) -> dict[int, Entry]:
    """The failed-row entries of one eBill batch, by row number."""
    return {
        int(e.attributes["row"]): e
        for e in entries
        if e.document_id.startswith(f"{job_id}#row-") and e.status == Status.FAILED
    }


def _writes(sim: EbillSimulator) -> int:
    return sum(1 for c in sim.calls if c.method in {"POST", "PUT"})


class EbillUploadDemo(SimulatedSection):
    """The eBill batch upload: a customers file and an invoice batch, then every event again."""

    title = "S3 drop -> eBill batch upload"

    def __init__(
        self, *, customers: int = 1000, bad_customers: int = 7, invoices: int = 40
    ) -> None:
        self.customers = customers
        self.bad_customers = bad_customers
        self.invoices = invoices
        self.sim = EbillSimulator(polls_per_stage=2)
        self.servers = (self.sim,)

    def env(self) -> dict[str, str]:
        """Point the stack at the eBill simulator."""
        return self.sim.hub_env()

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        """Drop, wait, verify; then deliver every event again."""
        customers = customers_file(self.customers, self.bad_customers)
        console.print(
            f"Dropping a customers file ({customers.rows} rows, {len(customers.bad)} invalid) and"
            f" an invoice batch ({self.invoices} invoices, 2 line-item files); eBill simulator at"
            f" {self.sim.url}."
        )
        runs = Table(title="Executions")
        for column in ("drop", "execution", "status", "outcome", "ok rows", "failed rows"):
            runs.add_column(column, overflow="fold")
        dropped: list[Dropped] = []
        with console.status("customers: uploading to eBill ..."):
            first = drop(stack, "ebill/customers/customers-2026-11.csv", customers.content)
            dropped.append(first)
            (customer_run,) = wait_for(stack, [first])
        self._add_row(runs, first, customer_run)
        self._verify_customers(report, stack, customer_run, customers)

        accounts = [f"C{n:05d}" for n in range(1, customers.rows + 1) if n not in customers.bad]
        batch = invoice_batch(accounts, self.invoices)
        with console.status("invoices: uploading to eBill ..."):
            parts = [
                drop(stack, f"ebill/invoices/2026-11/{name}", content)
                for name, content in batch.files.items()
            ]
            dropped += parts
            (invoice_run,) = wait_for(stack, parts)
        self._add_row(runs, parts[-1], invoice_run)
        self._verify_invoices(report, invoice_run, batch)

        writes_before = _writes(self.sim)
        executions_before = len(stack.executions("EbillUploadStateMachine"))
        bucket = stack.stack.physical("DropBucket")
        again = [
            stack.invoke("EbillTriggerFunction", s3_event(bucket, item.key, item.version_id))
            for item in dropped
            for _ in range(2)
        ]
        started = [arn for result in again for arn in result["executions"].values() if arn]
        executions_after = len(stack.executions("EbillUploadStateMachine"))
        report.check(
            SECTION,
            "every S3 event delivered twice more: no new execution, nothing sent to eBill",
            not started
            and executions_after == executions_before
            and _writes(self.sim) == writes_before,
            f"{len(again)} events, {executions_after - executions_before} new executions,"
            f" {_writes(self.sim) - writes_before} eBill writes",
        )
        console.print(runs)
        self._print_details(console, stack)

    @staticmethod
    def _add_row(table: Table, item: Dropped, execution: Execution) -> None:
        results = (execution.output or {}).get("results", {})
        table.add_row(
            item.key,
            execution.name,
            execution.status,
            str(results.get("outcome", "-")),
            str(results.get("successCount", "-")),
            str(results.get("failCount", "-")),
        )

    def _verify_customers(
        self, report: DemoReport, stack: LocalStack, execution: Execution, expected: CustomersFile
    ) -> None:
        results = (execution.output or {}).get("results", {})
        report.check(
            SECTION,
            "customers: the execution succeeded and eBill ended Partial Success",
            execution.status == "SUCCEEDED" and results.get("ebillStatus") == "Partial Success",
            f"{execution.status}, {results.get('ebillStatus')}",
        )
        job_id = results.get("files", [{}])[0].get("jobId", "")
        recorded = failed_rows(ledger_entries(stack), job_id)
        report.check(
            SECTION,
            "customers: exactly the invalid rows are recorded as failed in the ledger",
            sorted(recorded) == sorted(expected.bad),
            f"{len(recorded)} recorded, {len(expected.bad)} invalid: rows {sorted(recorded)}",
        )
        with_reason = [e for e in recorded.values() if e.reasons and e.reasons[0]]
        report.check(
            SECTION,
            "customers: each failed row carries eBill's reason",
            len(with_reason) == len(recorded),
            f"{len(with_reason)}/{len(recorded)} with a reason",
        )
        uri = results.get("files", [{}])[0].get("result", "")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        rows = 0
        if bucket and key:
            body = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            rows = sum(1 for _ in csv.DictReader(io.StringIO(body.decode())))
        report.check(
            SECTION,
            "customers: eBill's result CSV is in S3, one line per row",
            rows == expected.rows,
            f"{uri}: {rows} rows",
        )
        alert = results.get("alert", {})
        report.check(
            SECTION,
            "customers: the Partial Success was alerted",
            "partly failed" in alert.get("subject", ""),
            alert.get("subject", "no alert"),
        )

    def _verify_invoices(
        self, report: DemoReport, execution: Execution, batch: InvoiceBatch
    ) -> None:
        results = (execution.output or {}).get("results", {})
        upload = (execution.output or {}).get("upload", {})
        parent = upload.get("parent", {})
        finalized = self.sim.finalize_bodies
        ours = [b for b in finalized if b.get("jobId") == parent.get("jobId")]
        report.check(
            SECTION,
            "invoices: finalized once, the parent batch only, with its id and jobId",
            len(ours) == 1 and ours[0].get("id") == parent.get("id"),
            f"{len(ours)} BatchFinalize for {parent.get('jobId')}",
        )
        files = {f["file"]: f for f in results.get("files", [])}
        report.check(
            SECTION,
            "invoices: each line-item file is reported with its own status",
            set(files) == {"invoices.csv", "items-1.csv", "items-2.csv"}
            and files["items-1.csv"]["status"] == "Success"
            and files["items-2.csv"]["failedRows"] == 1,
            ", ".join(f"{name}: {f['status']}" for name, f in sorted(files.items())),
        )
        report.check(
            SECTION,
            "invoices: the invalid invoices are the failed rows",
            files.get("invoices.csv", {}).get("failedRows") == len(batch.bad_invoices),
            f"{files.get('invoices.csv', {}).get('failedRows')} failed of"
            f" {len(batch.bad_invoices)} invalid",
        )

    def _print_details(self, console: Console, stack: LocalStack) -> None:
        rows = Table(title="Failed rows in the ledger (first 8), as the operator sees them")
        for column in ("document", "business key", "reason"):
            rows.add_column(column, overflow="fold")
        entries = [e for e in ledger_entries(stack) if "#row-" in e.document_id]
        for entry in sorted(entries, key=lambda e: e.document_id)[:8]:
            rows.add_row(
                entry.document_id, entry.attributes.get("businessKey", ""), entry.last_error or ""
            )
        console.print(rows)
        counts = Table(title="Requests seen by the eBill simulator")
        for column in ("request", "count"):
            counts.add_column(column)
        tally: dict[str, int] = {}
        for call in self.sim.calls:
            what = call.query.get("mode") or ("status" if call.path.startswith("/rest") else "file")
            key = f"{call.method} {what} {call.status}"
            tally[key] = tally.get(key, 0) + 1
        for key, n in sorted(tally.items()):
            counts.add_row(key, str(n))
        console.print(counts)
