"""The beqom import under every fault of RELIABILITY.md that applies to it.

The tests share one world (local stack + beqom simulator); each drops its own documents. SQS
delivery is emulated as on AWS: batches, receive counts, partial batch failures, redelivery once
the visibility timeout (longer than the lease) has passed, the dead-letter queue after five
receives. The last test uses a second world with a short HTTP timeout.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from erphub.flows.beqom_import import FLOW
from erphub.ledger import Status
from erphub_local.aws import sqs_batches
from erphub_local.simulators import Fault
from erphub_local.simulators.beqom import IMPORT_PATH, TOKEN_PATH
from tests.reliability.harness import (
    OPEN_ROUND,
    RERUNS,
    RETRY_AFTER_S,
    SLOW_ENV,
    Expect,
    assert_clean,
    crash_at_every_step,
    late_answer,
)

if TYPE_CHECKING:
    from tests.reliability.conftest import Recorder, Worlds

pytestmark = pytest.mark.integration

INPUTS = Path(__file__).parent / "inputs"
MAX_FILE_BYTES = 20 * 1024 * 1024  # what beqom imports
HUGE_BYTES = MAX_FILE_BYTES + 1024 * 1024


def read(name: str) -> bytes:
    return (INPUTS / name).read_bytes()


@pytest.mark.scenario("R1")
def test_r1_a_crash_after_beqom_imported_is_reconciled_by_its_override(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.beqom()
    for reruns in RERUNS:
        world.cycle()
        world.crash("beqom.after_import")
        first, *_ = world.drop_documents(4)
        assert world.entries([first])[first].status is Status.PUSHING  # beqom holds it
        world.redeliver()  # the visibility timeout (longer than the lease) has run out
        for _ in range(reruns - 1):  # S3 and SQS deliver at least once: the same event again
            world.redeliver_event(f"beqom/{first}")
        assert_clean(figures.record(world), f"{reruns} rerun(s)")
        stored = world.sim.documents[tuple(first.split("/"))]  # type: ignore[index]
        assert stored.imports == 2  # the crashed import and its override, no more
        assert world.entries([first])[first].attributes["overridden"] == "true"
    assert world.crashes() == len(RERUNS)


@pytest.mark.scenario("R2")
def test_r2_a_crash_at_any_step_boundary_ends_as_a_clean_run(
    worlds: Worlds, figures: Recorder
) -> None:
    crash_at_every_step(worlds.beqom(), "beqom", figures.record)


@pytest.mark.scenario("R3")
def test_r3_the_same_s3_event_three_times_imports_once(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.beqom()
    keys = world.drop_documents(4)
    imports = world.sim.import_requests()
    for key in keys:
        for _ in range(2):
            world.redeliver_event(f"beqom/{key}")
    assert_clean(figures.record(world))
    assert world.sim.import_requests() == imports  # every repeat was recognised, none sent
    assert [world.sim.documents[tuple(k.split("/"))].imports for k in keys] == [1] * 4  # type: ignore[index]


@pytest.mark.scenario("R4")
def test_r4_a_delivery_overlapping_another_waits_and_imports_once(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.beqom()
    key = f"{OPEN_ROUND}/W900/payslip-{world.cycles}.pdf"
    imports = world.sim.import_requests()
    # another delivery of the same document is importing it right now
    assert world.ledger().claim(FLOW, key, owner="other-delivery", lease_seconds=900)
    world.extra_faults += 1
    world.drop(key)
    assert world.sim.import_requests() == imports  # it backed off instead of importing too
    world.redeliver()  # the other delivery's lease ran out; this one takes over
    assert_clean(figures.record(world))
    assert world.sim.import_requests() - imports == 1


@pytest.mark.scenario("R6")
def test_r6_a_lost_import_answer_is_reconciled_by_the_override(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.beqom()
    world.sim.inject(Fault(status=502, path_prefix=IMPORT_PATH, after_processing=True))
    (key,) = world.drop_documents(1)
    world.unknown_outcome[key] += 1
    assert_clean(figures.record(world))
    stored = world.sim.documents[tuple(key.split("/"))]  # type: ignore[index]
    assert stored.imports == 2  # stored, then overwritten by the retry: one document
    assert world.entries([key])[key].attributes["overridden"] == "true"


@pytest.mark.scenario("R8")
def test_r8_a_token_expiring_mid_run_is_renewed_once(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.beqom()
    world.drop_documents(2)  # the handler holds a token now
    world.cycle()
    tokens, calls = world.sim.token_requests(), len(world.sim.calls)
    # beqom's tokens expire between the 2nd and the 3rd import of the next batch
    world.hooks["beqom"].on("POST", IMPORT_PATH, lambda: None, times=2)
    world.hooks["beqom"].on("POST", IMPORT_PATH, world.sim.expire_tokens)
    world.drop_documents(6)
    assert_clean(figures.record(world))
    assert world.sim.token_requests() - tokens == 1
    assert [c.status for c in world.sim.calls[calls:] if c.path == IMPORT_PATH].count(401) == 1


@pytest.mark.scenario("R10")
def test_r10_beqom_rejects_one_document_of_ten(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.beqom()
    *_, rejected = world.drop_documents(10, rejected=1)
    world.extra_faults += 1  # a document beqom must refuse
    tally = figures.record(world)
    assert_clean(tally)
    assert tally.documents == 10
    reason = world.entries([rejected])[rejected].last_error or ""
    assert reason.startswith("beqom rejected the document: workerexternalId: Worker ")


@pytest.mark.scenario("R11")
def test_r11_bad_files_manifests_and_messages_fail_alone(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.beqom()
    sqs = world.stack.client("sqs")
    with sqs_batches.held():  # one delivery batch: the good ones go through with the bad
        for i in range(3):
            world.drop(f"{OPEN_ROUND}/W{700 + i}/payslip.pdf")
        for i, (name, reason) in enumerate(
            {
                "payslip-empty.pdf": "the file is empty",
                "payslip-not-a-pdf.pdf": "not a valid pdf",
                "payslip-setup.exe": "not allowed",
            }.items()
        ):
            extension = name.rsplit(".", 1)[1]
            key = f"{OPEN_ROUND}/W{710 + i}/payslip.{extension}"
            world.drop(key, read(name), Expect("rejected", reason))
        for name, reason in (
            ("beqom-manifest-wrong-columns.csv", "missing column(s)"),
            ("beqom-manifest-latin1.csv", "not utf-8"),
        ):
            key = f"beqom/_manifests/{name.removesuffix('.csv')}/manifest.csv"
            world.manifests[key] = Expect("rejected", reason)
            world.put(key, read(name))
        sqs.send_message(QueueUrl=world.queue(), MessageBody="<not an event>")
        world.expected_dead = 1
    while sqs_batches.redeliver(world.queue()):  # the unreadable message, until dead-lettered
        pass
    # a huge file is refused without being read into memory
    huge = f"{OPEN_ROUND}/W720/huge.pdf"
    body = b"%PDF-1.7 " + bytes(HUGE_BYTES)
    with sqs_batches.held():
        world.drop(huge, body, Expect("rejected", f"more than {MAX_FILE_BYTES}"))
        del body
        tracemalloc.start()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    world.extra_faults += 7
    tally = figures.record(world)
    assert_clean(tally)
    assert tally.documents == 3 + 3 + 2 + 1
    # the emulated S3 holds one copy of the object while it is handled; the hub adds none
    assert peak < 1.5 * HUGE_BYTES, f"peak {peak / 1e6:.1f} MB"
    # the unreadable message waits in the dead-letter queue, where an operator sees it
    dead_letters = world.stack.stack.physical("BeqomImportDeadLetterQueue")
    dead = sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["<not an event>"]
    for message in dead:  # the operator removes it
        sqs.delete_message(QueueUrl=dead_letters, ReceiptHandle=message["ReceiptHandle"])


@pytest.mark.scenario("R7")
def test_r7_network_trouble_ends_as_a_clean_run_with_bounded_requests(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.beqom(latency_s=0.01, env=SLOW_ENV)
    before = world.requests()
    world.standard()
    world.settle()
    assert_clean(world.tally(), "clean run")
    clean, clean_requests = world.snapshot(), world.requests() - before

    world.cycle()
    world.sim.inject(
        Fault(429, times=2, retry_after=RETRY_AFTER_S, path_prefix=IMPORT_PATH),
        Fault(503, times=2, path_prefix=IMPORT_PATH),
        Fault(502, path_prefix=IMPORT_PATH, reset_connection=True),
    )
    world.sim.expire_tokens()  # the next import asks for a token: that answer comes too late
    world.extra_faults += 1
    world.hooks["beqom"].on("POST", TOKEN_PATH, late_answer())
    before = world.requests()
    world.standard()
    world.settle()
    assert_clean(figures.record(world))
    assert world.snapshot() == clean
    assert world.sim.pending_faults == 0
    assert world.retry_after_violations() == 0
    assert world.requests() - before <= clean_requests + 3 * world.faults_injected()
