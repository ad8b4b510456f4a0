"""Running flows on a local stack exactly as their schedules would."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from erphub_local.aws.stack import Execution, LocalStack


@dataclass(frozen=True)
class FlowSpec:
    """How a flow is started: the schedule that fires it and the state machine it runs."""

    schedule: str
    state_machine: str
    description: str
    #: the variables (DESIGN §3) the flow cannot run without
    requires: tuple[str, ...] = ()


FLOWS: dict[str, FlowSpec] = {
    "rossum-export": FlowSpec(
        schedule="RossumScheduleFunctionEvery",
        state_machine="RossumExportStateMachine",
        description="Rossum confirmed annotations -> ERP -> exported / failed_export",
        requires=(
            "ROSSUM_BASE_URL",
            "ROSSUM_USERNAME",
            "ROSSUM_PASSWORD",
            "ROSSUM_QUEUE_IDS",
            "ERP_BASE_URL",
            "ERP_API_TOKEN",
        ),
    ),
    "procuros-send": FlowSpec(
        schedule="ProcurosScheduleFunctionEvery",
        state_machine="ProcurosSendStateMachine",
        description="ERP outgoing documents (empty Procuros status) -> Procuros -> ERP status",
        requires=("ERP_BASE_URL", "ERP_API_TOKEN", "PROCUROS_BASE_URL", "PROCUROS_API_TOKEN"),
    ),
}


def _execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def run_flow(
    stack: LocalStack,
    flow: str,
    *,
    when: datetime | None = None,
    timeout_s: float = 600,
    on_progress: Callable[[str], None] | None = None,
) -> list[Execution]:
    """Fire the flow's schedule once and wait for every execution it started."""
    spec = FLOWS[flow]
    tick = (when or datetime.now(UTC)).replace(microsecond=0)
    if on_progress:
        on_progress(f"{flow}: schedule tick {tick.isoformat()}")
    fired: Any = stack.fire_schedule(spec.schedule, tick)
    names: dict[str, str | None] = (
        dict(fired.get("executions", {})) if isinstance(fired, dict) else {}
    )
    machine = stack.stack.state_machine_arn(spec.state_machine)
    executions = []
    for name, arn in names.items():
        if on_progress:
            on_progress(f"{flow}: waiting for {name}")
        executions.append(
            stack.wait_execution(arn or _execution_arn(machine, name), timeout_s=timeout_s)
        )
    return executions
