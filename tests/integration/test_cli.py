"""The `erphub` command, driven as a user would, against the simulators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from erphub_local import config
from erphub_local.aws.stack import LocalStack
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


def env_for(rossum: RossumSimulator, erp: ErpSimulator) -> dict[str, str]:
    return {
        **rossum.hub_env(),
        "ROSSUM_QUEUE_IDS": "1001",
        **erp.hub_env(),
    }


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in (
        ["--help"],
        ["local", "--help"],
        ["local", "up", "--help"],
        ["local", "run", "--help"],
        ["status", "--help"],
        ["demo", "--help"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output


def test_local_run_on_an_ephemeral_stack_prints_the_outputs(
    sims: tuple[RossumSimulator, ErpSimulator], state_dir: Path
) -> None:
    rossum, erp = sims
    result = CliRunner().invoke(main, ["local", "run", "rossum-export"], env=env_for(rossum, erp))
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)
    assert [o["status"] for o in outputs] == ["SUCCEEDED"]
    final = outputs[0]["output"]["finalize"]
    assert final["exported"] + final["failedExport"] == 12
    assert final["exported"] == len(erp.invoices)


def test_local_run_names_the_missing_variables(state_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["local", "run", "rossum-export"], env={"ROSSUM_BASE_URL": "", "ERP_API_TOKEN": ""}
    )
    assert result.exit_code == 2
    assert "ROSSUM_BASE_URL" in result.output and "ERP_API_TOKEN" in result.output


def test_run_and_status_against_a_running_stack(
    sims: tuple[RossumSimulator, ErpSimulator], state_dir: Path
) -> None:
    rossum, erp = sims
    settings = config.load(env_for(rossum, erp), env_file=state_dir / "none")
    with LocalStack(
        config.TEMPLATE,
        mode="server",
        parameters=settings.parameters,
        secret_values=settings.secret_values,
        state_dir=state_dir,
    ) as stack:
        runner = CliRunner()
        result = runner.invoke(
            main, ["local", "run", "rossum-export", "--endpoint", stack.endpoint_url]
        )
        assert result.exit_code == 0, result.output
        status = runner.invoke(
            main, ["status", "--endpoint", stack.endpoint_url, "--failed"], env={"COLUMNS": "250"}
        )
        assert status.exit_code == 0, status.output
        assert "FAILED_EXPORT" in status.output
        assert "EXPORTED" not in status.output.replace("FAILED_EXPORT", "")
