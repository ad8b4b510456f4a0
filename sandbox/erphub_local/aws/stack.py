"""The local AWS stack: moto plus the in-process Lambda runtime, provisioned from template.yaml.

``LocalStack`` is what the CLI and the tests use::

    with LocalStack(Path("template.yaml"), parameters={"Stage": "dev"}) as local:
        arn = local.start_execution("RossumExportStateMachine", {"queueId": 1001})
        print(local.wait_execution(arn).status)

``mode="inprocess"`` (the default) mocks boto3 inside this process and opens no socket.
``mode="server"`` serves moto over HTTP on 127.0.0.1 (handlers still run in this process), for
tools that need a real endpoint; it writes the stack description to ``.erphub/stack.json`` so
that other processes can :meth:`LocalStack.attach` to it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self, cast

from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.config import DefaultConfig, default_user_config
from moto.server import ThreadedMotoServer

from erphub_local.aws import inproc_lambda, moto_fixes, sqs_batches
from erphub_local.aws.provision import Stack, boto_session, provision

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_stepfunctions import SFNClient

__all__ = ["Execution", "LambdaInvokeError", "LocalStack"]

REGION: Final = "eu-west-1"
STATE_FILE: Final = "stack.json"
_KEY: Final = "testing"
_FAKE_ENV: Final = {
    "AWS_ACCESS_KEY_ID": _KEY,
    "AWS_SECRET_ACCESS_KEY": _KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    # Never read the developer's AWS config or ask an instance metadata service.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
_UNSET_ENV: Final = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "MOTO_PORT",
)
_SFN_EXECUTION: Final[DefaultConfig] = {"stepfunctions": {"execute_state_machine": True}}
_STOP_GRACE_S: Final = 30.0


class LambdaInvokeError(Exception):
    """A synchronous invocation ended in a function error."""

    def __init__(self, function: str, error_type: str, message: str, payload: Any) -> None:
        super().__init__(f"{function}: {error_type}: {message}")
        self.function = function
        self.error_type = error_type
        self.message = message
        self.payload = payload


@dataclass(frozen=True)
class Execution:
    """A Step Functions execution as ``describe_execution`` reports it (output parsed)."""

    arn: str
    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None


class _EnvironmentPatch:
    """Changes to ``os.environ`` that can be undone exactly."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, key: str, value: str | None) -> None:
        if key not in self._saved:
            self._saved[key] = os.environ.get(key)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


class LocalStack:
    """moto + in-process Lambdas + the resources of a SAM template, started and stopped as one."""

    def __init__(
        self,
        template_path: Path = Path("template.yaml"),
        *,
        mode: Literal["inprocess", "server"] = "inprocess",
        port: int = 0,
        parameters: Mapping[str, str] | None = None,
        secret_values: Mapping[str, dict[str, Any]] | None = None,
        env_overrides: Mapping[str, str] | None = None,
        wait_scale: float = 0.0,
        log_path: Path | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.template_path = template_path
        self.mode = mode
        self.port = port
        self.parameters = dict(parameters or {})
        self.secret_values = dict(secret_values or {})
        self.env_overrides = dict(env_overrides or {})
        self.wait_scale = wait_scale
        self.state_dir = state_dir or template_path.resolve().parent / ".erphub"
        self.log_path = log_path or self.state_dir / "logs" / "lambda.log"
        self._stack: Stack | None = None
        self._endpoint_url: str | None = None
        self._attached = False
        self._started = False
        self._env = _EnvironmentPatch()
        self._mock: Any = None
        self._undo: list[Callable[[], None]] = []
        self._clients: dict[str, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def attach(
        cls, endpoint_url: str | None = None, *, state_dir: Path = Path(".erphub")
    ) -> LocalStack:
        """A client-only view of a server-mode stack started by another process.

        Reads the description the server wrote to ``state_dir/stack.json``; ``endpoint_url``
        overrides the one recorded there.
        """
        state_file = state_dir / STATE_FILE
        if not state_file.is_file():
            raise FileNotFoundError(f"no running local stack: {state_file} does not exist")
        state = json.loads(state_file.read_text(encoding="utf-8"))
        local = cls(Path(state["stack"]["template_path"]), mode="server", state_dir=state_dir)
        local._stack = Stack.from_json(json.dumps(state["stack"]))
        local._endpoint_url = endpoint_url or state["endpoint_url"]
        local._attached = True
        return local

    def start(self) -> Self:
        """Start moto, patch it, and provision the template; undone by :meth:`stop`."""
        if self._started or self._attached:
            raise RuntimeError("this LocalStack is already started or attached")
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for key, value in _FAKE_ENV.items():
            self._env.set(key, value)
        for key in [*_UNSET_ENV, *(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL"))]:
            self._env.set(key, None)
        if self.mode == "server":
            self._start_server()
        else:
            self._mock = mock_aws(config=_SFN_EXECUTION)
            self._mock.start()
            self._undo.append(self._mock.stop)
        self._patch_moto()
        self._stack = provision(
            self.template_path,
            parameters=self.parameters,
            secret_values=self.secret_values,
            env_overrides=self.env_overrides,
        )
        if self.mode == "server":
            self._write_state_file()

    def _start_server(self) -> None:
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._undo.append(server.stop)
        host, port = server.get_host_and_port()
        self._endpoint_url = f"http://{host}:{port}"
        self._env.set("AWS_ENDPOINT_URL", self._endpoint_url)
        # moto's Step Functions interpreter calls Lambda and the other services at
        # localhost:$MOTO_PORT when it is not running under mock_aws.
        self._env.set("MOTO_PORT", str(port))
        previous = default_user_config["stepfunctions"]
        self._undo.append(lambda: default_user_config.__setitem__("stepfunctions", previous))
        self._post("/moto-api/config", _SFN_EXECUTION)
        self._undo.append(lambda: self._post("/moto-api/reset", {}))

    def _patch_moto(self) -> None:
        if not moto_fixes.is_applied():
            moto_fixes.apply()
            self._undo.append(moto_fixes.revert)
        previous_factor = moto_fixes.wait_factor()
        moto_fixes.scale_waits(self.wait_scale)
        self._undo.append(
            moto_fixes.real_waits
            if previous_factor is None
            else lambda: moto_fixes.scale_waits(previous_factor)
        )
        was_installed = inproc_lambda.installed()
        inproc_lambda.install(self.log_path)
        inproc_lambda.reset()
        # moto logs a traceback for every failed execution; it belongs in the log, not on the
        # terminal (describe_execution reports the error and cause anyway).
        moto_logger = logging.getLogger("moto")
        log_handler = inproc_lambda.LogFileHandler()
        moto_logger.addHandler(log_handler)
        self._undo.append(lambda: moto_logger.removeHandler(log_handler))
        self._undo.append(inproc_lambda.clear_registry)
        if not was_installed:
            self._undo.append(inproc_lambda.uninstall)
        # SQS event sources: real batches, receive counts and partial batch failures.
        if not sqs_batches.installed():
            sqs_batches.install()
            self._undo.append(sqs_batches.uninstall)

    def _post(self, path: str, body: Mapping[str, object]) -> None:
        request = urllib.request.Request(  # noqa: S310 - the endpoint is our own loopback server
            f"{self.endpoint_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def _write_state_file(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state_file = self.state_dir / STATE_FILE
        document = {"endpoint_url": self.endpoint_url, "stack": json.loads(self.stack.to_json())}
        state_file.write_text(json.dumps(document, indent=2), encoding="utf-8")
        self._undo.append(lambda: state_file.unlink(missing_ok=True))

    def stop(self) -> None:
        """Stop executions and moto, undo every patch and environment change (idempotent)."""
        if self._attached or not self._started:
            return
        try:
            if self._stack is not None:
                self._stop_running_executions()
        finally:
            while self._undo:
                self._undo.pop()()
            self._env.restore()
            self._clients.clear()
            self._endpoint_url = None
            self._started = False

    def _stop_running_executions(self) -> None:
        # Left running, an execution's thread would go on calling handlers after moto is gone.
        sfn = self._sfn()
        for arn in self.stack.state_machines.values():
            for item in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")[
                "executions"
            ]:
                try:
                    sfn.stop_execution(
                        executionArn=item["executionArn"], cause="local stack stopped"
                    )
                except ClientError:  # it ended in the meantime
                    continue
        handler_lock = inproc_lambda.lock()
        if handler_lock.acquire(timeout=_STOP_GRACE_S):  # let a running handler finish
            handler_lock.release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- access ----------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """The moto server's URL (server and attached modes only)."""
        if self._endpoint_url is None:
            raise RuntimeError("an in-process stack has no endpoint URL")
        return self._endpoint_url

    @property
    def stack(self) -> Stack:
        """What was provisioned."""
        if self._stack is None:
            raise RuntimeError("the stack is not started")
        return self._stack

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` talking to this stack."""
        if service not in self._clients:
            session = boto_session(
                aws_access_key_id=_KEY, aws_secret_access_key=_KEY, region_name=REGION
            )
            self._clients[service] = session.client(  # type: ignore[call-overload]
                service, endpoint_url=self._endpoint_url
            )
        return self._clients[service]

    def _sfn(self) -> SFNClient:
        return cast("SFNClient", self.client("stepfunctions"))

    def _lambda(self) -> LambdaClient:
        return cast("LambdaClient", self.client("lambda"))

    # --- actions ---------------------------------------------------------------------------------

    def invoke(self, function_logical_id: str, event: Any) -> Any:
        """Invoke a function synchronously and return its result.

        Raises :class:`LambdaInvokeError` when the handler failed.
        """
        response = self._lambda().invoke(
            FunctionName=self.stack.function_name(function_logical_id),
            Payload=json.dumps(event).encode(),
        )
        raw = response["Payload"].read()
        payload = json.loads(raw) if raw else None
        if "FunctionError" in response:
            body = payload if isinstance(payload, dict) else {}
            raise LambdaInvokeError(
                function_logical_id,
                str(body.get("errorType", "Unknown")),
                str(body.get("errorMessage", raw.decode(errors="replace"))),
                payload,
            )
        return payload

    def fire_schedule(self, schedule_logical_id: str, when: datetime | None = None) -> Any:
        """Deliver one tick of a schedule, as EventBridge would at ``when`` (default now).

        A function target is invoked synchronously and its result returned; a state machine
        target gets an execution, whose ARN is returned. The event is the schedule's Input when
        the template sets one, else EventBridge's "Scheduled Event" (``Schedule``) or ``{}``
        (``ScheduleV2``).
        """
        schedule = self.stack.schedule(schedule_logical_id)
        if schedule.input is not None:
            event: Any = json.loads(schedule.input)
        elif schedule.kind == "Schedule":
            event = self._scheduled_event(schedule.source_arn, when)
        else:
            event = {}
        if schedule.target_kind == "function":
            return self.invoke(schedule.target, event)
        return self.start_execution(schedule.target, event)

    def _scheduled_event(self, rule_arn: str, when: datetime | None) -> dict[str, Any]:
        moment = when or datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.stack.account_id,
            "time": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.stack.region,
            "resources": [rule_arn],
            "detail": {},
        }

    def start_execution(
        self, state_machine_logical_id: str, input: Any, name: str | None = None
    ) -> str:
        """Start an execution (unnamed: a UUID, as on AWS) and return its ARN."""
        kwargs: dict[str, Any] = {
            "stateMachineArn": self.stack.state_machine_arn(state_machine_logical_id),
            "input": json.dumps(input),
        }
        if name is not None:
            kwargs["name"] = name
        return self._sfn().start_execution(**kwargs)["executionArn"]

    def describe_execution(self, arn: str) -> Execution:
        """The execution's current state."""
        response = self._sfn().describe_execution(executionArn=arn)
        output = response.get("output")
        return Execution(
            arn=arn,
            name=response["name"],
            status=response["status"],
            output=json.loads(output) if output else None,
            error=response.get("error"),
            cause=response.get("cause"),
        )

    def wait_execution(
        self,
        arn: str,
        timeout_s: float = 120,
        poll_s: float = 0.02,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        max_poll_s: float = 0.1,
    ) -> Execution:
        """Poll until the execution is no longer RUNNING; ``on_progress`` sees each new history
        event. Raises ``TimeoutError`` after ``timeout_s``.

        The interval grows from ``poll_s`` to ``max_poll_s``: every poll costs CPU in the process
        that runs the execution, so polling a long run every few milliseconds slows it down.
        """
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            execution = self.describe_execution(arn)
            if on_progress is not None:
                history = self.execution_history(arn)
                for event in history[seen:]:
                    on_progress(event)
                seen = len(history)
            if execution.status != "RUNNING":
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {arn} still RUNNING after {timeout_s} s")
            time.sleep(poll_s)
            poll_s = min(max_poll_s, poll_s * 1.5)

    def executions(self, state_machine_logical_id: str) -> list[Execution]:
        """Every execution of a state machine, newest first (as AWS lists them)."""
        arn = self.stack.state_machine_arn(state_machine_logical_id)
        paginator = self._sfn().get_paginator("list_executions")
        return [
            self.describe_execution(item["executionArn"])
            for page in paginator.paginate(stateMachineArn=arn)
            for item in page["executions"]
        ]

    def execution_history(self, arn: str) -> list[dict[str, Any]]:
        """The execution's history events, oldest first."""
        paginator = self._sfn().get_paginator("get_execution_history")
        return [
            cast("dict[str, Any]", event)
            for page in paginator.paginate(executionArn=arn)
            for event in page["events"]
        ]
