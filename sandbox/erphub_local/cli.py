"""The `erphub` command: a local stack, flow runs, the ledger, and the demo."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.console import Console

from erphub_local import config
from erphub_local.runner import FLOWS, run_flow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from erphub.ledger import Entry
    from erphub.mapfile import Target as MappingTarget
    from erphub_local.aws.stack import LocalStack
    from erphub_local.operations import Target

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """erphub: move business documents between your ERP and Rossum, Procuros, eBill and beqom,
    exactly once or visibly failed.

    `erphub demo` shows every flow on the local stack (moto) and simulators, without an AWS
    account. External endpoints and credentials come from the environment (ROSSUM_BASE_URL,
    ERP_BASE_URL, ERP_API_TOKEN, ... see README.md), or from a .env file in the project root.
    status, show, replay and report read a deployed stack (--stack) or a local one (--endpoint).
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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read, map and check every document, change nothing in any system, and print what"
    " each would become. The S3-triggered flows (eBill, beqom: `erphub local drop`) have no"
    " dry run.",
)
def local_run(flow: str, endpoint: str | None, timeout: float, dry_run: bool) -> None:
    """Start FLOW once, exactly as its schedule would, wait, and print the outputs as JSON.

    With --dry-run each output carries its per-document report ("report": what would be sent,
    what would be rejected and why), and a table of the documents goes to stderr.
    Exits 0 only if every execution succeeded.
    """
    from erphub_local.aws.stack import LocalStack  # noqa: PLC0415
    from erphub_local.runner import dry_run_reports  # noqa: PLC0415

    if endpoint:
        stack = LocalStack.attach(endpoint, state_dir=config.STATE_DIR)
    else:
        stack = _local_stack("inprocess", FLOWS[flow].requires)
    if not endpoint:
        stack.start()
    try:
        with console.status(f"running {flow} ...") as status:
            executions = run_flow(
                stack, flow, timeout_s=timeout, on_progress=status.update, dry_run=dry_run
            )
        reports = {r["runId"]: r for r in dry_run_reports(stack, executions)} if dry_run else {}
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
            **({"report": reports[e.name]} if e.name in reports else {}),
        }
        for e in executions
    ]
    for report in reports.values():
        _print_dry_run(report)
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
@click.option(
    "--stack",
    envvar="ERPHUB_STACK",
    help="The CloudFormation stack in AWS (instead of --table).",
)
@click.option("--flow", help="Only this flow, e.g. rossum-export.")
@click.option(
    "--failed",
    is_flag=True,
    help="Only documents that are rejected, failed, or wait for a retry (stuck).",
)
@click.option("--limit", type=int, default=50, show_default=True)
def status(  # noqa: PLR0917 - one click option each
    endpoint: str | None,
    table: str | None,
    stack: str | None,
    flow: str | None,
    failed: bool,
    limit: int,
) -> None:
    """The ledger as a table: document, flow, status, attempts, last error.

    `erphub show DOCUMENT` tells the whole story of one of them.
    """
    from erphub_local.ledger_view import NEEDS_ATTENTION, entries, render  # noqa: PLC0415

    if stack and not endpoint:
        ledger = _target(None, stack, None).ledger
        rows = [e for e in ledger.entries(flow) if not failed or e.status in NEEDS_ATTENTION]
        rows.sort(key=lambda e: e.updated_at, reverse=True)
    else:
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
    """Run every flow on the local stack and simulators (each at least twice), check them."""
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

    from erphub.clients.ebill_port import InitSpec  # noqa: PLC0415
    from erphub.errors import ErphubError  # noqa: PLC0415
    from erphub.flows.ebill_upload import run_batch_init  # noqa: PLC0415
    from erphub.runtime.ebill import ebill_client  # noqa: PLC0415
    from erphub.settings import HttpSettings  # noqa: PLC0415
    from erphub.settings.ebill import EbillSettings  # noqa: PLC0415

    chosen = {part.strip() for part in carry_forward.split(",") if part.strip()}
    if "all" in chosen:
        chosen = set(_CARRY_FORWARD)
    unknown = chosen - set(_CARRY_FORWARD)
    if unknown:
        raise click.UsageError(f"unknown --carry-forward value(s): {', '.join(sorted(unknown))}")
    if not chosen and not zero_out_balances:
        raise click.UsageError("nothing to do: give --carry-forward and/or --zero-out-balances")
    environ = config.environment()
    try:
        settings = EbillSettings.from_env(environ)
        http = HttpSettings.from_env(environ)
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


# --- Operations: show, replay, report ------------------------------------------------------------


def _hub_options(command: Callable[..., None]) -> Callable[..., None]:
    """--endpoint / --stack / --table: which hub an operations command reads."""
    options = (
        click.option(
            "--table",
            envvar="LEDGER_TABLE",
            help="A ledger table in AWS, alone (enough for show and report).",
        ),
        click.option(
            "--stack",
            envvar="ERPHUB_STACK",
            help="The CloudFormation stack in AWS (your usual AWS credentials and region).",
        ),
        click.option("--endpoint", help="URL of a local stack (`erphub local up`)."),
    )
    for option in options:
        command = option(command)
    return command


def _target(endpoint: str | None, stack: str | None, table: str | None) -> Target:
    from erphub_local.aws.stack import LocalStack  # noqa: PLC0415
    from erphub_local.operations import connect  # noqa: PLC0415

    try:
        return connect(
            endpoint=endpoint,
            stack=stack,
            table=table,
            attach=lambda url: LocalStack.attach(url, state_dir=config.STATE_DIR),
        )
    except (LookupError, FileNotFoundError) as error:
        raise click.UsageError(str(error)) from None


def _document(target: Target, reference: str) -> list[Entry]:
    from erphub_local.operations import find  # noqa: PLC0415

    found = find(target.ledger, reference)
    if not found:
        raise click.ClickException(f"no document matches {reference!r} in {target.label}")
    return found


@main.command()
@click.argument("document")
@_hub_options
def show(document: str, endpoint: str | None, stack: str | None, table: str | None) -> None:
    """What happened to DOCUMENT: its history across steps and systems, and what to do.

    DOCUMENT is flow#id (rossum-export#4711, procuros-send#INV-1, beqom-import#R1/W1/f.pdf,
    ebill-upload#s3://...), or an id looked up in every flow, or a part of one (an eBill drop's
    S3 key, an external id such as the ERP's invoice id). Prints the status, the reasons, where
    the failure shows (Rossum, the ERP's Error URL, eBill's result file...), how to fix it,
    every step with its time and run, the runs' outcomes, and an eBill drop's files and failed
    rows.
    """
    from erphub_local.operations import describe  # noqa: PLC0415

    target = _target(endpoint, stack, table)
    found = _document(target, document)
    click.echo(describe(target, found[0], others=found[1:]))


@main.command()
@click.argument("document")
@click.option("--dry-run", is_flag=True, help="Say what would be done; do nothing.")
@_hub_options
def replay(
    document: str, dry_run: bool, endpoint: str | None, stack: str | None, table: str | None
) -> None:
    """Run DOCUMENT through its flow again, now, where that is safe.

    Nothing is sent from here: replay starts the flow's own run, which reads the ledger and
    reconciles with the external system before any create, exactly as a scheduled run does, so
    nothing can arrive twice.

    \b
    rossum-export   starts an export of the document's queue (it takes what Rossum lists as
                    confirmed: confirm a failed_export invoice again in Rossum first)
    procuros-send   starts a send (it takes the ERP documents whose Procuros status is empty)
    ebill-upload    starts a new execution of the same drop: files already in eBill are not
                    uploaded again and the batch is finalized at most once (not for a Partial
                    Success: drop the corrected rows as a new batch)
    beqom-import    queues the document's current file again (an unchanged file is skipped;
                    beqom overwrites a document of the same name)

    A lease is released only when the run holding it has ended; a document that is done, or a
    part of an eBill drop, is refused with what to do instead. Needs --stack or --endpoint.
    """
    from erphub_local.operations import is_document  # noqa: PLC0415
    from erphub_local.operations import replay as replay_document  # noqa: PLC0415

    target = _target(endpoint, stack, table)
    found = _document(target, document)
    documents = [e for e in found if is_document(e)]
    if len(found) > 1 and len(documents) == 1:  # a drop and its parts: the drop
        found = documents
    if len(found) > 1:
        names = "\n".join(f"  {e.flow}#{e.document_id}" for e in found[:20])
        raise click.ClickException(f"{document!r} matches several documents; name one:\n{names}")
    try:
        result = replay_document(target, found[0], dry_run=dry_run)
    except LookupError as error:
        raise click.UsageError(str(error)) from None
    if not result.ok:
        raise click.ClickException(f"not replayed: {result.document}: {result.refused}")
    prefix = "would " if dry_run else ""
    for step in result.done:
        click.echo(f"{prefix}{step}")
    for note in result.notes:
        click.echo(note)


@main.command()
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the report.",
)
@click.option("--days", type=float, default=7, show_default=True, help="How far back to look.")
@_hub_options
def report(
    html_path: Path, days: float, endpoint: str | None, stack: str | None, table: str | None
) -> None:
    """Write a self-contained HTML report of the recent runs: each flow's outcomes over time,
    its executions, and every document that is rejected, failed or stuck, with its reason and
    how to fix it. No script, nothing fetched: open it anywhere, mail it, archive it.
    """
    from erphub_local.report import collect, render_html  # noqa: PLC0415

    target = _target(endpoint, stack, table)
    data = collect(target, days=days)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(data), encoding="utf-8")
    documents = sum(sum(f.counts.values()) for f in data.flows)
    click.echo(
        f"{html_path}: {documents} documents, {sum(len(f.runs) for f in data.flows)} executions,"
        f" {data.attention_total} needing attention"
    )


# --- mappings and dry runs ---------------------------------------------------------------------


def _print_dry_run(report: dict[str, Any]) -> None:
    """A dry run's documents as a table on stderr."""
    from rich.table import Table  # noqa: PLC0415

    summary = report.get("summary", {})
    table = Table(
        title=f"dry run {report.get('runId')}: {summary.get('accepted', 0)} accepted,"
        f" {summary.get('rejected', 0)} rejected, {summary.get('deferred', 0)} deferred,"
        f" {summary.get('skipped', 0)} skipped; {summary.get('sends', 0)} would be sent",
        title_justify="left",
        caption=summary.get("note"),
        caption_justify="left",
    )
    for column in ("document", "verdict", "would", "reasons"):
        table.add_column(column, overflow="fold")
    for document in report.get("documents", []):
        table.add_row(
            str(document.get("documentId")),
            str(document.get("verdict")),
            str(document.get("action", "")),
            "\n".join(document.get("reasons", [])),
        )
    console.print(table)


@main.group("map")
def map_group() -> None:
    """Check mapping files and see what they make of a document, offline.

    A mapping file says where each field of the target comes from in the source document:
    Rossum annotation -> ERP invoice (kind: rossum-invoice), ERP outgoing document -> Procuros
    transaction (kind: erp-outgoing). The packaged defaults are in erphub/mappings/; a deployed
    hub reads another from ROSSUM_MAPPING / PROCUROS_MAPPING (a path, or ssm:/parameter/name).
    """


def _mapping_target(kind: str) -> MappingTarget:
    from erphub import mapping, procuros_mapping  # noqa: PLC0415

    targets = {t.kind: t for t in (mapping.TARGET, procuros_mapping.TARGET)}
    if kind not in targets:
        raise click.UsageError(f"kind {kind!r} is not one of {', '.join(sorted(targets))}")
    return targets[kind]


@map_group.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def map_check(file: Path) -> None:
    """Check FILE, a mapping file; print every problem with its line. Exits 1 on a problem."""
    import yaml  # noqa: PLC0415

    from erphub.mapfile import MappingFileError, parse  # noqa: PLC0415

    text = file.read_text(encoding="utf-8")
    try:
        head = yaml.safe_load(text)
    except yaml.YAMLError:
        head = None
    kind = head.get("kind") if isinstance(head, dict) else None
    if not isinstance(kind, str):
        kinds = "rossum-invoice or erp-outgoing"
        click.echo(f"{file}:1: the file must say which mapping it is: kind: {kinds}")
        sys.exit(1)
    try:
        spec = parse(text, str(file), _mapping_target(kind))
    except MappingFileError as error:
        click.echo("\n".join(error.problems))
        sys.exit(1)
    fields = len(spec.common.fields) + sum(len(item.fields) for item in spec.common.lists)
    types = f", specialised for {', '.join(sorted(spec.by_type))}" if spec.by_type else ""
    click.echo(f"{file}: a valid {spec.kind} mapping ({fields} fields{types})")


def _documents(path: Path, keys: tuple[str, ...]) -> list[Any]:
    """The documents in a JSON file: one, a list, or a page ({"results"|"items": [...]})."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise click.UsageError(f"{path}: not a JSON file ({error})") from None
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), list):
                return list(data[key])
        return [data]
    return data if isinstance(data, list) else [data]


@map_group.command("preview")
@click.option(
    "--annotation",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Rossum export (format=json): one result, a list, or a page with results.",
)
@click.option(
    "--outgoing",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ERP outgoing documents: one, a list, or a page of GET /outgoing-documents.",
)
@click.option(
    "--mapping",
    "location",
    help="A mapping file (or ssm:/name); default: ROSSUM_MAPPING / PROCUROS_MAPPING, else the"
    " packaged one.",
)
def map_preview(annotation: Path | None, outgoing: Path | None, location: str | None) -> None:
    """Print what each document maps to (the invoice, or the Procuros transaction and what the
    schema of the send body says of it), or every problem with the field it came from.

    Nothing is sent anywhere. Exits 1 if any document has a problem.
    """
    import os  # noqa: PLC0415

    from pydantic import ValidationError  # noqa: PLC0415

    from erphub.errors import ConfigurationError  # noqa: PLC0415

    if (annotation is None) == (outgoing is None):
        raise click.UsageError("give --annotation or --outgoing")
    variable = "ROSSUM_MAPPING" if annotation else "PROCUROS_MAPPING"
    location = location if location is not None else os.environ.get(variable, "")
    try:
        if annotation is not None:
            results = _preview_annotations(annotation, location)
        else:
            assert outgoing is not None
            results = _preview_outgoing(outgoing, location)
    except ConfigurationError as error:
        raise click.ClickException(str(error)) from None
    except ValidationError as error:
        raise click.ClickException(f"not a document of that kind: {error}") from None
    click.echo(json.dumps(results, indent=2, ensure_ascii=False))
    if any("problems" in result for result in results):
        sys.exit(1)


def _preview_annotations(path: Path, location: str) -> list[dict[str, Any]]:
    from erphub.invoices import ExportedAnnotation  # noqa: PLC0415
    from erphub.mapping import MappingError, load_mapping, to_invoice  # noqa: PLC0415

    spec = load_mapping(location)
    results: list[dict[str, Any]] = []
    for raw in _documents(path, ("results",)):
        annotation = ExportedAnnotation.model_validate(raw)
        try:
            invoice = to_invoice(annotation, spec).dump()
        except MappingError as error:
            results.append({"annotation": annotation.id, "problems": error.problems})
            continue
        results.append({"annotation": annotation.id, "invoice": invoice})
    return results


def _preview_outgoing(path: Path, location: str) -> list[dict[str, Any]]:
    from erphub.clients.erp_port import OutgoingDocument  # noqa: PLC0415
    from erphub.procuros_mapping import MappingError, load_mapping, to_transaction  # noqa: PLC0415
    from erphub.procuros_schema import transaction_schema  # noqa: PLC0415

    spec = load_mapping(location)
    results: list[dict[str, Any]] = []
    for raw in _documents(path, ("items",)):
        document = OutgoingDocument.model_validate(raw)
        try:
            transaction = to_transaction(document, spec)
        except MappingError as error:
            results.append({"document": document.id, "problems": error.problems})
            continue
        body = {"type": transaction.type, "content": transaction.content}
        result: dict[str, Any] = {"document": document.id, "transaction": body}
        refusals = transaction_schema().problems(body)
        if refusals:
            result["problems"] = [f"Procuros would refuse it: {p}" for p in refusals]
        results.append(result)
    return results
