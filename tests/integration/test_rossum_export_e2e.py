"""The Rossum export end to end: local AWS stack (real template, ASL and handlers) + simulators."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from erphub import faults
from erphub_local import config
from erphub_local.aws.stack import LocalStack
from erphub_local.demo import run_demo
from erphub_local.demos.rossum_export import RossumExportDemo, expected_outcome
from erphub_local.runner import run_flow
from erphub_local.seed import DemoSeed, seed_demo
from erphub_local.simulators import ErpSimulator, Fault, RossumSimulator

pytestmark = pytest.mark.integration

QUEUES = (1001, 1002)
TICK = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class Env:
    def __init__(
        self, stack: LocalStack, rossum: RossumSimulator, erp: ErpSimulator, seed: DemoSeed
    ) -> None:
        self.stack, self.rossum, self.erp, self.seed = stack, rossum, erp, seed
        self.ticks = 0

    def run(self) -> list[str]:
        self.ticks += 1
        executions = run_flow(
            self.stack, "rossum-export", when=TICK + timedelta(minutes=5 * self.ticks)
        )
        return [e.status for e in executions]

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

    def final_state(self) -> tuple[dict[int, str], list[str]]:
        refs = sorted(inv["externalReference"] for inv in self.erp.invoices.values())
        return self.rossum.statuses(), refs


@pytest.fixture
def env() -> Iterator[Env]:
    with RossumSimulator() as rossum, ErpSimulator() as erp:
        seed = seed_demo(rossum, erp, queue_ids=QUEUES, per_queue=30)
        variables = {
            **rossum.hub_env(),
            "ROSSUM_QUEUE_IDS": ",".join(map(str, QUEUES)),
            **erp.hub_env(),
            "HTTP_BACKOFF_SECONDS": "0.01",
            "HTTP_MAX_RETRY_AFTER_SECONDS": "0.01",
        }
        settings = config.load(
            variables,
            env_file=config.STATE_DIR / "none",
        )
        with LocalStack(
            config.TEMPLATE,
            parameters=settings.parameters,
            secret_values=settings.secret_values,
            env_overrides=settings.env_overrides,
        ) as stack:
            yield Env(stack, rossum, erp, seed)


def expected(seed: DemoSeed, statuses: dict[int, str]) -> tuple[dict[int, str], list[str]]:
    outcome = expected_outcome(seed, statuses)
    return dict(sorted(outcome.items())), sorted(
        f"rossum:{i}" for i, s in outcome.items() if s == "exported"
    )


def test_one_run_exports_the_valid_and_fails_the_invalid(env: Env) -> None:
    assert env.run() == ["SUCCEEDED", "SUCCEEDED"]
    statuses, refs = env.final_state()
    assert (dict(sorted(statuses.items())), refs) == expected(env.seed, statuses)
    for annotation_id in (i for i, s in statuses.items() if s == "failed_export"):
        reason = env.seed.invalid.get(annotation_id, "duplicate_invoice_number")  # or its original
        message = env.rossum.annotation(annotation_id)["messages"][0]["content"]
        assert message.startswith("erphub could not export this document."), message
        keyword = {
            "unknown_supplier": "supplier",
            "duplicate_invoice_number": "invoiceNumber",
            "totals_mismatch": "total",
            "unsupported_currency": "currency",
            "missing_invoice_number": "document_id",
        }[reason]
        assert keyword.lower() in message.lower(), (reason, message)


def test_a_crash_after_the_erp_accepted_never_doubles_the_invoice(env: Env) -> None:
    faults.arm("push.after_erp_accept")
    statuses = env.run()
    assert "FAILED" in statuses
    assert faults.hits("push.after_erp_accept") == 1
    for _ in range(2):  # reruns while the crashed run's lease holds
        env.run()
    env.expire_leases()
    env.run()
    statuses, refs = env.final_state()
    assert (dict(sorted(statuses.items())), refs) == expected(env.seed, statuses)
    assert max(env.erp.create_count(r) for r in refs) == 1


def test_throttling_and_an_expired_token_end_in_the_same_state(env: Env) -> None:
    env.rossum.inject(Fault(status=429, times=2, retry_after=1, path_prefix="/api/v1/queues"))
    env.erp.inject(Fault(status=429, times=3, retry_after=1, path_prefix="/invoices"))
    env.rossum.inject(Fault(status=401, times=1, method="POST", path_prefix="/api/v1/queues"))
    assert env.run() == ["SUCCEEDED", "SUCCEEDED"]
    statuses, refs = env.final_state()
    assert (dict(sorted(statuses.items())), refs) == expected(env.seed, statuses)
    assert env.rossum.faults_served == 3 and env.erp.faults_served == 3
    assert env.rossum.count("POST", "/api/v1/auth/login") >= 2  # logged in again after the 401


def test_the_demo_passes_its_own_checks() -> None:
    from rich.console import Console

    report = run_demo(Console(quiet=True), [RossumExportDemo(per_queue=40)])
    failed = [f"{c.what}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed
    assert len(report.checks) >= 10
