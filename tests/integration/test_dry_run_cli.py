"""`erphub local run FLOW --dry-run`, driven as a user would, against the simulators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from erphub_local import config
from erphub_local.cli import main
from erphub_local.seed import seed_demo
from erphub_local.simulators import ErpSimulator, RossumSimulator

pytestmark = pytest.mark.integration


@pytest.fixture
def sims() -> Iterator[tuple[RossumSimulator, ErpSimulator]]:
    with RossumSimulator() as rossum, ErpSimulator() as erp:
        seed_demo(rossum, erp, queue_ids=(1001,), per_queue=12)
        yield rossum, erp


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(config, "STATE_DIR", tmp_path / ".erphub")
    return tmp_path / ".erphub"


def test_local_run_dry_run_prints_the_per_document_report(
    sims: tuple[RossumSimulator, ErpSimulator], state_dir: Path
) -> None:
    rossum, erp = sims
    env = {
        **rossum.hub_env(),
        "ROSSUM_QUEUE_IDS": "1001",
        **erp.hub_env(),
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(main, ["local", "run", "rossum-export", "--dry-run"], env=env)

    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.stdout)
    assert output["status"] == "SUCCEEDED"
    assert output["execution"].endswith("-dry-run")
    report = output["report"]
    assert report["summary"] == output["output"]["finalize"]
    assert len(report["documents"]) == 12
    assert {d["verdict"] for d in report["documents"]} == {"accepted", "rejected"}
    assert "dry run rossum-1001-" in result.stderr and "would be sent" in result.stderr
    assert not erp.invoices
    assert set(rossum.statuses().values()) == {"confirmed"}


def test_the_help_says_which_flows_have_no_dry_run() -> None:
    result = CliRunner().invoke(main, ["local", "run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--dry-run" in result.output
    assert "The S3-triggered flows (eBill, beqom: `erphub local drop`) have no dry run" in (
        " ".join(result.output.split())
    )
