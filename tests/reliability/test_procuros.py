"""The Procuros send under every fault of RELIABILITY.md that applies to it.

The tests share one world (local stack + ERP and Procuros simulators), each with its own
documents; errors are reported to Procuros after the first refusal. The last test uses a second
world with a short HTTP timeout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from erphub.ledger import Status
from erphub_local.simulators import Fault
from tests.reliability.harness import (
    HTTP_ENV,
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
TRANSACTIONS = "/v2/transactions"


@pytest.mark.scenario("R1")
def test_r1_a_crash_after_procuros_accepted_never_posts_again(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.procuros()
    for reruns in RERUNS:
        world.cycle()
        seed = world.seed(4)
        world.crash("procuros.after_accept")
        execution, _ = world.run()
        assert execution.status == "FAILED"
        for _ in range(reruns):  # later ticks while the crashed run's lease holds
            execution, totals = world.run()
            assert (execution.status, totals.get("claimed", 0)) == ("SUCCEEDED", 0)
        world.expire_leases()
        execution, totals = world.run()
        assert execution.status == "SUCCEEDED"
        assert totals["reconciled"] == 1  # found in Procuros, not sent again
        assert_clean(figures.record(world), f"{reruns} rerun(s)")
        assert all(len(world.posts(d)) == 1 for d in seed.transmit)
    assert world.crashes() == len(RERUNS)


@pytest.mark.scenario("R2")
def test_r2_a_crash_at_any_step_boundary_ends_as_a_clean_run(
    worlds: Worlds, figures: Recorder
) -> None:
    crash_at_every_step(worlds.procuros(), "procuros", figures.record)


@pytest.mark.scenario("R3")
def test_r3_the_same_schedule_event_three_times_starts_one_run(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.procuros()
    world.seed(6, refused=1)
    repeated_schedule_event_starts_one_run(world, figures.record)


@pytest.mark.scenario("R4")
def test_r4_two_overlapping_runs_claim_and_send_each_document_once(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.procuros()
    documents = list(world.seed(8).transmit)
    overlapping_runs_claim_once(world, documents, figures.record, "list")


@pytest.mark.scenario("R5")
def test_r5_accepted_by_procuros_but_the_erp_update_failed_updates_the_erp_only(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.procuros()
    seed = world.seed(6)
    stalled = seed.transmit[2]
    world.erp.inject(
        Fault(
            status=503,
            times=int(HTTP_ENV["HTTP_MAX_ATTEMPTS"]),
            method="PATCH",
            path_prefix=f"/outgoing-documents/{stalled}",
        )
    )
    execution, totals = world.run()
    assert (execution.status, totals["transmitted"], totals["deferred"]) == ("SUCCEEDED", 5, 1)
    entry = world.entries([stalled])[stalled]
    assert entry.status is Status.PUSHED  # Procuros holds it; only the ERP was not told
    assert world.erp.outgoing(stalled)["procurosStatus"] is None
    execution, totals = world.run()
    assert_clean(figures.record(world))
    assert (totals.get("posts", 0), totals["erpUpdateOnly"], totals["transmitted"]) == (0, 1, 1)
    assert len(world.posts(stalled)) == 1
    assert entry.external_id == world.stored(stalled)[0]["procurosTransactionId"]


@pytest.mark.scenario("R6")
def test_r6_payload_already_received_after_a_lost_answer_is_taken_as_sent(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.procuros()
    world.procuros.listing_lag = 1  # Procuros lists a new transaction one lookup late
    try:
        seed = world.seed(4)
        world.procuros.inject(
            Fault(status=504, method="POST", path_prefix=TRANSACTIONS, after_processing=True)
        )
        execution, totals = world.run()
        first = seed.transmit[0]
        answers = [c.status for c in world.posts(first)]
        world.run()  # not sent again
        assert_clean(figures.record(world))
        assert execution.status == "SUCCEEDED"
        assert (totals["alreadyReceived"], totals["transmitted"]) == (1, 4)
        # stored, then "Payload already received": sent, reconciled, never sent again
        assert answers == [504, 400]
        assert len(world.posts(first)) == 2
    finally:
        world.procuros.listing_lag = 0


@pytest.mark.scenario("R10")
def test_r10_procuros_refuses_one_transaction_of_ten(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.procuros()
    seed = world.seed(10, refused=1)
    world.extra_faults += 1  # a transaction Procuros must refuse
    _, totals = world.run()
    tally = figures.record(world)
    assert_clean(tally)
    assert (totals["transmitted"], totals["refused"]) == (9, 1)
    assert tally.documents == 10
    (refused,) = seed.refused
    error_url = world.erp.outgoing(refused)["errorUrl"]  # the portal link, in the ERP
    assert error_url in {r["errorUrl"] for r in world.procuros.refusals}
    assert len(world.procuros.error_reports_for(seed.numbers[refused])) == 1


@pytest.mark.scenario("R11")
def test_r11_erp_documents_it_cannot_read_fail_alone(worlds: Worlds, figures: Recorder) -> None:
    world = worlds.procuros()
    world.seed(4)
    for name in ("outgoing-missing-fields.json", "outgoing-unmappable.json"):
        document = json.loads((INPUTS / name).read_text())
        world.add(document, Expect("rejected", "cannot read the ERP document"))
        world.extra_faults += 1
    execution, totals = world.run()
    assert (execution.status, totals["transmitted"]) == ("SUCCEEDED", 4)
    assert_clean(figures.record(world))
    assert "twelve" in (world.entries(["BAD-MAPPING-1"])["BAD-MAPPING-1"].last_error or "")
    assert world.posts("BAD-MAPPING-1") == []


@pytest.mark.scenario("R7")
def test_r7_network_trouble_ends_as_a_clean_run_with_bounded_requests(
    worlds: Worlds, figures: Recorder
) -> None:
    world = worlds.procuros(latency_s=0.01, env=SLOW_ENV)
    before = world.requests()
    world.standard()
    assert_clean(world.tally(), "clean run")
    clean, clean_requests = world.snapshot(), world.requests() - before

    world.cycle()
    world.procuros.inject(
        Fault(429, times=2, retry_after=RETRY_AFTER_S, method="POST", path_prefix=TRANSACTIONS),
        Fault(500, method="POST", path_prefix=TRANSACTIONS),
        Fault(502, method="POST", path_prefix=TRANSACTIONS, reset_connection=True),
    )
    world.erp.inject(Fault(503, method="GET", path_prefix="/outgoing-documents"))
    world.hooks["procuros"].on("POST", TRANSACTIONS, late_answer())
    before = world.requests()
    world.standard()
    world.settle()
    assert_clean(figures.record(world))
    assert world.snapshot() == clean
    assert (world.procuros.pending_faults, world.erp.pending_faults) == (0, 0)
    assert world.retry_after_violations() == 0
    assert world.requests() - before <= clean_requests + 3 * world.faults_injected()
