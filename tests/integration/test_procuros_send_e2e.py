"""The Procuros send end to end: local AWS stack (real template, ASL and handlers) + simulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import boto3
import pytest

from erphub import faults
from erphub.ledger import Ledger, Status
from erphub_local import config
from erphub_local.aws.stack import Execution, LocalStack
from erphub_local.demo import run_demo
from erphub_local.demos.procuros_send import (
    OutgoingSeed,
    ProcurosSendDemo,
    run_totals,
    seed_outgoing,
)
from erphub_local.runner import run_flow
from erphub_local.simulators import ErpSimulator, Fault, ProcurosSimulator
from erphub_local.simulators.procuros import identifier_of

pytestmark = pytest.mark.integration

FLOW = "procuros-send"
TICK = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
HTTP_ATTEMPTS = 2


class Env:
    def __init__(self, stack: LocalStack, erp: ErpSimulator, procuros: ProcurosSimulator) -> None:
        self.stack, self.erp, self.procuros = stack, erp, procuros
        self.ticks = 0

    def seed(self, **kwargs: Any) -> OutgoingSeed:
        return seed_outgoing(self.erp, self.procuros, **kwargs)

    def run(self) -> tuple[Execution, dict[str, int]]:
        self.ticks += 1
        executions = run_flow(self.stack, FLOW, when=TICK + timedelta(minutes=15 * self.ticks))
        assert len(executions) == 1
        return executions[0], run_totals(executions)

    def status(self, doc_id: str) -> tuple[str | None, str | None, str | None]:
        doc = self.erp.outgoing(doc_id)
        return doc["procurosStatus"], doc["procurosTransactionId"], doc["errorUrl"]

    def ledger(self) -> Ledger:
        return Ledger(boto3.resource("dynamodb").Table(self.stack.stack.physical("LedgerTable")))

    def expire_leases(self) -> None:
        """Time passes: every lease in the ledger runs out (as after LeaseSeconds)."""
        table = boto3.resource("dynamodb").Table(self.stack.stack.physical("LedgerTable"))
        for item in table.scan()["Items"]:
            if "leaseUntil" in item:
                table.update_item(
                    Key={"pk": item["pk"]},
                    UpdateExpression="SET leaseUntil = :past",
                    ExpressionAttributeValues={":past": 0},
                )


def variables(erp: ErpSimulator, procuros: ProcurosSimulator) -> dict[str, str]:
    return {
        **erp.hub_env(),
        **procuros.hub_env(),
        "HTTP_BACKOFF_SECONDS": "0.01",
        "HTTP_MAX_ATTEMPTS": str(HTTP_ATTEMPTS),
        "HTTP_MAX_RETRY_AFTER_SECONDS": "2",
    }


@pytest.fixture
def env() -> Iterator[Env]:
    with ErpSimulator() as erp, ProcurosSimulator() as procuros:
        settings = config.load(variables(erp, procuros), env_file=config.STATE_DIR / "none")
        with LocalStack(
            config.TEMPLATE,
            parameters=settings.parameters,
            secret_values=settings.secret_values,
            env_overrides=settings.env_overrides,
        ) as stack:
            yield Env(stack, erp, procuros)


def test_120_documents_follow_the_status_rules_and_errors_are_reported_once(env: Env) -> None:
    seed = env.seed(count=120)
    assert (len(seed.transmit), len(seed.no_action), len(seed.refused), len(seed.unreadable)) == (
        93,
        12,
        12,
        3,
    )
    figures = []
    for _ in range(4):
        execution, totals = env.run()
        assert execution.status == "SUCCEEDED"
        figures.append(
            tuple(
                totals.get(k, 0)
                for k in ("claimed", "posts", "transmitted", "noAction", "refused", "reported")
            )
        )
    # claimed, POSTs, TRANSMITTED, NO_ACTION, left empty, reported
    assert figures == [
        (120, 117, 93, 12, 15, 0),
        (15, 12, 0, 0, 15, 0),
        (15, 12, 0, 0, 15, 15),
        (15, 12, 0, 0, 15, 0),
    ]
    for doc_id in seed.transmit:
        held = env.procuros.transactions_for(seed.numbers[doc_id], seed.types[doc_id])
        assert [t["status"] for t in held] == ["SUCCESS"], doc_id
        assert env.status(doc_id) == ("TRANSMITTED", held[0]["procurosTransactionId"], None)
    for doc_id in seed.no_action:
        held = env.procuros.transactions_for(seed.numbers[doc_id], seed.types[doc_id])
        assert [t["status"] for t in held] == ["DROPPED"], doc_id
        assert env.status(doc_id) == ("NO_ACTION", held[0]["procurosTransactionId"], None)
    assert len(env.procuros.transactions) == 105
    ledger = env.ledger()
    for doc_id in seed.refused:
        status, _, error_url = env.status(doc_id)
        assert status is None and error_url is not None
        assert error_url in {r["errorUrl"] for r in env.procuros.refusals}
        assert env.procuros.posts_for(seed.numbers[doc_id]) == 4
        entry = ledger.get(FLOW, doc_id)
        assert entry is not None
        assert (entry.status, entry.attempts) == (Status.AWAITING_CORRECTION, 4)
    for doc_id in seed.unreadable:
        assert env.procuros.posts_for(seed.numbers[doc_id]) == 0
        assert env.status(doc_id)[2] is not None  # the error report's link
    for doc_id in seed.failing:
        reports = env.procuros.error_reports_for(seed.numbers[doc_id])
        assert len(reports) == 1, doc_id
        assert reports[0]["transactionType"] == seed.types[doc_id]
        assert doc_id in reports[0]["errorReason"]
    for doc_id in seed.already_sent:
        assert env.procuros.posts_for(seed.numbers[doc_id]) == 0


def test_accepted_by_procuros_but_the_erp_update_failed_is_posted_exactly_once(env: Env) -> None:
    seed = env.seed(count=8, inactive_ratio=0, refused_ratio=0, unreadable=0, already_sent=0)
    stalled = seed.transmit[2]
    env.erp.inject(
        Fault(
            status=503,
            times=HTTP_ATTEMPTS,
            method="PATCH",
            path_prefix=f"/outgoing-documents/{stalled}",
        )
    )
    execution, totals = env.run()
    assert (execution.status, totals["transmitted"], totals["deferred"]) == ("SUCCEEDED", 7, 1)
    assert env.status(stalled) == (None, None, None)
    entry = env.ledger().get(FLOW, stalled)
    assert entry is not None and entry.status is Status.PUSHED
    held = env.procuros.transactions_for(seed.numbers[stalled])
    assert len(held) == 1 and entry.external_id == held[0]["procurosTransactionId"]
    _, totals = env.run()
    assert (totals.get("posts", 0), totals["erpUpdateOnly"], totals["transmitted"]) == (0, 1, 1)
    for _ in range(3):
        _, totals = env.run()
        assert totals["claimed"] == 0
    assert env.procuros.posts_for(seed.numbers[stalled]) == 1
    assert env.status(stalled) == ("TRANSMITTED", held[0]["procurosTransactionId"], None)


def test_a_crash_between_procuros_and_the_erp_never_posts_again(env: Env) -> None:
    seed = env.seed(count=4, inactive_ratio=0, refused_ratio=0, unreadable=0, already_sent=0)
    faults.arm("procuros.before_erp_update")
    execution, _ = env.run()
    assert execution.status == "FAILED"
    assert faults.hits("procuros.before_erp_update") == 1
    for _ in range(2):  # reruns while the crashed run's lease holds
        assert env.run()[1]["claimed"] == 0
    env.expire_leases()
    for _ in range(3):
        env.run()
    for doc_id in seed.transmit:
        assert env.procuros.posts_for(seed.numbers[doc_id]) == 1, doc_id
        assert env.status(doc_id)[0] == "TRANSMITTED", doc_id
    assert len(env.procuros.transactions) == 4


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=504, method="POST", path_prefix="/v2/transactions", after_processing=True),
        Fault(
            status=502,
            method="POST",
            path_prefix="/v2/transactions",
            after_processing=True,
            reset_connection=True,
        ),
    ],
    ids=["504-after-storing", "connection-dropped-after-storing"],
)
def test_a_lost_answer_then_a_duplicate_is_treated_as_sent(env: Env, fault: Fault) -> None:
    seed = env.seed(count=3, inactive_ratio=0, refused_ratio=0, unreadable=0, already_sent=0)
    first = seed.numbers[seed.transmit[0]]
    env.procuros.listing_lag = 1  # Procuros lists it one lookup late: the first one misses it
    env.procuros.inject(fault)
    execution, totals = env.run()
    assert execution.status == "SUCCEEDED"
    assert (totals["alreadyReceived"], totals["transmitted"]) == (1, 3)
    calls = [c for c in env.procuros.calls if c.path == "/v2/transactions"]
    answers = [c.status for c in calls if identifier_of(c.body["type"], c.body["content"]) == first]
    assert answers == [0 if fault.reset_connection else 504, 400]
    held = env.procuros.transactions_for(first)
    assert len(held) == 1
    assert env.status(seed.transmit[0]) == ("TRANSMITTED", held[0]["procurosTransactionId"], None)
    for _ in range(2):
        env.run()
    assert env.procuros.posts_for(first) == 2


def test_a_lost_answer_found_in_procuros_is_not_sent_again(env: Env) -> None:
    seed = env.seed(count=2, inactive_ratio=0.5, refused_ratio=0, unreadable=0, already_sent=0)
    env.procuros.inject(
        Fault(status=500, method="POST", path_prefix="/v2/transactions", after_processing=True)
    )
    _, totals = env.run()
    assert (totals["reconciled"], totals["posts"]) == (1, 2)
    for doc_id in seed.pending:
        assert env.procuros.posts_for(seed.numbers[doc_id]) == 1
    assert {env.status(d)[0] for d in seed.pending} == {"TRANSMITTED", "NO_ACTION"}


def test_procuros_down_fails_the_chunk_which_step_functions_retries(env: Env) -> None:
    seed = env.seed(count=6, inactive_ratio=0, refused_ratio=0, unreadable=0, already_sent=0)
    # Every POST of the first three documents is answered 500 (two attempts each).
    env.procuros.inject(
        Fault(status=500, times=3 * HTTP_ATTEMPTS, method="POST", path_prefix="/v2/transactions")
    )
    execution, totals = env.run()
    assert execution.status == "SUCCEEDED"
    history = env.stack.execution_history(execution.arn)
    failed = [e for e in history if e["type"] == "LambdaFunctionFailed"]
    assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failed] == ["TransientError"]
    # The retried chunk sends the rest and skips the three left for the next run.
    assert (totals["transmitted"], totals.get("deferred", 0), totals["skipped"]) == (3, 0, 3)
    ledger = env.ledger()
    left = [ledger.get(FLOW, d) for d in seed.transmit[:3]]
    assert all(e is not None and e.status is Status.PUSHING for e in left)
    _, totals = env.run()  # the deferred ones are looked up, not found, and sent
    assert totals["transmitted"] == 3
    for doc_id in seed.transmit:
        assert len(env.procuros.transactions_for(seed.numbers[doc_id])) == 1
        assert env.status(doc_id)[0] == "TRANSMITTED"


def test_throttling_and_refused_requests_end_in_the_same_state(env: Env) -> None:
    seed = env.seed(count=12, inactive_ratio=0, refused_ratio=0, unreadable=0, already_sent=0)
    env.procuros.inject(
        Fault(status=429, times=2, retry_after=0.2, method="POST", path_prefix="/v2/transactions"),
        Fault(status=500, times=1, method="POST", path_prefix="/v2/transactions"),
    )
    env.erp.inject(Fault(status=503, times=1, method="GET", path_prefix="/outgoing-documents"))
    execution, totals = env.run()
    assert (execution.status, totals["transmitted"], totals.get("deferred", 0)) == (
        "SUCCEEDED",
        12,
        0,
    )
    assert env.procuros.retry_after_violations == 0
    assert (env.procuros.faults_served, env.erp.faults_served) == (3, 1)
    # 12 creates + 2 throttled + 1 answered 500 (looked up, not found, sent again)
    assert env.procuros.count("POST", "/v2/transactions") == 15
    assert all(len(env.procuros.transactions_for(seed.numbers[d])) == 1 for d in seed.transmit)


def test_erphub_local_run_procuros_send_exits_0(tmp_path: Path) -> None:
    with ErpSimulator() as erp, ProcurosSimulator() as procuros:
        seed = seed_outgoing(
            erp,
            procuros,
            count=4,
            inactive_ratio=0,
            refused_ratio=0.25,
            unreadable=0,
            already_sent=1,
        )
        run = subprocess.run(
            [str(Path(sys.executable).with_name("erphub")), "local", "run", FLOW],
            env={**os.environ, **variables(erp, procuros)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        outputs = json.loads(run.stdout)
        assert [o["status"] for o in outputs] == ["SUCCEEDED"]
        assert outputs[0]["execution"].startswith("procuros-send-")
        assert outputs[0]["output"]["list"]["claimed"] == 4
        assert {erp.outgoing(d)["procurosStatus"] for d in seed.transmit} == {"TRANSMITTED"}
        assert all(erp.outgoing(d)["errorUrl"] for d in seed.refused)


def test_the_demo_section_passes_its_own_checks() -> None:
    from rich.console import Console

    report = run_demo(Console(quiet=True), [ProcurosSendDemo(documents=16)])
    failed = [f"{c.what}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed
    assert len(report.checks) >= 15


class ErpOwner:
    """Stands in for the section that owns the stack's one ERP simulator (the Rossum export)."""

    title = "ERP owner"

    def __init__(self) -> None:
        self.erp = ErpSimulator()

    def __enter__(self) -> Self:
        self.erp.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.erp.stop()

    def env(self) -> dict[str, str]:
        return self.erp.hub_env()

    def run(self, console: object, stack: object, report: object) -> None:
        return None


def test_the_demo_section_reuses_another_sections_erp() -> None:
    from rich.console import Console

    owner = ErpOwner()
    section = ProcurosSendDemo(erp=owner.erp, documents=10, error_report_after=1)
    with ProcurosSendDemo(erp=owner.erp) as unstarted_erp:
        assert set(unstarted_erp.env()) == {
            "PROCUROS_BASE_URL",
            "PROCUROS_API_TOKEN",
            "PROCUROS_ERROR_REPORT_AFTER",
        }
        assert not owner.erp.running  # a borrowed ERP is started and stopped by its owner
    report = run_demo(Console(quiet=True), [owner, section])  # type: ignore[list-item]
    assert report.ok, [f"{c.what}: {c.detail}" for c in report.checks if not c.ok]
    assert any(d.startswith("PRC-") for d in owner.erp.outgoing_documents)
