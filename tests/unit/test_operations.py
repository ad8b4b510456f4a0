"""Operator logic without a stack: advice, lookup, replay decisions and the HTML report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from moto import mock_aws
from samtranslator.yaml_helper import yaml_parse

from erphub.ledger import Entry, Ledger, Status
from erphub_local.cli import main
from erphub_local.operations import (
    Target,
    advise,
    connect,
    describe,
    find,
    replay,
    rossum_ui_link,
)
from erphub_local.report import (
    Attention,
    FlowReport,
    Report,
    Run,
    axis_for,
    needs_attention,
    outcomes_of,
    render_html,
    stacked_bars,
)
from tests.fakes import TEMPLATE, create_table_from_template

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:erphub-dev-rossum-export"


class FakeStepFunctions:
    """Answers describe_execution from a dict of name -> status; records started executions."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.started: list[dict[str, Any]] = []

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        name = executionArn.rsplit(":", 1)[1]
        if name not in self.statuses:
            raise ClientError(
                {"Error": {"Code": "ExecutionDoesNotExist", "Message": name}}, "DescribeExecution"
            )
        return {"name": name, "status": self.statuses[name], "startDate": NOW, "stopDate": NOW}

    def start_execution(self, **kwargs: Any) -> dict[str, str]:
        self.started.append(kwargs)
        return {"executionArn": f"{kwargs['stateMachineArn']}:{kwargs['name']}"}


class FakeSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> dict[str, str]:
        self.sent.append(kwargs)
        return {"MessageId": "m-1"}


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with mock_aws():
        name = create_table_from_template()
        yield Ledger(boto3.resource("dynamodb").Table(name), clock=NOW.timestamp)


def target(ledger: Ledger, sfn: FakeStepFunctions | None = None) -> tuple[Target, FakeSqs]:
    sqs = FakeSqs()
    clients = {"stepfunctions": sfn or FakeStepFunctions({}), "sqs": sqs}
    return (
        Target(
            ledger=ledger,
            label="test",
            physical={
                "RossumExportStateMachine": MACHINE,
                "ProcurosSendStateMachine": MACHINE.replace("rossum-export", "procuros-send"),
                "EbillUploadStateMachine": MACHINE.replace("rossum-export", "ebill-upload"),
                "BeqomImportQueue": "https://sqs/erphub-dev-beqom-import",
            },
            parameters={"RossumBaseUrl": "https://acme.rossum.app/api", "Stage": "dev"},
            clients=clients.__getitem__,
        ),
        sqs,
    )


def failed_export(ledger: Ledger, annotation: str = "4711", owner: str = "rossum-1001-a") -> Entry:
    ledger.claim(
        "rossum-export", annotation, owner=owner, lease_seconds=900, attributes={"queueId": "1001"}
    )
    reasons = ["ERP rejected the invoice: supplier.vatId: Unknown supplier VAT id DE999"]
    return ledger.record(
        "rossum-export",
        annotation,
        owner=owner,
        status=Status.FAILED_EXPORT,
        reasons=reasons,
        last_error=reasons[0],
        release=True,
        detail="Rossum failed_export",
    )


# --- advice --------------------------------------------------------------------------------------


def test_a_rossum_failed_export_says_why_where_and_how_to_fix_it(ledger: Ledger) -> None:
    entry = failed_export(ledger)
    advice = advise(entry, {"RossumBaseUrl": "https://acme.rossum.app/api"}, NOW)
    assert advice.why == ["ERP rejected the invoice: supplier.vatId: Unknown supplier VAT id DE999"]
    assert "https://acme.rossum.app/document/4711" in advice.where[0]
    assert "queue 1001" in advice.where[0] and "failed_export" in advice.where[0]
    assert "erphub could not export this document. ERP rejected" in advice.where[0]
    assert advice.fix.startswith(
        "Fix the invoice in Rossum and confirm it again; the next run exports it"
    )


def test_the_rossum_link_needs_an_api_base_url() -> None:
    assert (
        rossum_ui_link("https://acme.rossum.app/api/", "1") == "https://acme.rossum.app/document/1"
    )
    assert rossum_ui_link("https://acme.rossum.app", "1") is None
    assert rossum_ui_link(None, "1") is None


def entry(flow: str, document: str, status: Status, **fields: Any) -> Entry:
    return Entry.model_validate(
        {
            "flow": flow,
            "documentId": document,
            "status": status,
            "createdAt": NOW.isoformat(),
            "updatedAt": NOW.isoformat(),
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("item", "where", "fix"),
    [
        (
            entry(
                "procuros-send",
                "PRC-7",
                Status.AWAITING_CORRECTION,
                reasons=["Procuros 422: content.items: empty"],
                attributes={"errorUrl": "https://portal/errors/1", "errorReportedAt": "2026-11-21"},
                attempts=3,
            ),
            ["Error URL https://portal/errors/1", "error reported at 2026-11-21"],
            "Fix the document in the ERP (the Error URL shows what Procuros refused)",
        ),
        (
            entry(
                "procuros-send",
                "PRC-8",
                Status.PUSHED,
                externalId="tx-9",
                lastError="ERP PATCH: 422",
            ),
            ["transaction tx-9"],
            "the next run repeats only the ERP update",
        ),
        (
            entry(
                "ebill-upload",
                "EH1_A1_CUS#row-12",
                Status.FAILED,
                reasons=["Primary Email is not valid"],
                attributes={
                    "drop": "s3://b/ebill/customers/c.csv?versionId=v1",
                    "file": "c.csv",
                    "row": "12",
                    "result": "s3://payloads/ebill-upload/EH1/EH1_A1_CUS_output.csv",
                    "businessKey": "C-12",
                },
            ),
            ["result file s3://payloads/ebill-upload/EH1/EH1_A1_CUS_output.csv (row 12, C-12)"],
            "Correct this row in your source data",
        ),
        (
            entry(
                "ebill-upload",
                "s3://b/ebill/invoices/aug/manifest.json?versionId=v1",
                Status.FAILED,
                reasons=[
                    "BadInputError: s3://b/ebill/invoices/aug/manifest.json: invalid manifest"
                ],
            ),
            ["the drop bucket: s3://b/ebill/invoices/aug/manifest.json?versionId=v1"],
            "correct the manifest or its files",
        ),
        (
            entry(
                "beqom-import",
                "PAY-11/X9/payslip.pdf",
                Status.FAILED,
                reasons=["beqom rejected the document: Worker 'X9' does not exist."],
                attributes={"bucket": "b", "key": "beqom/PAY-11/X9/payslip.pdf"},
            ),
            ["beqom/PAY-11/X9/payslip.pdf", "erphub-dev-beqom-import-failed"],
            "`erphub replay` imports it again",
        ),
        (
            entry(
                "beqom-import",
                "PAY-11/loose.pdf",
                Status.FAILED,
                reasons=["beqom/PAY-11/loose.pdf: a beqom document goes to beqom/<round>/..."],
            ),
            ["beqom/PAY-11/loose.pdf"],
            "Move the file to beqom/<communicationRoundCode>/<workerExternalId>/<file>",
        ),
    ],
    ids=["procuros-refused", "procuros-erp-update", "ebill-row", "ebill-drop", "beqom", "layout"],
)
def test_every_flow_says_where_a_failure_shows_and_how_to_fix_it(
    item: Entry, where: list[str], fix: str
) -> None:
    advice = advise(item, {"Stage": "dev"}, NOW)
    assert advice.why
    places = " | ".join(advice.where)
    for text in where:
        assert text in places
    assert fix in advice.fix


def test_a_document_held_by_a_running_run_says_so(ledger: Ledger) -> None:
    ledger.claim("rossum-export", "5", owner="rossum-1001-b", lease_seconds=900)
    held = advise(ledger.get("rossum-export", "5") or pytest.fail(), {}, NOW)
    assert "run rossum-1001-b holds it until 2026-11-21T12:15:00+00:00" in held.state
    assert held.fix.startswith("Wait for that run to finish.")


# --- lookup and show -----------------------------------------------------------------------------


def test_find_takes_flow_and_id_a_bare_id_or_a_fragment(ledger: Ledger) -> None:
    failed_export(ledger, "4711")
    ledger.claim(
        "beqom-import",
        "R1/W1/a.pdf",
        owner="r",
        lease_seconds=0,
        attributes={"key": "beqom/R1/W1/a.pdf"},
    )
    assert [e.document_id for e in find(ledger, "rossum-export#4711")] == ["4711"]
    assert [e.document_id for e in find(ledger, "4711")] == ["4711"]
    assert [e.document_id for e in find(ledger, "beqom/R1/W1/a.pdf")] == ["R1/W1/a.pdf"]
    assert [e.document_id for e in find(ledger, "W1/a")] == ["R1/W1/a.pdf"]
    assert find(ledger, "procuros-send#4711") == []
    assert find(ledger, "nothing-like-it") == []


def test_show_prints_the_history_with_times_runs_and_the_run_outcomes(ledger: Ledger) -> None:
    item = failed_export(ledger, owner="rossum-1001-20261121T120000Z")
    hub, _ = target(ledger, FakeStepFunctions({"rossum-1001-20261121T120000Z": "SUCCEEDED"}))
    text = describe(hub, item, now=NOW)
    assert text.splitlines()[0] == "rossum-export#4711"
    assert "FAILED_EXPORT: rejected: failed_export in Rossum" in text
    assert re.search(r"2026-11-21T12:00:00\.000\s+FAILED_EXPORT\s+run rossum-1001-2026", text)
    assert "Runs\n  rossum-1001-20261121T120000Z  SUCCEEDED, 0.0 s" in text
    for heading in ("Why\n  - ERP rejected", "Where\n  - Rossum: annotation 4711", "How to fix"):
        assert heading in text


def test_connect_needs_to_know_which_hub() -> None:
    with pytest.raises(LookupError, match="pass --stack NAME"):
        connect(endpoint=None, stack=None, table=None, attach=lambda _: pytest.fail())


# --- replay --------------------------------------------------------------------------------------


def test_replay_refuses_what_is_done_or_must_be_fixed_elsewhere(ledger: Ledger) -> None:
    hub, sqs = target(ledger)
    refusals = {
        "done": entry("rossum-export", "1", Status.EXPORTED),
        "Partial Success": entry("ebill-upload", "s3://b/k?versionId=v", Status.PARTIAL),
        "replay the drop, erphub replay 's3://b/k?versionId=v'": entry(
            "ebill-upload",
            "EH_A1_CUS#row-3",
            Status.FAILED,
            attributes={"drop": "s3://b/k?versionId=v"},
        ),
        "not in the drop layout": entry(
            "beqom-import", "R1/loose.pdf", Status.FAILED, attributes={"bucket": "b", "key": "k"}
        ),
        "3 upload attempts are used up": entry(
            "ebill-upload", "s3://b/k?versionId=v", Status.FAILED, attempts=3
        ),
    }
    for why, item in refusals.items():
        result = replay(hub, item, now=NOW)
        assert not result.ok and why in (result.refused or ""), (why, result)
    assert sqs.sent == []


def test_replay_waits_for_a_run_that_is_still_running(ledger: Ledger) -> None:
    ledger.claim(
        "rossum-export",
        "9",
        owner="rossum-1001-live",
        lease_seconds=900,
        attributes={"queueId": "1001"},
    )
    sfn = FakeStepFunctions({"rossum-1001-live": "RUNNING"})
    hub, _ = target(ledger, sfn)
    result = replay(hub, ledger.get("rossum-export", "9") or pytest.fail(), now=NOW)
    assert result.refused == "run rossum-1001-live is working on it right now; let it finish"
    assert sfn.started == []
    assert (ledger.get("rossum-export", "9") or pytest.fail()).lease_owner == "rossum-1001-live"


def test_replay_releases_the_lease_of_a_run_that_ended_then_starts_the_queue(
    ledger: Ledger,
) -> None:
    ledger.claim(
        "rossum-export",
        "9",
        owner="rossum-1001-dead",
        lease_seconds=900,
        attributes={"queueId": "1001"},
    )
    sfn = FakeStepFunctions({"rossum-1001-dead": "FAILED"})
    hub, _ = target(ledger, sfn)
    item = ledger.get("rossum-export", "9") or pytest.fail()

    planned = replay(hub, item, dry_run=True, now=NOW)
    assert planned.ok and sfn.started == []
    assert (ledger.get("rossum-export", "9") or pytest.fail()).lease_owner == "rossum-1001-dead"

    done = replay(hub, item, now=NOW)
    assert done.done == planned.done
    assert done.done[0] == "release the lease of run rossum-1001-dead (FAILED)"
    after = ledger.get("rossum-export", "9") or pytest.fail()
    assert after.lease_owner is None
    assert (
        after.history[-1].detail
        == "lease released by erphub replay: run rossum-1001-dead ended (FAILED)"
    )
    assert sfn.started == [
        {
            "stateMachineArn": MACHINE,
            "name": "rossum-1001-replay-20261121T120000Z",
            "input": json.dumps({"queueId": 1001}),
        }
    ]


def test_replay_of_a_beqom_document_queues_its_current_file(ledger: Ledger) -> None:
    hub, sqs = target(ledger)
    item = entry(
        "beqom-import",
        "PAY-11/X9/payslip.pdf",
        Status.FAILED,
        attributes={"bucket": "drops", "key": "beqom/PAY-11/X9/payslip.pdf", "versionId": "v1"},
    )
    result = replay(hub, item, now=NOW)
    assert result.ok
    (message,) = sqs.sent
    assert message["QueueUrl"] == "https://sqs/erphub-dev-beqom-import"
    assert json.loads(message["MessageBody"]) == {
        "kind": "beqom-document",
        "communicationRoundCode": "PAY-11",
        "workerExternalId": "X9",
        "fileName": "payslip.pdf",
        "source": {"bucket": "drops", "key": "beqom/PAY-11/X9/payslip.pdf"},
    }


def test_replay_of_an_ebill_drop_starts_the_same_drop_under_a_new_name(ledger: Ledger) -> None:
    sfn = FakeStepFunctions({})
    hub, _ = target(ledger, sfn)
    item = entry(
        "ebill-upload",
        "s3://drops/ebill/invoices/aug/manifest.json?versionId=v7",
        Status.FAILED,
        attempts=1,
        attributes={
            "bucket": "drops",
            "key": "ebill/invoices/aug/manifest.json",
            "kind": "invoices",
        },
    )
    assert replay(hub, item, now=NOW).ok
    (started,) = sfn.started
    assert re.fullmatch(r"ebill-inv-aug-[0-9a-f]{12}-replay-20261121T120000Z", started["name"])
    assert json.loads(started["input"]) == {
        "drop": {
            "bucket": "drops",
            "key": "ebill/invoices/aug/manifest.json",
            "versionId": "v7",
            "kind": "invoices",
        }
    }


# --- report --------------------------------------------------------------------------------------


def test_each_run_of_a_document_counts_once_with_its_last_outcome(ledger: Ledger) -> None:
    history = [
        {"at": "2026-11-21T11:00:00+00:00", "status": "CLAIM", "run": "a"},
        {"at": "2026-11-21T11:00:01+00:00", "status": "REJECTED", "run": "a"},
        {"at": "2026-11-21T11:00:02+00:00", "status": "AWAITING_CORRECTION", "run": "a"},
        {"at": "2026-11-21T11:15:01+00:00", "status": "PUSHED", "run": "b"},
        {"at": "2026-11-21T11:15:02+00:00", "status": "EXPORTED", "run": "b"},
    ]
    item = entry("procuros-send", "P1", Status.EXPORTED, history=history)
    assert [kind for _, kind in outcomes_of(item, NOW - timedelta(days=1))] == ["rejected", "done"]
    assert outcomes_of(item, NOW) == []


def test_stuck_means_unfinished_with_no_live_lease() -> None:
    assert needs_attention(entry("rossum-export", "1", Status.PUSHING), NOW)
    held = entry("rossum-export", "1", Status.PUSHING, leaseUntil=int(NOW.timestamp()) + 60)
    assert not needs_attention(held, NOW)
    assert not needs_attention(entry("rossum-export", "1", Status.EXPORTED), NOW)
    assert needs_attention(entry("ebill-upload", "s3://x?versionId=v", Status.PARTIAL), NOW)


def test_the_time_axis_picks_a_round_bucket_size() -> None:
    minutes = [NOW + timedelta(minutes=m) for m in range(0, 180, 7)]
    axis = axis_for(minutes, NOW)
    assert axis.seconds == 300 and axis.count <= 48
    assert axis.index(NOW) == 0 and axis.index(minutes[-1]) == axis.count - 1
    assert axis_for([], NOW).count >= 1


def test_a_chart_has_a_bar_segment_per_value_with_a_tooltip() -> None:
    axis = axis_for([NOW, NOW + timedelta(minutes=2)], NOW)
    done = [3] + [0] * (axis.count - 1)
    svg = stacked_bars(
        axis, [("done", "#0a0", done), ("failed", "#a00", [1] * axis.count)], label="x"
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 1 + axis.count
    assert "<title>12:00:00: 3 done</title>" in svg


def test_the_report_is_self_contained_and_lists_what_needs_attention() -> None:
    failing = entry(
        "beqom-import",
        "PAY-11/X9/<payslip>.pdf",
        Status.FAILED,
        reasons=["beqom rejected the document: Worker 'X9' does not exist."],
        history=[{"at": NOW.isoformat(), "status": "FAILED", "run": "r"}],
    )
    report = Report(
        label="stack erphub-dev (eu-west-1)",
        generated=NOW,
        since=NOW - timedelta(days=7),
        flows=[
            FlowReport(
                flow="rossum-export",
                counts={"done": 5, "rejected": 1},
                outcomes=[(NOW - timedelta(minutes=5), "done"), (NOW, "rejected")],
                runs=[
                    Run(
                        "rossum-export",
                        "rossum-1001-a",
                        "SUCCEEDED",
                        NOW,
                        NOW + timedelta(seconds=3),
                    ),
                    Run(
                        "rossum-export",
                        "rossum-1001-b",
                        "FAILED",
                        NOW,
                        NOW,
                        "TransientError",
                        "ERP down",
                    ),
                ],
            ),
            FlowReport(flow="procuros-send"),
            FlowReport(flow="ebill-upload"),
            FlowReport(
                flow="beqom-import",
                counts={"failed": 1},
                outcomes=[(NOW, "failed")],
                has_runs=False,
            ),
        ],
        attention=[Attention(failing, advise(failing, {"Stage": "dev"}, NOW))],
        attention_total=1,
    )
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|src=|@import|url\(", page)
    assert "PAY-11/X9/&lt;payslip&gt;.pdf" in page and "<payslip>" not in page
    assert "Worker &#x27;X9&#x27; does not exist." in page
    assert "Needs attention (1)" in page
    assert "rossum-1001-b" in page and "ERP down" in page
    assert page.count("<svg") == 3  # outcomes of the 2 flows with data, runs of Rossum
    assert "no documents in this period" in page and "no executions in this period" in page
    assert "1 runs succeeded, 1 failed" in page


def test_a_deployed_stack_is_found_by_name_with_its_resources_and_parameters() -> None:
    properties = yaml_parse(TEMPLATE.read_text())["Resources"]["LedgerTable"]["Properties"]
    with mock_aws():
        boto3.client("cloudformation").create_stack(
            StackName="erphub-test",
            TemplateBody=json.dumps(
                {
                    "Parameters": {"Stage": {"Type": "String"}},
                    "Resources": {
                        "LedgerTable": {"Type": "AWS::DynamoDB::Table", "Properties": properties}
                    },
                }
            ),
            Parameters=[{"ParameterKey": "Stage", "ParameterValue": "test"}],
        )
        hub = Target.from_aws("erphub-test")
        assert hub.parameters == {"Stage": "test"}
        assert hub.label == "stack erphub-test (eu-west-1)"
        hub.ledger.claim("rossum-export", "1", owner="r", lease_seconds=0)
        assert [e.document_id for e in find(hub.ledger, "1")] == ["1"]
        with pytest.raises(LookupError, match="stack nope"):
            Target.from_aws("nope")


@pytest.mark.parametrize("command", ["show", "replay", "report", "status"])
def test_the_operations_commands_explain_themselves(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--stack" in result.output and "--endpoint" in result.output
