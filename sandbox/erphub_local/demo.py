"""`erphub demo`: every flow on the local stack and the simulators, each run twice.

Each flow contributes a :class:`DemoSection` (in ``erphub_local.demos``): it starts its
simulators, says which variables point the stack at them, then seeds data, runs its flow twice
and records what it checked. The demo exits non-zero if any check fails.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self

from rich.markup import escape

from erphub_local import config
from erphub_local.aws.stack import LocalStack

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console

    from erphub_local.simulators.base import Simulator


@dataclass
class Check:
    """One promise the demo verifies."""

    section: str
    what: str
    ok: bool
    detail: str = ""


@dataclass
class DemoReport:
    """What the demo measured."""

    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    def check(self, section: str, what: str, ok: bool, detail: str = "") -> None:
        """Record one check."""
        self.checks.append(Check(section, what, ok, detail))


class SimulatedSection:
    """What the sections share: their simulators (``servers``) run while they are entered."""

    servers: tuple[Simulator, ...] = ()

    def __enter__(self) -> Self:
        with contextlib.ExitStack() as started:
            for server in self.servers:
                started.enter_context(server)
            self._running = started.pop_all()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running.close()


class DemoSection(Protocol):
    """One flow's part of the demo."""

    title: str

    def __enter__(self) -> Self:
        """Start this section's simulators."""
        ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop them."""
        ...

    def env(self) -> dict[str, str]:
        """The DESIGN §3 variables that point the stack at this section's simulators."""
        ...

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        """Seed, run the flow twice, print its tables and record its checks in ``report``."""
        ...


def default_sections(per_queue: int = 130, invalid_ratio: float = 0.10) -> list[DemoSection]:
    """The sections `erphub demo` runs, in order: one per flow."""
    from erphub_local.demos.beqom_import import BeqomImportDemo  # noqa: PLC0415
    from erphub_local.demos.ebill_upload import EbillUploadDemo  # noqa: PLC0415
    from erphub_local.demos.operations import OperationsDemo  # noqa: PLC0415
    from erphub_local.demos.procuros_send import ProcurosSendDemo  # noqa: PLC0415
    from erphub_local.demos.rossum_export import RossumExportDemo  # noqa: PLC0415

    rossum = RossumExportDemo(per_queue=per_queue, invalid_ratio=invalid_ratio)
    # One ERP behind both ERP flows, as in a real deployment.
    sections: list[DemoSection] = [
        rossum,
        ProcurosSendDemo(rossum.erp),
        EbillUploadDemo(),
        BeqomImportDemo(),
    ]
    # Last: what an operator sees of everything the flows did (erphub show, erphub report).
    return [*sections, OperationsDemo()]


def run_demo(console: Console, sections: list[DemoSection]) -> DemoReport:
    """Run every section on one local stack; the report says whether every promise held."""
    report = DemoReport()
    with contextlib.ExitStack() as running:
        variables: dict[str, str] = {"HTTP_BACKOFF_SECONDS": "0.05"}
        for section in sections:
            running.enter_context(section)
            variables.update(section.env())
        local = config.load(variables, env_file=config.STATE_DIR / "none")
        console.print("Starting the local AWS stack from template.yaml ...")
        stack = running.enter_context(
            LocalStack(
                config.TEMPLATE,
                parameters=local.parameters,
                secret_values=local.secret_values,
                env_overrides=local.env_overrides,
                log_path=config.STATE_DIR / "logs" / "demo-lambda.log",
            )
        )
        for section in sections:
            console.rule(section.title)
            started = time.perf_counter()
            section.run(console, stack, report)
            report.timings[section.title] = time.perf_counter() - started
    console.rule("Checks")
    for check in report.checks:
        mark = "[green]PASS[/green]" if check.ok else "[red]FAIL[/red]"
        console.print(
            f"{mark} {escape(f'[{check.section}]')} {escape(check.what)}"
            f"  [dim]{escape(check.detail)}[/dim]"
        )
    passed = sum(check.ok for check in report.checks)
    console.print(f"demo: {passed}/{len(report.checks)} checks passed")
    return report
