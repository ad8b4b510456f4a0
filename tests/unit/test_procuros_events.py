"""The Procuros sample events in events/ parse into the step models and agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel

from erphub.flows.procuros_list import ListRequest
from erphub.flows.procuros_schedule import execution_name
from erphub.flows.procuros_send_chunk import SendRequest

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_the_samples_are_one_tick_and_its_steps() -> None:
    tick = parse(
        event=json.loads((EVENTS / "procuros_schedule.json").read_text()), model=EventBridgeModel
    )
    listed = ListRequest.model_validate_json((EVENTS / "procuros_list.json").read_text())
    sent = SendRequest.model_validate_json((EVENTS / "procuros_send.json").read_text())
    assert tick.detail_type == "Scheduled Event"
    assert listed.run_id == sent.run_id == execution_name(tick.time)
    assert sent.chunk_key.startswith(f"procuros-send/{listed.run_id}/")
