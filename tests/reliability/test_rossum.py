"""The Rossum export under every fault of RELIABILITY.md that applies to it.

The tests share one world (local stack + Rossum and ERP simulators), each with its own documents.
Its ERP books a repeated POST twice (``dedupe=False``): only the hub's own reconciliation keeps an
invoice single. The last tests use a second world whose ERP answers 409 for a known reference, as
the ERP contract says, with a short HTTP timeout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from erphub_local.simulators import Fault
from tests.reliability.harness import (
    QUEUE,
    RERUNS,
    RETRY_AFTER_S,
    SLOW_ENV,
    Expect,
    assert_clean,
    crash_at_every_step,
    late_answer,
    overlapping_runs_claim_once,
    repeated_schedule_event_starts_one_run,
)

if TYPE_CHECKING:
    from tests.reliability.conftest import Recorder, Worlds

pytestmark = pytest.mark.integration

INPUTS = Path(__file__).parent / "inputs"
EXPORT = f"/api/v1/queues/{QUEUE}/export"


@pytest.mark.scenario("R1")
def test_r1_a_crash_after_the_erp_accepted_never_doubles_an_invoice(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.rossum()
    for reruns in RERUNS:
        world.cycle()
        world.seed(valid=6)
        posts, lookups = world.erp.count("POST", "/invoices"), world.erp.count("GET", "/invoices")
        world.crash("push.after_erp_accept")
        assert [e.status for e in world.run()] == ["FAILED"]
        assert world.erp.count("POST", "/invoices") - posts == 6  # the ERP holds all six
        for _ in range(reruns):  # later ticks while the crashed run's lease holds claim nothing
            (execution,) = world.run()
            assert (execution.status, execution.output["poll"]["claimed"]) == ("SUCCEEDED", 0)
        world.expire_leases()
        (execution,) = world.run()
        assert execution.status == "SUCCEEDED"
        assert_clean(figures.record(world), f"{reruns} rerun(s)")
        # each invoice was looked up once and not sent again
        assert world.erp.count("POST", "/invoices") - posts == 6
        assert world.erp.count("GET", "/invoices") - lookups == 6
    assert world.crashes() == len(RERUNS)


@pytest.mark.scenario("R2")
def test_r2_a_crash_at_any_step_boundary_ends_as_a_clean_run(
    worlds: Worlds, figures: Recorder
) -> None:
    crash_at_every_step(worlds.rossum(), "rossum", figures.record)


@pytest.mark.scenario("R3")
def test_r3_the_same_schedule_event_three_times_starts_one_run(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.rossum()
    world.seed(valid=5, rejected=1)
    repeated_schedule_event_starts_one_run(world, figures.record)


@pytest.mark.scenario("R4")
def test_r4_two_overlapping_runs_claim_and_export_each_document_once(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.rossum()
    documents = [str(i) for i in world.seed(valid=8)]
    overlapping_runs_claim_once(world, documents, figures.record, "poll")


@pytest.mark.scenario("R8")
def test_r8_a_token_expiring_mid_run_means_one_more_login(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.rossum()
    world.seed(valid=2)
    world.run()  # the handlers hold tokens now
    world.cycle()
    world.seed(valid=5)
    logins, calls = world.rossum.count("POST", "/api/v1/auth/login"), len(world.rossum.calls)
    # Rossum expires every token just before the export call, which is refused with 401
    world.hooks["rossum"].on("POST", EXPORT, world.rossum.expire_tokens)
    (execution,) = world.run()
    assert execution.status == "SUCCEEDED"
    assert_clean(figures.record(world))
    assert world.rossum.count("POST", "/api/v1/auth/login") - logins == 1
    refused = [c for c in world.rossum.calls[calls:] if c.status == 401]
    assert [c.path for c in refused] == [EXPORT]


@pytest.mark.scenario("R10")
def test_r10_the_erp_rejects_one_invoice_of_ten(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.rossum()
    *_, rejected = world.seed(valid=9, rejected=1)
    world.extra_faults += 1  # an invoice the ERP must refuse
    (execution,) = world.run()
    tally = figures.record(world)
    assert_clean(tally)
    assert execution.output["finalize"]["exported"] == 9
    assert tally.documents == 10
    # the operator reads the ERP's reason in Rossum, next to the document
    message = world.message(rejected)
    assert message.startswith("erphub could not export this document.")
    assert "Unknown supplier VAT id" in message


@pytest.mark.scenario("R11")
def test_r11_an_annotation_missing_fields_fails_alone(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.rossum()
    world.seed(valid=4)
    content = json.loads((INPUTS / "annotation-missing-fields.json").read_text())
    broken = world.add(content, Expect("rejected", "cannot read the invoice"))
    world.extra_faults += 1
    (execution,) = world.run()
    assert execution.status == "SUCCEEDED"
    assert_clean(figures.record(world))
    message = world.message(broken)
    assert "document_id" in message and "amount_total" in message, message


# --- with an ERP that answers 409 for a known reference, and a short HTTP timeout --------------

CONTRACT_ERP = {"dedupe": True, "latency_s": 0.01, "env": SLOW_ENV}


@pytest.mark.scenario("R6")
def test_r6_a_lost_erp_answer_is_reconciled_by_its_duplicate_reference(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.rossum(**CONTRACT_ERP)
    ids = world.seed(valid=4)
    calls = len(world.erp.calls)
    world.erp.inject(
        Fault(status=500, method="POST", path_prefix="/invoices", after_processing=True)
    )
    (execution,) = world.run()
    assert execution.status == "SUCCEEDED"
    assert_clean(figures.record(world))
    answers = sorted(c.status for c in world.erp.calls[calls:] if c.method == "POST")
    assert answers == [201, 201, 201, 409, 500]  # the retried one answered 409 with its id
    assert all(world.erp.create_count(f"rossum:{i}") == 1 for i in ids)


@pytest.mark.scenario("R7")
def test_r7_network_trouble_ends_as_a_clean_run_with_bounded_requests(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.rossum(**CONTRACT_ERP)
    before = world.requests()
    world.standard()
    assert_clean(world.tally(), "clean run")
    clean, clean_requests = world.snapshot(), world.requests() - before

    world.cycle()
    world.rossum.inject(
        Fault(429, times=2, retry_after=RETRY_AFTER_S, method="GET", path_prefix=EXPORT),
        Fault(503, method="POST", path_prefix=EXPORT),
        Fault(502, method="GET", path_prefix=EXPORT, reset_connection=True),
    )
    world.erp.inject(
        Fault(503, times=2, method="POST", path_prefix="/invoices"),
        Fault(502, method="POST", path_prefix="/invoices", reset_connection=True),
    )
    world.hooks["erp"].on("POST", "/invoices", late_answer())
    before = world.requests()
    world.standard()
    world.settle()
    assert_clean(figures.record(world))
    assert world.snapshot() == clean
    assert (world.rossum.pending_faults, world.erp.pending_faults) == (0, 0)
    assert world.retry_after_violations() == 0
    assert world.requests() - before <= clean_requests + 3 * world.faults_injected()
