"""Dropping files into a local stack's drop bucket, and waiting for the executions they start.

The S3 trigger names each execution after the dropped object (bucket, key, version), so the
execution a drop started is found by computing that same name: nothing is listed or guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from erphub.flows.ebill_upload import DropRef, classify, execution_name

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from erphub_local.aws.stack import Execution, LocalStack

EBILL_STATE_MACHINE = "EbillUploadStateMachine"
DEFAULT_EBILL_PREFIX = "ebill/"


@dataclass(frozen=True)
class Dropped:
    """One object put into the drop bucket, and the execution it must have started (if any)."""

    key: str
    version_id: str | None
    execution: str | None


def ebill_prefix(stack: LocalStack) -> str:
    """The stack's EbillDropPrefix parameter."""
    value = stack.stack.parameters.get("EbillDropPrefix", DEFAULT_EBILL_PREFIX)
    return value if isinstance(value, str) else DEFAULT_EBILL_PREFIX


def drop(stack: LocalStack, key: str, body: bytes | Path) -> Dropped:
    """Put one object into the drop bucket (the S3 trigger runs before this returns)."""
    s3: Any = stack.client("s3")
    bucket = stack.stack.physical("DropBucket")
    if isinstance(body, bytes):
        response = s3.put_object(Bucket=bucket, Key=key, Body=body)
    else:
        with body.open("rb") as handle:
            response = s3.put_object(Bucket=bucket, Key=key, Body=handle)
    version = response.get("VersionId")
    kind = classify(key, ebill_prefix(stack))
    name = None
    if kind is not None:
        ref = DropRef(bucket=bucket, key=key, version_id=version or "null", kind=kind)
        name = execution_name(ref)
    return Dropped(key=key, version_id=version, execution=name)


def execution_arn(stack: LocalStack, name: str) -> str:
    """The ARN of an execution of the eBill upload state machine."""
    machine = stack.stack.state_machine_arn(EBILL_STATE_MACHINE)
    return machine.replace(":stateMachine:", ":execution:") + f":{name}"


def wait_for(
    stack: LocalStack, dropped: Sequence[Dropped], timeout_s: float = 300
) -> list[Execution]:
    """Wait for every execution the drops started; LookupError if a drop started none."""
    executions = []
    for item in dropped:
        if item.execution is None:
            continue
        try:
            executions.append(stack.wait_execution(execution_arn(stack, item.execution), timeout_s))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise
            msg = (
                f"dropping {item.key} started no execution {item.execution}: see the trigger's"
                " log (is the key under the eBill drop prefix, the state machine deployed?)"
            )
            raise LookupError(msg) from None
    return executions
