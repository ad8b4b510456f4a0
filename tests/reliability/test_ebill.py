"""The eBill upload under every fault of RELIABILITY.md that applies to it.

The tests share one world (local stack + eBill simulator, whose presigned URLs really expire);
each drops its own files. The last test uses a second world with a short HTTP timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from erphub.flows.ebill_upload import DropRef, execution_name
from erphub_local.aws import inproc_lambda
from erphub_local.demos.ebill_upload import customers_file, s3_event
from erphub_local.drops import drop, execution_arn
from erphub_local.simulators import Fault
from erphub_local.simulators.ebill import BUCKET
from tests.reliability.harness import (
    RETRY_AFTER_S,
    SLOW_ENV,
    Dropped,
    Expect,
    assert_clean,
    crash_at_every_step,
    late_answer,
)

if TYPE_CHECKING:
    from tests.reliability.conftest import Recorder, Worlds

pytestmark = pytest.mark.integration

INPUTS = Path(__file__).parent / "inputs"
API = "/rest/batchProcess"
ONE_CUSTOMER = b"Account Number,Company Name,Primary Email\nE1,One Ltd,one@example.com\n"


def read(name: str) -> bytes:
    return (INPUTS / name).read_bytes()


@pytest.mark.scenario("R1")
def test_r1_a_crash_after_the_upload_starts_the_batch_over_and_finalizes_it_once(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.ebill()
    for crashes in (1, 2, 3):
        world.cycle()
        before = world.crashes()
        world.crash("ebill.upload.after_put", times=crashes)
        # Step Functions retries the crashed step; the retry finds the interrupted upload in
        # eBill and starts the batch over as a new attempt (the old Draft is never finalized).
        if crashes <= 2:
            execution = world.drop_customers("payees", rows=8, bad=1)
            assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
        else:  # the third attempt is the last: the drop fails visibly, with its reason
            execution = world.drop_file(
                "ebill/customers/payees-last.csv",
                ONE_CUSTOMER,
                Expect("rejected", "3 upload attempts failed"),
            )
            assert (execution.status, execution.error) == ("FAILED", "UploadAttemptsExhausted")
        assert world.crashes() - before == crashes
        assert_clean(figures.record(world), f"{crashes} crash(es)")


@pytest.mark.scenario("R2")
def test_r2_a_crash_at_any_step_boundary_ends_as_a_clean_run(
    worlds: Worlds, figures: Recorder
) -> None:
    crash_at_every_step(worlds.ebill(), "ebill", figures.record)


@pytest.mark.scenario("R3")
def test_r3_the_same_s3_event_three_times_uploads_one_batch(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.ebill()
    posts, uploads = world.sim.count("POST", API), len(world.sim.upload_attempts)
    execution = world.drop_customers("twice", rows=8, bad=1)
    assert execution.status == "SUCCEEDED"
    (key,) = world.expected
    entry = world.drop_entry(key, world.entries())
    assert entry is not None
    version = entry.document_id.rsplit("versionId=", 1)[1]
    for _ in range(2):  # S3 delivers the same event again
        answer = world.stack.invoke("EbillTriggerFunction", s3_event(world.bucket, key, version))
        assert answer == {"executions": {execution.name: None}}
        world.extra_faults += 1
    assert_clean(figures.record(world))
    assert world.sim.count("POST", API) - posts == 1  # one S3FileUpload
    assert [a.status for a in world.sim.upload_attempts[uploads:]] == [200]


@pytest.mark.scenario("R4")
def test_r4_two_executions_of_one_drop_upload_it_once(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.ebill()
    key = f"ebill/customers/overlap-{world.cycles}.csv"
    customers = customers_file(8, bad=0, prefix="OVL")
    world.expected[key] = Dropped(key, [f"OVL{n:05d}" for n in range(1, 9)], {})
    posts = world.sim.count("POST", API)
    with inproc_lambda.lock():  # both executions wait for their first step, then interleave
        dropped = drop(world.stack, key, customers.content)
        assert dropped.execution is not None and dropped.version_id is not None
        ref = DropRef(bucket=world.bucket, key=key, version_id=dropped.version_id, kind="customers")
        assert execution_name(ref) == dropped.execution
        replay = world.stack.start_execution(
            "EbillUploadStateMachine", {"drop": ref.dump()}, name=f"replay-{world.cycles}"
        )
    world.extra_faults += 1
    original = world.stack.wait_execution(execution_arn(world.stack, dropped.execution))
    replayed = world.stack.wait_execution(replay)
    # whichever claimed the drop first uploaded it; the other found it held, or already done
    outcomes = {original.status, replayed.status}
    assert "SUCCEEDED" in outcomes
    assert {e.error for e in (original, replayed) if e.status == "FAILED"} <= {"LeaseLostError"}
    assert_clean(figures.record(world))
    assert world.sim.count("POST", API) - posts == 1
    assert sum(b.finalize_calls for b in world.batches(key)) == 1


@pytest.mark.scenario("R6")
def test_r6_a_lost_upload_answer_is_looked_up_and_the_batch_started_over(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.ebill()
    world.sim.inject(Fault(status=504, method="POST", path_prefix=API, after_processing=True))
    execution = world.drop_customers("lost", rows=8, bad=1)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert_clean(figures.record(world))
    first, second = world.batches(next(iter(world.expected)))
    assert (first.status, first.uploads, first.finalize_calls) == ("Draft", 0, 0)  # abandoned
    assert (second.uploads, second.finalize_calls) == (1, 1)


@pytest.mark.scenario("R9")
def test_r9_an_expired_upload_url_is_asked_for_again(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.ebill()
    uploads = len(world.sim.upload_attempts)
    world.sim.expire_next_upload_urls(1)
    world.extra_faults += 1
    execution = world.drop_customers("late-upload", rows=8, bad=1)
    assert_clean(figures.record(world))
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    attempts = [(a.status, a.code) for a in world.sim.upload_attempts[uploads:]]
    assert attempts == [(403, "AccessDenied"), (200, "")]


@pytest.mark.scenario("R9")
def test_r9_an_expired_result_download_url_is_read_again(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.ebill()
    sim, calls = world.sim, len(world.sim.calls)
    # hours pass between reading the status and fetching its result: the URL has expired
    world.hooks["ebill"].on(
        "GET",
        f"/{BUCKET}/acme/archive/out/",
        lambda: sim.advance_clock(sim.download_url_ttl_s + 60),
    )
    execution = world.drop_customers("late-download", rows=8, bad=1)
    assert_clean(figures.record(world))
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    downloads = [
        c.status for c in sim.calls[calls:] if c.path.startswith(f"/{BUCKET}/acme/archive/")
    ]
    assert downloads == [403, 200]


@pytest.mark.scenario("R10")
def test_r10_ebill_rejects_one_row_of_ten(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.ebill()
    execution = world.drop_customers("one-bad", rows=10, bad=1)
    world.extra_faults += 1  # a row eBill must refuse
    tally = figures.record(world)
    assert_clean(tally)
    assert execution.output["results"]["outcome"] == "PARTIAL"
    assert tally.documents == 10
    (alert,) = world.alerts()
    assert "1 failed" in alert["Message"] and "Primary Email" in alert["Message"]


@pytest.mark.scenario("R11")
def test_r11_bad_files_and_bad_answers_fail_alone(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.ebill()
    folder = "ebill/customers"
    for name, reason in {
        "customers-wrong-delimiter.csv": "missing column(s)",
        "customers-latin1.csv": "not valid utf-8",
        "customers-empty.csv": "is empty (0 bytes)",
    }.items():
        world.drop_file(f"{folder}/{name}", read(name), Expect("rejected", reason))
    execution = world.drop_file(
        f"ebill/invoices/2026-11-{world.cycles}/manifest.json",
        read("manifest-missing-invoice.json"),
        Expect("rejected", "invalid manifest: invoice: field required"),
    )
    assert execution.error == "BadInputError"
    world.extra_faults += 4
    # an answer with an entity-expansion bomb is refused unread, and the drop fails visibly
    bomb = world.hooks["ebill"].respond("GET", API, read("billion-laughs.xml"), "application/xml")
    execution = world.drop_file(
        f"{folder}/bombed.csv", ONE_CUSTOMER, Expect("rejected", "refusing to read it")
    )
    assert (bomb.fired, execution.error) == (1, "EbillProtocolError")
    # an HTML page (a proxy's, say) answered as if it were the API's XML is not read either
    page = world.hooks["ebill"].respond("GET", API, read("status-page.html"), "text/html")
    execution = world.drop_file(
        f"{folder}/proxied.csv", ONE_CUSTOMER, Expect("rejected", "refusing to read it")
    )
    assert (page.fired, execution.error) == (1, "EbillProtocolError")
    # the same page with an error status is a transient failure: the step is retried
    world.hooks["ebill"].respond("GET", API, read("status-page.html"), "text/html", status=503)
    execution = world.drop_customers("after-the-page", rows=6, bad=1)
    assert execution.status == "SUCCEEDED"
    tally = figures.record(world)
    assert_clean(tally)
    assert tally.documents == 6 + 6


@pytest.mark.scenario("R7")
def test_r7_network_trouble_ends_as_a_clean_run_with_bounded_requests(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.ebill(latency_s=0.01, env=SLOW_ENV)
    before = world.requests()
    world.standard()
    assert_clean(world.tally(), "clean run")
    clean, clean_requests = world.snapshot(), world.requests() - before

    world.cycle()
    world.sim.inject(
        Fault(429, times=2, retry_after=RETRY_AFTER_S, method="GET", path_prefix=API),
        Fault(503, method="POST", path_prefix=API),
        Fault(502, method="GET", path_prefix=API, reset_connection=True),
    )
    world.hooks["ebill"].on("GET", API, late_answer())
    before = world.requests()
    world.standard()
    assert_clean(figures.record(world))
    assert world.snapshot() == clean
    assert world.sim.pending_faults == 0
    assert world.retry_after_violations() == 0
    assert world.requests() - before <= clean_requests + 3 * world.faults_injected()
