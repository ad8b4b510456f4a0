"""`make bench`: API calls against their floor, Step Functions transitions, speed against a naive
baseline, cold imports, streaming memory, layer size and a cost model; writes bench/results.json.

Timings on a shared machine are noisy: every timing is the median of several runs, and the
speed-up is a ratio of two medians measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from bench.remote import remote_simulators

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
PRICES = json.loads((ROOT / "bench" / "prices.json").read_text())
console = Console(stderr=True)


def median(values: list[float]) -> float:
    """The median, rounded for reading."""
    return round(statistics.median(values), 4)


# --- Rossum -> ERP ----------------------------------------------------------------------------


def _rossum_env(rossum: Any, erp: Any) -> dict[str, str]:
    return {
        **rossum.hub_env(),
        "ROSSUM_QUEUE_IDS": "1001",
        **erp.hub_env(),
        "HTTP_BACKOFF_SECONDS": "0.05",
    }


@cache
def _aws_calls() -> Any:
    # One counter for the process: handlers cache their clients across runs.
    from bench.counters import AwsCalls

    return AwsCalls()


@contextmanager
def _bench_stack(variables: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    """A local stack configured by ``variables``, with fresh invocation and AWS counters."""
    from erphub_local import config
    from erphub_local.aws import inproc_lambda
    from erphub_local.aws.stack import LocalStack

    settings = config.load(variables, env_file=ROOT / ".erphub" / "none")
    aws = _aws_calls()
    with LocalStack(
        config.TEMPLATE,
        parameters=settings.parameters,
        secret_values=settings.secret_values,
        env_overrides=settings.env_overrides,
        log_path=ROOT / ".erphub" / "logs" / "bench-lambda.log",
    ) as stack:
        inproc_lambda.reset()
        aws.clear()
        yield stack, aws


def _aws_figures(
    aws: Any, transitions: int, documents: int, wru_per_write: float = 1
) -> dict[str, Any]:
    """What the cost model needs, from the counters of one run."""
    from erphub_local.aws import inproc_lambda

    invocations = list(inproc_lambda.INVOCATIONS)
    return {
        "transitions": transitions,
        "lambda_invocations": len(invocations),
        "lambda_seconds": sum(i.duration_ms for i in invocations) / 1000,
        "dynamodb_writes": aws.get("dynamodb", "UpdateItem", "PutItem"),
        "dynamodb_reads": aws.get("dynamodb", "GetItem", "Query") + aws.batch_items,
        "dynamodb_wru_per_write": wru_per_write,
        "s3_puts": aws.get("s3", "PutObject", "UploadPart", "CreateMultipartUpload"),
        "s3_gets": aws.get("s3", "GetObject", "HeadObject", "ListObjectVersions"),
        "secret_reads": aws.get("secretsmanager", "GetSecretValue"),
        "sqs_requests": aws.get(
            "sqs", "SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage"
        ),
        "documents": documents,
    }


def _transitions(stack: Any, arns: list[str]) -> int:
    return sum(
        1
        for arn in arns
        for e in stack.execution_history(arn)
        if e["type"].endswith("StateEntered")
    )


@contextmanager
def _rossum_simulators(n: int, latency: float) -> Iterator[tuple[Any, Any, Any]]:
    """Rossum and the ERP in a child process, seeded with ``n`` confirmed annotations."""
    from erphub_local.seed import seed_demo
    from erphub_local.simulators import ErpSimulator, RossumSimulator

    simulators = {
        "rossum": (RossumSimulator, {"latency_s": latency}),
        "erp": (ErpSimulator, {"latency_s": latency}),
    }
    seeding = {"queue_ids": (1001,), "per_queue": n}
    with remote_simulators(simulators, (seed_demo, seeding)) as (sims, seed):
        yield sims["rossum"], sims["erp"], seed


def rossum_erphub_run(n: int, latency: float) -> dict[str, Any]:
    """One erphub export of ``n`` annotations (10% rejected) with ``latency`` per request."""
    from erphub_local.runner import run_flow

    with _rossum_simulators(n, latency) as (rossum, erp, seed):
        # An invoice without a number cannot be booked: the mapping refuses it before any call
        # (the naive baseline too), so the floor counts one ERP push per other document.
        pushable = n - sum(1 for r in seed.invalid.values() if r == "missing_invoice_number")
        with _bench_stack(_rossum_env(rossum, erp)) as (stack, aws):
            started = time.perf_counter()
            executions = run_flow(stack, "rossum-export")
            wall = time.perf_counter() - started
            assert [e.status for e in executions] == ["SUCCEEDED"], executions
            table = stack.client("dynamodb").scan(TableName=stack.stack.physical("LedgerTable"))
            item_kb = [len(json.dumps(item)) / 1024 for item in table["Items"]]
            figures = _aws_figures(
                aws,
                _transitions(stack, [e.arn for e in executions]),
                n,
                statistics.mean(math.ceil(kb) for kb in item_kb),
            )
        statuses = rossum.statuses()
        accepted = sum(1 for s in statuses.values() if s == "exported")
        rejected = sum(1 for s in statuses.values() if s == "failed_export")
        assert accepted + rejected == n, (accepted, rejected)
        calls = [*rossum.calls, *erp.calls]
    return {
        **figures,
        "wall_s": wall,
        "api_calls": len(calls),
        "api_call_floor": 1 + math.ceil(n / 100) + math.ceil(accepted / 100) + rejected + pushable,
        "api_calls_by_endpoint": _by_endpoint(calls),
    }


def procuros_run(n: int, latency: float) -> dict[str, Any]:
    """One Procuros send of ``n`` outgoing ERP documents (10% for an inactive partner)."""
    from erphub_local.demos.procuros_send import seed_outgoing
    from erphub_local.runner import run_flow
    from erphub_local.simulators import ErpSimulator, ProcurosSimulator

    simulators = {
        "erp": (ErpSimulator, {"latency_s": latency}),
        "procuros": (ProcurosSimulator, {"latency_s": latency}),
    }
    seeding = {"count": n, "refused_ratio": 0.0, "unreadable": 0, "already_sent": 0}
    with remote_simulators(simulators, (seed_outgoing, seeding)) as (sims, seed):
        erp, procuros = sims["erp"], sims["procuros"]
        variables = {
            **procuros.hub_env(),
            **erp.hub_env(),
            "HTTP_BACKOFF_SECONDS": "0.05",
        }
        with _bench_stack(variables) as (stack, aws):
            started = time.perf_counter()
            executions = run_flow(stack, "procuros-send")
            wall = time.perf_counter() - started
            assert [e.status for e in executions] == ["SUCCEEDED"], executions
            figures = _aws_figures(aws, _transitions(stack, [e.arn for e in executions]), n)
        sent = len(seed.transmit) + len(seed.no_action)
        calls = [*erp.calls, *procuros.calls]
    return {
        **figures,
        "wall_s": wall,
        "api_calls": len(calls),
        # one POST and one ERP status update per document, and the pages of 100 that list them
        "api_call_floor": 2 * sent + math.ceil(n / 100),
        "api_calls_by_endpoint": _by_endpoint(calls),
    }


def section_costs(section: Any, state_machine: str | None, documents: int) -> dict[str, Any]:
    """AWS counts of one demo section's run (both of its drops), for the cost model.

    The demo drops everything twice, so the figure per document is conservative: the second,
    duplicate drop is charged to the same documents.
    """
    from rich.console import Console as QuietConsole

    from erphub_local.demo import DemoReport

    with section, _bench_stack(section.env()) as (stack, aws):
        report = DemoReport()
        section.run(QuietConsole(quiet=True), stack, report)
        assert report.ok, [c for c in report.checks if not c.ok]
        arns = [e.arn for e in stack.executions(state_machine)] if state_machine else []
        return _aws_figures(aws, _transitions(stack, arns), documents)


def rossum_naive_run(n: int, latency: float) -> float:
    """Wall time of the naive baseline on the same data and latency."""
    from bench import naive_rossum

    with _rossum_simulators(n, latency) as (rossum, erp, _seed):
        started = time.perf_counter()
        counts = naive_rossum.run(
            rossum_api_url=rossum.api_url,
            username=rossum.username,
            password=rossum.password,
            queue_id=1001,
            erp_url=erp.url,
            erp_token=erp.token,
        )
        wall = time.perf_counter() - started
        assert sum(counts.values()) == n, counts
    return wall


def _by_endpoint(calls: list[Any]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for call in calls:
        path = "/".join(
            "{id}" if part.isdigit() or re.fullmatch(r"[A-Z]+-\d+", part) else part
            for part in call.path.split("/")
        )
        tally[f"{call.method} {path}"] = tally.get(f"{call.method} {path}", 0) + 1
    return dict(sorted(tally.items()))


def cost_per_10k(run: dict[str, Any], memory_mb: int = 512) -> float:
    """USD for 10,000 documents, scaled from one measured run."""
    scale = 10_000 / run["documents"]
    usd = (
        run["lambda_seconds"] * memory_mb / 1024 * PRICES["lambda_arm64_usd_per_gb_second"]
        + run["lambda_invocations"] * PRICES["lambda_usd_per_request"]
        + run["transitions"] * PRICES["stepfunctions_standard_usd_per_transition"]
        + run["dynamodb_writes"]
        * run["dynamodb_wru_per_write"]
        * PRICES["dynamodb_on_demand_usd_per_write_request_unit"]
        + run["dynamodb_reads"] * PRICES["dynamodb_on_demand_usd_per_read_request_unit"]
        + run["s3_puts"] * PRICES["s3_standard_usd_per_put"]
        + run["s3_gets"] * PRICES["s3_standard_usd_per_get"]
        + run["secret_reads"] * PRICES["secretsmanager_usd_per_api_call"]
        + run.get("sqs_requests", 0) * PRICES["sqs_standard_usd_per_request"]
    )
    return round(usd * scale, 5)


# --- cold imports -----------------------------------------------------------------------------

#: What the Lambda runtime provides besides the layer (at the versions requirements-dev.txt pins).
AWS_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
LAMBDA_PYTHON = (3, 13)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+")
_HASHED_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+(?: \\\n\s+--hash=\S+)+", re.MULTILINE)


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def lambda_python() -> str:
    """The Lambda runtime's Python (python3.13) from pyenv if it is there, else this one."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    major, minor = LAMBDA_PYTHON
    found = [
        p
        for p in pyenv.glob(f"versions/{major}.{minor}*/bin/python{major}.{minor}")
        if re.fullmatch(rf"{major}\.{minor}\.\d+", p.parents[1].name)
    ]
    if not found:
        return sys.executable
    newest = max(found, key=lambda p: tuple(int(n) for n in p.parents[1].name.split(".")))
    return str(newest)


def lambda_requirements() -> dict[str, str]:
    """The layer's pins and the AWS SDK's, each with its hashes from requirements-dev.txt.

    ``layers/erphub/requirements.txt`` has no hashes (``sam build`` reads it); every pin of it is
    also in requirements-dev.txt, at the same version, with the hashes of all its wheels.
    """
    hashed = {
        _name(m.group(1)): m.group(0)
        for m in _HASHED_PIN.finditer((ROOT / "requirements-dev.txt").read_text())
    }
    layer = {
        _name(m.group(1)): m.group(0)
        for line in (ROOT / "layers" / "erphub" / "requirements.txt").read_text().splitlines()
        if (m := _PIN.match(line))
    }
    requirements = {}
    for name, pin in layer.items():
        if not hashed.get(name, "").startswith(f"{pin} "):
            raise SystemExit(
                f"{pin} (layers/erphub/requirements.txt) is not in requirements-dev.txt"
            )
        requirements[name] = hashed[name]
    for name in AWS_SDK:
        requirements.setdefault(name, hashed[name])
    return requirements


def lambda_site(python: str) -> Path:
    """A Lambda-like site: the layer's packages and the runtime's boto3, nothing else.

    Built once with pip (``--no-deps --require-hashes``) and kept under ``.erphub/``, keyed by the
    pins and the interpreter's version.
    """
    requirements = "\n".join(lambda_requirements().values()) + "\n"
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout
    key = hashlib.sha256((requirements + version).encode()).hexdigest()[:16]
    site = ROOT / ".erphub" / "lambda-site" / key
    if (site / ".complete").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    (site / "requirements.txt").write_text(requirements)
    pip = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--require-hashes",
            "--target",
            str(site),
            "-r",
            str(site / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0:
        raise SystemExit(f"pip could not build the Lambda-like site {site}:\n{pip.stderr}")
    (site / ".complete").write_text(requirements)
    return site


def _import_seconds(python: str, module: str, path: list[Path]) -> float:
    # -I -S: no site-packages, no user site, no PYTHONPATH, no working directory on sys.path.
    code = (
        f"import sys; sys.path[:0] = {[str(p) for p in path]!r}; import time; "
        f"t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [python, "-I", "-S", "-c", code], check=True, capture_output=True, text=True, cwd=path[0]
    )
    return float(out.stdout.strip())


def cold_imports(repeat: int = 5) -> dict[str, Any]:
    """Each handler module's import time over ``import boto3``, fresh interpreters, medians.

    What is importable is what Lambda would have: the function's directory, the layer and the
    runtime's AWS SDK (see :func:`lambda_site`). The modules are timed in turns, boto3 first, so
    a change in the machine's load touches them alike; a first, untimed round writes the
    bytecode caches.
    """
    python = lambda_python()
    site = lambda_site(python)
    layer = ROOT / "layers" / "erphub"
    modules: dict[str, tuple[str, list[Path]]] = {"boto3": ("boto3", [site])}
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        modules[app.parent.name] = ("app", [app.parent, layer, site])
    timings: dict[str, list[float]] = {label: [] for label in modules}
    for round_ in range(repeat + 1):
        for label, (module, path) in modules.items():
            seconds = _import_seconds(python, module, path)
            if round_:
                timings[label].append(seconds)
    boto3_s = median(timings.pop("boto3"))
    handlers = {label: median(values) for label, values in timings.items()}
    worst = max(handlers, key=handlers.__getitem__)
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "interpreter": {"path": python, "version": version},
        "site": {
            "path": str(site.relative_to(ROOT)),
            "packages": {
                name: pin.split("==")[1].split(" ")[0]
                for name, pin in sorted(lambda_requirements().items())
            },
        },
        "repeat": repeat,
        "boto3_s": boto3_s,
        "handlers_s": handlers,
        "worst_handler": worst,
        "ratio": round(handlers[worst] / boto3_s, 2),
    }


# --- layer size -------------------------------------------------------------------------------


def layer_size_mb() -> float | str:
    """Unzipped size of the layer as `sam build` would make it (arm64, Python 3.13)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "python"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(target),
                "--platform",
                "manylinux2014_aarch64",
                "--python-version",
                "3.13",
                "--only-binary=:all:",
                "--implementation",
                "cp",
                "-r",
                str(ROOT / "layers" / "erphub" / "requirements.txt"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            reason = result.stderr.strip()[-200:]
            return f"not measured: pip could not fetch the arm64 wheels ({reason})"
        shutil.copytree(ROOT / "layers" / "erphub" / "erphub", target / "erphub")
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return round(size / 1e6, 1)


# --- main -------------------------------------------------------------------------------------


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    with console.status(label):
        started = time.perf_counter()
        result = fn()
    console.print(f"{label}: {time.perf_counter() - started:.1f} s")
    return result


#: The figures, in the order they are measured; ``--only`` and ``--skip`` choose among them.
FIGURES = ("rossum", "procuros", "drops", "upload", "imports", "layer")


def _rossum_figures(documents: int, latency: float, runs: int) -> tuple[dict[str, Any], Any]:
    erphub_runs, naive_walls = [], []
    for i in range(runs):
        erphub_runs.append(
            _timed(f"rossum erphub run {i + 1}", lambda: rossum_erphub_run(documents, latency))
        )
        naive_walls.append(
            _timed(f"rossum naive run {i + 1}", lambda: rossum_naive_run(documents, latency))
        )
    last = erphub_runs[-1]
    erphub_wall = median([r["wall_s"] for r in erphub_runs])
    naive_wall = median(naive_walls)
    aws_counts = (
        "lambda_invocations",
        "lambda_seconds",
        "dynamodb_writes",
        "dynamodb_reads",
        "dynamodb_wru_per_write",
        "s3_puts",
        "s3_gets",
        "secret_reads",
    )
    figures = {
        "rossum": {
            "api_calls": last["api_calls"],
            "api_call_floor": last["api_call_floor"],
            "api_calls_over_floor": round(last["api_calls"] / last["api_call_floor"], 4),
            "api_calls_by_endpoint": last["api_calls_by_endpoint"],
            "sfn_transitions_per_1000": round(last["transitions"] * 1000 / documents, 1),
            "wall_s_median": erphub_wall,
            "naive_wall_s_median": naive_wall,
            "aws_counts": {k: last[k] for k in aws_counts},
        },
        "speedup_vs_naive": round(naive_wall / erphub_wall, 2),
    }
    return figures, last


def _procuros_figures(documents: int, latency: float) -> tuple[dict[str, Any], Any]:
    procuros = _timed("procuros erphub run", lambda: procuros_run(documents, latency))
    figures = {
        "api_calls": procuros["api_calls"],
        "api_call_floor": procuros["api_call_floor"],
        "api_calls_over_floor": round(procuros["api_calls"] / procuros["api_call_floor"], 4),
        "api_calls_by_endpoint": procuros["api_calls_by_endpoint"],
        "sfn_transitions_per_1000": round(procuros["transitions"] * 1000 / documents, 1),
        "wall_s": round(procuros["wall_s"], 2),
    }
    return figures, procuros


def _drops_figures() -> dict[str, Any]:
    from erphub_local.demos.beqom_import import BeqomImportDemo
    from erphub_local.demos.ebill_upload import EbillUploadDemo

    # eBill: per 10,000 CSV rows (1,000 customers + 40 invoices with their line items).
    ebill = _timed(
        "ebill costs", lambda: section_costs(EbillUploadDemo(), "EbillUploadStateMachine", 1040)
    )
    # beqom: per 10,000 worker documents (530 imported, each dropped twice).
    beqom = _timed("beqom costs", lambda: section_costs(BeqomImportDemo(), None, 530))
    return {"ebill-upload": ebill, "beqom-import": beqom}


def _upload_figures() -> dict[str, Any]:
    from bench.upload_rss import measure

    figures: dict[str, Any] = {}
    for label, size in (("100mb", 100 * 2**20), ("1gb", 2**30)):
        figure = _timed(f"eBill upload of {label}", lambda size=size: measure(size))
        figures[f"upload_rss_growth_mb_{label}"] = figure["rss_growth_mb"]
        figures.setdefault("upload", {})[label] = figure
    return figures


def _print_table(results: dict[str, Any], documents: int, latency_ms: float) -> None:
    table = Table(title=f"erphub bench ({documents} documents, {latency_ms:g} ms per request)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target")
    rows: list[tuple[str, str, str]] = []
    for flow in ("rossum", "procuros"):
        if flow in results:
            calls = results[flow]
            rows.append(
                (
                    f"{flow}.api_calls / api_call_floor",
                    f"{calls['api_calls']} / {calls['api_call_floor']}",
                    "= 1.00",
                )
            )
    if "rossum" in results:
        rossum = results["rossum"]
        rows.append(
            ("rossum.sfn_transitions_per_1000", str(rossum["sfn_transitions_per_1000"]), "<= 60")
        )
        rows.append(
            (
                "speedup_vs_naive",
                f"{results['speedup_vs_naive']} ({rossum['naive_wall_s_median']:.1f} s"
                f" / {rossum['wall_s_median']:.1f} s)",
                ">= 5",
            )
        )
    if "cold_import" in results:
        cold = results["cold_import"]
        python = cold["interpreter"]["version"]
        rows.append(
            (
                "cold_import_ratio_vs_boto3",
                f"{cold['ratio']} ({cold['worst_handler']}, Python {python})",
                "<= 2.0",
            )
        )
    rows.extend(
        (f"cost_usd_per_10k.{flow}", f"${usd}", "< $0.10" if flow == "rossum-export" else "")
        for flow, usd in results.get("cost_usd_per_10k", {}).items()
    )
    rows.extend(
        (figure, str(results[figure]), "<= 64" if figure.startswith("upload") else "")
        for figure in ("upload_rss_growth_mb_100mb", "upload_rss_growth_mb_1gb", "layer_size_mb")
        if figure in results
    )
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3, help="runs per timing (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument(
        "--only", nargs="+", default=[], choices=FIGURES, help="measure only these figures"
    )
    chosen.add_argument("--skip", nargs="+", default=[], choices=FIGURES, help="figures to skip")
    args = parser.parse_args()
    selected = [f for f in FIGURES if (f in args.only if args.only else f not in args.skip)]
    latency = args.latency_ms / 1000
    results: dict[str, Any] = {
        "settings": {
            "documents": args.documents,
            "latency_ms": args.latency_ms,
            "runs": args.runs,
            "figures": selected,
        }
    }
    costs: dict[str, float] = {}
    if "rossum" in selected:
        figures, last = _rossum_figures(args.documents, latency, args.runs)
        results.update(figures)
        costs["rossum-export"] = cost_per_10k(last)
    if "procuros" in selected:
        results["procuros"], procuros = _procuros_figures(args.documents, latency)
        costs["procuros-send"] = cost_per_10k(procuros)
    if "drops" in selected:
        drops = _drops_figures()
        costs["ebill-upload (rows)"] = cost_per_10k(drops["ebill-upload"])
        costs["beqom-import"] = cost_per_10k(drops["beqom-import"])
        results["drops_aws_counts"] = drops
    if costs:
        results["cost_usd_per_10k"] = costs
    if "upload" in selected:
        results.update(_upload_figures())
    if "imports" in selected:
        results["cold_import"] = _timed("cold imports", cold_imports)
        results["cold_import_ratio_vs_boto3"] = results["cold_import"]["ratio"]
    if "layer" in selected:
        results["layer_size_mb"] = _timed("layer size", layer_size_mb)
    results["prices"] = {"as_of": PRICES["as_of"], "region": PRICES["region"]}

    args.out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results, args.documents, args.latency_ms)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
