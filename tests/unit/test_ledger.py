"""The ledger's conditional writes: claims, leases, transitions, batch reads."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from erphub.errors import LeaseLostError
from erphub.ledger import Ledger, Status
from tests.fakes import create_table_from_template


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]


@pytest.fixture
def ledger(clock: list[float]) -> Iterator[Ledger]:
    with mock_aws():
        table = boto3.resource("dynamodb").Table(create_table_from_template())
        yield Ledger(table, clock=lambda: clock[0])


def test_a_claim_holds_until_its_lease_expires(ledger: Ledger, clock: list[float]) -> None:
    first = ledger.claim("f", "1", owner="run-a", lease_seconds=60, attributes={"queueId": "7"})
    assert first is not None and first.status is Status.CLAIMED
    assert first.attributes == {"queueId": "7"}
    assert ledger.claim("f", "1", owner="run-b", lease_seconds=60) is None
    assert ledger.claim("f", "1", owner="run-a", lease_seconds=60) is not None  # its own again
    clock[0] += 61
    taken = ledger.claim("f", "1", owner="run-b", lease_seconds=60)
    assert taken is not None and taken.lease_owner == "run-b"


def test_a_claim_keeps_what_happened_before(ledger: Ledger, clock: list[float]) -> None:
    ledger.claim("f", "1", owner="a", lease_seconds=60)
    ledger.record("f", "1", owner="a", status=Status.PUSHING, count_attempt=True)
    clock[0] += 61
    again = ledger.claim("f", "1", owner="b", lease_seconds=60)
    assert again is not None
    assert (again.status, again.attempts) == (Status.PUSHING, 1)
    assert [e.status for e in again.history] == ["CLAIM", "PUSHING", "CLAIM"]


def test_only_the_lease_holder_may_record(ledger: Ledger, clock: list[float]) -> None:
    ledger.claim("f", "1", owner="a", lease_seconds=60)
    clock[0] += 61
    ledger.claim("f", "1", owner="b", lease_seconds=60)
    with pytest.raises(LeaseLostError, match="lease of run a was taken over"):
        ledger.record("f", "1", owner="a", status=Status.PUSHED)


def test_a_terminal_record_frees_the_document(ledger: Ledger) -> None:
    ledger.claim("f", "1", owner="a", lease_seconds=600)
    done = ledger.record(
        "f", "1", owner="a", status=Status.EXPORTED, external_id="INV-1", release=True
    )
    assert (done.lease_owner, done.external_id) == (None, "INV-1")
    assert ledger.claim("f", "1", owner="b", lease_seconds=600) is not None


def test_batch_reads_and_listing_by_flow(ledger: Ledger) -> None:
    for i in range(130):
        ledger.claim("f", str(i), owner="a", lease_seconds=60)
    ledger.claim("other", "x", owner="a", lease_seconds=60)
    found = ledger.get_many("f", [str(i) for i in range(135)])
    assert sorted(found, key=int) == [str(i) for i in range(130)]
    assert len(list(ledger.entries("f"))) == 130
    assert len(list(ledger.entries())) == 131
    assert ledger.get("f", "404") is None
