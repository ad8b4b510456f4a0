"""Running flows on a local stack exactly as their schedules would."""

from __future__ import annotations

import json
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


def _dry_run_tick(stack: LocalStack, schedule_logical_id: str, tick: datetime) -> Any:
    """Invoke the schedule's function with a tick whose detail asks for dry runs."""
    schedule = stack.stack.schedule(schedule_logical_id)
    if schedule.target_kind != "function":
        raise ValueError(f"{schedule_logical_id} does not start its flow through a function")
    event = {
        "version": "0",
        "id": f"dry-run-{tick:%Y%m%dT%H%M%SZ}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": stack.stack.account_id,
        "time": tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": stack.stack.region,
        "resources": [schedule.source_arn],
        "detail": {"dryRun": True},
    }
    return stack.invoke(schedule.target, event)


def run_flow(
    stack: LocalStack,
    flow: str,
    *,
    when: datetime | None = None,
    timeout_s: float = 600,
    on_progress: Callable[[str], None] | None = None,
    dry_run: bool = False,
) -> list[Execution]:
    """Fire the flow's schedule once and wait for every execution it started.

    ``dry_run`` starts dry runs instead (the schedule's function, with a tick asking for them):
    they change nothing and leave a per-document report (see :func:`dry_run_reports`).
    """
    spec = FLOWS[flow]
    tick = (when or datetime.now(UTC)).replace(microsecond=0)
    if on_progress:
        on_progress(f"{flow}: {'dry-run ' if dry_run else ''}schedule tick {tick.isoformat()}")
    fired: Any = (
        _dry_run_tick(stack, spec.schedule, tick)
        if dry_run
        else stack.fire_schedule(spec.schedule, tick)
    )
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


def dry_run_reports(stack: LocalStack, executions: list[Execution]) -> list[dict[str, Any]]:
    """The per-document reports of finished dry runs, read from the payload bucket."""
    bucket = stack.stack.physical("PayloadBucket")
    reports = []
    for execution in executions:
        output = execution.output if isinstance(execution.output, dict) else {}
        summary = output.get("finalize") or (output.get("list") or {}).get("dryRun") or {}
        key = summary.get("reportKey") if isinstance(summary, dict) else None
        if not key:
            continue
        body = stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        reports.append(json.loads(body))
    return reports
