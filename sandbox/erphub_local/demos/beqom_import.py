"""Demo section: file drop -> beqom Pay Suite document import.

Drops more than 500 worker documents into the local drop bucket (under
``beqom/<round>/<worker>/<file>``, plus a manifest for a mass import) with a handful of bad ones,
one per way a document can fail. The bucket sends each object's event to the import queue, whose
batch handler imports each document into the beqom simulator. The checks: every good document
imported once, every bad one recorded in the ledger with its reason, one token request for the
whole run. Then the same files are dropped again (nothing new is imported), and finally, after
the token's lifetime, a few more (one new token).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import boto3
from rich.table import Table

from erphub.ledger import Entry, Ledger, Status
from erphub_local.aws import inproc_lambda, sqs_batches
from erphub_local.demo import SimulatedSection
from erphub_local.simulators.beqom import IMPORT_PATH, BeqomSimulator

if TYPE_CHECKING:
    from rich.console import Console

    from erphub_local.aws.stack import LocalStack
    from erphub_local.demo import DemoReport

SECTION = "beqom-import"
#: erphub.flows.beqom_import.FLOW, not imported here: Powertools reads its environment when
#: erphub's logger and metrics are first imported, which must happen inside the handlers.
FLOW = "beqom-import"
MANIFEST_FLOW = "beqom-manifest"
FUNCTION = "BeqomImportFunction"
PAYROLL, BONUS, CLOSED = "PAY-2026-11", "BONUS-2026", "PAY-2025-12"
MANIFEST_FOLDER = "beqom/_manifests/bonus-letters-2026"
#: Objects dropped before their events are delivered. Small enough to keep moto's queue short:
#: it recounts the whole queue for every message it sends or receives.
DROP_CHUNK = 50


@dataclass
class Drop:
    """What the demo drops: key -> (body, metadata), and what must happen to each document."""

    files: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    good: set[str] = field(default_factory=set)  # business keys round/worker/file
    bad: dict[str, str] = field(default_factory=dict)  # ledger key -> expected reason


def _pdf(text: str) -> bytes:
    return b"%PDF-1.7\n% " + text.encode() + b"\n%%EOF\n"


def demo_drop(documents: int, workers: int) -> Drop:
    """``documents`` good documents (the last 30 through a manifest) and seven bad ones."""
    drop = Drop()
    direct = documents - 30
    for i in range(direct):
        worker = f"W{i % workers:05d}"
        name = f"payslip-2026-11-{i:05d}.pdf"
        drop.files[f"beqom/{PAYROLL}/{worker}/{name}"] = (_pdf(f"payslip {i}"), {})
        drop.good.add(f"{PAYROLL}/{worker}/{name}")
    rows = ["file,workerExternalId,communicationRoundCode,generationTime"]
    for i in range(30):
        worker = f"W{i:05d}"
        drop.files[f"{MANIFEST_FOLDER}/letters/{worker}.pdf"] = (_pdf(f"bonus {worker}"), {})
        rows.append(f"letters/{worker}.pdf,{worker},{BONUS},2026-10-31T00:00:00Z")
        drop.good.add(f"{BONUS}/{worker}/{worker}.pdf")
    future = (datetime.now(UTC) + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bad: dict[str, tuple[bytes, dict[str, str], str]] = {
        f"{PAYROLL}/X99999/payslip.pdf": (
            _pdf("?"),
            {},
            "workerexternalId: Worker 'X99999' does not exist.",
        ),
        f"{CLOSED}/W00001/payslip.pdf": (_pdf("late"), {}, f"round '{CLOSED}' is Closed"),
        f"{PAYROLL}/W00002/payslip.pdf.exe": (b"MZ", {}, "File type '.exe' is not allowed"),
        f"{PAYROLL}/W00003/scan.pdf": (b"PK\x03\x04", {}, "not a valid PDF document"),
        f"{PAYROLL}/W00004/next-year.pdf": (
            _pdf("future"),
            {"generation-time": future},
            "is in the future",
        ),
        f"{PAYROLL}/W00005/empty.pdf": (b"", {}, "the file is empty"),
        f"{PAYROLL}/loose-file.pdf": (_pdf("?"), {}, "a beqom document goes to"),
    }
    for key, (body, metadata, reason) in bad.items():
        drop.files[f"beqom/{key}"] = (body, metadata)
        drop.bad[key] = reason
    # The manifest comes last: its rows name files that must already be there.
    drop.files[f"{MANIFEST_FOLDER}/manifest.csv"] = (("\n".join(rows) + "\n").encode(), {})
    return drop


class BeqomImportDemo(SimulatedSection):
    """Worker documents dropped into S3, imported into the beqom simulator through the queue."""

    title = "File drop -> beqom Pay Suite document import"

    def __init__(self, *, documents: int = 520, workers: int = 400) -> None:
        if documents < 31:
            raise ValueError("the demo needs more than 30 documents (30 go through a manifest)")
        self.documents = documents
        self.workers = workers
        self.beqom = BeqomSimulator()
        self.servers = (self.beqom,)

    def env(self) -> dict[str, str]:
        """Point the stack at the beqom simulator."""
        return self.beqom.hub_env()

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        """Drop, import, check; drop the same files again; drop more after the token expired."""
        installed_here = not sqs_batches.installed()
        sqs_batches.install()
        try:
            self._run(console, stack, report)
        finally:
            if installed_here:
                sqs_batches.uninstall()

    def _run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        sim = self.beqom
        sim.add_workers(*(f"W{i:05d}" for i in range(self.workers)))
        sim.add_round(PAYROLL, "Open")
        sim.add_round(BONUS, "In Progress")
        sim.add_round(CLOSED, "Closed")
        drop = demo_drop(self.documents, self.workers)
        bucket = stack.stack.physical("DropBucket")
        ledger = Ledger(boto3.resource("dynamodb").Table(stack.stack.physical("LedgerTable")))
        console.print(
            f"Dropping {len(drop.good)} worker documents ({len(drop.good) - 30} as "
            f"beqom/<round>/<worker>/<file>, 30 through a manifest) and {len(drop.bad)} bad ones "
            f"into s3://{bucket}; beqom simulator at {sim.url}."
        )
        runs = Table(title="Drops")
        for column in (
            "drop",
            "objects",
            "batch invocations",
            "imported",
            "beqom import calls",
            "token requests",
            "seconds",
        ):
            runs.add_column(column)

        def put_all(label: str, files: dict[str, tuple[bytes, dict[str, str]]]) -> None:
            s3 = stack.client("s3")
            invocations, calls = self._invocations(), sim.import_requests()
            documents, tokens = len(sim.documents), sim.token_requests()
            started = time.perf_counter()
            items = list(files.items())
            with console.status(f"{label}: {len(files)} objects ..."):
                for start in range(0, len(items), DROP_CHUNK):
                    # Held, then delivered as the event source mapping polls: batches of 10.
                    with sqs_batches.held():
                        for key, (body, metadata) in items[start : start + DROP_CHUNK]:
                            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
            runs.add_row(
                label,
                str(len(files)),
                str(self._invocations() - invocations),
                str(len(sim.documents) - documents),
                str(sim.import_requests() - calls),
                str(sim.token_requests() - tokens),
                f"{time.perf_counter() - started:.1f}",
            )

        put_all("first drop", drop.files)
        entries = {e.document_id: e for e in ledger.entries(FLOW)}
        self._check_first_drop(report, drop, entries, self._dead_letters(stack))
        imports_before = Counter({k: d.imports for k, d in sim.documents.items()})

        put_all("same files again", drop.files)
        self._check_second_drop(report, drop, ledger, imports_before)

        sim.advance(3600)  # an hour later beqom's token has expired; the hub's cache is warm
        later: dict[str, tuple[bytes, dict[str, str]]] = {
            f"beqom/{PAYROLL}/W{i:05d}/statement-2026-12.pdf": (_pdf(f"statement {i}"), {})
            for i in range(10)
        }
        tokens = sim.token_requests()
        put_all("10 more, after the token's lifetime", later)
        refused = [c for c in sim.calls if c.path == IMPORT_PATH and c.status == 401]
        report.check(
            SECTION,
            "a token expired mid-run is renewed once (one token request per token lifetime)",
            sim.token_requests() - tokens == 1
            and len(refused) == 1
            and len(sim.documents) == len(drop.good) + 10,
            f"{sim.token_requests()} token requests in all, {len(refused)} import refused with 401",
        )
        console.print(runs)
        self._print_rejections(console, drop, ledger)

    @staticmethod
    def _invocations() -> int:
        return sum(1 for i in inproc_lambda.INVOCATIONS if i.function == FUNCTION)

    def _check_first_drop(
        self, report: DemoReport, drop: Drop, entries: dict[str, Entry], dead_letters: int
    ) -> None:
        sim = self.beqom
        stored = {"/".join(key) for key in sim.documents}
        once = all(d.imports == 1 for d in sim.documents.values())
        report.check(
            SECTION,
            "every good document is in beqom, imported exactly once",
            stored == drop.good and once,
            f"{len(stored)} documents in beqom for {len(drop.good)} good ones dropped",
        )
        recorded = [
            key
            for key in drop.good
            if entries.get(key) is not None
            and entries[key].status is Status.IMPORTED
            and entries[key].external_id == sim.documents[tuple(key.split("/"))].document_id  # type: ignore[index]
        ]
        report.check(
            SECTION,
            "the ledger holds each one's documentId, overridden and importTime",
            len(recorded) == len(drop.good)
            and all(
                {"documentId", "overridden", "importTime"} <= set(entries[k].attributes)
                for k in recorded
            ),
            f"{len(recorded)}/{len(drop.good)} IMPORTED with beqom's documentId",
        )
        wrong = {
            key: (entries[key].status.value, entries[key].last_error)
            if key in entries
            else "missing"
            for key, reason in drop.bad.items()
            if key not in entries
            or entries[key].status is not Status.FAILED
            or reason not in (entries[key].last_error or "")
        }
        report.check(
            SECTION,
            "every bad document is recorded against itself, FAILED with its reason",
            not wrong,
            f"{len(drop.bad) - len(wrong)}/{len(drop.bad)} as expected"
            + (f"; wrong: {wrong}" if wrong else ""),
        )
        report.check(
            SECTION,
            "one token request for the whole drop",
            sim.token_requests() == 1,
            f"{sim.token_requests()} token request(s) for {sim.import_requests()} import calls",
        )
        left = sqs_batches.in_flight()
        report.check(
            SECTION,
            "no message left in flight or in the dead-letter queue",
            left == 0 and dead_letters == 0,
            f"{left} in flight, {dead_letters} dead letters",
        )

    def _check_second_drop(
        self,
        report: DemoReport,
        drop: Drop,
        ledger: Ledger,
        imports_before: Counter[tuple[str, str, str]],
    ) -> None:
        sim = self.beqom
        imports_after = Counter({k: d.imports for k, d in sim.documents.items()})
        report.check(
            SECTION,
            "the same files dropped again import nothing new",
            imports_after == imports_before,
            f"{sum(imports_after.values()) - sum(imports_before.values())} new imports",
        )
        direct = {k for k in drop.good if not k.startswith(f"{BONUS}/")}
        skipped = [
            e
            for e in ledger.entries(FLOW)
            if e.document_id in direct and "dropped again unchanged" in e.history[-1].detail
        ]
        manifest = ledger.get(MANIFEST_FLOW, f"{MANIFEST_FOLDER}/manifest.csv")
        report.check(
            SECTION,
            "each second drop is recorded as a skipped duplicate (the manifest's too)",
            len(skipped) == len(direct)
            and manifest is not None
            and "dropped again unchanged" in manifest.history[-1].detail,
            f"{len(skipped)}/{len(direct)} documents; the manifest: "
            + (manifest.history[-1].detail if manifest else "not recorded"),
        )

    @staticmethod
    def _dead_letters(stack: LocalStack) -> int:
        attributes = stack.client("sqs").get_queue_attributes(
            QueueUrl=stack.stack.physical("BeqomImportDeadLetterQueue"),
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def _print_rejections(self, console: Console, drop: Drop, ledger: Ledger) -> None:
        table = Table(title="Bad documents, as the ledger records them")
        for column in ("document", "status", "reason"):
            table.add_column(column, overflow="fold")
        for key in drop.bad:
            entry = ledger.get(FLOW, key)
            table.add_row(
                key,
                entry.status.value if entry else "-",
                (entry.last_error or "") if entry else "not recorded",
            )
        console.print(table)
