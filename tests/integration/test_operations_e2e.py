"""`erphub show`, `erphub replay` and `erphub report` on a local stack after a (small) demo run of
every flow: the same sections as `erphub demo`, with fewer documents."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from erphub.ledger import Status
from erphub_local import cli, config
from erphub_local.aws.stack import LocalStack
from erphub_local.demo import DemoReport
from erphub_local.demos.beqom_import import BeqomImportDemo
from erphub_local.demos.ebill_upload import EbillUploadDemo
from erphub_local.demos.procuros_send import ProcurosSendDemo
from erphub_local.demos.rossum_export import RossumExportDemo
from erphub_local.operations import Target, execution_arn, find, replay
from erphub_local.report import TITLES, collect, render_html

pytestmark = pytest.mark.integration


@dataclass
class Hub:
    stack: LocalStack
    target: Target
    rossum: RossumExportDemo
    beqom: BeqomImportDemo


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("operations")
    rossum = RossumExportDemo(per_queue=12)
    beqom = BeqomImportDemo(documents=40, workers=30)
    sections = [
        rossum,
        ProcurosSendDemo(rossum.erp, documents=30),
        EbillUploadDemo(customers=60, bad_customers=3, invoices=6),
        beqom,
    ]
    with contextlib.ExitStack() as running:
        variables = {"HTTP_BACKOFF_SECONDS": "0.05"}
        for section in sections:
            running.enter_context(section)
            variables.update(section.env())
        local = config.load(variables, env_file=tmp / "none")
        stack = running.enter_context(
            LocalStack(
                config.TEMPLATE,
                parameters=local.parameters,
                secret_values=local.secret_values,
                env_overrides=local.env_overrides,
                log_path=tmp / "lambda.log",
            )
        )
        demo = DemoReport()
        quiet = Console(file=io.StringIO(), width=200)
        for section in sections:
            section.run(quiet, stack, demo)
        failed = [c for c in demo.checks if not c.ok]
        assert not failed, failed
        yield Hub(stack, Target.from_local(stack), rossum, beqom)


@pytest.fixture
def run_cli(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI, pointed at the module's in-process stack."""
    monkeypatch.setattr(cli, "_target", lambda *_: hub.target)
    yield CliRunner()


def rejected_for_unknown_supplier(hub: Hub) -> tuple[str, str]:
    """A failed_export annotation the ERP refused for its supplier, and that VAT id."""
    for entry in hub.target.ledger.entries("rossum-export"):
        match = re.search(r"Unknown supplier VAT id (\w+)", entry.last_error or "")
        if entry.status is Status.FAILED_EXPORT and match:
            return entry.document_id, match.group(1)
    raise AssertionError("the demo seeds invoices of unknown suppliers")


# --- report (first: the replays below change the data) -------------------------------------------


def test_the_report_covers_every_flow_and_what_needs_attention(
    hub: Hub, run_cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = run_cli.invoke(cli.main, ["report", "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    data = collect(hub.target)
    assert page.count("<svg") >= 7  # outcomes of 4 flows, executions of 3
    for title in TITLES.values():
        assert title in page
    entries = {f: list(hub.target.ledger.entries(f)) for f in TITLES}
    rossum = next(f for f in data.flows if f.flow == "rossum-export")
    assert rossum.counts == {"done": 22, "rejected": 2}
    assert sum(rossum.counts.values()) == len(entries["rossum-export"])
    assert {r.status for f in data.flows for r in f.runs} == {"SUCCEEDED"}
    assert len([r for f in data.flows for r in f.runs]) == 4 + 4 + 2  # rossum, procuros, eBill
    for item in data.attention:
        assert item.entry.document_id in page.replace("&amp;", "&")
    flows = {a.entry.flow for a in data.attention}
    assert flows == {"rossum-export", "procuros-send", "ebill-upload", "beqom-import"}
    assert f"{data.attention_total} needing attention" in result.output
    assert render_html(data).count("<tr>") == page.count("<tr>")


# --- show ----------------------------------------------------------------------------------------


def test_show_a_rejected_rossum_invoice_by_its_bare_id(hub: Hub, run_cli: CliRunner) -> None:
    annotation, vat = rejected_for_unknown_supplier(hub)
    result = run_cli.invoke(cli.main, ["show", annotation])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith(f"rossum-export#{annotation}\n")
    assert (
        f"Why\n  - ERP rejected the invoice: supplier.vatId: Unknown supplier VAT id {vat}" in text
    )
    assert f"{hub.rossum.rossum.url}/document/{annotation}" in text
    assert "Fix the invoice in Rossum and confirm it again; the next run exports it" in text
    assert re.search(r"FAILED_EXPORT\s+run rossum-100\d-\d{8}T\d{6}Z  Rossum failed_export", text)
    assert re.search(r"Runs\n  rossum-100\d-\d{8}T\d{6}Z  SUCCEEDED, \d+\.\d s", text)


def test_show_an_ebill_drop_by_its_key_lists_its_failed_rows(hub: Hub, run_cli: CliRunner) -> None:
    result = run_cli.invoke(cli.main, ["show", "ebill/customers/customers-2026-11.csv"])
    assert result.exit_code == 0, result.output
    assert "PARTIAL: failed in part" in result.output
    rows = re.findall(r"_A1_CUS#row-\d+  FAILED  \S", result.output)
    assert len(rows) == 3
    assert "drop only those rows again as a new batch" in result.output


def test_show_names_what_it_cannot_find(run_cli: CliRunner) -> None:
    result = run_cli.invoke(cli.main, ["show", "rossum-export#999999999"])
    assert result.exit_code == 1
    assert "no document matches 'rossum-export#999999999'" in result.output


# --- replay --------------------------------------------------------------------------------------


def test_a_fixed_rossum_invoice_replayed_is_exported_once(hub: Hub) -> None:
    annotation, vat = rejected_for_unknown_supplier(hub)
    erp, rossum = hub.rossum.erp, hub.rossum.rossum
    erp.add_supplier(vat, "Supplier added by the operator")
    rossum.set_status(int(annotation), "confirmed")  # the operator confirms it again

    entry = find(hub.target.ledger, annotation)[0]
    result = replay(hub.target, entry)

    assert result.ok, result.refused
    ((machine, name),) = result.executions
    arn = execution_arn(hub.stack.stack.state_machine_arn(machine), name)
    assert hub.stack.wait_execution(arn).status == "SUCCEEDED"
    after = hub.target.ledger.get("rossum-export", annotation)
    assert after is not None and after.status is Status.EXPORTED
    assert after.history[-1].run == name
    assert rossum.statuses()[int(annotation)] == "exported"
    assert erp.create_count(f"rossum:{annotation}") == 1


def test_a_beqom_document_replayed_once_its_worker_exists_is_imported(hub: Hub) -> None:
    key = "PAY-2026-11/X99999/payslip.pdf"
    hub.beqom.beqom.add_workers("X99999")
    before = len(hub.beqom.beqom.documents)

    result = replay(hub.target, find(hub.target.ledger, f"beqom-import#{key}")[0])

    assert result.ok, result.refused
    after = hub.target.ledger.get("beqom-import", key)
    assert after is not None and after.status is Status.IMPORTED
    assert len(hub.beqom.beqom.documents) == before + 1
    # Replayed again: skipped, beqom holds the same file already.
    assert (
        replay(hub.target, after).refused == "it is IMPORTED: done, nothing to replay (to "
        "import a changed file, drop it again)"
    )


def test_replay_refuses_a_partial_ebill_batch_with_what_to_do(run_cli: CliRunner) -> None:
    result = run_cli.invoke(cli.main, ["replay", "ebill/customers/customers-2026-11.csv"])
    assert result.exit_code == 1
    assert "not replayed: ebill-upload#s3://" in result.output
    assert "Drop the corrected rows as a new batch" in result.output


def test_replay_dry_run_says_what_it_would_start(hub: Hub, run_cli: CliRunner) -> None:
    refused = next(
        e for e in hub.target.ledger.entries("procuros-send")
        if e.status is Status.AWAITING_CORRECTION
    )  # fmt: skip
    result = run_cli.invoke(
        cli.main, ["replay", f"procuros-send#{refused.document_id}", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert re.match(r"would start execution procuros-send-replay-\d{8}T\d{6}Z of", result.output)
    assert "whose Procuros status is empty" in result.output
    names = {e.name for e in hub.stack.executions("ProcurosSendStateMachine")}
    assert not any("replay" in name for name in names)
