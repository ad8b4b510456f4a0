"""The reliability suite's fixtures and its report.

Every scenario test is marked ``@pytest.mark.scenario("R<n>")`` and records, through the
``figures`` fixture, what it measured for each flow: documents in, documents done, duplicates,
lost, faults injected. At the end of the session one row per scenario of RELIABILITY.md is
printed, then the line::

    reliability: <S> scenarios, <F> faults injected, <D> documents, duplicates=<n>, lost=<n>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.reliability.harness import BeqomWorld, EbillWorld, ProcurosWorld, RossumWorld, World

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _pytest.terminal import TerminalReporter

    from tests.reliability.harness import Tally

SCENARIOS = {
    "R1": "crash after the target accepted, rerun",
    "R2": "crash at every step boundary",
    "R3": "the same event delivered 3 times",
    "R4": "two overlapping runs",
    "R5": "Procuros accepted, ERP update failed",
    "R6": "answer lost after the server stored it",
    "R7": "429/5xx bursts, resets, slow answers",
    "R8": "token expiry mid-run",
    "R9": "presigned URL expired",
    "R10": "one of N rejected by the target",
    "R11": "bad input",
    "R12": "no secret in logs, events, ledger",
}


@dataclass
class Figures:
    """What one test measured for one flow."""

    scenario: str
    flow: str
    documents: int
    done: int
    duplicates: int
    lost: int
    faults: int
    note: str = ""


@dataclass
class Collector:
    """The session's figures and test outcomes, by scenario."""

    figures: list[Figures] = field(default_factory=list)
    scenario_of: dict[str, str] = field(default_factory=dict)
    passed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


COLLECTOR = pytest.StashKey[Collector]()
FLOW_ORDER = ("rossum", "procuros", "ebill", "beqom")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scenario(id): the RELIABILITY.md scenario a test proves")
    config.stash[COLLECTOR] = Collector()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    collector = config.stash[COLLECTOR]
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            # Handlers that record no metric in a run (nothing claimed) say so; that is fine here.
            item.add_marker(pytest.mark.filterwarnings("ignore:No application metrics"))
        marker = item.get_closest_marker("scenario")
        if marker is not None:
            collector.scenario_of[item.nodeid] = str(marker.args[0])


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Count each scenario test's outcome; remember a failure for the ``worlds`` fixture."""
    report: pytest.TestReport = yield
    collector = item.config.stash[COLLECTOR]
    scenario = collector.scenario_of.get(item.nodeid)
    if report.failed:
        item.stash[FAILED] = True
        if scenario is not None:
            collector.failed[scenario] = collector.failed.get(scenario, 0) + 1
    elif scenario is not None and report.when == "call" and report.passed:
        collector.passed[scenario] = collector.passed.get(scenario, 0) + 1
    return report


class Recorder:
    """Records one test's figures under its scenario."""

    def __init__(self, collector: Collector, scenario: str) -> None:
        self.collector = collector
        self.scenario = scenario

    def record(self, world: World, tally: Tally | None = None) -> Tally:
        """Record ``world``'s figures now (before asserting on them) and return its tally."""
        tally = tally or world.tally()
        self.add(
            world.flow,
            tally.documents,
            tally.done,
            tally.duplicates,
            tally.lost,
            world.faults_injected(),
        )
        return tally

    def add(
        self,
        flow: str,
        documents: int,
        done: int,
        duplicates: int,
        lost: int,
        faults: int,
        *,
        note: str = "",
    ) -> None:
        self.collector.figures.append(
            Figures(self.scenario, flow, documents, done, duplicates, lost, faults, note)
        )


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Recorder:
    """Where a scenario test records what it measured."""
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "reliability tests are marked with their scenario"
    return Recorder(request.config.stash[COLLECTOR], str(marker.args[0]))


def pytest_terminal_summary(terminalreporter: TerminalReporter, config: pytest.Config) -> None:
    collector = config.stash[COLLECTOR]
    if not (collector.figures or collector.passed or collector.failed):
        return  # no scenario test ran
    write = terminalreporter.write_line
    write("")
    header = (
        f"{'id':<4} {'scenario':<40} {'flows':<30} {'tests':>5} {'faults':>6} "
        f"{'docs in':>7} {'done':>5} {'dup':>4} {'lost':>4}  result"
    )
    write(header)
    write("-" * len(header))
    totals = {"scenarios": 0, "faults": 0, "documents": 0, "duplicates": 0, "lost": 0}
    for scenario, title in SCENARIOS.items():
        rows = [f for f in collector.figures if f.scenario == scenario]
        passed = collector.passed.get(scenario, 0)
        failed = collector.failed.get(scenario, 0)
        if not rows and not passed and not failed:
            write(f"{scenario:<4} {title:<40} {'-':<30} {'-':>5}  not run")
            continue
        names = {f.flow.split("-")[0] for f in rows}
        flows = ", ".join(
            sorted(names, key=lambda n: (FLOW_ORDER.index(n) if n in FLOW_ORDER else 9, n))
        )
        sums = {
            name: sum(getattr(f, name) for f in rows)
            for name in ("faults", "documents", "done", "duplicates", "lost")
        }
        ok = not failed and sums["duplicates"] == 0 and sums["lost"] == 0
        notes = "; ".join(f.note for f in rows if f.note)
        write(
            f"{scenario:<4} {title:<40} {flows:<30} {passed + failed:>5} {sums['faults']:>6} "
            f"{sums['documents']:>7} {sums['done']:>5} {sums['duplicates']:>4} "
            f"{sums['lost']:>4}  {'ok' if ok else f'FAILED ({failed} test(s))'}"
            + (f" ({notes})" if notes else "")
        )
        totals["scenarios"] += 1
        for name in ("faults", "documents", "duplicates", "lost"):
            totals[name] += sums[name]
    final = (
        f"reliability: {totals['scenarios']} scenarios, {totals['faults']} faults injected, "
        f"{totals['documents']} documents, duplicates={totals['duplicates']}, "
        f"lost={totals['lost']}"
    )
    # pytest prints its own "N passed" line after the terminal summary: the final line follows it.
    summary_stats = terminalreporter.summary_stats

    def summary_then_final_line() -> None:
        summary_stats()
        terminalreporter.write_line(final)

    terminalreporter.summary_stats = summary_then_final_line  # type: ignore[method-assign]


# --- worlds -----------------------------------------------------------------------------------

OPENERS: dict[str, Any] = {
    "rossum": RossumWorld.open,
    "procuros": ProcurosWorld.open,
    "ebill": EbillWorld.open,
    "beqom": BeqomWorld.open,
}


class Pool:
    """One world open at a time (moto is one per process), reused by the next tests of a module
    that ask for the same flow and options; each test starts a new cycle in it."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._opened = 0
        self._key: str | None = None
        self._context: Any = None
        self._world: World | None = None

    def open(self, flow: str, **options: Any) -> Any:
        key = f"{flow} {sorted(options.items())}"
        if self._world is None or key != self._key:
            self.close()
            self._opened += 1
            path = self._tmp / f"world-{self._opened}"
            path.mkdir()
            self._context = OPENERS[flow](path, **options)
            self._world = self._context.__enter__()
            self._key = key
        self._world.cycle()
        return self._world

    def close(self) -> None:
        context, self._context, self._world, self._key = self._context, None, None, None
        if context is not None:
            context.__exit__(None, None, None)


class Worlds:
    """``worlds.rossum()`` and the like: the flow's world, with a new cycle started."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def rossum(self, **options: Any) -> RossumWorld:
        world: RossumWorld = self._pool.open("rossum", **options)
        return world

    def procuros(self, **options: Any) -> ProcurosWorld:
        world: ProcurosWorld = self._pool.open("procuros", **options)
        return world

    def ebill(self, **options: Any) -> EbillWorld:
        world: EbillWorld = self._pool.open("ebill", **options)
        return world

    def beqom(self, **options: Any) -> BeqomWorld:
        world: BeqomWorld = self._pool.open("beqom", **options)
        return world

    def close(self) -> None:
        """Close the open world (before something else starts its own local stack)."""
        self._pool.close()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    opened = Pool(tmp_path_factory.mktemp("worlds"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def worlds(pool: Pool, request: pytest.FixtureRequest) -> Iterator[Worlds]:
    """The test's world; after a failed test it is closed, so the next one starts clean."""
    yield Worlds(pool)
    if request.node.stash.get(FAILED, False):
        pool.close()
