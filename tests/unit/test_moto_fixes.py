"""One test per moto 5.2.5 quirk the local stack works around.

Each "moto still ..." test shows the quirk in unpatched moto: when one of them fails after a moto
upgrade, the quirk is gone and its workaround can go too. The test next to it shows the fix.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from moto.awslambda.models import LambdaFunction
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from erphub_local.aws import moto_fixes
from erphub_local.aws.stack import LocalStack

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Echo:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
  Clock:
    Type: AWS::Serverless::StateMachine
    Properties:
      Definition:
        StartAt: Now
        States:
          Now:
            Type: Pass
            Parameters:
              started.$: $$.Execution.StartTime
            End: true
  Sleeper:
    Type: AWS::Serverless::StateMachine
    Properties:
      Definition:
        StartAt: Nap
        States:
          Nap:
            Type: Wait
            Seconds: 3600
            Next: Attempt
          Attempt:
            Type: Parallel
            Branches:
              - StartAt: Boom
                States:
                  Boom:
                    Type: Fail
                    Error: Boom
            Retry:
              - ErrorEquals: [Boom]
                IntervalSeconds: 3600
                MaxAttempts: 2
            End: true
"""
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@contextmanager
def started(root: Path, wait_scale: float = 0.0) -> Iterator[LocalStack]:
    (root / "fn").mkdir(exist_ok=True)
    (root / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    (root / "template.yaml").write_text(TEMPLATE)
    path = root / "template.yaml"
    with LocalStack(path, wait_scale=wait_scale, log_path=root / "lambda.log") as stack:
        yield stack


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalStack]:
    with started(tmp_path) as stack:
        yield stack


@contextmanager
def without_fixes() -> Iterator[None]:
    moto_fixes.revert()
    try:
        yield
    finally:
        moto_fixes.apply()


class FakeEnv:
    """Just enough of moto's interpreter environment for a Wait state's wait loop."""

    def __init__(self, running_checks: int) -> None:
        self.waits: list[float] = []
        self.running_checks = running_checks
        self.program_state_event = self

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return False

    def is_running(self) -> bool:
        self.running_checks -= 1
        return self.running_checks >= 0


# --- unnamed start_execution ---------------------------------------------------------------------


def test_moto_still_names_an_unnamed_execution_none(local: LocalStack) -> None:
    with without_fixes():
        assert local.start_execution("Clock", {"n": 1}).endswith(":None")
        with pytest.raises(ClientError, match="ExecutionAlreadyExists"):
            local.start_execution("Clock", {"n": 2})


def test_an_unnamed_execution_gets_a_uuid_name(local: LocalStack) -> None:
    names = [local.start_execution("Clock", {"n": n}).rsplit(":", 1)[1] for n in range(2)]

    assert all(UUID.match(name) for name in names)
    assert names[0] != names[1]


# --- $$.Execution.StartTime ----------------------------------------------------------------------


def test_moto_still_puts_a_datetime_into_the_execution_start_time(local: LocalStack) -> None:
    with without_fixes():
        arn = local.start_execution("Clock", {}, name="unfixed")
        with pytest.raises(TypeError, match="datetime is not JSON serializable"):
            local.wait_execution(arn, timeout_s=30)


def test_the_execution_start_time_is_an_iso_string_like_on_aws(local: LocalStack) -> None:
    arn = local.start_execution("Clock", {}, name="fixed")
    started = local.wait_execution(arn, timeout_s=30).output["started"]

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", started)
    described = local.client("stepfunctions").describe_execution(executionArn=arn)["startDate"]
    parsed = datetime.fromisoformat(started.replace("Z", "+00:00"))
    assert abs(parsed - described) < timedelta(milliseconds=1)


# --- stop_execution right after start_execution ------------------------------------------------


def test_moto_still_cannot_stop_an_execution_whose_thread_has_not_run(local: LocalStack) -> None:
    with without_fixes():
        worker = ExecutionWorker.__new__(ExecutionWorker)
        worker.env = None  # the state between start() and the worker thread's first line
        with pytest.raises(AttributeError, match="set_stop"):
            worker.stop(stop_date=datetime.now(UTC), error=None, cause=None)


def test_an_execution_can_be_stopped_as_soon_as_it_started(tmp_path: Path) -> None:
    with started(tmp_path, wait_scale=1.0) as local:  # the hour of Wait really lasts
        sfn = local.client("stepfunctions")
        for n in range(5):
            arn = local.start_execution("Sleeper", {"n": n})
            sfn.stop_execution(executionArn=arn)
            assert local.wait_execution(arn, timeout_s=30).status == "ABORTED"


# --- Wait states and Retry intervals -------------------------------------------------------------


def test_moto_still_waits_and_retries_in_real_time() -> None:
    assert moto_fixes.wait_factor() is None
    env = FakeEnv(running_checks=0)
    WaitFunction._wait_interval(object(), env, 3600)  # type: ignore[arg-type]
    assert env.waits == [3600]
    assert retrier_decl.time is time
    assert "time.sleep(interval_seconds)" in inspect.getsource(retrier_decl.RetrierDecl._eval_body)


def test_a_wait_scale_shortens_waits() -> None:
    moto_fixes.scale_waits(0.5)
    try:
        env = FakeEnv(running_checks=1)
        WaitFunction._wait_interval(object(), env, 3600)  # type: ignore[arg-type]
    finally:
        moto_fixes.real_waits()
    assert len(env.waits) == 1
    assert 1799 < env.waits[0] <= 1800


def test_with_wait_scale_zero_an_hour_of_waits_and_retries_takes_no_time(
    local: LocalStack,
) -> None:
    arn = local.start_execution("Sleeper", {})
    execution = local.wait_execution(arn, timeout_s=60)  # 1 h Wait + 2 x 1 h Retry in the ASL

    assert (execution.status, execution.error) == ("FAILED", "Boom")
    kinds = [event["type"] for event in local.execution_history(arn)]
    assert "WaitStateExited" in kinds
    assert kinds.count("ParallelStateStarted") == 3  # the first attempt and two retries


# --- Invoke without a payload --------------------------------------------------------------------


def test_moto_still_passes_an_empty_invoke_payload_as_a_string(
    local: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def spy(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        seen.append(event)
        return "null", False, ""

    monkeypatch.setattr(LambdaFunction, "_invoke_lambda", spy)
    local.client("lambda").invoke(FunctionName=local.stack.function_name("Echo"))
    assert seen == ["{}"]


def test_an_empty_invoke_payload_reaches_the_handler_as_an_object(local: LocalStack) -> None:
    response = local.client("lambda").invoke(FunctionName=local.stack.function_name("Echo"))

    assert json.loads(response["Payload"].read()) == {}
