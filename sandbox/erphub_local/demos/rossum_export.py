"""Demo section: Rossum -> ERP export.

Seeds two Rossum queues (about 10% of the invoices invalid for the ERP, for different reasons),
runs the export as the schedule would, checks the outcome in Rossum and the ERP, then runs it
again to show that nothing is sent twice.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rich.table import Table

from erphub_local.demo import SimulatedSection
from erphub_local.runner import run_flow
from erphub_local.seed import DemoSeed, seed_demo
from erphub_local.simulators import ErpSimulator, RossumSimulator

if TYPE_CHECKING:
    from rich.console import Console

    from erphub_local.aws.stack import LocalStack
    from erphub_local.demo import DemoReport
    from erphub_local.simulators.base import Call

SECTION = "rossum-export"


def mutations(calls: list[Call]) -> list[Call]:
    """The requests that change something (logins aside)."""
    return [
        c
        for c in calls
        if c.method in {"POST", "PATCH", "PUT", "DELETE"} and "/auth/" not in c.path
    ]


def expected_outcome(seed: DemoSeed, statuses: dict[int, str]) -> dict[int, str]:
    """The Rossum status each seeded annotation must end in.

    Of an invoice and its duplicate (same supplier and number), whichever reaches the ERP first is
    booked and the other rejected: chunks are pushed concurrently, so either may come first.
    """
    expected = {i: "exported" for i in seed.valid_ids} | {i: "failed_export" for i in seed.invalid}
    for duplicate, original in seed.duplicate_of.items():
        if statuses.get(duplicate) == "exported" and statuses.get(original) == "failed_export":
            expected[duplicate], expected[original] = "exported", "failed_export"
    return expected


class RossumExportDemo(SimulatedSection):
    """The Rossum export, twice, on simulators seeded with demo invoices."""

    title = "Rossum -> ERP export"

    def __init__(
        self,
        *,
        per_queue: int = 130,
        invalid_ratio: float = 0.10,
        queue_ids: tuple[int, ...] = (1001, 1002),
    ) -> None:
        self.per_queue = per_queue
        self.invalid_ratio = invalid_ratio
        self.queue_ids = queue_ids
        self.rossum = RossumSimulator()
        self.erp = ErpSimulator()
        self.servers = (self.rossum, self.erp)

    def env(self) -> dict[str, str]:
        """Point the stack at the Rossum and ERP simulators."""
        return {
            **self.rossum.hub_env(),
            "ROSSUM_QUEUE_IDS": ",".join(str(q) for q in self.queue_ids),
            **self.erp.hub_env(),
        }

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        """Seed, export twice, verify."""
        seed = seed_demo(
            self.rossum,
            self.erp,
            queue_ids=self.queue_ids,
            per_queue=self.per_queue,
            invalid_ratio=self.invalid_ratio,
        )
        console.print(
            f"Seeded {len(seed.all_ids)} confirmed annotations in queues"
            f" {', '.join(map(str, self.queue_ids))}"
            f" ({len(seed.invalid)} invalid for the ERP); Rossum simulator at {self.rossum.url},"
            f" ERP simulator at {self.erp.url}."
        )
        runs = Table(title="Executions")
        for column in (
            "run",
            "execution",
            "status",
            "claimed",
            "exported",
            "failed_export",
            "export POSTs",
        ):
            runs.add_column(column)
        tick = datetime.now(UTC).replace(microsecond=0)
        for run, when in (("first run", tick), ("second run", tick + timedelta(minutes=5))):
            erp_before, rossum_before = (
                len(mutations(self.erp.calls)),
                len(mutations(self.rossum.calls)),
            )
            with console.status(f"{run}: exporting ...") as status:
                executions = run_flow(stack, "rossum-export", when=when, on_progress=status.update)
            for execution in executions:
                output = execution.output if isinstance(execution.output, dict) else {}
                poll, final = output.get("poll", {}), output.get("finalize", {})
                runs.add_row(
                    run,
                    execution.name,
                    execution.status,
                    str(poll.get("claimed", 0)),
                    str(final.get("exported", 0)),
                    str(final.get("failedExport", 0)),
                    str(final.get("exportCalls", 0)),
                )
            report.check(
                SECTION,
                f"{run}: every execution succeeded",
                bool(executions) and all(e.status == "SUCCEEDED" for e in executions),
                ", ".join(f"{e.name}={e.status}" for e in executions),
            )
            if run == "first run":
                self._verify_first_run(report, seed)
            else:
                new_erp = mutations(self.erp.calls)[erp_before:]
                new_rossum = mutations(self.rossum.calls)[rossum_before:]
                report.check(
                    SECTION,
                    "second run: nothing created in the ERP, nothing changed in Rossum",
                    not new_erp and not new_rossum,
                    f"{len(new_erp)} ERP writes, {len(new_rossum)} Rossum writes",
                )
        console.print(runs)
        self._print_details(console, seed)

    def _verify_first_run(self, report: DemoReport, seed: DemoSeed) -> None:
        statuses = self.rossum.statuses()
        expected = expected_outcome(seed, statuses)
        booked = [inv["externalReference"] for inv in self.erp.invoices.values()]
        should_book = sorted(f"rossum:{i}" for i, s in expected.items() if s == "exported")
        report.check(
            SECTION,
            "the ERP holds exactly one invoice per valid annotation",
            sorted(booked) == should_book,
            f"{len(booked)} invoices for {len(should_book)} valid annotations",
        )
        wrong = {i: statuses.get(i) for i, s in expected.items() if statuses.get(i) != s}
        n_exported = sum(1 for s in expected.values() if s == "exported")
        report.check(
            SECTION,
            "valid annotations are exported, invalid ones failed_export in Rossum",
            not wrong,
            f"{n_exported} exported, {len(expected) - n_exported} failed_export"
            + (f"; wrong: {dict(list(wrong.items())[:5])}" if wrong else ""),
        )
        failed = [i for i, s in expected.items() if s == "failed_export"]
        with_message = [
            i
            for i in failed
            if any(
                m.get("type") == "error" and m.get("content")
                for m in self.rossum.annotation(i).get("messages", [])
            )
        ]
        report.check(
            SECTION,
            "each failed_export carries a message with the reason",
            len(with_message) == len(failed),
            f"{len(with_message)}/{len(failed)} with a message",
        )
        calls = self.rossum.calls
        for queue_id in seed.queue_ids:
            accepted = sum(
                1 for i, s in expected.items() if s == "exported" and seed.queue_of[i] == queue_id
            )
            posts = [
                c
                for c in calls
                if c.method == "POST" and c.path == f"/api/v1/queues/{queue_id}/export"
            ]
            report.check(
                SECTION,
                f"queue {queue_id}: export POSTs = ceil(accepted/100)",
                len(posts) == math.ceil(accepted / 100),
                f"{len(posts)} POSTs for {accepted} accepted",
            )
        posts = [c for c in calls if c.method == "POST" and c.path.endswith("/export")]
        report.check(
            SECTION,
            "no export POST without an explicit id list",
            bool(posts) and all(c.query.get("id") for c in posts),
            f"{len(posts)} POSTs, all with id=",
        )
        to_exported = [
            c
            for c in calls
            if c.method == "PATCH"
            and isinstance(c.body, dict)
            and c.body.get("status") == "exported"
        ]
        report.check(
            SECTION, "no PATCH to exported", not to_exported, f"{len(to_exported)} such PATCHes"
        )

    def _print_details(self, console: Console, seed: DemoSeed) -> None:
        reasons = Table(title="Rejected invoices (first 8), as the operator sees them in Rossum")
        for column in ("annotation", "seeded as", "Rossum status", "message"):
            reasons.add_column(column, overflow="fold")
        for annotation_id, seeded in list(seed.invalid.items())[:8]:
            annotation = self.rossum.annotation(annotation_id)
            message = next(
                (m["content"] for m in annotation.get("messages", []) if m.get("type") == "error"),
                "",
            )
            reasons.add_row(str(annotation_id), seeded, annotation["status"], message)
        console.print(reasons)
        counts = Table(title="Requests seen by the simulators (both runs)")
        for column in ("system", "request", "count"):
            counts.add_column(column)
        for system, sim in (("Rossum", self.rossum), ("ERP", self.erp)):
            tally: dict[str, int] = {}
            for call in sim.calls:
                key = f"{call.method} {_shape(call.path)}"
                tally[key] = tally.get(key, 0) + 1
            for key, n in sorted(tally.items()):
                counts.add_row(system, key, str(n))
        console.print(counts)


def _shape(path: str) -> str:
    """A path with ids folded, for counting requests by endpoint."""
    return "/".join("{id}" if part.isdigit() else part for part in path.split("/"))
