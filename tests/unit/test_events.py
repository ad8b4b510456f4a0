"""The sample events in events/ (what `sam local invoke -e` takes) stay valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel

from erphub.flows.rossum_finalize import FinalizeRequest
from erphub.flows.rossum_poll import PollRequest
from erphub.flows.rossum_push import PushRequest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").is_file())


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_a_sample_event(function: str) -> None:
    samples = sorted((ROOT / "events").glob(f"{function}*.json"))
    assert samples, f"add events/{function}.json: a sample event for functions/{function}"
    for sample in samples:
        json.loads(sample.read_text())


@pytest.mark.parametrize(
    ("sample", "model"),
    [
        ("rossum_poll.json", PollRequest),
        ("rossum_push.json", PushRequest),
        ("rossum_finalize.json", FinalizeRequest),
    ],
)
def test_rossum_samples_parse_into_the_step_models(sample: str, model: type[BaseModel]) -> None:
    model.model_validate_json((ROOT / "events" / sample).read_text())


def test_the_schedule_sample_is_an_eventbridge_event() -> None:
    event = json.loads((ROOT / "events" / "rossum_schedule.json").read_text())
    assert parse(event=event, model=EventBridgeModel).detail_type == "Scheduled Event"
