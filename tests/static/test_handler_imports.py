"""What each handler loads at its cold start: the adapters it uses, and only those.

Lambda charges a cold start's init and its first invocation alike, and the bench's cold-import
figure times the init alone. So what a handler's first invocation builds (its settings, adapters
and credentials, see erphub.runtime) must already be loaded by the handler's import: building the
dependencies loads no module of erphub or of an adapter's library. (A library's own lazy imports,
such as botocore's service models or httpx's transport, stay the library's.)

And a handler loads only the adapters it uses: the Rossum SDK stays out of push and of the
eBill functions, the ERP adapter out of Rossum's poll and finalize, and so on. Each handler runs
in a fresh interpreter: the test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HANDLERS = sorted(p.parent.name for p in (REPO / "functions").glob("*/app.py"))

#: How each handler builds what it works with (as its lambda_handler does, first thing).
BUILDS = {
    "beqom_import": "beqom_import_deps()",
    "ebill_failure": "ebill_drop_deps()",
    "ebill_finalize": "ebill_deps()",
    "ebill_plan": "ebill_drop_deps()",
    "ebill_poll": "ebill_deps()",
    "ebill_results": "ebill_deps()",
    "ebill_trigger": "ebill_trigger_deps()",
    "ebill_upload": "ebill_deps()",
    "procuros_list": "procuros_list_deps()",
    "procuros_schedule": "procuros_execution_starter()",
    "procuros_send": "procuros_send_deps()",
    "rossum_finalize": "finalize_deps()",
    "rossum_poll": "poll_deps()",
    "rossum_push": "push_deps()",
    "rossum_schedule": "execution_starter(schedule_settings())",
}

#: The modules that make an adapter (a client and its SDK, a mapping and its YAML parser).
ADAPTERS = (
    "erphub.clients.beqom",
    "erphub.clients.ebill",
    "erphub.clients.erp",
    "erphub.clients.procuros",
    "erphub.clients.rossum",
    "erphub.invoices",
    "erphub.mapping",
    "erphub.procuros_mapping",
    "rossum_api",
    "yaml",
)
ROSSUM = {"erphub.clients.rossum", "rossum_api"}
PROCUROS = {"erphub.clients.erp", "erphub.clients.procuros", "erphub.procuros_mapping", "yaml"}
#: The adapters each handler loads at its cold start.
LOADED = {
    "beqom_import": {"erphub.clients.beqom"},
    **{
        f"ebill_{step}": {"erphub.clients.ebill"}
        for step in ("upload", "finalize", "poll", "results")
    },
    **{f"ebill_{step}": set() for step in ("trigger", "plan", "failure")},
    "procuros_list": PROCUROS,
    "procuros_send": PROCUROS,
    "procuros_schedule": set(),
    "rossum_finalize": ROSSUM,
    "rossum_poll": ROSSUM,
    "rossum_push": {"erphub.clients.erp", "erphub.invoices", "erphub.mapping", "yaml"},
    "rossum_schedule": set(),
}
#: Top-level packages whose modules the first invocation must not be the first to load.
WATCHED = (
    "erphub",
    "rossum_api",
    "yaml",
    "defusedxml",
    "httpx",
    "tenacity",
    "aws_lambda_powertools",
)

#: Every setting any handler requires, with values that need no network to build adapters.
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "LEDGER_TABLE": "ledger",
    "PAYLOAD_BUCKET": "payloads",
    "ROSSUM_BASE_URL": "https://rossum.example.com/api",
    "ROSSUM_USERNAME": "user",
    "ROSSUM_PASSWORD": "password",
    "ROSSUM_QUEUE_IDS": "1001",
    "ROSSUM_EXPORT_STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:r",
    "ERP_BASE_URL": "https://erp.example.com/api",
    "ERP_API_TOKEN": "token",
    "BEQOM_TOKEN_URL": "https://beqom.example.com/token",
    "BEQOM_IMPORT_URL": "https://beqom.example.com/import",
    "BEQOM_CLIENT_ID": "client",
    "BEQOM_CLIENT_SECRET": "secret",
    "BEQOM_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/beqom",
    "PROCUROS_BASE_URL": "https://procuros.example.com/v2",
    "PROCUROS_API_TOKEN": "token",
    "PROCUROS_SEND_STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:p",
    "EBILL_BASE_URL": "https://ebill.example.com",
    "EBILL_USERNAME": "user",
    "EBILL_PASSWORD": "password",
    "EBILL_UPLOAD_STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:e",
}

_PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import app
init = set(sys.modules)
eval(sys.argv[3], vars(app))
print(json.dumps({"init": sorted(init), "built": sorted(set(sys.modules) - init)}))
"""


@cache
def probes() -> dict[str, dict[str, list[str]]]:
    """Each handler's modules after its import, and those its first build added."""
    running = {
        handler: subprocess.Popen(
            [
                sys.executable,
                "-c",
                _PROBE,
                str(REPO / "functions" / handler),
                str(REPO / "layers" / "erphub"),
                BUILDS[handler],
            ],
            env={"PATH": "/usr/bin:/bin", **ENVIRONMENT},
            cwd=REPO / "functions" / handler,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for handler in HANDLERS
    }
    results: dict[str, dict[str, list[str]]] = {}
    for handler, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"{handler}: {err[-2000:]}"
        results[handler] = json.loads(out)
    return results


def _adapters(modules: list[str]) -> set[str]:
    return {m for m in modules if m in ADAPTERS}


def test_every_handler_is_listed() -> None:
    assert sorted(BUILDS) == HANDLERS
    assert sorted(LOADED) == HANDLERS


@pytest.mark.parametrize("handler", HANDLERS)
def test_the_first_invocation_loads_nothing_the_import_did_not(handler: str) -> None:
    built = probes()[handler]["built"]
    late = [m for m in built if m.split(".")[0] in WATCHED]
    assert late == [], f"{handler} loads these only when it builds its dependencies: {late}"


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_handler_loads_only_the_adapters_it_uses(handler: str) -> None:
    result: dict[str, Any] = probes()[handler]
    assert _adapters(result["init"]) == LOADED[handler]
