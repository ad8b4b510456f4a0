"""Operators see what the code reports: every metric the code emits is on the dashboard or an
alarm, every custom metric the template charts or alarms on is emitted by the code, and every
function logs with a retention, has its failures kept, and every alarm reaches the alert topic.

The emitted metrics are read from the source with ``ast`` (not guessed with a regular expression):
a metric name must be a literal, a loop variable over literal tuples, or an f-string over a value
whose type is a ``Literal``. Anything else fails here, naming the file and line.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from erphub.flows import ebill_results
from erphub_local import config as local_config
from erphub_local.aws.template import Template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SOURCES = sorted(
    [*(REPO / "layers" / "erphub" / "erphub").rglob("*.py"), *(REPO / "functions").rglob("*.py")]
)
_STRING_METHODS = {
    "title": str.title,
    "lower": str.lower,
    "upper": str.upper,
    "capitalize": str.capitalize,
}


class UnresolvedMetricError(Exception):
    """A metric name the scan cannot reduce to a finite set of names."""


@dataclass(frozen=True)
class Emission:
    """One ``add_metric`` call and the names it can emit."""

    where: str
    names: frozenset[str]


# --- the code's side -----------------------------------------------------------------------------


class _Module:
    """One parsed source file, with what name resolution needs: parents and module constants."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.tree = ast.parse(source, filename=str(path))
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        self.aliases: dict[str, ast.expr] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        for statement in self.tree.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
                if isinstance(target, ast.Name):
                    self.aliases[target.id] = statement.value
            elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                if statement.value is not None:
                    self.aliases[statement.target.id] = statement.value
            elif isinstance(statement, ast.FunctionDef):
                self.functions[statement.name] = statement

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"

    def enclosing(self, node: ast.AST, kind: type[ast.AST]) -> list[ast.AST]:
        found = []
        current = self.parents.get(node)
        while current is not None:
            if isinstance(current, kind):
                found.append(current)
            current = self.parents.get(current)
        return found

    # --- resolution ---------------------------------------------------------------------------

    def names(self, node: ast.expr, at: ast.AST) -> set[str]:
        """Every string ``node`` may evaluate to where it is used (``at``)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.JoinedStr):
            results = {""}
            for part in node.values:
                if isinstance(part, ast.Constant):
                    pieces = {str(part.value)}
                elif isinstance(part, ast.FormattedValue):
                    pieces = self.names(part.value, at)
                else:
                    raise UnresolvedMetricError(self.where(node))
                results = {r + p for r in results for p in pieces}
            return results
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _STRING_METHODS
            and not node.args
        ):
            method = _STRING_METHODS[node.func.attr]
            return {method(value) for value in self.names(node.func.value, at)}
        if isinstance(node, ast.Name):
            return self._variable(node.id, at)
        if isinstance(node, ast.Subscript) and _is_literal_type(node):
            return _literal_values(node)
        raise UnresolvedMetricError(f"{self.where(node)}: {ast.unparse(node)}")

    def _variable(self, name: str, at: ast.AST) -> set[str]:
        # A loop variable: for a, b in (("x", "X"), ...), or for a in ("x", ...).
        for loop in self.enclosing(at, ast.For):
            assert isinstance(loop, ast.For)
            values = self._loop_values(loop, name)
            if values is not None:
                return values
        # A local assignment in the enclosing function: x = "X", or x = f(...) -> Literal[...]
        for function in self.enclosing(at, ast.FunctionDef):
            for statement in ast.walk(function):
                if (
                    isinstance(statement, ast.Assign)
                    and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)
                    and statement.targets[0].id == name
                ):
                    return self._value_of(statement.value, at)
        if name in self.aliases:
            return self._value_of(self.aliases[name], at)
        raise UnresolvedMetricError(f"{self.where(at)}: the variable {name}")

    def _value_of(self, value: ast.expr, at: ast.AST) -> set[str]:
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            function = self.functions.get(value.func.id)
            if function is not None and function.returns is not None:
                return self._type_values(function.returns, at)
        return self.names(value, at)

    def _type_values(self, annotation: ast.expr, at: ast.AST) -> set[str]:
        if isinstance(annotation, ast.Name) and annotation.id in self.aliases:
            return self._type_values(self.aliases[annotation.id], at)
        if isinstance(annotation, ast.Subscript) and _is_literal_type(annotation):
            return _literal_values(annotation)
        raise UnresolvedMetricError(f"{self.where(at)}: the type {ast.unparse(annotation)}")

    def _loop_values(self, loop: ast.For, name: str) -> set[str] | None:
        target, items = loop.target, loop.iter
        if not isinstance(items, ast.Tuple | ast.List):
            return None
        if isinstance(target, ast.Name):
            return self._constants(items.elts, name) if target.id == name else None
        if isinstance(target, ast.Tuple):
            positions = [
                i for i, e in enumerate(target.elts) if isinstance(e, ast.Name) and e.id == name
            ]
            if not positions:
                return None
            picked = []
            for item in items.elts:
                if not isinstance(item, ast.Tuple | ast.List):
                    raise UnresolvedMetricError(self.where(loop))
                picked.append(item.elts[positions[0]])
            return self._constants(picked, name)
        return None

    def _constants(self, nodes: list[ast.expr], name: str) -> set[str]:
        values = set()
        for node in nodes:
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                raise UnresolvedMetricError(f"{self.where(node)}: the loop variable {name}")
            values.add(node.value)
        return values


def _is_literal_type(node: ast.Subscript) -> bool:
    base = node.value
    return (isinstance(base, ast.Name) and base.id == "Literal") or (
        isinstance(base, ast.Attribute) and base.attr == "Literal"
    )


def _literal_values(node: ast.Subscript) -> set[str]:
    items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    values = set()
    for item in items:
        if not (isinstance(item, ast.Constant) and isinstance(item.value, str)):
            raise UnresolvedMetricError(f"Literal member {ast.unparse(item)}")
        values.add(item.value)
    return values


def _metric_name_argument(call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "name":
            return keyword.value
    return call.args[0] if call.args else None


def scan(path: Path, source: str) -> list[Emission]:
    """Every ``add_metric`` call of one source file, with the names it can emit."""
    module = _Module(path, source)
    found = []
    for node in ast.walk(module.tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_metric"
        ):
            argument = _metric_name_argument(node)
            if argument is None:
                raise UnresolvedMetricError(f"{module.where(node)}: add_metric without a name")
            found.append(Emission(module.where(node), frozenset(module.names(argument, node))))
    return found


def emissions() -> list[Emission]:
    return [e for path in SOURCES for e in scan(path, path.read_text(encoding="utf-8"))]


# --- the template's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A metric the template charts or alarms on."""

    where: str
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]


def template() -> dict[str, Any]:
    document = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def resources(doc: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc["Resources"].items() if v["Type"] == kind}


def _text(value: Any) -> str:
    """A template value as comparable text: literals as they are, intrinsics as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def alarm_references(doc: dict[str, Any]) -> list[Reference]:
    found = []
    for name, alarm in resources(doc, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        metrics = [props] if "MetricName" in props else []
        metrics += [
            m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m
        ]
        assert metrics, f"{name} watches no metric"
        found += [
            Reference(
                name,
                m["Namespace"],
                m["MetricName"],
                tuple(sorted((d["Name"], _text(d["Value"])) for d in m.get("Dimensions", []))),
            )
            for m in metrics
        ]
    return found


def dashboard_bodies(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each dashboard's body, with its ${...} substitutions kept as text."""
    bodies = {}
    for name, dashboard in resources(doc, "AWS::CloudWatch::Dashboard").items():
        body = dashboard["Properties"]["DashboardBody"]
        text = body["Fn::Sub"] if isinstance(body, dict) else body
        assert isinstance(text, str), f"{name}: DashboardBody must be a (!Sub) string"
        bodies[name] = json.loads(text)
    return bodies


def dashboard_references(doc: dict[str, Any]) -> list[Reference]:
    found = []
    for name, body in dashboard_bodies(doc).items():
        for widget in body["widgets"]:
            previous: list[Any] = []
            for row in widget.get("properties", {}).get("metrics", []):
                if row and isinstance(row[0], dict):  # a math expression
                    continue
                values = [v for v in row if not isinstance(v, dict)]
                # CloudWatch's shorthand: "." repeats the value of the row above.
                values = [
                    previous[i] if v == "." and i < len(previous) else v
                    for i, v in enumerate(values)
                ]
                previous = values
                namespace, metric, *dims = values
                pairs = tuple(sorted(zip(dims[::2], dims[1::2], strict=True)))
                found.append(Reference(name, namespace, metric, pairs))
    return found


def custom_namespace(doc: dict[str, Any]) -> tuple[str, str]:
    """(namespace, service) the functions' Powertools Metrics publish under."""
    variables = doc["Globals"]["Function"]["Environment"]["Variables"]
    return variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]


# --- the scan itself can fail --------------------------------------------------------------------

SAMPLE = """
from typing import Literal
Outcome = Literal["IMPORTED", "PARTIAL"]
PREFIX = "Sample"

def _outcome() -> Outcome: ...

def handler(tally):
    metrics.add_metric(name="Literal", unit="Count", value=1)
    metrics.add_metric("Positional", "Count", 1)
    overall = _outcome()
    metrics.add_metric(name=f"Batches{overall.title()}", unit="Count", value=1)
    for key, metric in (("a", "LoopA"), ("b", "LoopB")):
        metrics.add_metric(name=metric, unit="Count", value=tally[key])
    metrics.add_metric(name=PREFIX + "Total", unit="Count", value=1)
"""


def test_the_scan_resolves_literals_loops_and_literal_types() -> None:
    sample = SAMPLE.replace(
        '    metrics.add_metric(name=PREFIX + "Total", unit="Count", value=1)\n', ""
    )
    names = {n for e in scan(REPO / "sample.py", sample) for n in e.names}
    assert names == {
        "Literal",
        "Positional",
        "BatchesImported",
        "BatchesPartial",
        "LoopA",
        "LoopB",
    }


def test_the_scan_refuses_a_name_it_cannot_resolve() -> None:
    with pytest.raises(UnresolvedMetricError, match=r"sample.py:\d+"):
        scan(REPO / "sample.py", SAMPLE)


def test_the_scan_finds_every_add_metric_call_of_the_package() -> None:
    textual = sum(p.read_text(encoding="utf-8").count(".add_metric(") for p in SOURCES)
    assert len(emissions()) == textual > 0


def test_the_scan_agrees_with_the_literal_type_it_reads() -> None:
    emitted = {n for e in emissions() for n in e.names}
    outcomes = {f"EbillBatches{o.title()}" for o in typing.get_args(ebill_results.Outcome)}
    assert outcomes <= emitted


# --- metrics -------------------------------------------------------------------------------------


def test_every_emitted_metric_is_on_the_dashboard_or_an_alarm() -> None:
    doc = template()
    namespace, _ = custom_namespace(doc)
    shown = {
        r.name
        for r in dashboard_references(doc) + alarm_references(doc)
        if r.namespace == namespace
    }
    missing = sorted(
        f"{name} ({e.where})" for e in emissions() for name in e.names if name not in shown
    )
    assert not missing, f"emitted but neither charted nor alarmed on: {missing}"


def test_every_custom_metric_the_template_uses_is_emitted() -> None:
    doc = template()
    namespace, _ = custom_namespace(doc)
    emitted = {n for e in emissions() for n in e.names}
    unknown = sorted(
        f"{r.name} ({r.where})"
        for r in dashboard_references(doc) + alarm_references(doc)
        if r.namespace == namespace and r.name not in emitted
    )
    assert not unknown, f"charted or alarmed on, but no code emits it: {unknown}"


def test_custom_metrics_are_read_with_the_dimension_powertools_writes() -> None:
    doc = template()
    namespace, service = custom_namespace(doc)
    custom = [
        r for r in dashboard_references(doc) + alarm_references(doc) if r.namespace == namespace
    ]
    assert custom
    wrong = [r for r in custom if r.dimensions != (("service", service),)]
    assert not wrong, wrong


def test_the_dashboard_shows_every_state_machine_and_dead_letter_queue() -> None:
    doc = template()
    refs = dashboard_references(doc)
    for machine in resources(doc, "AWS::Serverless::StateMachine"):
        charted = {r.name for r in refs if ("StateMachineArn", f"${{{machine}}}") in r.dimensions}
        assert {"ExecutionsFailed", "ExecutionTime", "ExecutionThrottled"} <= charted, machine
    for queue in dead_letter_queues(doc):
        assert any(
            ("QueueName", f"${{{queue}.QueueName}}") in r.dimensions
            and r.name == "ApproximateNumberOfMessagesVisible"
            for r in refs
        ), queue
    for function in resources(doc, "AWS::Serverless::Function"):
        charted = {r.name for r in refs if ("FunctionName", f"${{{function}}}") in r.dimensions}
        assert {"Errors", "Throttles"} <= charted, function


def test_the_alarm_widget_lists_every_alarm() -> None:
    doc = template()
    listed = {
        arn
        for body in dashboard_bodies(doc).values()
        for widget in body["widgets"]
        if widget["type"] == "alarm"
        for arn in widget["properties"]["alarms"]
    }
    assert listed == {f"${{{name}.Arn}}" for name in resources(doc, "AWS::CloudWatch::Alarm")}


# --- alarms --------------------------------------------------------------------------------------


def dead_letter_queues(doc: dict[str, Any]) -> set[str]:
    """Queues that receive what failed elsewhere: redrive targets and function DLQs."""
    found = set()
    for queue in resources(doc, "AWS::SQS::Queue").values():
        redrive = queue["Properties"].get("RedrivePolicy")
        if redrive:
            found.add(redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
    for function in resources(doc, "AWS::Serverless::Function").values():
        target = function["Properties"].get("DeadLetterQueue", {}).get("TargetArn")
        if target:
            found.add(target["Fn::GetAtt"][0])
    return found


def test_every_alarm_notifies_the_alert_topic_when_it_fires_and_when_it_clears() -> None:
    for name, alarm in resources(template(), "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlertTopic"}], name
        assert props["OKActions"] == [{"Ref": "AlertTopic"}], name
        assert props["AlarmName"]["Fn::Sub"].startswith("erphub-${Stage}-"), name


def test_every_dead_letter_queue_has_an_alarm() -> None:
    doc = template()
    watched = {
        r.dimensions
        for r in alarm_references(doc)
        if r.name == "ApproximateNumberOfMessagesVisible"
    }
    queues = dead_letter_queues(doc)
    assert len(queues) >= 3
    for queue in queues:
        dimension = json.dumps({"Fn::GetAtt": [queue, "QueueName"]}, sort_keys=True)
        assert (("QueueName", dimension),) in watched, queue


def test_every_state_machine_alarms_on_failed_executions_and_scheduled_ones_on_silence() -> None:
    doc = template()
    alarms = alarm_references(doc)
    scheduled = {
        props["Environment"]["Variables"][key]["Ref"]
        for props in (f["Properties"] for f in resources(doc, "AWS::Serverless::Function").values())
        if any(e["Type"] == "Schedule" for e in props.get("Events", {}).values())
        for key in props["Environment"]["Variables"]
        if key.endswith("_STATE_MACHINE_ARN")
    }
    assert scheduled == {"RossumExportStateMachine", "ProcurosSendStateMachine"}
    for machine in resources(doc, "AWS::Serverless::StateMachine"):
        dimension = (("StateMachineArn", json.dumps({"Ref": machine})),)
        watched = {r.name for r in alarms if r.dimensions == dimension}
        assert "ExecutionsFailed" in watched, machine
        assert ("ExecutionsSucceeded" in watched) is (machine in scheduled), machine


def test_the_alert_topic_can_receive_alarms_and_mails_the_configured_address() -> None:
    doc = template()
    topic = doc["Resources"]["AlertTopic"]["Properties"]
    # The AWS managed key's policy does not let CloudWatch alarms publish to the topic.
    assert topic.get("KmsMasterKeyId") != "alias/aws/sns"
    key = doc["Resources"][topic["KmsMasterKeyId"]["Ref"]]["Properties"]["KeyPolicy"]
    assert any(
        s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
        and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(s["Action"])
        for s in key["Statement"]
    )
    subscription = doc["Resources"]["AlertEmailSubscription"]
    assert subscription["Condition"] == "HasAlertEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlertEmail"}
    assert doc["Conditions"]["HasAlertEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]
    }


# --- logs and failed invocations -----------------------------------------------------------------


def test_every_function_logs_to_its_own_log_group_with_a_retention() -> None:
    doc = template()
    groups = resources(doc, "AWS::Logs::LogGroup")
    used = []
    for name, function in resources(doc, "AWS::Serverless::Function").items():
        group = function["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert group in groups, f"{name} has no LoggingConfig.LogGroup of this template"
        used.append(group)
    assert sorted(used) == sorted(groups), "one log group per function, none unused"
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_every_asynchronously_invoked_function_keeps_its_failed_events() -> None:
    doc = template()
    configs = {
        c["Properties"]["FunctionName"]["Ref"]
        for c in resources(doc, "AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"].get("DestinationConfig", {}).get("OnFailure")
    }
    asynchronous = {"S3", "Schedule", "ScheduleV2", "SNS", "EventBridgeRule", "CloudWatchEvent"}
    checked = 0
    for name, function in resources(doc, "AWS::Serverless::Function").items():
        props = function["Properties"]
        if not any(e["Type"] in asynchronous for e in props.get("Events", {}).values()):
            continue
        checked += 1
        kept = "DeadLetterQueue" in props or props.get("EventInvokeConfig", {}).get(
            "DestinationConfig", {}
        ).get("OnFailure")
        assert kept or name in configs, f"{name} is invoked asynchronously but keeps no failures"
    assert checked >= 3


def test_functions_log_structured_json_with_correlation_ids() -> None:
    handlers = sorted((REPO / "functions").glob("*/app.py"))
    assert handlers
    for handler in handlers:
        text = handler.read_text(encoding="utf-8")
        assert "@logger.inject_lambda_context" in text, handler
        assert "@metrics.log_metrics" in text, handler
    flows = "".join(
        p.read_text(encoding="utf-8") for p in (REPO / "layers/erphub/erphub/flows").glob("*.py")
    )
    assert len(re.findall(r"correlation_id", flows)) >= 4


# --- the deploy guide ----------------------------------------------------------------------------


def test_the_example_deployment_configuration_is_valid_for_the_template() -> None:
    deployment = tomllib.loads((REPO / "samconfig.example.toml").read_text(encoding="utf-8"))
    for environment in ("default", "prod"):
        deploy = deployment[environment]["deploy"]["parameters"]
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        overrides = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
        # Unknown names, values outside AllowedValues/AllowedPattern/MinValue fail here.
        Template.load(TEMPLATE, overrides)


def test_the_readme_names_every_parameter_variable_and_secret() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    doc = template()
    names = [f"`{name}`" for name in doc["Parameters"]]
    names += [f"`{variable}`" for variable in local_config.PARAMETERS]
    names += [f"`{v}`" for fields in local_config.SECRETS.values() for v in fields.values()]
    names += [f"`{variable}`" for variable in local_config.PASSTHROUGH]
    for secret in resources(doc, "AWS::SecretsManager::Secret").values():
        names.append(f"`{secret['Properties']['Name']['Fn::Sub'].replace('${Stage}', '<stage>')}`")
    missing = [name for name in names if name not in readme]
    assert not missing, f"README.md does not document {missing}"
    assert "make demo" in readme and "make test" in readme
