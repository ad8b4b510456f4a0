"""Static checks of template.yaml and the ASL files, offline: cfn-lint, statelint, and the IAM
that aws-sam-translator generates.

The access tables below are the security review of the template: a new function or state
machine fails these tests until its row says what it may touch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
from statelint.config import Config
from statelint.linter import Linter
from statelint.problem import ProblemType

from erphub_local import config as local_config

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
ASL_FILES = sorted((REPO / "statemachines").glob("*.asl.json"))


@dataclass(frozen=True)
class Access:
    """What one function may reach, by logical id."""

    secrets: frozenset[str] = frozenset()
    starts: frozenset[str] = frozenset()


FUNCTION_ACCESS = {
    "RossumScheduleFunction": Access(starts=frozenset({"RossumExportStateMachine"})),
    "RossumPollFunction": Access(secrets=frozenset({"RossumSecret"})),
    "RossumPushFunction": Access(secrets=frozenset({"ErpSecret"})),
    "RossumFinalizeFunction": Access(secrets=frozenset({"RossumSecret"})),
    "BeqomImportFunction": Access(secrets=frozenset({"BeqomSecret"})),
    "ProcurosScheduleFunction": Access(starts=frozenset({"ProcurosSendStateMachine"})),
    "ProcurosListFunction": Access(secrets=frozenset({"ErpSecret", "ProcurosSecret"})),
    "ProcurosSendFunction": Access(secrets=frozenset({"ErpSecret", "ProcurosSecret"})),
    "EbillTriggerFunction": Access(starts=frozenset({"EbillUploadStateMachine"})),
    "EbillPlanFunction": Access(),
    "EbillUploadFunction": Access(secrets=frozenset({"EbillSecret"})),
    "EbillFinalizeFunction": Access(secrets=frozenset({"EbillSecret"})),
    "EbillPollFunction": Access(secrets=frozenset({"EbillSecret"})),
    "EbillResultsFunction": Access(secrets=frozenset({"EbillSecret"})),
    "EbillFailureFunction": Access(),
}
STATE_MACHINE_INVOKES = {
    "RossumExportStateMachine": frozenset(
        {"RossumPollFunction", "RossumPushFunction", "RossumFinalizeFunction"}
    ),
    "ProcurosSendStateMachine": frozenset({"ProcurosListFunction", "ProcurosSendFunction"}),
    "EbillUploadStateMachine": frozenset(
        {
            "EbillPlanFunction",
            "EbillUploadFunction",
            "EbillFinalizeFunction",
            "EbillPollFunction",
            "EbillResultsFunction",
            "EbillFailureFunction",
        }
    ),
}
#: Functions and state machines that must be started by a schedule.
SCHEDULED = frozenset({"RossumScheduleFunction", "ProcurosScheduleFunction"})
CREDENTIAL_NAME = re.compile(r"(PASSWORD|TOKEN|API_?KEY|CLIENT_SECRET|SECRET)$", re.IGNORECASE)
PUBLIC_ACCESS_BLOCK = (
    "BlockPublicAcls",
    "BlockPublicPolicy",
    "IgnorePublicAcls",
    "RestrictPublicBuckets",
)


class OfflinePolicyLoader:
    """Stands in for SAM's managed-policy loader, which would call iam:ListPolicies."""

    def load(self) -> dict[str, str]:
        return {
            "AWSLambdaBasicExecutionRole": (
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            )
        }


def raw_template() -> dict[str, Any]:
    document = yaml_parse(TEMPLATE.read_text())
    assert isinstance(document, dict)
    return document


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform (as `sam package` would
    leave it: code in S3, definitions inline)."""
    template = raw_template()
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            props["CodeUri"] = "s3://artifacts/code.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = "s3://artifacts/layer.zip"
        elif resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((REPO / props.pop("DefinitionUri")).read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # SAM builds ARNs for some region
        result = transform(template, {}, OfflinePolicyLoader())
    assert isinstance(result, dict)
    return result


def statements(cfn: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = cfn["Resources"][role]["Properties"].get("Policies", [])
    found = []
    for policy in policies:
        body = policy["PolicyDocument"]["Statement"]
        found.extend(body if isinstance(body, list) else [body])
    return found


def referenced(value: Any) -> set[str]:
    """Logical ids a policy Resource points at; a literal ARN or wildcard counts as itself."""
    if isinstance(value, list):
        return set().union(*(referenced(item) for item in value)) if value else set()
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            return {target[0] if isinstance(target, list) else target.split(".")[0]}
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            text, variables = (sub, {}) if isinstance(sub, str) else sub
            names = set(re.findall(r"\$\{([^}.!]+)", text)) - set(variables)
            ids = {n for n in names if not n.startswith("AWS::")}
            ids |= referenced(list(variables.values()))
            return ids or {text}  # a literal pattern such as "...:secret:*"
    return set()


def granted(cfn: dict[str, Any], role: str, action: str) -> set[str]:
    """What ``role`` may do ``action`` on (logical ids)."""
    service = action.split(":", maxsplit=1)[0]
    targets: set[str] = set()
    for statement in statements(cfn, role):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement["Action"]
        actions = actions if isinstance(actions, list) else [actions]
        if {action, f"{service}:*", "*"} & set(actions):
            targets |= referenced(statement["Resource"])
    return targets


# --- linters -------------------------------------------------------------------------------------


def test_cfn_lint_finds_nothing() -> None:
    matches = lint_file(TEMPLATE)
    assert [str(m) for m in matches] == []


def test_there_are_state_machine_definitions() -> None:
    assert ASL_FILES


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_statelint_passes(path: Path) -> None:
    # ${...} DefinitionSubstitutions are not URIs until the template fills them in.
    assert Linter.validate(path.read_text(), Config({ProblemType.URI})) == []


def test_statelint_would_catch_a_broken_transition() -> None:
    broken = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}
    assert any("Nowhere" in p for p in Linter.validate(broken, Config({ProblemType.URI})))


# --- IAM -----------------------------------------------------------------------------------------


def test_every_function_and_state_machine_has_an_access_row() -> None:
    template = raw_template()
    assert set(resources_of(template, "AWS::Serverless::Function")) == set(FUNCTION_ACCESS)
    assert set(resources_of(template, "AWS::Serverless::StateMachine")) == set(
        STATE_MACHINE_INVOKES
    )


@pytest.mark.parametrize("machine", sorted(STATE_MACHINE_INVOKES))
def test_a_state_machine_may_invoke_exactly_its_functions(
    cfn: dict[str, Any], machine: str
) -> None:
    assert granted(cfn, f"{machine}Role", "lambda:InvokeFunction") == STATE_MACHINE_INVOKES[machine]


@pytest.mark.parametrize("function", sorted(FUNCTION_ACCESS))
def test_a_function_may_read_only_its_own_secrets(cfn: dict[str, Any], function: str) -> None:
    role = f"{function}Role"
    assert granted(cfn, role, "secretsmanager:GetSecretValue") == FUNCTION_ACCESS[function].secrets


@pytest.mark.parametrize("function", sorted(FUNCTION_ACCESS))
def test_a_function_may_start_only_its_state_machines(cfn: dict[str, Any], function: str) -> None:
    role = f"{function}Role"
    assert granted(cfn, role, "states:StartExecution") == FUNCTION_ACCESS[function].starts


def test_no_function_may_invoke_lambdas(cfn: dict[str, Any]) -> None:
    for function in FUNCTION_ACCESS:
        assert granted(cfn, f"{function}Role", "lambda:InvokeFunction") == set(), function


# --- functions, schedules, buckets, secrets ------------------------------------------------------


def test_every_function_runs_python_3_13_on_arm64(cfn: dict[str, Any]) -> None:
    functions = resources_of(cfn, "AWS::Lambda::Function")
    assert set(functions) == set(FUNCTION_ACCESS)
    for name, function in functions.items():
        props = function["Properties"]
        assert (props["Runtime"], props["Architectures"]) == ("python3.13", ["arm64"]), name


def test_every_local_variable_sets_a_template_parameter() -> None:
    parameters = raw_template()["Parameters"]
    unknown = {v: p for v, p in local_config.PARAMETERS.items() if p not in parameters}
    assert not unknown, f"local variables that name no template parameter: {unknown}"


def test_the_erp_concurrency_reaches_the_push_step() -> None:
    push = raw_template()["Resources"]["RossumPushFunction"]["Properties"]
    assert push["Environment"]["Variables"]["ERP_CONCURRENCY"] == {"Ref": "ErpConcurrency"}
    assert local_config.PARAMETERS["ERP_CONCURRENCY"] == "ErpConcurrency"


def test_the_scheduled_resources_have_a_schedule(cfn: dict[str, Any]) -> None:
    targets: set[str] = set()
    for rule in resources_of(cfn, "AWS::Events::Rule").values():
        if "ScheduleExpression" in rule["Properties"]:
            for target in rule["Properties"]["Targets"]:
                targets |= referenced(target["Arn"])
    for schedule in resources_of(cfn, "AWS::Scheduler::Schedule").values():
        targets |= referenced(schedule["Properties"]["Target"]["Arn"])
    assert targets >= SCHEDULED


def test_buckets_block_public_access_encrypt_and_require_tls() -> None:
    template = raw_template()
    buckets = resources_of(template, "AWS::S3::Bucket")
    policies = resources_of(template, "AWS::S3::BucketPolicy").values()
    assert buckets
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        block = props["PublicAccessBlockConfiguration"]
        assert all(block[key] is True for key in PUBLIC_ACCESS_BLOCK), name
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        tls_denials = [
            statement
            for policy in policies
            if policy["Properties"]["Bucket"] == {"Ref": name}
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Effect"] == "Deny"
            and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            in ("false", False)
        ]
        assert tls_denials, f"{name} has no TLS-only bucket policy"
        covered = referenced(tls_denials[0]["Resource"])
        assert covered == {name}, covered
        assert len(tls_denials[0]["Resource"]) == 2  # the bucket and its objects


def test_no_secret_value_is_in_the_template() -> None:
    template = raw_template()
    for name, secret in resources_of(template, "AWS::SecretsManager::Secret").items():
        assert "SecretString" not in secret["Properties"], name
        assert "GenerateSecretString" in secret["Properties"], name
    for name in template.get("Parameters", {}):
        assert not CREDENTIAL_NAME.search(name), f"parameter {name} looks like a credential"
    variables: dict[str, Any] = dict(
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    for function in resources_of(template, "AWS::Serverless::Function").values():
        variables |= function["Properties"].get("Environment", {}).get("Variables", {})
    leaking = [name for name in variables if CREDENTIAL_NAME.search(name)]
    assert not leaking, f"credentials must come from Secrets Manager, not {leaking}"
