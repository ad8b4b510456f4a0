"""Each flow on its own local stack and simulators, seeded with documents whose end state is known.

A *world* is one flow's local AWS stack (the real template, state machines and handlers) with the
simulators it talks to over loopback HTTP. A test opens one world and runs one or more *cycles*
in it: each cycle seeds fresh documents, says what each must end as, injects its faults and runs
the flow. The world then reads the end state in every system the flow touches (the source, the
target, the ledger, S3) and counts, per document, how often it was created in each system.
:meth:`World.tally` turns that into the figures every scenario reports: documents, done,
duplicates, lost. :meth:`World.snapshot` is the cycle's end state by seed position, so two cycles
of the same seed compare equal when both ended well.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote_plus

import boto3
import httpx
from flask import Response, g, request

from erphub import faults
from erphub.flows.beqom_import import MANIFEST_FLOW
from erphub.ledger import Entry, Ledger, Status
from erphub_local import config
from erphub_local.aws import inproc_lambda, sqs_batches
from erphub_local.aws.stack import Execution, LocalStack
from erphub_local.demos.ebill_upload import customers_file
from erphub_local.demos.procuros_send import OutgoingSeed, run_totals, seed_outgoing
from erphub_local.drops import drop, wait_for
from erphub_local.runner import FLOWS, run_flow
from erphub_local.seed import SUPPLIERS, UNKNOWN_SUPPLIERS, build_annotation_content
from erphub_local.simulators import (
    EbillSimulator,
    ErpSimulator,
    ProcurosSimulator,
    RossumSimulator,
    Simulator,
)
from erphub_local.simulators.beqom import BeqomSimulator
from erphub_local.simulators.procuros import identifier_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from erphub_local.simulators.base import Call

TICK = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
#: Fast, bounded HTTP retries; Retry-After waits up to 2 s are honoured in full.
HTTP_ENV = {
    "HTTP_BACKOFF_SECONDS": "0.01",
    "HTTP_MAX_ATTEMPTS": "3",
    "HTTP_MAX_RETRY_AFTER_SECONDS": "2",
    "HTTP_TIMEOUT_SECONDS": "10",
}


@dataclass(frozen=True)
class Expect:
    """What one document must end as: ``done``, or ``rejected`` with ``reason`` visible."""

    outcome: str = "done"
    reason: str = ""


@dataclass
class Tally:
    """The figures of one cycle: every seeded document ends as expected, or is counted lost."""

    documents: int = 0
    done: int = 0
    duplicates: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, document: str, ok: bool, duplicates: int, why: str) -> None:
        self.documents += 1
        self.duplicates += duplicates
        if ok:
            self.done += 1
        else:
            self.lost += 1
            self.problems.append(f"{document}: {why}")
        if duplicates:
            self.problems.append(f"{document}: {duplicates} duplicate create(s)")


def assert_clean(tally: Tally, case: str = "") -> None:
    """Every document ended as expected: none lost, none created twice."""
    assert (tally.duplicates, tally.lost) == (0, 0), (case, tally.problems)
    assert tally.documents > 0 and tally.done == tally.documents, (case, tally.problems)


#: Every step boundary of every flow (each checkpoint in the code), by flow.
STEP_BOUNDARIES = {
    "rossum": [
        "poll.after_claim",
        "push.before_erp",
        "push.after_erp_accept",
        "finalize.before_export",
        "finalize.after_export",
        "finalize.after_failed_export",
    ],
    "procuros": [
        "procuros.after_claim",
        "procuros.before_send",
        "procuros.after_accept",
        "procuros.before_erp_update",
        "procuros.after_erp_update",
        "procuros.after_refusal",
        "procuros.before_error_report",
        "procuros.after_error_report",
    ],
    "ebill": [
        "ebill.plan.after_claim",
        "ebill.upload.before_create",
        "ebill.upload.after_create",
        "ebill.upload.after_put",
        "ebill.finalize.before",
        "ebill.finalize.after",
        "ebill.results.before_copy",
        "ebill.results.after_rows",
    ],
    "beqom": ["beqom.before_import", "beqom.after_import", "beqom.after_manifest_queued"],
}
#: R1: how many later runs follow the crash.
RERUNS = (1, 2, 5)
#: R7: a short HTTP timeout, so that one slow answer times out.
SLOW_ENV = {"HTTP_TIMEOUT_SECONDS": "1"}
SLOW_S = 1.2
#: R7: the Retry-After of the throttled answers, in seconds.
RETRY_AFTER_S = 0.2


def crash_at_every_step(world: World, flow: str, record: Callable[[World], Tally]) -> None:
    """R2: a clean run of the standard documents, then one with a crash at each step boundary,
    each ending in the same state as the clean run (``record`` reports each cycle's figures)."""
    world.standard()
    world.settle()
    assert_clean(world.tally(), "clean run")
    clean = world.snapshot()
    for point in STEP_BOUNDARIES[flow]:
        world.cycle()
        before = world.crashes()
        world.crash(point)
        world.standard()
        assert world.crashes() - before == 1, f"{point} was never reached"
        world.settle()
        assert_clean(record(world), point)
        assert world.snapshot() == clean, point


def repeated_schedule_event_starts_one_run(
    world: World, record: Callable[[World], Tally], deliveries: int = 3
) -> None:
    """R3: the same schedule event delivered ``deliveries`` times starts one execution."""
    before = len(world.stack.executions(FLOWS[world.flow].state_machine))
    when = world.next_tick()
    fired = [world.fire(when) for _ in range(deliveries)]  # EventBridge delivers at least once
    world.extra_faults += deliveries - 1
    # one name per tick: a repeat gets the running execution back (or, once it ended, none)
    names = [name for started in fired for name in started]
    executions = world.wait(names)
    assert_clean(record(world))
    assert len(names) == deliveries and len(set(names)) == 1
    assert [e.status for e in executions] == ["SUCCEEDED"]
    assert len(world.stack.executions(FLOWS[world.flow].state_machine)) - before == 1


def overlapping_runs_claim_once(
    world: World,
    documents: list[str],
    record: Callable[[World, Tally], Tally],
    claim_step: str,
) -> None:
    """R4: two executions running at the same time claim each of ``documents`` once."""
    executions = world.overlapping_runs()
    world.extra_faults += 1
    tally = world.tally()
    claims = world.claims(documents)
    tally.duplicates += sum(n - 1 for n in claims.values())  # claimed by both runs
    tally.problems += [f"{d} claimed {n} times" for d, n in claims.items() if n > 1]
    assert_clean(record(world, tally))
    assert set(claims.values()) == {1}
    assert [e.status for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    # they did overlap: the later claim step found every document leased by the other run
    steps = sorted(
        (e.output[claim_step]["claimed"], e.output[claim_step]["leasedElsewhere"])
        for e in executions
    )
    assert steps == [(0, len(documents)), (len(documents), 0)]


def late_answer() -> Callable[[], Response | None]:
    """R7: an answer that arrives after the client gave up (the request still takes effect)."""

    def answer_late() -> None:
        g.faulted = True  # logged as a fault: the client never sees this answer
        time.sleep(SLOW_S)

    return answer_late


# --- hooks: time passing and odd answers, served by the simulators ----------------------------


@dataclass
class Rule:
    """Run ``action`` before the next ``times`` matching requests (a Response it returns is the
    answer)."""

    method: str | None
    path_prefix: str
    action: Callable[[], Response | None]
    times: int = 1
    fired: int = 0


class Hooks:
    """Per-request actions on a simulator, registered before it starts (Flask's rule)."""

    def __init__(self, sim: Simulator) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        sim.app.before_request(self._before)

    def on(
        self,
        method: str | None,
        path_prefix: str,
        action: Callable[[], Response | None],
        times: int = 1,
    ) -> Rule:
        """Add a rule; its ``fired`` says how often it ran."""
        rule = Rule(method, path_prefix, action, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def respond(
        self,
        method: str | None,
        path_prefix: str,
        body: bytes,
        content_type: str,
        status: int = 200,
        times: int = 1,
    ) -> Rule:
        """Answer the next ``times`` matching requests with ``body`` instead."""
        return self.on(
            method,
            path_prefix,
            lambda: Response(body, status=status, content_type=content_type),
            times,
        )

    @property
    def fired(self) -> int:
        with self._lock:
            return sum(rule.fired for rule in self._rules)

    def clear(self) -> None:
        """Forget every rule (and what they fired)."""
        with self._lock:
            self._rules.clear()

    def _before(self) -> Response | None:
        with self._lock:
            rule = next(
                (
                    r
                    for r in self._rules
                    if r.fired < r.times
                    and (r.method is None or r.method == request.method)
                    and request.path.startswith(r.path_prefix)
                ),
                None,
            )
            if rule is None:
                return None
            rule.fired += 1
        return rule.action()


# --- the common part --------------------------------------------------------------------------


class World:
    """One flow on a local stack with its simulators."""

    flow: ClassVar[str]

    def __init__(
        self, stack: LocalStack, sims: dict[str, Simulator], hooks: dict[str, Hooks]
    ) -> None:
        self.stack = stack
        self.sims = sims
        self.hooks = hooks
        self.points: set[str] = set()
        #: injected conditions no simulator or checkpoint counts (duplicate events, ...)
        self.extra_faults = 0
        self.runs = 0
        self.cycles = 0
        self._faults_before = 0
        self.chunks_checked: set[str] = set()

    @staticmethod
    @contextlib.contextmanager
    def started(
        tmp: Path,
        sims: dict[str, Simulator],
        variables: Callable[[], dict[str, str]],
        env: dict[str, str] | None,
    ) -> Iterator[tuple[LocalStack, dict[str, Hooks]]]:
        """Start the simulators (hooked), then a local stack of the real template pointed at
        them."""
        hooks = {name: Hooks(sim) for name, sim in sims.items()}
        with contextlib.ExitStack() as running:
            for sim in sims.values():
                running.enter_context(sim)
            settings = config.load({**HTTP_ENV, **(env or {}), **variables()}, env_file=tmp / "-")
            stack = running.enter_context(
                LocalStack(
                    config.TEMPLATE,
                    parameters=settings.parameters,
                    secret_values=settings.secret_values,
                    env_overrides=settings.env_overrides,
                    log_path=tmp / "lambda.log",
                    state_dir=tmp / "state",
                )
            )
            yield stack, hooks

    def cycle(self) -> None:
        """Start a new cycle: the next tally and figures cover only what is seeded from now."""
        self.cycles += 1
        self.reset_expectations()
        for sim in self.sims.values():
            sim.clear_faults()
        for hooks in self.hooks.values():
            hooks.clear()
        self.extra_faults = 0
        self._faults_before = self.faults_total()

    def next_tick(self) -> datetime:
        """A schedule time no run of this world has used."""
        self.runs += 1
        return TICK + timedelta(minutes=5 * self.runs)

    def reset_expectations(self) -> None:
        raise NotImplementedError

    # --- the ledger ---

    def ledger(self) -> Ledger:
        return Ledger(boto3.resource("dynamodb").Table(self.stack.stack.physical("LedgerTable")))

    def entries(self, documents: Iterable[str] | None = None) -> dict[str, Entry]:
        """The ledger entries of ``documents`` (default: every entry of the flow)."""
        if documents is not None:
            return self.ledger().get_many(self.flow, documents)
        return {e.document_id: e for e in self.ledger().entries(self.flow)}

    def expire_leases(self) -> None:
        """Time passes: every lease in the ledger runs out (as after LeaseSeconds)."""
        table = boto3.resource("dynamodb").Table(self.stack.stack.physical("LedgerTable"))
        scan: dict[str, Any] = {
            "ProjectionExpression": "pk",
            "FilterExpression": "attribute_exists(leaseUntil) AND leaseUntil > :past",
            "ExpressionAttributeValues": {":past": 0},
        }
        while True:
            page = table.scan(**scan)
            for item in page["Items"]:
                table.update_item(
                    Key={"pk": item["pk"]},
                    UpdateExpression="SET leaseUntil = :past",
                    ExpressionAttributeValues={":past": 0},
                )
            if "LastEvaluatedKey" not in page:
                return
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def claims(self, documents: list[str]) -> dict[str, int]:
        """How often each of ``documents`` was claimed, over all runs."""
        entries = self.entries(documents)
        return {
            d: sum(1 for h in entries[d].history if h.status == "CLAIM") if d in entries else 0
            for d in documents
        }

    # --- faults ---

    def crash(self, point: str, times: int = 1) -> None:
        """Kill the Lambda runtime the next ``times`` times the flow passes ``point``."""
        faults.arm(point, times)
        self.points.add(point)

    def crashes(self) -> int:
        """Crashes since the test began (all cycles)."""
        return sum(faults.hits(point) for point in self.points)

    def faults_total(self) -> int:
        return (
            self.crashes()
            + sum(sim.faults_served for sim in self.sims.values())
            + sum(hooks.fired for hooks in self.hooks.values())
            + self.extra_faults
        )

    def faults_injected(self) -> int:
        """Faults injected in this cycle."""
        return self.faults_total() - self._faults_before

    def requests(self) -> int:
        return sum(len(sim.calls) for sim in self.sims.values())

    def retry_after_violations(self) -> int:
        return sum(sim.retry_after_violations for sim in self.sims.values())

    # --- schedules ---

    def fire(self, when: datetime) -> dict[str, str | None]:
        """Deliver one schedule event at ``when``; the executions it started (None: existed)."""
        fired = self.stack.fire_schedule(FLOWS[self.flow].schedule, when)
        return dict(fired["executions"])

    def wait(self, names: Iterable[str]) -> list[Execution]:
        machine = self.stack.stack.state_machine_arn(FLOWS[self.flow].state_machine)
        prefix = machine.replace(":stateMachine:", ":execution:")
        return [self.stack.wait_execution(f"{prefix}:{name}") for name in dict.fromkeys(names)]

    def overlapping_runs(self) -> list[Execution]:
        """Two schedule ticks whose executions run at the same time.

        Handlers run one at a time (one lock), so both executions are started while the lock
        is held: each then waits to run its first step, and they interleave step by step.
        """
        first, second = self.next_tick(), self.next_tick()
        with inproc_lambda.lock():
            names = [*self.fire(first), *self.fire(second)]
        return self.wait(names)

    # --- per flow ---

    def tally(self) -> Tally:
        raise NotImplementedError

    def snapshot(self) -> list[Any]:
        """This cycle's end state, by seed position, plus the documents still leased."""
        raise NotImplementedError

    def settled(self) -> bool:
        return self.tally().lost == 0

    def standard(self) -> None:
        """Seed this flow's standard documents (some valid, some rejected) and run it once."""
        raise NotImplementedError

    def settle(self, runs: int = 3) -> None:
        """What happens later without anyone's help, until everything has ended."""


def payload_duplicates(
    stack: LocalStack, prefix: str, id_of: Callable[[Any], str], checked: set[str]
) -> int:
    """Documents stored twice in the S3 chunks of one run (each would be sent twice).

    ``checked`` holds the chunks read before (a run's chunks do not change); it is updated.
    """
    s3: Any = stack.client("s3")
    bucket = stack.stack.physical("PayloadBucket")
    seen: Counter[tuple[str, str]] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if "/chunk-" not in key or key in checked:
                continue
            checked.add(key)
            run = key.rsplit("/", 2)[-2]
            for raw in json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()):
                seen[(run, id_of(raw))] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


# --- Rossum -> ERP ----------------------------------------------------------------------------

QUEUE = 4101


class RossumWorld(World):
    """Rossum export: confirmed annotations of one queue -> ERP invoices -> exported."""

    flow = "rossum-export"

    def __init__(self, stack: LocalStack, sims: dict[str, Any], hooks: dict[str, Hooks]) -> None:
        super().__init__(stack, sims, hooks)
        self.rossum: RossumSimulator = sims["rossum"]
        self.erp: ErpSimulator = sims["erp"]
        self.expected: dict[int, Expect] = {}
        self._numbers = itertools.count(1)

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        tmp: Path,
        *,
        dedupe: bool = False,
        latency_s: float = 0.0,
        env: dict[str, str] | None = None,
    ) -> Iterator[Self]:
        """``dedupe=False``: an ERP that books a repeated POST twice, so only the hub's own
        reconciliation keeps each invoice single."""
        rossum = RossumSimulator(latency_s=latency_s)
        erp = ErpSimulator(dedupe_external_reference=dedupe, latency_s=latency_s)
        erp.add_supplier(SUPPLIERS[0].vat_id, SUPPLIERS[0].name)
        rossum.add_queue(QUEUE)

        def variables() -> dict[str, str]:
            return {
                **rossum.hub_env(),
                "ROSSUM_QUEUE_IDS": str(QUEUE),
                **erp.hub_env(),
            }

        sims: dict[str, Simulator] = {"rossum": rossum, "erp": erp}
        with cls.started(tmp, sims, variables, env) as (stack, hooks):
            yield cls(stack, sims, hooks)

    def reset_expectations(self) -> None:
        self.expected = {}

    def seed(self, valid: int, rejected: int = 0) -> list[int]:
        """Confirmed invoices; the ``rejected`` ones name a supplier the ERP does not know."""
        ids = []
        for index in range(valid + rejected):
            supplier = SUPPLIERS[0] if index < valid else UNKNOWN_SUPPLIERS[0]
            content = build_annotation_content(
                invoice_number=f"RL-{next(self._numbers):05d}",
                supplier_name=supplier.name,
                supplier_vat_id=supplier.vat_id,
                iban=supplier.iban,
            )
            expect = Expect() if index < valid else Expect("rejected", "supplier")
            ids.append(self.add(content, expect))
        return ids

    def add(self, content: list[dict[str, Any]], expect: Expect) -> int:
        annotation_id = self.rossum.add_annotation(QUEUE, content)
        self.expected[annotation_id] = expect
        return annotation_id

    def standard(self) -> None:
        self.seed(valid=6, rejected=1)
        self.run()

    def run(self, when: datetime | None = None) -> list[Execution]:
        """One schedule tick (five minutes after the last one)."""
        return run_flow(self.stack, "rossum-export", when=when or self.next_tick())

    def settle(self, runs: int = 3) -> None:
        """Later ticks, after the leases of interrupted runs have run out."""
        for _ in range(runs):
            if self.settled():
                return
            self.expire_leases()
            self.run()

    def message(self, annotation_id: int) -> str:
        return " ".join(
            str(m.get("content"))
            for m in self.rossum.annotation(annotation_id)["messages"]
            if m.get("type") == "error"
        )

    def moves(self, annotation_id: int) -> int:
        """How often the hub moved the annotation to exported or failed_export."""
        return sum(
            1
            for _, to, how in self.rossum.history(annotation_id)
            if to in ("exported", "failed_export") and how != "test"
        )

    def tally(self) -> Tally:
        tally = Tally()
        statuses = self.rossum.statuses()
        entries = self.entries(str(i) for i in self.expected)
        for annotation_id, expect in self.expected.items():
            entry = entries.get(str(annotation_id))
            status = statuses.get(annotation_id)
            creates = self.erp.create_count(f"rossum:{annotation_id}")
            duplicates = max(0, creates - 1) + max(0, self.moves(annotation_id) - 1)
            recorded = entry.status.value if entry else None
            if expect.outcome == "done":
                ok = status == "exported" and recorded == "EXPORTED" and creates == 1
            else:
                reason = expect.reason.lower()
                ok = (
                    status == "failed_export"
                    and recorded == "FAILED_EXPORT"
                    and creates == 0
                    and entry is not None
                    and reason in self.message(annotation_id).lower()
                    and reason in (entry.last_error or "").lower()
                )
            if entry is not None and entry.lease_owner:
                ok = False
            tally.add(
                f"annotation {annotation_id}",
                ok,
                duplicates,
                f"Rossum {status}, ledger {recorded}, {creates} ERP invoice(s)",
            )
        stored_twice = payload_duplicates(
            self.stack,
            f"rossum-export/{QUEUE}/",
            lambda raw: str(raw["annotation"]["url"]),
            self.chunks_checked,
        )
        if stored_twice:
            tally.duplicates += stored_twice
            tally.problems.append(f"{stored_twice} annotation(s) twice in one run's S3 chunks")
        return tally

    def snapshot(self) -> list[Any]:
        statuses = self.rossum.statuses()
        entries = self.entries(str(i) for i in self.expected)
        state = []
        for annotation_id in self.expected:
            entry = entries.get(str(annotation_id))
            state.append(
                (
                    statuses.get(annotation_id),
                    entry.status.value if entry else None,
                    bool(entry and entry.lease_owner),
                    self.erp.create_count(f"rossum:{annotation_id}"),
                    bool(self.message(annotation_id)),
                )
            )
        return state


# --- ERP -> Procuros --------------------------------------------------------------------------


class ProcurosWorld(World):
    """Procuros send: ERP outgoing documents -> Procuros transactions -> ERP status."""

    flow = "procuros-send"

    def __init__(self, stack: LocalStack, sims: dict[str, Any], hooks: dict[str, Hooks]) -> None:
        super().__init__(stack, sims, hooks)
        self.erp: ErpSimulator = sims["erp"]
        self.procuros: ProcurosSimulator = sims["procuros"]
        self.seeded = OutgoingSeed()
        self.expected: dict[str, Expect] = {}

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        tmp: Path,
        *,
        latency_s: float = 0.0,
        listing_lag: int = 0,
        env: dict[str, str] | None = None,
    ) -> Iterator[Self]:
        erp = ErpSimulator(latency_s=latency_s)
        procuros = ProcurosSimulator(latency_s=latency_s, listing_lag=listing_lag)

        def variables() -> dict[str, str]:
            return {
                **erp.hub_env(),
                **procuros.hub_env(),
                "PROCUROS_ERROR_REPORT_AFTER": "1",
            }

        sims: dict[str, Simulator] = {"erp": erp, "procuros": procuros}
        with cls.started(tmp, sims, variables, env) as (stack, hooks):
            yield cls(stack, sims, hooks)

    def reset_expectations(self) -> None:
        # An operator settles the documents left waiting for a correction, as one would in the
        # ERP; otherwise every later run would send them again (by design) and slow the cycles.
        for doc_id, expect in self.expected.items():
            if expect.outcome == "rejected":
                response = httpx.patch(
                    f"{self.erp.url}/outgoing-documents/{doc_id}",
                    json={"procurosStatus": "NO_ACTION"},
                    headers={"Authorization": f"Bearer {self.erp.token}"},
                )
                response.raise_for_status()
        self.expected = {}
        self.seeded = OutgoingSeed()

    def seed(
        self, count: int, *, refused: int = 0, unreadable: int = 0, no_action: int = 0
    ) -> OutgoingSeed:
        """Outgoing documents with an empty Procuros status, numbered apart from other cycles."""
        tag = f"C{self.cycles}"
        scratch = ErpSimulator()  # seeded in memory, then copied with this cycle's numbers
        seed = seed_outgoing(
            scratch,
            self.procuros,
            count=count,
            inactive_ratio=no_action / count,
            refused_ratio=refused / count,
            unreadable=unreadable,
            already_sent=0,
            id_prefix=f"P{tag}",
        )
        for document in scratch.outgoing_documents.values():
            self.erp.add_outgoing({**document, "number": f"{document['number']}-{tag}"})
        seed.numbers = {d: f"{n}-{tag}" for d, n in seed.numbers.items()}
        self.seeded = seed
        self.expected |= {d: Expect("done", "TRANSMITTED") for d in seed.transmit}
        self.expected |= {d: Expect("done", "NO_ACTION") for d in seed.no_action}
        self.expected |= {d: Expect("rejected", "Procuros 4") for d in seed.refused}
        self.expected |= {d: Expect("rejected", "cannot read") for d in seed.unreadable}
        return seed

    def add(self, document: dict[str, Any], expect: Expect) -> str:
        """One more outgoing document in the ERP (as given: it may be broken)."""
        doc_id = self.erp.add_outgoing(document)
        self.seeded.numbers[doc_id] = str(document.get("number") or doc_id)
        self.seeded.types[doc_id] = str(document.get("type") or "INVOICE")
        self.expected[doc_id] = expect
        return doc_id

    def standard(self) -> None:
        self.seed(5, refused=1, unreadable=1, no_action=1)
        self.run()

    def run(self, when: datetime | None = None) -> tuple[Execution, dict[str, int]]:
        executions = run_flow(self.stack, "procuros-send", when=when or self.next_tick())
        assert len(executions) == 1
        return executions[0], run_totals(executions)

    def settle(self, runs: int = 3) -> None:
        for _ in range(runs):
            if self.settled():
                return
            self.expire_leases()
            self.run()

    def posts(self, doc_id: str) -> list[Call]:
        number = self.seeded.numbers[doc_id]
        return [
            c
            for c in self.procuros.calls
            if c.method == "POST"
            and c.path == "/v2/transactions"
            and isinstance(c.body, dict)
            and identifier_of(c.body.get("type"), c.body.get("content")) == number
        ]

    def stored(self, doc_id: str) -> list[dict[str, Any]]:
        return self.procuros.transactions_for(
            self.seeded.numbers[doc_id], self.seeded.types[doc_id]
        )

    def tally(self) -> Tally:
        tally = Tally()
        entries = self.entries(self.expected)
        for doc_id, expect in self.expected.items():
            erp = self.erp.outgoing(doc_id)
            entry = entries.get(doc_id)
            recorded = entry.status.value if entry else None
            stored = self.stored(doc_id)
            if expect.outcome == "done":
                # a POST answered with an injected fault may be repeated; no other may
                answered = [c for c in self.posts(doc_id) if not c.faulted]
                duplicates = max(0, len(stored) - 1) + max(0, len(answered) - 1)
                kind = "SUCCESS" if expect.reason == "TRANSMITTED" else "DROPPED"
                ok = (
                    erp["procurosStatus"] == expect.reason
                    and len(stored) == 1
                    and stored[0]["status"] == kind
                    and erp["procurosTransactionId"] == stored[0]["procurosTransactionId"]
                    and recorded == "EXPORTED"
                )
            else:
                duplicates = len(stored)  # refusals are sent again each run, never stored
                ok = (
                    erp["procurosStatus"] is None
                    and recorded == "AWAITING_CORRECTION"
                    and entry is not None
                    and expect.reason.lower() in (entry.last_error or "").lower()
                )
            if entry is not None and entry.lease_owner:
                ok = False
            tally.add(
                f"document {doc_id}",
                ok,
                duplicates,
                f"ERP {erp['procurosStatus']}, ledger {recorded}, {len(stored)} transaction(s)",
            )
        stored_twice = payload_duplicates(
            self.stack, "procuros-send/", lambda raw: str(raw["id"]), self.chunks_checked
        )
        if stored_twice:
            tally.duplicates += stored_twice
            tally.problems.append(f"{stored_twice} document(s) twice in one run's S3 chunks")
        return tally

    def snapshot(self) -> list[Any]:
        entries = self.entries(self.expected)
        state = []
        for doc_id in self.expected:
            entry = entries.get(doc_id)
            state.append(
                (
                    self.erp.outgoing(doc_id)["procurosStatus"],
                    [t["status"] for t in self.stored(doc_id)],
                    entry.status.value if entry else None,
                    bool(entry and entry.lease_owner),
                )
            )
        return state


# --- file drop -> eBill -----------------------------------------------------------------------


@dataclass
class Dropped:
    """A file dropped for eBill and what must become of it (its rows, or it as a whole)."""

    key: str
    rows_ok: list[str]
    rows_bad: dict[int, str]
    whole: Expect | None = None


class EbillWorld(World):
    """eBill upload: a customers file dropped in S3 -> eBill batch -> results in S3 and ledger."""

    flow = "ebill-upload"

    def __init__(self, stack: LocalStack, sims: dict[str, Any], hooks: dict[str, Hooks]) -> None:
        super().__init__(stack, sims, hooks)
        self.sim: EbillSimulator = sims["ebill"]
        self.expected: dict[str, Dropped] = {}
        sqs, sns = stack.client("sqs"), stack.client("sns")
        self.alerts_url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.alerts_url, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=stack.stack.physical("AlertTopic"),
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
        )
        self._alerts: list[dict[str, str]] = []
        self._alerts_before = 0

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, tmp: Path, *, latency_s: float = 0.0, env: dict[str, str] | None = None
    ) -> Iterator[Self]:
        sim = EbillSimulator(latency_s=latency_s)

        sims: dict[str, Simulator] = {"ebill": sim}
        with cls.started(tmp, sims, sim.hub_env, env) as (stack, hooks):
            yield cls(stack, sims, hooks)

    def reset_expectations(self) -> None:
        self.expected = {}
        self.alerts()  # drain what earlier cycles published
        self._alerts_before = len(self._alerts)

    @property
    def bucket(self) -> str:
        return self.stack.stack.physical("DropBucket")

    def standard(self) -> None:
        self.drop_customers("standard", rows=8, bad=2)

    def drop_customers(self, name: str, rows: int, bad: int = 0) -> Execution:
        """Drop a customers CSV (``bad`` rows invalid) and wait for its execution."""
        prefix = f"C{self.cycles}X{len(self.expected)}N"
        customers = customers_file(rows, bad=bad, prefix=prefix)
        key = f"ebill/customers/{name}-{self.cycles}.csv"
        ok = [f"{prefix}{n:05d}" for n in range(1, rows + 1) if n not in customers.bad]
        self.expected[key] = Dropped(key, ok, dict(customers.bad))
        return self.wait(key, customers.content)

    def drop_file(self, key: str, body: bytes, expect: Expect) -> Execution:
        """Drop a file that must end as ``expect`` as a whole (a bad input, say)."""
        self.expected[key] = Dropped(key, [], {}, expect)
        return self.wait(key, body)

    def wait(self, key: str, body: bytes) -> Execution:
        (execution,) = wait_for(self.stack, [drop(self.stack, key, body)], timeout_s=120)
        self.runs += 1
        return execution

    def alerts(self) -> list[dict[str, str]]:
        """The alerts published in this cycle."""
        sqs: Any = self.stack.client("sqs")
        while True:
            messages = sqs.receive_message(QueueUrl=self.alerts_url, MaxNumberOfMessages=10)
            batch = messages.get("Messages", [])
            if not batch:
                return self._alerts[self._alerts_before :]
            for message in batch:
                self._alerts.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.alerts_url, ReceiptHandle=message["ReceiptHandle"])

    def drop_entry(self, key: str, entries: dict[str, Entry]) -> Entry | None:
        prefix = f"s3://{self.bucket}/{key}?"
        return next((e for d, e in entries.items() if d.startswith(prefix)), None)

    def result_objects(self, tag: str) -> list[str]:
        s3: Any = self.stack.client("s3")
        listed = s3.list_objects_v2(
            Bucket=self.stack.stack.physical("PayloadBucket"), Prefix=f"ebill-upload/{tag}/"
        )
        return [item["Key"] for item in listed.get("Contents", [])]

    def batches(self, key: str) -> list[Any]:
        """eBill's batches of one drop (all its upload attempts)."""
        entry = self.drop_entry(key, self.entries())
        tag = entry.attributes.get("jobIdPrefix", "-") if entry else "-"
        return [b for b in self.sim.batches if b.job_id.startswith(tag)]

    def finalized(self, tag: str) -> tuple[int, int]:
        """(parent batches of this drop eBill was asked to finalize, finalize calls for them)."""
        parents = [
            b
            for b in self.sim.batches
            if b.job_id.startswith(tag) and b.parent_id is None and b.finalize_calls
        ]
        return len(parents), sum(b.finalize_calls for b in parents)

    def failed_rows(self, key: str, entries: dict[str, Entry]) -> dict[int, Entry]:
        return {
            int(e.attributes["row"]): e
            for e in entries.values()
            if e.attributes.get("drop", "").startswith(f"s3://{self.bucket}/{key}?")
            and e.status is Status.FAILED
        }

    def tally(self) -> Tally:
        tally = Tally()
        entries = self.entries()
        customers = self.sim.customers
        alerts = self.alerts()
        for dropped in self.expected.values():
            entry = self.drop_entry(dropped.key, entries)
            recorded = entry.status.value if entry else None
            tag = entry.attributes.get("jobIdPrefix", "-") if entry else "-"
            batches, calls = self.finalized(tag)
            repeated = max(0, batches - 1) + max(0, calls - batches)
            if dropped.whole is not None:
                reason = dropped.whole.reason.lower()
                ok = (
                    recorded == "FAILED"
                    and entry is not None
                    and reason in (entry.last_error or "").lower()
                    and entry.lease_owner is None
                    and any(dropped.key.split("/")[-1] in a.get("Message", "") for a in alerts)
                )
                tally.add(
                    dropped.key, ok, repeated, f"ledger {recorded}: {entry and entry.last_error}"
                )
                continue
            expected = "PARTIAL" if dropped.rows_bad else "IMPORTED"
            results = self.result_objects(tag)
            whole_ok = (
                recorded == expected
                and entry is not None
                and entry.lease_owner is None
                and len(results) == 1
            )
            if not whole_ok:
                tally.problems.append(
                    f"{dropped.key}: ledger {recorded} (expected {expected}), results {results}"
                )
            for account in dropped.rows_ok:
                tally.add(
                    f"{dropped.key} customer {account}",
                    whole_ok and account in customers,
                    repeated,
                    "not imported in eBill",
                )
            failed = self.failed_rows(dropped.key, entries)
            for row in dropped.rows_bad:
                row_entry = failed.get(row)
                tally.add(
                    f"{dropped.key} row {row}",
                    whole_ok and row_entry is not None and bool(row_entry.last_error),
                    repeated,
                    "no failed row recorded with its reason",
                )
        return tally

    def snapshot(self) -> list[Any]:
        entries = self.entries()
        customers = self.sim.customers
        state = []
        for dropped in self.expected.values():
            entry = self.drop_entry(dropped.key, entries)
            tag = entry.attributes.get("jobIdPrefix", "-") if entry else "-"
            state.append(
                (
                    entry.status.value if entry else None,
                    bool(entry and entry.lease_owner),
                    sum(1 for a in dropped.rows_ok if a in customers),
                    sorted(
                        (row, bool(e.last_error))
                        for row, e in self.failed_rows(dropped.key, entries).items()
                    ),
                    self.finalized(tag),
                    len(self.result_objects(tag)),
                )
            )
        return state


# --- file drop -> beqom -----------------------------------------------------------------------

OPEN_ROUND, CLOSED_ROUND = "PAY-2026-11", "PAY-2025-12"
PDF = b"%PDF-1.7 payslip "


class BeqomWorld(World):
    """beqom import: worker documents dropped in S3 -> SQS -> one beqom import each."""

    flow = "beqom-import"

    def __init__(self, stack: LocalStack, sims: dict[str, Any], hooks: dict[str, Hooks]) -> None:
        super().__init__(stack, sims, hooks)
        self.sim: BeqomSimulator = sims["beqom"]
        self.expected: dict[str, Expect] = {}
        #: manifests that must end as expected, by S3 key
        self.manifests: dict[str, Expect] = {}
        #: messages that must end in the dead-letter queue (unreadable ones)
        self.expected_dead = 0
        #: documents whose import outcome a fault made unknown: beqom's override is allowed once
        self.unknown_outcome: Counter[str] = Counter()
        self._index = itertools.count()

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, tmp: Path, *, latency_s: float = 0.0, env: dict[str, str] | None = None
    ) -> Iterator[Self]:
        sim = BeqomSimulator(latency_s=latency_s)
        sim.add_workers(*(f"W{i:03d}" for i in range(1000)))
        sim.add_round(OPEN_ROUND, "Open")
        sim.add_round(CLOSED_ROUND, "Closed")

        sims: dict[str, Simulator] = {"beqom": sim}
        with cls.started(tmp, sims, sim.hub_env, env) as (stack, hooks):
            yield cls(stack, sims, hooks)

    def reset_expectations(self) -> None:
        self.expected = {}
        self.manifests = {}
        self.expected_dead = 0

    @property
    def bucket(self) -> str:
        return self.stack.stack.physical("DropBucket")

    def put(self, key: str, body: bytes, **metadata: str) -> None:
        s3: Any = self.stack.client("s3")
        s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)

    def drop(
        self, key: str, body: bytes | None = None, expect: Expect | None = None, **metadata: str
    ) -> None:
        """Drop ``beqom/<key>``; its delivery runs before this returns (unless held)."""
        self.expected[key] = expect or Expect()
        self.put(f"beqom/{key}", PDF + key.encode() if body is None else body, **metadata)

    def drop_documents(self, count: int, *, rejected: int = 0) -> list[str]:
        """``count`` payslips in one delivery batch; the last ``rejected`` name unknown workers."""
        keys = []
        with sqs_batches.held():
            for n in range(count):
                i = next(self._index)
                bad = n >= count - rejected
                key = f"{OPEN_ROUND}/{'X' if bad else 'W'}{i:03d}/payslip-{i}.pdf"
                self.drop(key, expect=Expect("rejected", "does not exist") if bad else None)
                keys.append(key)
        return keys

    def drop_manifest(self, count: int) -> list[str]:
        """A mass import: ``count`` files, then the manifest naming them."""
        batch = f"batch-{self.cycles}-{len(self.expected)}"
        folder = f"beqom/_manifests/{batch}"
        rows = ["file,workerExternalId,communicationRoundCode"]
        keys = []
        for _ in range(count):
            i = next(self._index)
            self.put(f"{folder}/files/doc-{i}.pdf", PDF + str(i).encode())
            rows.append(f"files/doc-{i}.pdf,W{i:03d},{OPEN_ROUND}")
            keys.append(f"{OPEN_ROUND}/W{i:03d}/doc-{i}.pdf")
        self.expected |= dict.fromkeys(keys, Expect())
        self.put(f"{folder}/manifest.csv", ("\n".join(rows) + "\n").encode())
        return keys

    def standard(self) -> None:
        self.drop_documents(6, rejected=1)
        self.drop_manifest(3)

    def settle(self, runs: int = 4) -> None:
        self.redeliver(runs)

    def queue(self) -> str:
        return self.stack.stack.physical("BeqomImportQueue")

    def dead_letters(self) -> int:
        sqs: Any = self.stack.client("sqs")
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.stack.stack.physical("BeqomImportDeadLetterQueue"),
            AttributeNames=["ApproximateNumberOfMessages"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def redeliver(self, rounds: int = 4) -> None:
        """The visibility timeout (longer than the lease) expires: deliver what is in flight."""
        for _ in range(rounds):
            self.expire_leases()
            if not sqs_batches.redeliver(self.queue()):
                return
            self.runs += 1

    def redeliver_event(self, key: str) -> None:
        """Deliver the S3 event of ``key`` once more (S3 and SQS deliver at least once)."""
        s3: Any = self.stack.client("s3")
        head = s3.head_object(Bucket=self.bucket, Key=key)
        event = {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "eventTime": head["LastModified"].isoformat(),
                    "s3": {
                        "bucket": {"name": self.bucket},
                        "object": {
                            "key": quote_plus(key),
                            "size": head["ContentLength"],
                            "eTag": head["ETag"].strip('"'),
                        },
                    },
                }
            ]
        }
        sqs: Any = self.stack.client("sqs")
        sqs.send_message(QueueUrl=self.queue(), MessageBody=json.dumps(event))
        self.extra_faults += 1
        self.runs += 1

    def allowed_imports(self, entry: Entry | None, key: str) -> int:
        """1, plus one override for each attempt whose outcome was unknown (beqom's own
        reconciliation: it overwrites a document with the same name)."""
        declared = sum(
            1 for h in (entry.history if entry else []) if "outcome is unknown" in h.detail
        )
        return 1 + max(declared, self.unknown_outcome[key])

    def tally(self) -> Tally:
        tally = Tally()
        entries = self.entries(self.expected)
        stored = self.sim.documents
        for key, expect in self.expected.items():
            entry = entries.get(key)
            recorded = entry.status.value if entry else None
            document = stored.get(tuple(key.split("/")))  # type: ignore[arg-type]
            imports = document.imports if document else 0
            duplicates = max(0, imports - self.allowed_imports(entry, key))
            if expect.outcome == "done":
                ok = (
                    document is not None
                    and recorded == "IMPORTED"
                    and entry is not None
                    and entry.external_id == document.document_id
                )
            else:
                ok = (
                    document is None
                    and recorded == "FAILED"
                    and entry is not None
                    and expect.reason.lower() in (entry.last_error or "").lower()
                )
            if entry is not None and entry.lease_owner:
                ok = False
            tally.add(key, ok, duplicates, f"ledger {recorded}, {imports} import(s) in beqom")
        manifests = self.entries_of(MANIFEST_FLOW, self.manifests)
        for key, expect in self.manifests.items():
            entry = manifests.get(key)
            recorded = entry.status.value if entry else None
            ok = (
                recorded == ("IMPORTED" if expect.outcome == "done" else "FAILED")
                and entry is not None
                and expect.reason.lower() in (entry.last_error or "").lower()
            )
            tally.add(f"manifest {key}", ok, 0, f"ledger {recorded}: {entry and entry.last_error}")
        stuck, dead = sqs_batches.in_flight(self.queue()), self.dead_letters()
        if stuck or dead != self.expected_dead:
            tally.problems.append(
                f"{stuck} message(s) in flight, {dead} dead-lettered"
                f" ({self.expected_dead} expected)"
            )
            tally.lost += stuck + abs(dead - self.expected_dead)
        return tally

    def entries_of(self, flow: str, documents: Iterable[str]) -> dict[str, Entry]:
        return self.ledger().get_many(flow, documents)

    def snapshot(self) -> list[Any]:
        entries = self.entries(self.expected)
        stored = self.sim.documents
        state: list[Any] = []
        for key in self.expected:
            entry = entries.get(key)
            state.append(
                (
                    tuple(key.split("/")) in stored,
                    entry.status.value if entry else None,
                    bool(entry and entry.lease_owner),
                )
            )
        state.append((sqs_batches.in_flight(self.queue()), self.dead_letters()))
        return state
