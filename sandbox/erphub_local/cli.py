"""The `erphub` command: a local stack, flow runs, the ledger, and the demo."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Literal

import click
from rich.console import Console

from erphub_local import config
from erphub_local.runner import FLOWS, run_flow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from erphub_local.aws.stack import LocalStack

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """erphub: move business documents between Rossum and your ERP, exactly once.

    Every command runs without an AWS account: `erphub demo` shows the whole flow on the local
    stack (moto) and simulators. External endpoints and credentials come from the environment
    (ROSSUM_BASE_URL, ROSSUM_USERNAME, ROSSUM_PASSWORD, ROSSUM_QUEUE_IDS, ERP_BASE_URL,
    ERP_API_TOKEN), or from a .env file in the project root.
    """


@main.group()
def local() -> None:
    """Run the hub on the local AWS emulation."""


def _local_stack(
    mode: Literal["inprocess", "server"], required: Iterable[str], port: int = 0
) -> LocalStack:
    """A local stack configured from the environment; refuses to start without ``required``."""
    from erphub_local.aws.stack import LocalStack  # noqa: PLC0415 - moto is slow to import

    settings = config.load()
    missing = settings.missing(required)
    if missing:
        raise click.UsageError(
            "set these variables (or put them in .env): "
            + ", ".join(missing)
            + ". `erphub demo` needs none: it starts its own simulators."
        )
    log_name = "local-up-lambda.log" if mode == "server" else "lambda.log"
    return LocalStack(
        config.TEMPLATE,
        mode=mode,
        port=port,
        parameters=settings.parameters,
        secret_values=settings.secret_values,
        env_overrides=settings.env_overrides,
        log_path=config.STATE_DIR / "logs" / log_name,
    )


def _unset(required: Iterable[str]) -> list[str]:
    return config.load().missing(required)


@local.command("up")
@click.option(
    "--port", type=int, default=4566, show_default=True, help="Port on 127.0.0.1 (0: any free one)."
)
def local_up(port: int) -> None:
    """Start a long-running local stack and keep its state until Ctrl-C."""
    every = sorted({v for spec in FLOWS.values() for v in spec.requires})
    unset = _unset(every)
    if unset:
        console.print(f"[yellow]not set (the flows needing them will fail): {', '.join(unset)}")
    # moto's server logs every request; the handlers' own logs go to the log file.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stack = _local_stack("server", (), port)
    stack.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        click.echo(f"erphub local stack at {stack.endpoint_url}")
        console.print(
            "Run a flow against it: erphub local run rossum-export"
            f" --endpoint {stack.endpoint_url}\n"
            f"Handler logs: {config.STATE_DIR / 'logs' / 'local-up-lambda.log'}\nCtrl-C stops it."
        )
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        console.print("stopped")


@local.command("run")
@click.argument("flow", type=click.Choice(sorted(FLOWS)))
@click.option(
    "--endpoint", help="URL of a stack started with `erphub local up`; default: an ephemeral one."
)
@click.option(
    "--timeout",
    type=float,
    default=600,
    show_default=True,
    help="Seconds to wait for the executions.",
)
def local_run(flow: str, endpoint: str | None, timeout: float) -> None:
    """Start FLOW once, exactly as its schedule would, wait, and print the outputs as JSON.

    Exits 0 only if every execution succeeded.
    """
    from erphub_local.aws.stack import LocalStack  # noqa: PLC0415

    if endpoint:
        stack = LocalStack.attach(endpoint, state_dir=config.STATE_DIR)
    else:
        stack = _local_stack("inprocess", FLOWS[flow].requires)
    if not endpoint:
        stack.start()
    try:
        with console.status(f"running {flow} ...") as status:
            executions = run_flow(stack, flow, timeout_s=timeout, on_progress=status.update)
    finally:
        if not endpoint:
            stack.stop()
    outputs = [
        {
            "execution": e.name,
            "status": e.status,
            "output": e.output,
            "error": e.error,
            "cause": e.cause,
        }
        for e in executions
    ]
    click.echo(json.dumps(outputs, indent=2))
    if not executions or any(e.status != "SUCCEEDED" for e in executions):
        sys.exit(1)


@main.command()
@click.option(
    "--endpoint",
    help="URL of a local stack (`erphub local up`); default: AWS, with your credentials.",
)
@click.option(
    "--table", envvar="LEDGER_TABLE", help="Ledger table name (default: the local stack's)."
)
@click.option("--flow", help="Only this flow, e.g. rossum-export.")
@click.option("--failed", is_flag=True, help="Only documents that failed or wait for a retry.")
@click.option("--limit", type=int, default=50, show_default=True)
def status(
    endpoint: str | None, table: str | None, flow: str | None, failed: bool, limit: int
) -> None:
    """The ledger as a table: document, flow, status, attempts, last error."""
    from erphub_local.ledger_view import entries, render  # noqa: PLC0415

    rows = entries(endpoint=endpoint, table=table, flow=flow, failed=failed)
    Console().print(render(rows[:limit], total=len(rows)))


@main.command()
@click.option(
    "--per-queue",
    type=int,
    default=130,
    show_default=True,
    help="Annotations per queue (2 queues).",
)
@click.option("--invalid-ratio", type=float, default=0.10, show_default=True)
def demo(per_queue: int, invalid_ratio: float) -> None:
    """Seed the simulators, run the Rossum export twice on the local stack, print a summary."""
    from erphub_local.demo import default_sections, run_demo  # noqa: PLC0415

    report = run_demo(Console(), default_sections(per_queue=per_queue, invalid_ratio=invalid_ratio))
    if not report.ok:
        sys.exit(1)
