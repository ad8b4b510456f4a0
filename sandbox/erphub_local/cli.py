"""The `erphub` command: a local stack, flow runs, the ledger, and the demo."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
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


# --- S3 drop -> eBill batch upload -------------------------------------------------------------

#: what a local stack needs to reach eBill
EBILL_VARIABLES = ("EBILL_BASE_URL", "EBILL_USERNAME", "EBILL_PASSWORD")


@local.command("drop")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--key",
    required=True,
    help="Object key in the drop bucket; for several files a folder ending in '/' (each file"
    " keeps its name, uploaded in the order given: put manifest.json last).",
)
@click.option(
    "--endpoint", help="URL of a stack started with `erphub local up`; default: an ephemeral one."
)
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait.")
def local_drop(files: tuple[Path, ...], key: str, endpoint: str | None, timeout: float) -> None:
    """Upload FILES into the drop bucket, wait for the executions they start, print their outputs.

    ebill/customers/<file>.csv is one Customer batch; an invoice batch is a folder
    ebill/invoices/<batch>/ with its CSV files and a manifest.json, e.g.
    `erphub local drop inv.csv itm-1.csv manifest.json --key ebill/invoices/aug/`.
    Exits 0 only if every execution succeeded.
    """
    from erphub_local.aws.stack import LocalStack  # noqa: PLC0415
    from erphub_local.drops import drop, wait_for  # noqa: PLC0415

    if len(files) > 1 and not key.endswith("/"):
        raise click.UsageError("with several files, --key must be a folder ending in '/'")
    keys = [key + f.name if key.endswith("/") else key for f in files]
    if endpoint:
        stack = LocalStack.attach(endpoint, state_dir=config.STATE_DIR)
    else:
        stack = _local_stack("inprocess", EBILL_VARIABLES)
        stack.start()
    try:
        with console.status("dropping ...") as status:
            dropped = []
            for path, object_key in zip(files, keys, strict=True):
                status.update(f"dropping {path} as {object_key}")
                dropped.append(drop(stack, object_key, path))
            status.update("waiting for the executions ...")
            try:
                executions = wait_for(stack, dropped, timeout_s=timeout)
            except LookupError as error:
                raise click.ClickException(str(error)) from None
    finally:
        if not endpoint:
            stack.stop()
    if not executions:
        console.print("no execution started: none of the keys is an eBill drop trigger")
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
    if any(e.status != "SUCCEEDED" for e in executions):
        sys.exit(1)


@main.group()
def ebill() -> None:
    """eBill operations that never run as a side effect of a drop."""


_CARRY_FORWARD = {
    "invoices": "carry_forward_invoices",
    "credit-memos": "carry_forward_credit_memos",
    "debit-memos": "carry_forward_debit_memos",
}


@ebill.command("init")
@click.option(
    "--job-id", required=True, help="Unique jobId of this BatchInit; reusing it is a no-op."
)
@click.option(
    "--carry-forward",
    default="",
    help="Comma-separated: invoices, credit-memos, debit-memos, or all. They become CarriedOver.",
)
@click.option(
    "--zero-out-balances",
    is_flag=True,
    help="Set every customer's balance to 0 (before a new load).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def ebill_init(job_id: str, carry_forward: str, zero_out_balances: bool, yes: bool) -> None:
    """Run eBill's BatchInit (carry forward, zero balances) once, after confirmation.

    Uses EBILL_BASE_URL, EBILL_USERNAME and EBILL_PASSWORD (and EBILL_AUTH_SCHEME,
    EBILL_AUTH_HEADER) from the environment or .env. A BatchInit with the same --job-id that
    already exists in eBill is reported, not run again.
    """
    from pydantic import ValidationError  # noqa: PLC0415

    from erphub.clients.ebill import InitSpec  # noqa: PLC0415
    from erphub.errors import ErphubError  # noqa: PLC0415
    from erphub.flows.ebill_upload import run_batch_init  # noqa: PLC0415
    from erphub.runtime import ebill_client  # noqa: PLC0415
    from erphub.settings import EbillSettings, HttpSettings  # noqa: PLC0415

    chosen = {part.strip() for part in carry_forward.split(",") if part.strip()}
    if "all" in chosen:
        chosen = set(_CARRY_FORWARD)
    unknown = chosen - set(_CARRY_FORWARD)
    if unknown:
        raise click.UsageError(f"unknown --carry-forward value(s): {', '.join(sorted(unknown))}")
    if not chosen and not zero_out_balances:
        raise click.UsageError("nothing to do: give --carry-forward and/or --zero-out-balances")
    env_file = config.ROOT / ".env"
    try:
        settings = EbillSettings(_env_file=env_file)
        http = HttpSettings(_env_file=env_file)
    except ValidationError as error:
        names = ", ".join(str(e["loc"][0]).upper() for e in error.errors())
        raise click.UsageError(f"set (or fix) {names}") from None
    effects = [
        f"every {name.replace('-', ' ')[:-1]} becomes CarriedOver" for name in sorted(chosen)
    ]
    if zero_out_balances:
        effects.append("every customer balance is set to 0")
    console.print(f"BatchInit {job_id} on {settings.ebill_base_url}: " + "; ".join(effects) + ".")
    if not yes:
        click.confirm("This cannot be undone. Run it?", abort=True)
    spec = InitSpec(
        job_id=job_id,
        zero_out_customer_balance=zero_out_balances,
        **{_CARRY_FORWARD[name]: True for name in chosen},
    )
    client = ebill_client(settings, http)
    try:
        batch, started = run_batch_init(spec, client)
    except ErphubError as error:
        raise click.ClickException(
            f"{error}. eBill has no BatchInit {job_id} (checked with GET ?jobId=): "
            "it is safe to run this command again."
        ) from None
    finally:
        client.close()
    if not started:
        console.print(f"BatchInit {job_id} exists already in eBill: not run again.")
    click.echo(
        json.dumps(
            {
                "id": batch.id,
                "jobId": batch.job_id,
                "started": started,
                "children": [
                    c.model_dump(mode="json", by_alias=True, exclude={"children"})
                    for c in batch.children
                ],
            },
            indent=2,
        )
    )
