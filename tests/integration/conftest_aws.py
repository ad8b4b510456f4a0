"""A small SAM application for testing the local AWS emulation independently of the real handlers.

``write_app(tmp_path)`` writes a template, one handler and one ASL file; the handler's behaviour
is chosen by the event's ``action``. The template has one of each wiring the emulation supports:
Globals, a table, a bucket with an S3 trigger, a queue with an SQS trigger and a DLQ, a topic
with an SNS trigger, a secret, schedules on a function and on a state machine.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: test
  Greeting:
    Type: String
    Default: hello
    AllowedValues: [hello, bonjour]
Globals:
  Function:
    Runtime: python3.13
    Timeout: 30
    Environment:
      Variables:
        STAGE: !Ref Stage
        TABLE: !Ref Table
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
  Bucket:
    Type: AWS::S3::Bucket
  DeadLetters:
    Type: AWS::SQS::Queue
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadLetters.Arn
        maxReceiveCount: 3
  Alerts:
    Type: AWS::SNS::Topic
  ApiKey:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Sub "mini/${Stage}/api-key"
      GenerateSecretString:
        SecretStringTemplate: '{"user": "mini"}'
        GenerateStringKey: key
        ExcludePunctuation: true
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Environment:
        Variables:
          GREETING: !Ref Greeting
          SELF_TEST: !Sub "${AWS::Region}/${Bucket}/${Jobs.QueueName}"
      Events:
        Upload:
          Type: S3
          Properties:
            Bucket: !Ref Bucket
            Events: s3:ObjectCreated:*
            Filter:
              S3Key:
                Rules:
                  - {Name: prefix, Value: incoming/}
        Job:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 1
        Alert:
          Type: SNS
          Properties:
            Topic: !Ref Alerts
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
        Nightly:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: cron(0 2 * * ? *)
            State: DISABLED
  Flow:
    Type: AWS::Serverless::StateMachine
    Properties:
      Name: !Sub "mini-${Stage}-flow"
      DefinitionUri: flow.asl.json
      DefinitionSubstitutions:
        WorkerArn: !GetAtt Worker.Arn
      Events:
        Every:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
            Input: '{"action": "flaky"}'
"""

HANDLER = """\
import json
import os
import urllib.parse

import boto3

from erphub.faults import InjectedCrash

ATTEMPTS = {}


class TransientError(Exception):
    pass


def _record(pk, detail):
    table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
    table.put_item(Item={"pk": pk, "detail": detail})


def handler(event, context):
    if "Records" in event:
        for record in event["Records"]:
            if "s3" in record:
                key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
                _record(f"s3:{key}", record["eventName"])
            elif record.get("eventSource") == "aws:sqs":
                _record(f"sqs:{record['body']}", record["eventSourceARN"])
            else:
                # moto puts a placeholder in Sns.TopicArn, so only the message is checked.
                _record(f"sns:{record['Sns']['Message']}", record["EventSource"])
        return None
    action = event.get("action") if isinstance(event, dict) else None
    if action == "env":
        names = ["GREETING", "STAGE", "TABLE", "SELF_TEST", "EXTRA", "AWS_LAMBDA_FUNCTION_NAME"]
        return {name: os.environ.get(name) for name in names}
    if action == "context":
        return {
            "function_name": context.function_name,
            "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
    if action == "flaky":
        key = event["key"]
        ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
        if ATTEMPTS[key] == 1:
            raise TransientError(f"first attempt for {key}")
        return {"attempt": ATTEMPTS[key]}
    if action == "crash":
        raise InjectedCrash("mini.crash")
    if action == "fail":
        raise ValueError("bad input")
    if action == "print":
        print(event["text"])
        return {"printed": True}
    if action == "unserialisable":
        return {"when": object()}
    return event
"""

ASL = """\
{
  "StartAt": "Work",
  "States": {
    "Work": {
      "Type": "Task",
      "Resource": "${WorkerArn}",
      "Parameters": {"action.$": "$.action", "key.$": "$$.Execution.Name"},
      "Retry": [{"ErrorEquals": ["TransientError"], "IntervalSeconds": 3600, "MaxAttempts": 2}],
      "ResultPath": "$.work",
      "Next": "Pause"
    },
    "Pause": {"Type": "Wait", "Seconds": 3600, "Next": "Decide"},
    "Decide": {
      "Type": "Choice",
      "Choices": [{"Variable": "$.work.attempt", "NumericEquals": 2, "Next": "Done"}],
      "Default": "Unexpected"
    },
    "Done": {"Type": "Succeed"},
    "Unexpected": {"Type": "Fail", "Error": "Unexpected"}
  }
}
"""


def write_app(root: Path, *, template: str = TEMPLATE, asl: str = ASL) -> Path:
    """Write the mini application under ``root``; returns the template path."""
    (root / "fn").mkdir(parents=True, exist_ok=True)
    (root / "fn" / "app.py").write_text(HANDLER, encoding="utf-8")
    (root / "flow.asl.json").write_text(asl, encoding="utf-8")
    path = root / "template.yaml"
    path.write_text(textwrap.dedent(template), encoding="utf-8")
    return path
