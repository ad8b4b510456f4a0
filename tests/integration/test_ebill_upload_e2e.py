"""The eBill batch upload end to end: a drop into the local stack's DropBucket fires the S3
trigger (moto, in-process), the real state machine and handlers run, the eBill simulator
answers over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from erphub import faults
from erphub.ledger import Status
from erphub_local import config
from erphub_local.aws.stack import Execution, LocalStack
from erphub_local.cli import main
from erphub_local.demo import run_demo
from erphub_local.demos.ebill_upload import (
    EbillUploadDemo,
    customers_file,
    failed_rows,
    invoice_batch,
    ledger_entries,
    s3_event,
)
from erphub_local.drops import Dropped, drop, wait_for
from erphub_local.simulators.ebill import EbillSimulator

pytestmark = pytest.mark.integration

FOLDER = "ebill/invoices/2026-11/"


class Env:
    def __init__(self, stack: LocalStack, sim: EbillSimulator) -> None:
        self.stack, self.sim = stack, sim
        sqs, sns = stack.client("sqs"), stack.client("sns")
        self.alerts_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.alerts_url, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=stack.stack.physical("AlertTopic"),
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
        )

    def drop(self, key: str, body: bytes) -> Dropped:
        return drop(self.stack, key, body)

    def run(self, key: str, body: bytes) -> Execution:
        (execution,) = wait_for(self.stack, [self.drop(key, body)], timeout_s=120)
        return execution

    def run_invoices(self) -> tuple[Execution, list[Dropped]]:
        self.sim.add_customer("C00001")
        self.sim.add_customer("C00002")
        batch = invoice_batch(["C00001", "C00002"], invoices=20)
        dropped = [self.drop(FOLDER + name, body) for name, body in batch.files.items()]
        (execution,) = wait_for(self.stack, dropped, timeout_s=120)
        return execution, dropped

    def alerts(self) -> list[dict[str, str]]:
        messages = self.stack.client("sqs").receive_message(
            QueueUrl=self.alerts_url, MaxNumberOfMessages=10
        )
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    def executions(self) -> list[Execution]:
        return self.stack.executions("EbillUploadStateMachine")


@pytest.fixture
def env() -> Iterator[Env]:
    with EbillSimulator(polls_per_stage=2) as sim:
        settings = config.load(
            {
                **sim.hub_env(),
                "HTTP_BACKOFF_SECONDS": "0.01",
            },
            env_file=config.STATE_DIR / "none",
        )
        with LocalStack(
            config.TEMPLATE,
            parameters=settings.parameters,
            secret_values=settings.secret_values,
            env_overrides=settings.env_overrides,
        ) as stack:
            yield Env(stack, sim)


def results(execution: Execution) -> dict[str, Any]:
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    output: dict[str, Any] = execution.output["results"]
    return output


def test_a_customers_file_with_bad_rows_ends_partial_with_exactly_those_rows_failed(
    env: Env,
) -> None:
    customers = customers_file(1200, bad=7)
    execution = env.run("ebill/customers/customers-2026-11.csv", customers.content)
    summary = results(execution)
    assert (summary["ebillStatus"], summary["outcome"]) == ("Partial Success", "PARTIAL")
    assert (summary["successCount"], summary["failCount"]) == (1193, 7)
    job_id = summary["files"][0]["jobId"]
    entries = ledger_entries(env.stack)
    recorded = failed_rows(entries, job_id)
    assert sorted(recorded) == sorted(customers.bad)
    assert all(e.reasons and e.lease_owner is None for e in recorded.values())
    # the result CSV is in the payload bucket, one line per row
    bucket, key = summary["files"][0]["result"].removeprefix("s3://").split("/", 1)
    assert bucket == env.stack.stack.physical("PayloadBucket")
    body = env.stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body.decode().strip().splitlines()) == 1201
    # the drop is PARTIAL in the ledger, and the operators were told
    (batch,) = [e for e in entries if e.document_id.startswith("s3://")]
    assert batch.status == Status.PARTIAL and batch.external_id == summary["files"][0]["id"]
    (alert,) = env.alerts()
    assert alert["Subject"] == "erphub eBill customers batch partly failed: customers-2026-11.csv"
    assert "7 failed" in alert["Message"] and "X-Amz-Signature" not in alert["Message"]


def test_an_invoice_batch_is_finalized_once_by_its_parent_and_reports_each_child(
    env: Env,
) -> None:
    execution, _ = env.run_invoices()
    summary = results(execution)
    parent = execution.output["upload"]["parent"]
    assert env.sim.finalize_bodies == [{"id": parent["id"], "jobId": parent["jobId"]}]
    children = execution.output["upload"]["children"]
    assert [env.sim.batch(c["jobId"]).parent_id for c in children] == [int(parent["id"])] * 2
    assert [(f["file"], f["status"], f["failedRows"]) for f in summary["files"]] == [
        ("invoices.csv", "Partial Success", 2),
        ("items-1.csv", "Success", 0),
        ("items-2.csv", "Partial Success", 1),
    ]
    assert all(f["result"] for f in summary["files"])


def test_a_duplicated_s3_event_starts_one_batch(env: Env) -> None:
    execution, dropped = env.run_invoices()
    results(execution)
    bucket = env.stack.stack.physical("DropBucket")
    manifest = dropped[-1]
    for _ in range(3):
        answer = env.stack.invoke(
            "EbillTriggerFunction", s3_event(bucket, manifest.key, manifest.version_id)
        )
        assert answer == {"executions": {execution.name: None}}
    assert [e.name for e in env.executions()] == [execution.name]
    assert env.sim.count("POST", "/rest/batchProcess") == 3  # one S3FileUpload per file
    assert len(env.sim.finalize_bodies) == 1
    assert [a.status for a in env.sim.upload_attempts] == [200, 200, 200]


def test_an_expired_upload_url_is_asked_for_again_and_the_file_uploaded_once(env: Env) -> None:
    env.sim.expire_next_upload_urls(1)
    execution = env.run("ebill/customers/c.csv", customers_file(50, bad=0).content)
    summary = results(execution)
    assert summary["outcome"] == "IMPORTED"
    attempts = [(a.status, a.code) for a in env.sim.upload_attempts]
    assert attempts == [(403, "AccessDenied"), (200, "")]
    first, second = (b for b in env.sim.batches)
    assert (first.status, first.uploads) == ("Draft", 0)  # abandoned, never finalized
    assert (second.status, second.uploads, second.finalize_calls) == ("Success", 1, 1)
    assert second.job_id.endswith("_A2_CUS") and env.alerts() == []


def test_a_crash_after_the_upload_is_retried_into_the_same_end_state(env: Env) -> None:
    faults.arm("ebill.upload.after_put")
    execution = env.run("ebill/customers/c.csv", customers_file(30, bad=1).content)
    summary = results(execution)
    assert faults.hits("ebill.upload.after_put") == 1
    assert (summary["outcome"], summary["failCount"]) == ("PARTIAL", 1)
    finalized = [b for b in env.sim.batches if b.finalize_calls]
    assert len(finalized) == 1 and finalized[0].job_id.endswith("_A2_CUS")


def test_a_bad_manifest_fails_visibly_with_its_reason(env: Env) -> None:
    execution = env.run(FOLDER + "manifest.json", b'{"invoice": "missing.csv"}')
    assert execution.status == "FAILED"
    assert execution.error == "BadInputError"
    (batch,) = ledger_entries(env.stack)
    assert batch.status == Status.FAILED
    assert batch.last_error == (
        f"BadInputError: s3://{env.stack.stack.physical('DropBucket')}/{FOLDER}missing.csv does"
        f" not exist (named in s3://{env.stack.stack.physical('DropBucket')}/{FOLDER}manifest.json)"
    )
    (alert,) = env.alerts()
    assert alert["Subject"] == "erphub eBill invoices batch failed: 2026-11"
    assert "missing.csv does not exist" in alert["Message"]
    assert env.sim.calls == []


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(config, "STATE_DIR", tmp_path / ".erphub")
    return tmp_path / ".erphub"


def test_local_drop_uploads_waits_and_prints_the_outputs(tmp_path: Path, state_dir: Path) -> None:
    with EbillSimulator() as sim:
        sim.add_customer("C00001")
        files = []
        for name, body in invoice_batch(["C00001"], invoices=4).files.items():
            (tmp_path / name).write_bytes(body)
            files.append(str(tmp_path / name))
        variables = sim.hub_env()
        result = CliRunner().invoke(main, ["local", "drop", *files, "--key", FOLDER], env=variables)
        assert result.exit_code == 0, result.output
        (output,) = json.loads(result.stdout)
        assert output["status"] == "SUCCEEDED"
        assert output["execution"].startswith("ebill-inv-2026-11-")
        assert output["output"]["results"]["outcome"] == "PARTIAL"  # the orphan line item
        assert len(sim.finalize_bodies) == 1


def test_local_drop_names_the_missing_variables(tmp_path: Path, state_dir: Path) -> None:
    (tmp_path / "c.csv").write_text("Account Number\n1\n")
    result = CliRunner().invoke(
        main,
        ["local", "drop", str(tmp_path / "c.csv"), "--key", "ebill/customers/c.csv"],
        env={"EBILL_BASE_URL": "", "EBILL_PASSWORD": ""},
    )
    assert result.exit_code == 2
    assert "EBILL_BASE_URL" in result.output and "EBILL_PASSWORD" in result.output


def test_ebill_init_asks_first_and_runs_once_per_job_id() -> None:
    with EbillSimulator() as sim:
        sim.add_customer("C1", balance="50.00")
        variables = sim.hub_env()
        args = ["ebill", "init", "--job-id", "NOV_INIT", "--carry-forward", "all"]
        declined = CliRunner().invoke(
            main, [*args, "--zero-out-balances"], env=variables, input="n\n"
        )
        assert declined.exit_code == 1 and "Aborted" in declined.output
        assert sim.calls == [] and sim.customers["C1"]["balance"] == 50
        done = CliRunner().invoke(main, [*args, "--zero-out-balances", "--yes"], env=variables)
        assert done.exit_code == 0, done.output
        report = json.loads(done.stdout)
        assert (report["jobId"], report["started"]) == ("NOV_INIT", True)
        assert [c["element"] for c in report["children"]] == [
            "carryForwardInvoice",
            "carryForwardCreditMemo",
            "carryForwardDebitMemo",
        ]
        assert sim.customers["C1"]["balance"] == 0
        again = CliRunner().invoke(main, [*args, "--yes"], env=variables)
        assert again.exit_code == 0 and json.loads(again.stdout)["started"] is False
        assert sim.count("POST", "/rest/batchProcess") == 1


def test_ebill_init_refuses_to_do_nothing() -> None:
    result = CliRunner().invoke(main, ["ebill", "init", "--job-id", "J"])
    assert result.exit_code == 2 and "nothing to do" in result.output


def test_the_demo_section_passes_its_own_checks() -> None:
    from rich.console import Console

    report = run_demo(Console(quiet=True), [EbillUploadDemo(customers=300, invoices=20)])
    failed = [f"{c.what}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed
    assert len(report.checks) == 9
