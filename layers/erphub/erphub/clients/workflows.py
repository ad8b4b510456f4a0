"""Starting Step Functions executions, idempotently by name."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions.client import SFNClient


class ExecutionStarter(Protocol):
    """Starts a named execution of one state machine."""

    def start(self, name: str, payload: dict[str, Any]) -> str | None:
        """The new execution's ARN, or None if one with this name was already started."""
        ...


class StepFunctionsStarter:
    """Step Functions Standard: an execution name is unique for 90 days, so a repeated event
    (EventBridge delivers at least once) starts nothing twice."""

    def __init__(self, client: SFNClient, state_machine_arn: str) -> None:
        self._client = client
        self._arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> str | None:
        """Start ``name``; None if it exists already."""
        try:
            response = self._client.start_execution(
                stateMachineArn=self._arn, name=name, input=json.dumps(payload)
            )
        except self._client.exceptions.ExecutionAlreadyExists:
            return None
        return response["executionArn"]
