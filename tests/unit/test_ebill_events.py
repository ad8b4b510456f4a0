"""The eBill upload's sample events and the shape of its state machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3Model
from pydantic import BaseModel

from erphub.flows.ebill_failure import FailureRequest
from erphub.flows.ebill_finalize import FinalizeRequest
from erphub.flows.ebill_plan import PlanRequest
from erphub.flows.ebill_poll import PollRequest
from erphub.flows.ebill_results import ResultsRequest
from erphub.flows.ebill_trigger import S3Notification
from erphub.flows.ebill_upload import classify
from erphub.flows.ebill_upload_files import UploadRequest

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachines" / "ebill_upload.asl.json").read_text())


def sample(name: str) -> str:
    return (ROOT / "events" / name).read_text()


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("ebill_plan.json", PlanRequest),
        ("ebill_upload.json", UploadRequest),
        ("ebill_finalize.json", FinalizeRequest),
        ("ebill_poll.json", PollRequest),
        ("ebill_results.json", ResultsRequest),
        ("ebill_failure.json", FailureRequest),
    ],
)
def test_the_step_samples_parse_into_the_step_models(name: str, model: type[BaseModel]) -> None:
    model.model_validate_json(sample(name))


def test_the_trigger_sample_is_an_aws_s3_event_naming_an_invoice_drop() -> None:
    event = json.loads(sample("ebill_trigger.json"))
    parse(event=event, model=S3Model)  # the full AWS shape
    record = S3Notification.model_validate(event).records[0]
    assert classify(record.s3.object.key, "ebill/") == "invoices"
    assert record.s3.object.version_id


def tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in states.items() if s["Type"] == "Task"}


def test_every_lambda_step_retries_transient_errors_and_crashes_then_fails_visibly() -> None:
    states = ASL["States"]
    lambdas = {n: s for n, s in tasks(states).items() if s["Resource"].startswith("${")}
    assert set(lambdas) == {
        "PlanDrop", "UploadFiles", "FinalizeBatch", "PollStatus", "CollectResults", "RecordFailure",
    }  # fmt: skip
    for name, state in lambdas.items():
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert {"TransientError", "Runtime.ExitError", "Lambda.ServiceException"} <= retried, name
        assert all(isinstance(r["BackoffRate"], float) for r in state["Retry"]), name
        if name != "RecordFailure":
            assert state["Catch"] == [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
            ], name
    assert states["RecordFailure"]["Next"] == "AlertFailure"
    assert states["AlertFailure"]["Next"] == "Failed"
    assert states["Failed"]["Type"] == "Fail"


def test_polling_is_a_wait_loop_driven_by_the_poll_step() -> None:
    states = ASL["States"]
    assert states["WaitForEbill"] == {
        "Type": "Wait",
        "Comment": states["WaitForEbill"]["Comment"],
        "SecondsPath": "$.batch.waitSeconds",
        "Next": "PollStatus",
    }
    assert states["PollStatus"]["Next"] == "Finished"
    assert states["Finished"]["Default"] == "WaitForEbill"
    assert states["AllUploaded"]["Default"] == "UploadFiles"


def test_alerts_go_to_the_alert_topic() -> None:
    for name in ("AlertPartialOrFailed", "AlertFailure"):
        state = ASL["States"][name]
        assert state["Resource"] == "arn:aws:states:::sns:publish"
        assert state["Parameters"]["TopicArn"] == "${AlertTopicArn}"
