"""The Rossum export flow against in-memory ports and a moto ledger built from the template."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from erphub import faults
from erphub.flows.rossum_export import FLOW
from erphub.flows.rossum_finalize import FinalizeDeps, FinalizeRequest, finalize
from erphub.flows.rossum_poll import PollDeps, PollRequest, poll_confirmed
from erphub.flows.rossum_push import PushDeps, PushRequest, push_to_erp
from erphub.ledger import Ledger, Status
from erphub.payloads import PayloadStore
from erphub.settings.rossum import RejectPolicy
from tests.fakes import FakeErp, FakeRossum, create_table_from_template, valid_header

QUEUE = 7


class World:
    def __init__(self, clock: list[float]) -> None:
        self.rossum = FakeRossum()
        self.erp = FakeErp()
        table = boto3.resource("dynamodb").Table(create_table_from_template())
        self.ledger = Ledger(table, clock=lambda: clock[0])
        boto3.client("s3").create_bucket(
            Bucket="payloads", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        self.payloads = PayloadStore(boto3.client("s3"), "payloads")
        self.policy = RejectPolicy.FAILED_EXPORT

    def run(self, run_id: str, *, lease: int = 900) -> dict[str, int]:
        """One execution, step by step, as the state machine runs it."""
        poll = poll_confirmed(
            PollRequest(queue_id=QUEUE, run_id=run_id),
            PollDeps(self.rossum, self.ledger, self.payloads, lease),
        )
        pushes = [
            push_to_erp(
                PushRequest(queue_id=QUEUE, run_id=run_id, chunk_key=chunk.key),
                PushDeps(self.erp, self.payloads),
            )
            for chunk in poll.chunks
        ]
        result = finalize(
            FinalizeRequest(queue_id=QUEUE, run_id=run_id, chunks=pushes),
            FinalizeDeps(self.rossum, self.ledger, self.payloads, self.policy, 2),
        )
        return {"claimed": poll.claimed, **result.model_dump()}


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]


@pytest.fixture
def world(clock: list[float]) -> Iterator[World]:
    with mock_aws():
        yield World(clock)


def test_valid_invoices_are_exported_and_rejected_ones_failed_with_the_reason(world: World) -> None:
    for i in range(1, 251):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}", vat="DE111" if i % 10 else "XX999"))
    summary = world.run("run-1")
    assert summary["claimed"] == 250
    assert summary["exported"] == 225
    assert summary["failed_export"] == 25
    # exactly the accepted ids, at most 100 per call, ceil(225/100) calls
    assert [len(c) for c in world.rossum.export_calls] == [100, 100, 25]
    assert sorted(i for c in world.rossum.export_calls for i in c) == [
        i for i in range(1, 251) if i % 10
    ]
    assert len(world.erp.creates) == 225
    failed_id, message = world.rossum.failed_export_calls[0]
    assert failed_id == 10
    assert "unknown supplier VAT id XX999" in message
    assert world.ledger.get(FLOW, "10").status is Status.FAILED_EXPORT


def test_a_second_run_sends_nothing(world: World) -> None:
    for i in range(1, 21):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}"))
    world.run("run-1")
    calls = len(world.rossum.export_calls)
    again = world.run("run-2")
    assert again["claimed"] == 0
    assert len(world.erp.creates) == 20
    assert len(world.rossum.export_calls) == calls


def test_an_annotation_confirmed_after_the_poll_is_not_exported_in_that_run(world: World) -> None:
    world.rossum.add(QUEUE, 1, valid_header("N1"))
    poll = poll_confirmed(
        PollRequest(queue_id=QUEUE, run_id="run-1"),
        PollDeps(world.rossum, world.ledger, world.payloads, 900),
    )
    world.rossum.add(QUEUE, 2, valid_header("N2"))  # confirmed by a user meanwhile
    push = push_to_erp(
        PushRequest(queue_id=QUEUE, run_id="run-1", chunk_key=poll.chunks[0].key),
        PushDeps(world.erp, world.payloads),
    )
    finalize(
        FinalizeRequest(queue_id=QUEUE, run_id="run-1", chunks=[push]),
        FinalizeDeps(world.rossum, world.ledger, world.payloads, RejectPolicy.FAILED_EXPORT, 1),
    )
    assert world.rossum.export_calls == [[1]]
    assert world.rossum.status(2) == "confirmed"
    assert world.run("run-2")["exported"] == 1  # the next run takes it


@pytest.mark.parametrize("reruns", [1, 2, 5])
def test_crash_after_erp_accept_never_creates_a_second_invoice(
    world: World, clock: list[float], reruns: int
) -> None:
    world.rossum.add(QUEUE, 1, valid_header("N1"))
    faults.arm("push.after_erp_accept")
    with pytest.raises(faults.InjectedCrash):
        world.run("run-crash")
    assert world.ledger.get(FLOW, "1").status is Status.PUSHING
    for n in range(reruns):  # while the lease holds, nobody else touches it
        assert world.run(f"rerun-{n}")["claimed"] == 0
    clock[0] += 901  # the crashed run's lease expires
    summary = world.run("after-lease")
    assert summary["exported"] == 1
    assert world.erp.creates == ["rossum:1"]
    assert world.erp.lookups == ["rossum:1"]  # reconciled before any second push
    assert world.rossum.status(1) == "exported"


def test_overlapping_runs_claim_each_document_once(world: World) -> None:
    for i in range(1, 6):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}"))
    deps = PollDeps(world.rossum, world.ledger, world.payloads, 900)
    first = poll_confirmed(PollRequest(queue_id=QUEUE, run_id="a"), deps)
    second = poll_confirmed(PollRequest(queue_id=QUEUE, run_id="b"), deps)
    assert (first.claimed, second.claimed, second.leased_elsewhere) == (5, 0, 5)


def test_keep_confirmed_policy_retries_before_failed_export(world: World) -> None:
    world.policy = RejectPolicy.KEEP_CONFIRMED
    world.rossum.add(QUEUE, 1, valid_header("N1", vat="XX999"))
    assert world.run("r1")["kept_confirmed"] == 1
    assert world.rossum.status(1) == "confirmed"
    assert world.run("r2")["failed_export"] == 1
    assert world.rossum.status(1) == "failed_export"


def test_a_transient_erp_failure_defers_only_that_document(world: World) -> None:
    for i in range(1, 4):
        world.rossum.add(QUEUE, i, valid_header(f"N{i}"))
    world.erp.fail_next = 1
    summary = world.run("r1")
    assert (summary["exported"], summary["deferred"]) == (2, 1)
    entry = world.ledger.get(FLOW, "1")
    assert entry.status is Status.PUSHING
    assert "HTTP 503" in (entry.last_error or "")
    assert world.run("r2")["exported"] == 1
    assert sorted(world.erp.creates) == ["rossum:1", "rossum:2", "rossum:3"]


def test_unreadable_documents_fail_alone_with_every_problem(world: World) -> None:
    world.rossum.add(QUEUE, 1, valid_header("N1"))
    bad = valid_header("N2")
    del bad["document_id"]
    bad["date_issue"] = "yesterday"
    world.rossum.add(QUEUE, 2, bad)
    summary = world.run("r1")
    assert (summary["exported"], summary["failed_export"]) == (1, 1)
    message = dict(world.rossum.failed_export_calls)[2]
    assert "document_id: missing" in message
    assert "date_issue: 'yesterday' is not a date" in message
