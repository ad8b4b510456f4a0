"""Demo section: what an operator sees once the flows have run.

For one rejected or failed document of each flow it prints what `erphub show` prints (why, where,
how to fix it), writes the HTML report of the run to ``.erphub/report.html``, and checks that
every document needing attention comes with a reason, a place and a fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from erphub_local import config
from erphub_local.demo import SimulatedSection
from erphub_local.operations import FLOWS, Target, describe, find, is_document
from erphub_local.report import TITLES, collect, render_html

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from erphub_local.aws.stack import LocalStack
    from erphub_local.demo import DemoReport

SECTION = "operations"


class OperationsDemo(SimulatedSection):
    """`erphub show` and `erphub report` on the data the other sections left behind."""

    title = "Operations: erphub show and erphub report"

    def __init__(self, report_path: Path | None = None) -> None:
        self.report_path = report_path or config.STATE_DIR / "report.html"

    def env(self) -> dict[str, str]:
        """Nothing to point at: this section reads the stack the others used."""
        return {}

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        """Show one document needing attention per flow, write the report, check both."""
        target = Target.from_local(stack)
        data = collect(target)
        shown = 0
        for flow in FLOWS:
            example = next(
                (a for a in data.attention if a.entry.flow == flow and is_document(a.entry)),
                None,
            )
            if example is None:
                continue
            entry = example.entry
            console.print(f"[bold]$ erphub show {escape(entry.document_id)}[/bold]")
            console.print(escape(describe(target, entry)), highlight=False, soft_wrap=True)
            console.print()
            found = find(target.ledger, entry.document_id)
            shown += bool(found and found[0].document_id == entry.document_id)
        report.check(
            SECTION,
            "erphub show finds a rejected or failed document of each flow by its bare id",
            shown == len({a.entry.flow for a in data.attention if is_document(a.entry)}) >= 4,
            f"{shown} flows",
        )
        incomplete = [
            f"{a.entry.flow}#{a.entry.document_id}"
            for a in data.attention
            if a.entry.status.value not in ("PUSHING", "DEFERRED", "CLAIMED", "SUBMITTED")
            and not (a.advice.why and a.advice.where and a.advice.fix)
        ]
        report.check(
            SECTION,
            "every rejected or failed document says why, where and how to fix it",
            bool(data.attention) and not incomplete,
            f"{data.attention_total - len(incomplete)}/{data.attention_total}"
            + (f"; missing: {incomplete[:3]}" if incomplete else ""),
        )
        page = render_html(data)
        self.report_path.parent.mkdir(parents=True, exist_ok=True)
        self.report_path.write_text(page, encoding="utf-8")
        missing = [title for title in TITLES.values() if title not in page]
        report.check(
            SECTION,
            "the HTML report charts every flow and lists what needs attention",
            not missing and all(a.entry.document_id in page for a in data.attention[:50]),
            f"{self.report_path} ({len(page) // 1024} KiB)",
        )
        console.print(f"Report: {self.report_path} (open it in a browser)")
