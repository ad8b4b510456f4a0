"""The beqom import's wiring in template.yaml, as CloudFormation sees it after the SAM transform:
drop bucket -> queue (prefix beqom/, allowed by the queue policy) -> batch function with partial
batch responses and bounded concurrency, a dead-letter queue, and the timeouts that make a
redelivery after a crash find the document's lease expired."""

from __future__ import annotations

import json
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from tests.static.test_template import OfflinePolicyLoader, raw_template

FUNCTION = "BeqomImportFunction"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return raw_template()


@pytest.fixture(scope="module")
def cfn(template: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(template))
    for resource in copy["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://artifacts/layer.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            props.pop("DefinitionUri", None)
            props["Definition"] = {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # the translator builds ARNs
        result = transform(copy, {}, OfflinePolicyLoader())
    assert isinstance(result, dict)
    return result


def test_the_sqs_event_reports_partial_failures_with_bounded_concurrency(
    cfn: dict[str, Any],
) -> None:
    [mapping] = [
        r["Properties"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["FunctionName"] == {"Ref": FUNCTION}
    ]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["BeqomImportQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "BeqomMaxConcurrency"}}
    assert mapping["BatchSize"] == 10


def test_the_drop_bucket_sends_beqom_events_to_the_queue_beside_sams_lambda_triggers(
    cfn: dict[str, Any],
) -> None:
    bucket = cfn["Resources"]["DropBucket"]
    config = bucket["Properties"]["NotificationConfiguration"]
    [queue] = config["QueueConfigurations"]
    assert queue["Queue"] == {"Fn::GetAtt": ["BeqomImportQueue", "Arn"]}
    assert queue["Event"] == "s3:ObjectCreated:*"
    assert queue["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "beqom/"}]
    # S3 refuses overlapping prefixes for the same event type: no Lambda trigger under beqom/.
    for trigger in config.get("LambdaConfigurations", []):
        rules = {r["Name"]: r["Value"] for r in trigger["Filter"]["S3Key"]["Rules"]}
        prefix = json.dumps(rules.get("prefix", ""))
        assert "beqom/" not in prefix and rules.get("prefix") not in ("", None), trigger
    depends = bucket.get("DependsOn", [])
    assert "BeqomImportQueuePolicy" in (depends if isinstance(depends, list) else [depends])


def test_the_queue_policy_lets_only_the_drop_bucket_send(template: dict[str, Any]) -> None:
    policy = template["Resources"]["BeqomImportQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "BeqomImportQueue"}]
    [allow] = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    bucket_name = template["Resources"]["DropBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    source = allow["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert source == f"arn:${{AWS::Partition}}:s3:::{bucket_name}"  # by name: no cycle
    assert allow["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_redelivery_timing_and_the_dead_letter_queue(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queue = resources["BeqomImportQueue"]["Properties"]
    timeout = resources[FUNCTION]["Properties"]["Timeout"]
    lease = template["Parameters"]["LeaseSeconds"]["Default"]
    assert queue["VisibilityTimeout"] >= 6 * timeout  # AWS's advice for SQS event sources
    assert timeout <= lease < queue["VisibilityTimeout"]  # a redelivery finds the lease expired
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["BeqomImportDeadLetterQueue", "Arn"]
    }
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 3
    alarm = resources["BeqomImportDeadLetterAlarm"]["Properties"]
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]


def test_the_function_reads_drops_by_bucket_name_and_sends_only_to_its_queue(
    cfn: dict[str, Any],
) -> None:
    statements = [
        s
        for policy in cfn["Resources"][f"{FUNCTION}Role"]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]
    text = json.dumps(statements)
    assert '"Ref": "DropBucket"' not in text  # a !Ref would form a cycle with the notification
    assert "erphub-${Stage}-drops-${AWS::AccountId}-${AWS::Region}" in text
    sends = [s for s in statements if "sqs:SendMessage" in json.dumps(s["Action"])]
    assert sends
    assert all("BeqomImportQueue" in json.dumps(s["Resource"]) for s in sends)
    env = cfn["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert env["BEQOM_QUEUE_URL"] == {"Ref": "BeqomImportQueue"}
    assert env["BEQOM_SECRET_ARN"] == {"Ref": "BeqomSecret"}
    assert "BEQOM_CLIENT_SECRET" not in env
