"""The local SQS event-source delivery (``erphub_local.aws.sqs_batches``) against moto: batches,
partial batch failures, redelivery, the dead-letter queue, and messages sent by a handler. The
first test shows the moto behaviour the patch exists for, so an upgrade tells whether it still
is needed."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erphub_local.aws import sqs_batches
from erphub_local.aws.stack import LocalStack

pytestmark = pytest.mark.integration

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Timeout: 30
Resources:
  Seen:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
  Dead:
    Type: AWS::SQS::Queue
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 600
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dead.Arn
        maxReceiveCount: 3
  WorkPolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref Work]
      PolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: s3.amazonaws.com}
            Action: sqs:SendMessage
            Resource: !GetAtt Work.Arn
  Drops:
    Type: AWS::S3::Bucket
    DependsOn: WorkPolicy
    Properties:
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt Work.Arn
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Environment:
        Variables:
          SEEN: !Ref Seen
          WORK: !Ref Work
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
"""

HANDLER = """\
import json
import os
import urllib.parse
import uuid

import boto3


def handler(event, context):
    table = boto3.resource("dynamodb").Table(os.environ["SEEN"])
    records = []
    for record in event["Records"]:
        body = record["body"]
        if "s3:TestEvent" in body:
            continue
        if body.startswith("{"):
            for s3 in json.loads(body)["Records"]:
                key = urllib.parse.unquote_plus(s3["s3"]["object"]["key"])
                head = boto3.client("s3").head_object(Bucket=s3["s3"]["bucket"]["name"], Key=key)
                table.put_item(Item={"pk": f"meta:{key}", "batch": json.dumps(head["Metadata"])})
            continue
        records.append(record)
    if not records:
        return {"batchItemFailures": []}
    table.put_item(Item={
        "pk": str(uuid.uuid4()),
        "batch": json.dumps([
            [r["body"], r["attributes"]["ApproximateReceiveCount"]] for r in records
        ]),
    })
    failures = []
    for record in records:
        body = record["body"]
        if body == "crash":
            raise RuntimeError("crash")
        if body.startswith("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
        if body == "bogus-id":
            failures.append({"itemIdentifier": "not-in-this-batch"})
        if body.startswith("fan-out:"):
            sqs = boto3.client("sqs")
            for i in range(int(body.split(":")[1])):
                sqs.send_message(QueueUrl=os.environ["WORK"], MessageBody=f"child-{i}")
    return {"batchItemFailures": failures}
"""


def write_app(root: Path) -> Path:
    (root / "fn").mkdir(parents=True)
    (root / "fn" / "app.py").write_text(HANDLER, encoding="utf-8")
    path = root / "template.yaml"
    path.write_text(textwrap.dedent(TEMPLATE), encoding="utf-8")
    return path


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_app(tmp_path / "app")


@pytest.fixture
def local(app: Path, tmp_path: Path) -> Iterator[LocalStack]:
    sqs_batches.install()
    try:
        with LocalStack(
            app, log_path=tmp_path / "lambda.log", state_dir=tmp_path / "state"
        ) as stack:
            yield stack
    finally:
        sqs_batches.uninstall()


def batches(local: LocalStack) -> list[list[tuple[str, str]]]:
    """Every invocation's records as (body, receive count), in no particular order."""
    items = local.client("dynamodb").scan(TableName=local.stack.physical("Seen"))["Items"]
    return [
        [tuple(r) for r in json.loads(item["batch"]["S"])]
        for item in items
        if not item["pk"]["S"].startswith("meta:")
    ]


def metadata_seen(local: LocalStack, key: str) -> Any:
    """The metadata the handler found on the object when its S3 event arrived."""
    item = local.client("dynamodb").get_item(
        TableName=local.stack.physical("Seen"), Key={"pk": {"S": f"meta:{key}"}}
    )["Item"]
    return json.loads(item["batch"]["S"])


def drop(local: LocalStack, key: str) -> None:
    local.client("s3").put_object(
        Bucket=local.stack.physical("Drops"),
        Key=key,
        Body=b"x",
        Metadata={"generation-time": "2026-01-31T00:00:00Z"},
    )


def send(local: LocalStack, *bodies: str) -> None:
    for body in bodies:
        local.client("sqs").send_message(QueueUrl=local.stack.physical("Work"), MessageBody=body)


def visible(local: LocalStack, queue: str) -> int:
    attributes = local.client("sqs").get_queue_attributes(
        QueueUrl=local.stack.physical(queue), AttributeNames=["All"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def dead_letters(local: LocalStack) -> list[str]:
    response = local.client("sqs").receive_message(
        QueueUrl=local.stack.physical("Dead"), MaxNumberOfMessages=10
    )
    return [m["Body"] for m in response.get("Messages", [])]


def test_moto_alone_deletes_a_record_reported_in_batch_item_failures(
    app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqs_batches, "install", lambda: None)  # plain moto, as it ships
    assert not sqs_batches.installed()
    with LocalStack(app, log_path=tmp_path / "lambda.log", state_dir=tmp_path / "s") as local:
        send(local, "fail-1")
        assert batches(local) == [[("fail-1", "1")]]
        # AWS would keep it for another delivery; moto deleted it.
        assert visible(local, "Work") == 0
        assert sqs_batches.in_flight() == 0


def test_moto_alone_notifies_before_the_object_has_its_metadata(
    app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqs_batches, "install", lambda: None)  # plain moto, as it ships
    assert not sqs_batches.installed()
    with LocalStack(app, log_path=tmp_path / "lambda.log", state_dir=tmp_path / "s") as local:
        drop(local, "a.pdf")
        assert metadata_seen(local, "a.pdf") == {}  # AWS notifies once the object is complete


def test_an_s3_event_is_delivered_once_the_object_has_its_metadata(local: LocalStack) -> None:
    drop(local, "a.pdf")
    assert metadata_seen(local, "a.pdf") == {"generation-time": "2026-01-31T00:00:00Z"}


def test_held_messages_are_delivered_in_batches_of_the_batch_size(local: LocalStack) -> None:
    with sqs_batches.held():
        send(local, *(f"m{i}" for i in range(12)))
        assert batches(local) == []
    assert sorted(len(b) for b in batches(local)) == [2, 5, 5]
    assert sorted(body for b in batches(local) for body, _ in b) == sorted(
        f"m{i}" for i in range(12)
    )
    assert (visible(local, "Work"), sqs_batches.in_flight()) == (0, 0)


def test_a_reported_failure_stays_in_flight_and_ends_in_the_dead_letter_queue(
    local: LocalStack,
) -> None:
    with sqs_batches.held():
        send(local, "ok-1", "fail-1", "ok-2")
    assert batches(local) == [[("ok-1", "1"), ("fail-1", "1"), ("ok-2", "1")]]
    assert sqs_batches.in_flight(local.stack.physical("Work")) == 1
    assert sqs_batches.redeliver() == 1
    assert sqs_batches.redeliver() == 1
    counts = sorted(count for b in batches(local) for body, count in b if body == "fail-1")
    assert counts == ["1", "2", "3"]  # maxReceiveCount deliveries
    assert sqs_batches.redeliver() == 1  # the next receive moves it to the dead-letter queue
    assert dead_letters(local) == ["fail-1"]
    assert (visible(local, "Work"), sqs_batches.in_flight(local.stack.physical("Work"))) == (0, 0)


@pytest.mark.parametrize("body", ["crash", "bogus-id"])
def test_a_failed_invocation_or_an_unknown_identifier_keeps_the_whole_batch(
    local: LocalStack, body: str
) -> None:
    with sqs_batches.held():
        send(local, "ok-1", body)
    assert sqs_batches.in_flight() == 2
    sqs_batches.redeliver()
    assert sorted(count for b in batches(local) for _, count in b) == ["1", "1", "2", "2"]


def test_messages_a_handler_sends_are_delivered_after_it_returns(local: LocalStack) -> None:
    send(local, "fan-out:7")
    seen: list[Any] = batches(local)
    assert sorted(len(b) for b in seen) == [1, 2, 5]
    assert sorted(body for b in seen for body, _ in b) == sorted(
        ["fan-out:7", *(f"child-{i}" for i in range(7))]
    )
    assert visible(local, "Work") == 0
