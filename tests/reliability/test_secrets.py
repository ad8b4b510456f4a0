"""R12: no secret value of the five systems appears in anything a full demo run leaves behind.

The demo (``erphub_local.demo.run_demo`` with the default sections at small sizes) runs every flow
on one local stack. A last section reads, while the stack still runs, everything an operator or
an attacker could read in AWS: every execution's input, output and history, every ledger item,
every object in the payload bucket, every alert and dead letter. The log is everything the
handlers wrote (the in-process Lambda log) plus every record of the erphub logger. Each is
searched for every password, token and client secret, including the tokens the simulators issued
during the run and the Basic credentials eBill receives.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import pytest
from flask import request
from moto.sns.models import sns_backends
from rich.console import Console

from erphub.observability import logger
from erphub_local import config
from erphub_local.demo import default_sections, run_demo
from erphub_local.demos.beqom_import import BeqomImportDemo
from erphub_local.demos.ebill_upload import EbillUploadDemo
from erphub_local.demos.procuros_send import ProcurosSendDemo
from erphub_local.demos.rossum_export import RossumExportDemo

if TYPE_CHECKING:
    from types import TracebackType

    from flask import Response

    from erphub_local.aws.stack import LocalStack
    from erphub_local.demo import DemoReport
    from erphub_local.simulators import Simulator
    from tests.reliability.conftest import Recorder

pytestmark = pytest.mark.integration


@dataclass
class Capture:
    """What the run left behind, by where it was found."""

    texts: dict[str, str] = field(default_factory=dict)
    #: tokens the simulators issued during the run
    issued: set[str] = field(default_factory=set)

    def add(self, where: str, value: Any) -> None:
        self.texts[where] = value if isinstance(value, str) else json.dumps(value, default=str)


def record_issued_tokens(sim: Simulator, capture: Capture) -> None:
    """Remember every token the simulator hands out (its login / token answers)."""

    def remember(response: Response) -> Response:
        if request.path.endswith(("/auth/login", "/connect/token")) and response.is_json:
            body = response.get_json(silent=True) or {}
            capture.issued.update(str(body[k]) for k in ("key", "access_token") if body.get(k))
        return response

    sim.app.after_request(remember)


class Evidence:
    """The demo's last section: reads the stack's state before the demo stops it."""

    title = "Evidence"

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def env(self) -> dict[str, str]:
        return {}

    def run(self, console: Console, stack: LocalStack, report: DemoReport) -> None:
        add = self.capture.add
        for machine in stack.stack.state_machines:
            for execution in stack.executions(machine):
                add(f"execution {execution.name}", execution.__dict__)
                add(f"history {execution.name}", stack.execution_history(execution.arn))
                described = stack.client("stepfunctions").describe_execution(
                    executionArn=execution.arn
                )
                add(f"input {execution.name}", described.get("input", ""))
        dynamodb = stack.client("dynamodb")
        table = stack.stack.physical("LedgerTable")
        for page in dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                add(f"ledger {item['pk']['S']}", item)
        s3 = stack.client("s3")
        bucket = stack.stack.physical("PayloadBucket")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                add(f"s3 {item['Key']}", body.decode("utf-8", "replace"))
        topic = stack.stack.physical("AlertTopic")
        backend = sns_backends[stack.stack.account_id][stack.stack.region]
        add("alerts", backend.topics[topic].sent_notifications)
        sqs = stack.client("sqs")
        for queue in sqs.list_queues().get("QueueUrls", []):
            messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
            add(f"queue {queue}", messages.get("Messages", []))
        report.check("evidence", "state read", bool(self.capture.texts))


@pytest.mark.scenario("R12")
def test_r12_no_secret_in_logs_events_ledger_or_errors(figures: Recorder) -> None:
    capture = Capture()
    sections: list[Any] = default_sections(per_queue=10)
    rossum, procuros, ebill, beqom = (
        next(s for s in sections if isinstance(s, kind))
        for kind in (RossumExportDemo, ProcurosSendDemo, EbillUploadDemo, BeqomImportDemo)
    )
    # small sizes: the default demo is a showcase
    procuros.documents, procuros.error_report_after = 12, 1
    ebill.customers, ebill.invoices = 60, 8
    beqom.documents, beqom.workers = 32, 32
    secrets = {
        "Rossum password": rossum.rossum.password,
        "ERP API token": rossum.erp.token,
        "Procuros API token": procuros.procuros.token,
        "eBill password": ebill.sim.password,
        "eBill Basic credentials": base64.b64encode(
            f"{ebill.sim.username}:{ebill.sim.password}".encode()
        ).decode(),
        "beqom client secret": beqom.beqom.client_secret,
    }
    for sim in (rossum.rossum, beqom.beqom):
        record_issued_tokens(sim, capture)
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        report = run_demo(Console(quiet=True), [*sections, Evidence(capture)])
    finally:
        logger.removeHandler(handler)
    assert report.ok, [f"{c.what}: {c.detail}" for c in report.checks if not c.ok]
    capture.add("erphub log records", records.getvalue())
    capture.add("Lambda log", (config.STATE_DIR / "logs" / "demo-lambda.log").read_text())
    assert len(capture.issued) >= 2  # both token issuers were used
    secrets |= {f"issued token {token[:4]}...": token for token in capture.issued}
    sections_seen = {where.split(" ")[0] for where in capture.texts}
    assert {"execution", "history", "input", "ledger", "s3", "alerts", "queue"} <= sections_seen
    assert len(capture.texts["erphub log records"]) > 10_000  # the run did log
    leaks = [
        f"{name} in {where}"
        for where, text in capture.texts.items()
        for name, value in secrets.items()
        if value in text
    ]
    figures.add(
        "demo",
        0,
        0,
        0,
        0,
        0,
        note=f"{len(capture.texts)} artefacts, {len(secrets)} secrets, {len(leaks)} found",
    )
    assert leaks == []
