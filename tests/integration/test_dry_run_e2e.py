"""Dry runs end to end: the demo data, the local AWS stack (real template, ASL, handlers) and the
Rossum, ERP and Procuros simulators.

A dry run reads everything and changes nothing: no mutating request reaches any simulator (they
count every request they serve) and the ledger stays empty. Its per-document report predicts the
real run that follows, document by document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from erphub_local import config
from erphub_local.aws.stack import Execution, LocalStack
from erphub_local.demos.procuros_send import UNKNOWN_BUYER, OutgoingSeed, seed_outgoing
from erphub_local.runner import dry_run_reports, run_flow
from erphub_local.seed import DemoSeed, seed_demo
from erphub_local.simulators import ErpSimulator, Fault, ProcurosSimulator, RossumSimulator
from erphub_local.simulators.base import Call, Simulator

pytestmark = pytest.mark.integration

QUEUES = (1001, 1002)
TICK = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

#: Requests that change something in each system. Logging in (Rossum hands out a token) and
#: POST /invoices/validate (it books nothing) do not.
MUTATING: dict[str, Callable[[Call], bool]] = {
    "rossum": lambda c: (
        c.method in ("PATCH", "PUT", "DELETE")
        or (c.method == "POST" and c.path != "/api/v1/auth/login")
    ),
    "erp": lambda c: (
        c.method in ("PATCH", "PUT", "DELETE")
        or (c.method == "POST" and c.path != "/invoices/validate")
    ),
    "procuros": lambda c: c.method in ("POST", "PATCH", "PUT", "DELETE"),
}


@dataclass
class Hub:
    stack: LocalStack
    rossum: RossumSimulator
    erp: ErpSimulator
    procuros: ProcurosSimulator
    invoices: DemoSeed
    outgoing: OutgoingSeed

    def run(self, flow: str, *, dry_run: bool = False) -> list[Execution]:
        executions = run_flow(self.stack, flow, when=TICK, dry_run=dry_run)
        assert [e.status for e in executions] == ["SUCCEEDED"] * len(executions), executions
        return executions

    def mutating(self) -> dict[str, list[str]]:
        sims: dict[str, Simulator] = {
            "rossum": self.rossum,
            "erp": self.erp,
            "procuros": self.procuros,
        }
        return {
            name: [f"{c.method} {c.path}" for c in sim.calls if MUTATING[name](c)]
            for name, sim in sims.items()
        }

    def erp_references(self) -> set[str]:
        return {invoice["externalReference"] for invoice in self.erp.invoices.values()}

    def ledger_items(self) -> int:
        table = boto3.resource("dynamodb").Table(self.stack.stack.physical("LedgerTable"))
        return len(table.scan()["Items"])


@pytest.fixture
def hub() -> Iterator[Hub]:
    with (
        RossumSimulator() as rossum,
        ErpSimulator() as erp,
        ProcurosSimulator() as procuros,
    ):
        # The demo's data: 130 invoices per queue, 10 % of them rejected for five reasons, and
        # 120 outgoing documents of the four types with inactive, refused and unreadable ones.
        invoices = seed_demo(rossum, erp, queue_ids=QUEUES, per_queue=130)
        outgoing = seed_outgoing(erp, procuros, count=120)
        settings = config.load(
            {
                **rossum.hub_env(),
                "ROSSUM_QUEUE_IDS": ",".join(map(str, QUEUES)),
                **erp.hub_env(),
                **procuros.hub_env(),
                "HTTP_BACKOFF_SECONDS": "0.01",
                "HTTP_MAX_RETRY_AFTER_SECONDS": "0.01",
            },
            env_file=config.STATE_DIR / "none",
        )
        with LocalStack(
            config.TEMPLATE,
            parameters=settings.parameters,
            secret_values=settings.secret_values,
            env_overrides=settings.env_overrides,
        ) as stack:
            yield Hub(stack, rossum, erp, procuros, invoices, outgoing)


def verdicts(reports: list[dict[str, Any]]) -> dict[str, str]:
    return {d["documentId"]: d["verdict"] for r in reports for d in r["documents"]}


def split(outcomes: dict[str, str]) -> dict[str, int]:
    values = list(outcomes.values())
    return {kind: values.count(kind) for kind in sorted(set(values))}


def test_a_dry_run_changes_nothing_and_predicts_the_rossum_export(hub: Hub) -> None:
    executions = hub.run("rossum-export", dry_run=True)

    assert hub.mutating() == {"rossum": [], "erp": [], "procuros": []}
    assert hub.ledger_items() == 0
    assert not hub.erp.invoices
    assert set(hub.rossum.statuses().values()) == {"confirmed"}
    assert hub.erp.count("POST", "/invoices/validate") > 0  # the ERP was asked, not told
    reports = dry_run_reports(hub.stack, executions)
    assert [r["scope"]["queueId"] for r in reports] == [str(q) for q in QUEUES]
    for execution, report in zip(executions, reports, strict=True):
        assert execution.name.endswith("-dry-run")
        assert execution.output["finalize"]["reportKey"].endswith("/dry-run-report.json")
        assert execution.output["finalize"]["documents"] == len(report["documents"])
    predicted = verdicts(reports)
    assert len(predicted) == len(hub.invoices.all_ids)

    hub.run("rossum-export")

    actual = {
        str(i): {"exported": "accepted", "failed_export": "rejected"}[s]
        for i, s in hub.rossum.statuses().items()
    }
    assert split(predicted) == split(actual) == {"accepted": 234, "rejected": 26}
    # Of two invoices with the same supplier and number the ERP books whichever reaches it
    # first (chunks are pushed in parallel): the report says one of the pair is rejected.
    pairs = [{str(d), str(o)} for d, o in hub.invoices.duplicate_of.items()]
    paired = set().union(*pairs)
    assert {d: v for d, v in predicted.items() if d not in paired} == {
        d: v for d, v in actual.items() if d not in paired
    }
    for pair in pairs:
        assert sorted(predicted[d] for d in pair) == ["accepted", "rejected"]
        assert sorted(actual[d] for d in pair) == ["accepted", "rejected"]
    would_create = {d["documentId"] for r in reports for d in r["documents"] if d["sends"]}
    created = {ref.removeprefix("rossum:") for ref in hub.erp_references()}
    assert len(would_create) == len(created) == 234
    assert would_create - paired == created - paired


def test_the_report_says_why_and_what_would_be_sent(hub: Hub) -> None:
    reports = dry_run_reports(hub.stack, hub.run("rossum-export", dry_run=True))
    documents = {int(d["documentId"]): d for r in reports for d in r["documents"]}
    keyword = {
        "unknown_supplier": "Unknown supplier VAT id",
        "totals_mismatch": "totalAmount",
        "unsupported_currency": "not booked",
        "missing_invoice_number": "document_id: missing",
        "duplicate_invoice_number": "of this run; the ERP books the one that reaches it first",
    }
    for annotation_id, reason in hub.invoices.invalid.items():
        document = documents[annotation_id]
        assert document["verdict"] == "rejected"
        assert not document["sends"]
        assert any(keyword[reason] in text for text in document["reasons"]), document
        assert document["action"].startswith("would be moved to failed_export")
    valid = documents[hub.invoices.valid_ids[0]]
    assert valid["verdict"] == "accepted" and valid["sends"]
    assert valid["payload"]["externalReference"] == f"rossum:{hub.invoices.valid_ids[0]}"
    assert valid["action"] == "would be created in the ERP, then moved to exported"


def test_a_dry_run_changes_nothing_and_predicts_the_procuros_send(hub: Hub) -> None:
    executions = hub.run("procuros-send", dry_run=True)

    assert hub.mutating() == {"rossum": [], "erp": [], "procuros": []}
    assert hub.ledger_items() == 0
    (execution,) = executions
    summary = execution.output["list"]["dryRun"]
    assert execution.output["list"]["claimed"] == 0
    assert "send" not in execution.output  # nothing went past the list step
    (report,) = dry_run_reports(hub.stack, executions)
    predicted = verdicts([report])
    assert summary["documents"] == len(predicted) == len(hub.outgoing.pending)

    hub.run("procuros-send")

    actual = {
        doc_id: "accepted" if hub.erp.outgoing(doc_id)["procurosStatus"] else "rejected"
        for doc_id in hub.outgoing.pending
    }
    # Procuros refuses a receiver it cannot resolve only when it is sent a transaction; the dry
    # run predicts it from the parties its transaction history names (GET only).
    assert predicted == actual
    assert split(predicted) == split(actual) == {"accepted": 105, "rejected": 15}
    assert summary["sends"] == 109  # the 105 accepted and the 4 for an unknown buyer
    assert "note" not in summary
    assert report["scope"]["receiverCheck"] == (
        "against the 8 party identifiers named by Procuros transactions in the last 365 days"
    )
    unresolvable = {d for d, why in hub.outgoing.refused.items() if why == "unknown_buyer"}
    assert len(unresolvable) == 4
    documents = {d["documentId"]: d for d in report["documents"]}
    for doc_id in unresolvable:
        document = documents[doc_id]
        assert document["verdict"] == "rejected" and document["sends"]
        assert document["reasons"] == [
            "Procuros would probably refuse it (422 Could not resolve party): no Procuros"
            f" transaction in the last 365 days names buyer GLN {UNKNOWN_BUYER['gln']}"
        ]
        assert document["action"].startswith(
            "would be sent (POST /v2/transactions) and probably refused; would stay empty in the"
            " ERP for the next run (failed attempt 1)"
        )
    inactive = documents[hub.outgoing.no_action[0]]
    assert inactive["verdict"] == "accepted"
    assert "is named by Procuros transactions in the last 365 days" in inactive["action"]


def test_a_procuros_dry_run_without_the_history_predicts_as_before_and_says_so(hub: Hub) -> None:
    hub.procuros.inject(
        Fault(status=500, times=100, method="GET", path_prefix="/v2/all-transactions")
    )

    executions = hub.run("procuros-send", dry_run=True)

    assert hub.mutating() == {"rossum": [], "erp": [], "procuros": []}
    (execution,) = executions
    summary = execution.output["list"]["dryRun"]
    assert summary["note"].startswith(
        "the receivers were not checked (the Procuros transaction history could not be read:"
        " Procuros GET /all-transactions: HTTP 500)"
    )
    (report,) = dry_run_reports(hub.stack, executions)
    assert report["scope"]["receiverCheck"].startswith("not done: the Procuros transaction")
    predicted = verdicts([report])
    assert split(predicted) == {"accepted": 109, "rejected": 11}
    unresolvable = [d for d, why in hub.outgoing.refused.items() if why == "unknown_buyer"]
    for doc_id in unresolvable:
        document = next(d for d in report["documents"] if d["documentId"] == doc_id)
        assert document["verdict"] == "accepted"
        assert "a refusal for a receiver it cannot resolve" in document["action"]
