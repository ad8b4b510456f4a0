"""The SAM template reader of the local stack: intrinsics, Globals, parameters, loud failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from erphub_local.aws.template import Resolver, Template, TemplateError, load_definition

REPO = Path(__file__).resolve().parents[2]
PSEUDO = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::StackName": "s"}


def template(resources: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {
            "Stage": {"Type": "String", "Default": "dev", "AllowedPattern": "[a-z]+"},
            "Ids": {"Type": "CommaDelimitedList", "Default": "1,2,3"},
            "Lease": {"Type": "Number", "Default": 900, "MinValue": 0},
        },
        "Resources": resources or {"Table": {"Type": "AWS::DynamoDB::Table"}},
    }
    doc.update(sections)
    return doc


def load(doc: dict[str, Any], **overrides: str) -> Template:
    return Template.from_dict(doc, Path("/app/template.yaml"), overrides)


def fake_lookup(logical_id: str, attribute: str | None) -> str:
    """Physical values as the provisioner would return them."""
    return f"{logical_id}-physical" if attribute is None else f"{logical_id}.{attribute}-value"


def resolver(doc: dict[str, Any], **overrides: str) -> Resolver:
    return Resolver(load(doc, **overrides), fake_lookup, PSEUDO)


def test_ref_resolves_parameters_pseudo_parameters_and_resources() -> None:
    r = resolver(template())
    assert r.resolve({"Ref": "Stage"}, "x") == "dev"
    assert r.resolve({"Ref": "Ids"}, "x") == ["1", "2", "3"]
    assert r.resolve({"Ref": "Lease"}, "x") == "900"  # parameters are text, even numbers
    assert r.resolve({"Ref": "AWS::Region"}, "x") == "eu-west-1"
    assert r.resolve({"Ref": "Table"}, "x") == "Table-physical"


def test_getatt_accepts_both_forms() -> None:
    r = resolver(template())
    assert r.resolve({"Fn::GetAtt": "Table.Arn"}, "x") == "Table.Arn-value"
    assert r.resolve({"Fn::GetAtt": ["Table", "StreamArn"]}, "x") == "Table.StreamArn-value"


def test_sub_resolves_every_kind_of_variable_in_both_forms() -> None:
    r = resolver(template(), Stage="prod")
    text = "${AWS::StackName}/${Stage}/${Table}/${Table.Arn}/${!Literal}"
    assert r.resolve({"Fn::Sub": text}, "x") == "s/prod/Table-physical/Table.Arn-value/${Literal}"
    assert (
        r.resolve({"Fn::Sub": ["${Name}-${Stage}", {"Name": {"Ref": "Table"}}]}, "x")
        == "Table-physical-prod"
    )


def test_join_select_split_and_find_in_map_compose() -> None:
    r = resolver(template(Mappings={"Sizes": {"dev": {"memory": 256}}}))
    joined = {"Fn::Join": ["-", [{"Ref": "Stage"}, {"Fn::Select": [1, {"Ref": "Ids"}]}, "x"]]}
    assert r.resolve(joined, "x") == "dev-2-x"
    assert r.resolve({"Fn::Split": [",", "a,b"]}, "x") == ["a", "b"]
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]}, "x") == 256
    assert r.resolve({"Outer": [{"Ref": "Stage"}, 3, True]}, "x") == {"Outer": ["dev", 3, True]}


def test_globals_merge_maps_and_the_function_wins() -> None:
    doc = template(
        {
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "Timeout": 60,
                    "Layers": ["own-layer"],
                    "Environment": {"Variables": {"B": "function", "C": {"Ref": "Stage"}}},
                },
            }
        },
        Globals={
            "Function": {
                "Timeout": 300,
                "MemorySize": 512,
                "Layers": ["global-layer"],
                "Environment": {"Variables": {"A": "global", "B": "global"}},
            }
        },
    )
    props = load(doc).resources["Fn"].properties
    assert props == {
        "Timeout": 60,
        "MemorySize": 512,
        "Layers": ["global-layer", "own-layer"],
        "Environment": {"Variables": {"A": "global", "B": "function", "C": {"Ref": "Stage"}}},
    }


def test_an_intrinsic_replaces_a_global_map_as_a_whole() -> None:
    doc = template(
        {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Tags": {"Ref": "Stage"}}}},
        Globals={"Function": {"Tags": {"team": "hub"}}},
    )
    assert load(doc).resources["Fn"].properties["Tags"] == {"Ref": "Stage"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            template({"Api": {"Type": "AWS::Serverless::Api"}}),
            "Api: resource type AWS::Serverless::Api is not supported",
        ),
        (
            template(
                {
                    "Table": {
                        "Type": "AWS::DynamoDB::Table",
                        "Properties": {"TableName": {"Fn::If": ["IsProd", "a", "b"]}},
                    }
                }
            ),
            "Table: intrinsic function Fn::If is not supported",
        ),
        (
            template(
                {
                    "Table": {
                        "Type": "AWS::DynamoDB::Table",
                        "Properties": {"TableName": {"Fn::ImportValue": "shared-name"}},
                    }
                }
            ),
            "Table: intrinsic function Fn::ImportValue is not supported",
        ),
        (
            template({"Table": {"Type": "AWS::DynamoDB::Table", "Condition": "IsProd"}}),
            "Table: Condition 'IsProd' is not in the Conditions section",
        ),
        (
            template(Conditions={"InEu": {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]}}),
            "condition InEu: conditions may only Ref parameters, not 'AWS::Region'",
        ),
        (
            template(Conditions={"Listed": {"Fn::Contains": [["a"], {"Ref": "Stage"}]}}),
            "condition Listed: condition function Fn::Contains is not supported",
        ),
        (
            template(Conditions={"A": {"Condition": "B"}, "B": {"Fn::Not": [{"Condition": "A"}]}}),
            "circular reference A -> B -> A",
        ),
        (
            template(
                {
                    "Secret": {
                        "Type": "AWS::SSM::Parameter",
                        "Properties": {"Value": "{{resolve:ssm:/shared/value}}"},
                    }
                }
            ),
            "Secret: dynamic references",
        ),
        (template(Globals={"Api": {"Cors": "*"}}), "Globals section 'Api' is not supported"),
        (template(Transform="AWS::LanguageExtensions"), "AWS::LanguageExtensions"),
    ],
)
def test_what_the_local_stack_cannot_honour_fails_loudly(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        load(doc)


def test_resolving_unknown_names_fails_loudly() -> None:
    r = resolver(template())
    with pytest.raises(TemplateError, match=r"where: Ref to unknown parameter or resource 'Nope'"):
        r.resolve({"Ref": "Nope"}, "where")
    with pytest.raises(TemplateError, match=r"Fn::Sub variable \$\{Nope\} is not defined"):
        r.resolve({"Fn::Sub": "a-${Nope}"}, "where")
    with pytest.raises(TemplateError, match="Fn::GetAtt on unknown resource 'Nope'"):
        r.resolve({"Fn::GetAtt": "Nope.Arn"}, "where")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Stage": "Prod-1"}, "Stage='Prod-1' does not match"),
        ({"Lease": "-1"}, "Lease=-1 is below 0"),
        ({"Lease": "soon"}, "Lease='soon' is not a number"),
        ({"Unknown": "x"}, "unknown parameter"),
    ],
)
def test_parameter_values_are_checked(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        load(template(), **overrides)


def test_an_unresolved_definition_variable_fails(tmp_path: Path) -> None:
    asl = tmp_path / "flow.asl.json"
    asl.write_text('{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "${Arn}"}}}')

    with pytest.raises(TemplateError, match=r"Flow: \$\{Arn\} in the definition is not in"):
        load_definition(asl, {"Other": "x"}, "Flow")
    assert '"Resource": "arn:fn"' in load_definition(asl, {"Arn": "arn:fn"}, "Flow")


def test_every_asl_variable_of_the_real_template_is_substituted() -> None:
    real = Template.load(REPO / "template.yaml")
    machines = real.of_type("AWS::Serverless::StateMachine")
    assert machines
    for machine in machines:
        names = {key: "arn:placeholder" for key in machine.properties["DefinitionSubstitutions"]}
        definition = load_definition(
            real.base_dir / machine.properties["DefinitionUri"], names, machine.logical_id
        )
        assert "${" not in definition


CONDITIONS = {
    "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
    "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
    "ProdWithIds": {
        "Fn::And": [{"Condition": "IsProd"}, {"Fn::Not": [{"Fn::Equals": [{"Ref": "Ids"}, ""]}]}]
    },
    "AnyLease": {"Fn::Or": [{"Fn::Equals": [{"Ref": "Lease"}, "900"]}, {"Condition": "IsProd"}]},
}


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("dev", {"IsProd": False, "NotProd": True, "ProdWithIds": False, "AnyLease": True}),
        ("prod", {"IsProd": True, "NotProd": False, "ProdWithIds": True, "AnyLease": True}),
    ],
)
def test_conditions_are_evaluated_with_the_parameter_values(
    stage: str, expected: dict[str, bool]
) -> None:
    assert load(template(Conditions=CONDITIONS), Stage=stage).conditions == expected


def test_a_resource_or_output_whose_condition_is_false_is_left_out() -> None:
    doc = template(
        {
            "Table": {"Type": "AWS::DynamoDB::Table"},
            "ProdTopic": {"Type": "AWS::SNS::Topic", "Condition": "IsProd"},
            "DevTopic": {"Type": "AWS::SNS::Topic", "Condition": "NotProd"},
        },
        Conditions=CONDITIONS,
        Outputs={
            "ProdTopicArn": {"Condition": "IsProd", "Value": {"Ref": "ProdTopic"}},
            "TableName": {"Value": {"Ref": "Table"}},
        },
    )
    dev = load(doc)
    assert set(dev.resources) == {"Table", "DevTopic"}
    assert set(dev.outputs) == {"TableName"}
    prod = load(doc, Stage="prod")
    assert set(prod.resources) == {"Table", "ProdTopic"}
    assert set(prod.outputs) == {"ProdTopicArn", "TableName"}
    # As in CloudFormation, a resource that is left out cannot be referenced.
    with pytest.raises(TemplateError, match="Ref to unknown parameter or resource 'ProdTopic'"):
        resolver(doc).resolve({"Ref": "ProdTopic"}, "where")


@pytest.mark.parametrize(("email", "subscribed"), [("", False), ("ops@example.com", True)])
def test_the_real_template_subscribes_the_alert_email_only_when_one_is_given(
    email: str, subscribed: bool
) -> None:
    real = Template.load(REPO / "template.yaml", {"AlertEmail": email})
    assert real.conditions["HasAlertEmail"] is subscribed
    subscriptions = real.of_type("AWS::SNS::Subscription")
    expected = ["AlertEmailSubscription"] if subscribed else []
    assert [s.logical_id for s in subscriptions] == expected
