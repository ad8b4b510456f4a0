"""The local AWS emulation: provisioning from a template, in-process Lambdas, schedules, modes."""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from erphub_local.aws import inproc_lambda
from erphub_local.aws.stack import LambdaInvokeError, LocalStack
from erphub_local.aws.template import Template, TemplateError
from tests.integration.conftest_aws import ASL, TEMPLATE, write_app

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REAL_TEMPLATE = REPO / "template.yaml"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def mini(tmp_path: Path) -> Iterator[LocalStack]:
    """The mini application of conftest_aws, started in-process."""
    template = write_app(tmp_path / "app")
    with LocalStack(
        template,
        env_overrides={"EXTRA": "from-overrides"},
        log_path=tmp_path / "lambda.log",
        state_dir=tmp_path / "state",
    ) as local:
        yield local


def items(local: LocalStack) -> dict[str, Any]:
    table = local.client("dynamodb")
    scanned = table.scan(TableName=local.stack.physical("Table"))["Items"]
    return {item["pk"]["S"]: item["detail"]["S"] for item in scanned}


def invoked(function: str) -> int:
    return sum(1 for i in inproc_lambda.INVOCATIONS if i.function == function)


# --- the real template ---------------------------------------------------------------------------


@pytest.fixture
def real(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(
        REAL_TEMPLATE,
        parameters={"Stage": "it"},
        secret_values={"RossumSecret": {"username": "robot", "password": "s3cret"}},
        log_path=tmp_path / "lambda.log",
        state_dir=tmp_path / "state",
    ) as local:
        yield local


def test_real_template_tables_have_the_template_key_schema_and_indexes(real: LocalStack) -> None:
    template = Template.load(REAL_TEMPLATE)
    tables = template.of_type("AWS::DynamoDB::Table")
    assert tables
    for resource in tables:
        described = real.client("dynamodb").describe_table(
            TableName=real.stack.physical(resource.logical_id)
        )["Table"]
        props = resource.properties
        assert described["KeySchema"] == props["KeySchema"]
        assert sorted(described["AttributeDefinitions"], key=str) == sorted(
            props["AttributeDefinitions"], key=str
        )
        described_indexes = {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in described.get("GlobalSecondaryIndexes", [])
        }
        assert described_indexes == {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in props.get("GlobalSecondaryIndexes", [])
        }


def test_real_template_state_machine_functions_and_secrets(real: LocalStack) -> None:
    stack = real.stack
    machine = real.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.state_machine_arn("RossumExportStateMachine")
    )
    assert machine["name"] == "erphub-it-rossum-export"
    definition = json.loads(machine["definition"])
    assert "${" not in machine["definition"]
    assert definition["States"]["PollConfirmed"]["Resource"] == stack.function_arn(
        "RossumPollFunction"
    )

    secrets = real.client("secretsmanager")
    rossum = secrets.get_secret_value(SecretId=stack.physical("RossumSecret"))
    assert rossum["Name"] == "erphub/it/rossum"
    assert json.loads(rossum["SecretString"]) == {"username": "robot", "password": "s3cret"}
    erp = json.loads(secrets.get_secret_value(SecretId=stack.physical("ErpSecret"))["SecretString"])
    assert set(erp) == {"apiToken"}
    assert erp["apiToken"]

    poll_env = stack.function_env("RossumPollFunction")
    assert poll_env["LEDGER_TABLE"] == stack.physical("LedgerTable")
    assert poll_env["ROSSUM_SECRET_ARN"] == stack.physical("RossumSecret")
    assert poll_env["STAGE"] == "it"
    schedule = stack.schedule("RossumScheduleFunctionEvery")
    assert (schedule.target_kind, schedule.target, schedule.expression) == (
        "function",
        "RossumScheduleFunction",
        "rate(5 minutes)",
    )
    assert stack.outputs["LedgerTableName"] == stack.physical("LedgerTable")
    bucket = stack.physical("PayloadBucket")
    assert bucket == bucket.lower()
    access = real.client("s3").get_public_access_block(Bucket=bucket)
    assert all(access["PublicAccessBlockConfiguration"].values())


def test_firing_the_real_schedule_runs_the_export_state_machine(
    real: LocalStack, tmp_path: Path
) -> None:
    # The real poll handler would need a Rossum server: stand in for it with a stub that finds
    # nothing, so the rest (schedule function, ASL, Choice) is the real thing.
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    (stub_dir / "stub.py").write_text(
        "def handler(event, context):\n    return {'claimed': 0, 'chunks': [], 'seen': event}\n"
    )
    poll = real.stack.function("RossumPollFunction")
    inproc_lambda.register(
        inproc_lambda.FunctionSpec(
            "RossumPollFunction", stub_dir, "stub.handler", poll.environment
        ),
        poll.name,
        poll.arn,
    )
    real.fire_schedule("RossumScheduleFunctionEvery", datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    executions = real.executions("RossumExportStateMachine")
    assert len(executions) == len(str(real.stack.parameters["RossumQueueIds"]).split(","))
    finished = [real.wait_execution(e.arn, timeout_s=60) for e in executions]
    assert [e.status for e in finished] == ["SUCCEEDED"] * len(finished)
    assert finished[0].output["poll"]["seen"]["runId"] == finished[0].name
    assert invoked("RossumScheduleFunction") == 1
    assert invoked("RossumPollFunction") == len(finished)


# --- the mini application ------------------------------------------------------------------------


def test_task_retry_wait_and_choice_run_the_asl(mini: LocalStack) -> None:
    arn = mini.start_execution("Flow", {"action": "flaky"}, name="run-1")
    execution = mini.wait_execution(arn, timeout_s=60)  # Wait and Retry are 3600 s in the ASL

    assert (execution.status, execution.name) == ("SUCCEEDED", "run-1")
    assert execution.output == {"action": "flaky", "work": {"attempt": 2}}
    kinds = [event["type"] for event in mini.execution_history(arn)]
    assert kinds.count("LambdaFunctionFailed") == 1
    assert kinds.count("LambdaFunctionSucceeded") == 1
    assert "WaitStateEntered" in kinds
    assert "ChoiceStateEntered" in kinds
    failed = next(e for e in mini.execution_history(arn) if e["type"] == "LambdaFunctionFailed")
    assert failed["lambdaFunctionFailedEventDetails"]["error"] == "TransientError"
    assert [(i.function, i.error_type) for i in inproc_lambda.INVOCATIONS] == [
        ("Worker", "TransientError"),
        ("Worker", None),
    ]


def test_the_handler_environment_comes_from_the_template_during_the_call_only(
    mini: LocalStack,
) -> None:
    env = mini.invoke("Worker", {"action": "env"})

    assert env == {
        "GREETING": "hello",
        "STAGE": "test",
        "TABLE": mini.stack.physical("Table"),
        "SELF_TEST": (
            f"eu-west-1/{mini.stack.physical('Bucket')}/{mini.stack.attribute('Jobs', 'QueueName')}"
        ),
        "EXTRA": "from-overrides",
        "AWS_LAMBDA_FUNCTION_NAME": "erphub-test-Worker",
    }
    for name in ("GREETING", "STAGE", "TABLE", "EXTRA", "AWS_LAMBDA_FUNCTION_NAME"):
        assert name not in os.environ


def test_the_context_is_what_powertools_reads(mini: LocalStack) -> None:
    context = mini.invoke("Worker", {"action": "context"})

    assert context["function_name"] == "erphub-test-Worker"
    assert UUID.match(context["request_id"])
    assert 0 < context["remaining_ms"] <= 30_000
    assert inproc_lambda.INVOCATIONS[-1].request_id == context["request_id"]


def test_an_exception_is_reported_like_lambda_does(mini: LocalStack) -> None:
    with pytest.raises(LambdaInvokeError) as raised:
        mini.invoke("Worker", {"action": "fail"})

    assert (raised.value.error_type, raised.value.message) == ("ValueError", "bad input")
    assert any("app.py" in frame for frame in raised.value.payload["stackTrace"])
    with pytest.raises(LambdaInvokeError) as marshal:
        mini.invoke("Worker", {"action": "unserialisable"})
    assert marshal.value.error_type == "Runtime.MarshalError"


def test_an_injected_crash_fails_the_task_with_runtime_exit_error(mini: LocalStack) -> None:
    with pytest.raises(LambdaInvokeError) as raised:
        mini.invoke("Worker", {"action": "crash"})
    assert raised.value.error_type == "Runtime.ExitError"

    arn = mini.start_execution("Flow", {"action": "crash"})
    execution = mini.wait_execution(arn, timeout_s=60)
    assert (execution.status, execution.error) == ("FAILED", "Runtime.ExitError")
    # The interpreter survived and serves the next call.
    assert mini.invoke("Worker", {"action": "echo"}) == {"action": "echo"}


def test_handler_output_goes_to_the_log_not_the_terminal(
    mini: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mini.invoke("Worker", {"action": "print", "text": "marker-7f3a"}) == {"printed": True}
    print("the test itself still prints")

    out, err = capsys.readouterr()
    assert "marker-7f3a" not in out + err
    assert "the test itself still prints" in out
    assert "marker-7f3a" in inproc_lambda.captured_output()
    assert "marker-7f3a" in (tmp_path / "lambda.log").read_text()


def test_s3_sqs_and_sns_triggers_reach_the_handler(mini: LocalStack) -> None:
    s3 = mini.client("s3")
    bucket = mini.stack.physical("Bucket")
    s3.put_object(Bucket=bucket, Key="incoming/a b.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="elsewhere/c.json", Body=b"{}")  # outside the prefix
    mini.client("sqs").send_message(QueueUrl=mini.stack.physical("Jobs"), MessageBody="job-1")
    mini.client("sns").publish(TopicArn=mini.stack.physical("Alerts"), Message="alert-1")

    assert items(mini) == {
        "s3:incoming/a b.json": "ObjectCreated:Put",
        "sqs:job-1": mini.stack.attribute("Jobs", "Arn"),
        "sns:alert-1": "aws:sns",
    }
    assert invoked("Worker") == 3
    assert [(n.bucket, n.events, n.prefix) for n in mini.stack.notifications] == [
        ("Bucket", ("s3:ObjectCreated:*",), "incoming/")
    ]
    assert [(e.function, e.batch_size) for e in mini.stack.event_sources] == [("Worker", 1)]


def test_queue_redrive_policy_points_at_the_dead_letter_queue(mini: LocalStack) -> None:
    attributes = mini.client("sqs").get_queue_attributes(
        QueueUrl=mini.stack.physical("Jobs"), AttributeNames=["All"]
    )["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": mini.stack.attribute("DeadLetters", "Arn"),
        "maxReceiveCount": 3,
    }
    assert attributes["VisibilityTimeout"] == "60"


def test_a_function_schedule_delivers_an_eventbridge_scheduled_event(mini: LocalStack) -> None:
    event = mini.fire_schedule("WorkerTick", datetime(2026, 11, 21, 12, 0, 5, 123, tzinfo=UTC))

    assert UUID.match(event.pop("id"))
    assert event == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": mini.stack.account_id,
        "time": "2026-11-21T12:00:05Z",
        "region": "eu-west-1",
        "resources": [
            f"arn:aws:events:eu-west-1:{mini.stack.account_id}:rule/erphub-test-WorkerTick"
        ],
        "detail": {},
    }


def test_a_scheduler_schedule_without_input_delivers_an_empty_object(mini: LocalStack) -> None:
    schedule = mini.stack.schedule("WorkerNightly")

    assert (schedule.kind, schedule.expression, schedule.enabled) == (
        "ScheduleV2",
        "cron(0 2 * * ? *)",
        False,
    )
    assert schedule.source_arn.endswith(":schedule/default/erphub-test-WorkerNightly")
    assert mini.fire_schedule("WorkerNightly") == {}


def test_a_state_machine_schedule_starts_an_execution_with_its_input(mini: LocalStack) -> None:
    arn = mini.fire_schedule("FlowEvery")

    execution = mini.wait_execution(arn, timeout_s=60)
    assert execution.status == "SUCCEEDED"
    assert UUID.match(execution.name)  # unnamed, as EventBridge starts it
    assert [e.arn for e in mini.executions("Flow")] == [arn]


def test_parameters_are_validated_against_the_template(tmp_path: Path) -> None:
    template = write_app(tmp_path)
    with pytest.raises(TemplateError, match="Greeting"):
        LocalStack(template, parameters={"Greeting": "hi"}, log_path=tmp_path / "l.log").start()


def test_a_failed_start_undoes_everything(tmp_path: Path) -> None:
    template = write_app(tmp_path, asl=ASL.replace("${WorkerArn}", "${MissingArn}"))
    before = dict(os.environ)

    with pytest.raises(TemplateError, match=r"Flow: \$\{MissingArn\}"):
        LocalStack(template, log_path=tmp_path / "l.log").start()
    assert dict(os.environ) == before
    assert not inproc_lambda.installed()


def test_a_circular_reference_is_reported(tmp_path: Path) -> None:
    cyclic = TEMPLATE.replace("GREETING: !Ref Greeting", "GREETING: !Ref Flow")
    template = write_app(tmp_path, template=cyclic)

    with pytest.raises(TemplateError, match="circular reference: Worker -> Flow -> Worker"):
        LocalStack(template, log_path=tmp_path / "l.log").start()


def test_an_unsupported_event_type_is_reported(tmp_path: Path) -> None:
    with_api = TEMPLATE.replace(
        "        Tick:\n          Type: Schedule", "        Tick:\n          Type: Api"
    )
    template = write_app(tmp_path, template=with_api)

    with pytest.raises(TemplateError, match="Worker: event Tick of type Api"):
        LocalStack(template, log_path=tmp_path / "l.log").start()


# --- server mode ---------------------------------------------------------------------------------


def test_server_mode_serves_the_stack_over_loopback_http(tmp_path: Path) -> None:
    template = write_app(tmp_path / "app")
    state_dir = tmp_path / "state"
    server = LocalStack(
        template, mode="server", port=0, log_path=tmp_path / "l.log", state_dir=state_dir
    )
    with server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        assert os.environ["AWS_ENDPOINT_URL"] == server.endpoint_url
        assert (state_dir / "stack.json").is_file()

        client = LocalStack.attach(state_dir=state_dir)
        assert client.endpoint_url == server.endpoint_url
        assert client.stack.function_arn("Worker") == server.stack.function_arn("Worker")
        assert client.invoke("Worker", {"action": "echo"}) == {"action": "echo"}
        arn = client.start_execution("Flow", {"action": "flaky"})
        execution = client.wait_execution(arn, timeout_s=60)
        assert (execution.status, execution.output["work"]) == ("SUCCEEDED", {"attempt": 2})
        client.stop()  # an attached client owns nothing

    assert not (state_dir / "stack.json").exists()
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_reading_the_whole_environment_is_safe_while_handlers_change_it(
    mini: LocalStack,
) -> None:
    """boto3 and httpx read the proxy settings with ``os.environ.items()`` when they create a
    client; moto's Step Functions threads do that while a handler's variables are removed."""
    variables = {"AWS_LAMBDA_FUNCTION_NAME": "erphub-test-Worker", "GREETING": "hello"}
    done = threading.Event()

    def handlers_come_and_go() -> None:
        try:
            for _ in range(20_000):
                with inproc_lambda._environment(variables):
                    pass
        finally:
            done.set()

    errors: list[BaseException] = []
    reads = 0
    changer = threading.Thread(target=handlers_come_and_go)
    changer.start()
    try:
        while not done.is_set():
            try:
                seen = dict(os.environ.items())
                urllib.request.getproxies()
                os.environ.copy()
            except (KeyError, RuntimeError) as exc:
                errors.append(exc)
            else:
                assert ("GREETING" in seen) == ("AWS_LAMBDA_FUNCTION_NAME" in seen)
            reads += 1
    finally:
        changer.join()

    assert reads > 0
    assert errors == []
    assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ
