"""Read a SAM template the way CloudFormation would, for the local stack.

Only what the local stack can honour is accepted. Anything else (an unknown resource type, an
intrinsic function or section that is not implemented here) raises :class:`TemplateError` naming
the resource and the construct, so template drift breaks the demo and the tests instead of being
silently ignored. Simple Conditions (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or`` and
``Condition`` on parameters) are evaluated once the parameters are known: a resource or output
whose condition is false is left out, as CloudFormation does; ``Fn::If`` is not supported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from samtranslator.yaml_helper import yaml_parse

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "NO_OP_TYPES",
    "SUPPORTED_TYPES",
    "Resolver",
    "Resource",
    "Template",
    "TemplateError",
    "apply_definition_substitutions",
    "load_definition",
]

SERVERLESS_TRANSFORM: Final = "AWS::Serverless-2016-10-31"

#: Resource types the local stack creates or records.
CREATED_TYPES: Final = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::SNS::Subscription",
        "AWS::SSM::Parameter",
        "AWS::Serverless::Function",
        "AWS::Serverless::StateMachine",
    }
)
#: Resource types that mean nothing locally (moto enforces no resource policy, nothing is alarmed
#: on); they still have a Ref so that other resources may point at them.
NO_OP_TYPES: Final = frozenset(
    {
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::Serverless::LayerVersion",
        "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::KMS::Key",
    }
)
SUPPORTED_TYPES: Final = CREATED_TYPES | NO_OP_TYPES

_INTRINSICS: Final = frozenset(
    {"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::FindInMap"}
)
_TOP_LEVEL: Final = frozenset(
    {
        "AWSTemplateFormatVersion",
        "Transform",
        "Description",
        "Metadata",
        "Parameters",
        "Mappings",
        "Conditions",
        "Globals",
        "Resources",
        "Outputs",
    }
)
#: Globals sections and the resource type they apply to (LayerVersion globals change nothing here).
_GLOBALS: Final = {
    "Function": "AWS::Serverless::Function",
    "StateMachine": "AWS::Serverless::StateMachine",
    "LayerVersion": "AWS::Serverless::LayerVersion",
}
_PARAMETER_TYPES: Final = frozenset({"String", "Number", "CommaDelimitedList", "List<Number>"})
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFINITION_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class TemplateError(Exception):
    """The template uses something the local stack does not understand (or is invalid)."""


@dataclass(frozen=True)
class Resource:
    """One resource of the template, Globals already merged into its properties."""

    logical_id: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Template:
    """A parsed, checked template with its parameter values resolved."""

    path: Path
    parameters: dict[str, str | list[str]]
    resources: dict[str, Resource]
    outputs: dict[str, Any]
    mappings: dict[str, Any]
    #: each condition of the Conditions section, evaluated with the parameter values
    conditions: dict[str, bool] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The directory that CodeUri and DefinitionUri are relative to."""
        return self.path.parent

    @classmethod
    def load(cls, path: Path, overrides: Mapping[str, str] | None = None) -> Template:
        """Parse ``path`` and resolve its parameters (``overrides`` win over defaults)."""
        doc = yaml_parse(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise TemplateError(f"{path}: not a template (top level is not a mapping)")
        return cls.from_dict(doc, path, overrides)

    @classmethod
    def from_dict(
        cls, doc: dict[str, Any], path: Path, overrides: Mapping[str, str] | None = None
    ) -> Template:
        """Check an already parsed template document; ``path`` locates relative URIs."""
        _check_top_level(doc)
        resources_doc = doc.get("Resources")
        if not isinstance(resources_doc, dict) or not resources_doc:
            raise TemplateError("the template has no Resources")
        parameters = _resolve_parameters(doc.get("Parameters") or {}, overrides or {})
        conditions = _evaluate_conditions(doc.get("Conditions") or {}, parameters)
        globals_doc = _check_globals(doc.get("Globals") or {})
        resources: dict[str, Resource] = {}
        for logical_id, body in resources_doc.items():
            if _included(body, conditions, logical_id):
                resources[logical_id] = _resource(logical_id, body, globals_doc)
        outputs = {}
        for name, output in (doc.get("Outputs") or {}).items():
            if _included(output, conditions, f"output {name}"):
                _check_intrinsics(output, f"output {name}")
                outputs[name] = output
        return cls(
            path=path,
            parameters=parameters,
            resources=resources,
            outputs=outputs,
            mappings=doc.get("Mappings") or {},
            conditions=conditions,
        )

    def of_type(self, resource_type: str) -> list[Resource]:
        """The resources of one type, in template order."""
        return [r for r in self.resources.values() if r.type == resource_type]


def _check_top_level(doc: dict[str, Any]) -> None:
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise TemplateError(f"unsupported template section(s): {', '.join(unknown)}")
    transforms = doc.get("Transform", [])
    for transform in [transforms] if isinstance(transforms, str) else transforms:
        if transform != SERVERLESS_TRANSFORM:
            raise TemplateError(f"transform {transform!r} is not supported locally")


def _check_globals(globals_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    for section, props in globals_doc.items():
        if section not in _GLOBALS:
            raise TemplateError(f"Globals section {section!r} is not supported locally")
        _check_intrinsics(props, f"Globals.{section}")
    return {_GLOBALS[section]: props for section, props in globals_doc.items()}


def _resource(logical_id: str, body: Any, globals_doc: dict[str, dict[str, Any]]) -> Resource:
    if not isinstance(body, dict) or "Type" not in body:
        raise TemplateError(f"{logical_id}: a resource needs a Type")
    resource_type = body["Type"]
    if resource_type not in SUPPORTED_TYPES:
        raise TemplateError(f"{logical_id}: resource type {resource_type} is not supported locally")
    properties = body.get("Properties") or {}
    _check_intrinsics(properties, logical_id)
    if resource_type in globals_doc:
        properties = merge_globals(globals_doc[resource_type], properties)
    return Resource(logical_id, resource_type, properties)


def _included(body: Any, conditions: Mapping[str, bool], where: str) -> bool:
    """Whether a resource or output is in the stack: its ``Condition`` is true, or it has none."""
    if not isinstance(body, dict) or "Condition" not in body:
        return True
    name = body["Condition"]
    if not isinstance(name, str) or name not in conditions:
        raise TemplateError(f"{where}: Condition {name!r} is not in the Conditions section")
    return conditions[name]


def _evaluate_conditions(
    declared: Any, parameters: Mapping[str, str | list[str]]
) -> dict[str, bool]:
    """Every condition's value; conditions may name each other (``Condition``), not in a cycle."""
    if not isinstance(declared, dict):
        raise TemplateError("the Conditions section must be a mapping")
    conditions = _Conditions(declared, parameters)
    return {name: conditions.value(name, "Conditions") for name in declared}


class _Conditions:
    """Evaluates the Conditions section, each condition once."""

    def __init__(self, declared: dict[str, Any], parameters: Mapping[str, str | list[str]]) -> None:
        self._declared = declared
        self._parameters = parameters
        self._values: dict[str, bool] = {}
        self._evaluating: list[str] = []

    def value(self, name: Any, where: str) -> bool:
        if not isinstance(name, str) or name not in self._declared:
            raise TemplateError(f"{where}: unknown condition {name!r}")
        if name not in self._values:
            if name in self._evaluating:
                cycle = " -> ".join([*self._evaluating[self._evaluating.index(name) :], name])
                raise TemplateError(f"condition {name}: circular reference {cycle}")
            self._evaluating.append(name)
            self._values[name] = self._evaluate(self._declared[name], f"condition {name}")
            self._evaluating.pop()
        return self._values[name]

    def _operand(self, value: Any, where: str) -> str:
        if isinstance(value, dict) and set(value) == {"Ref"}:
            ref = value["Ref"]
            if not isinstance(ref, str) or ref not in self._parameters:
                raise TemplateError(f"{where}: conditions may only Ref parameters, not {ref!r}")
            resolved = self._parameters[ref]
            return ",".join(resolved) if isinstance(resolved, list) else resolved
        return _scalar_text(value, where)

    def _evaluate(self, expression: Any, where: str) -> bool:
        if not (isinstance(expression, dict) and len(expression) == 1):
            raise TemplateError(f"{where}: expected one condition function, got {expression!r}")
        function, args = next(iter(expression.items()))
        if function == "Condition":
            return self.value(args, where)
        if function == "Fn::Equals" and isinstance(args, list) and len(args) == 2:
            return self._operand(args[0], where) == self._operand(args[1], where)
        if function == "Fn::Not" and isinstance(args, list) and len(args) == 1:
            return not self._evaluate(args[0], where)
        if function in {"Fn::And", "Fn::Or"} and isinstance(args, list) and 2 <= len(args) <= 10:
            results = [self._evaluate(arg, where) for arg in args]
            return all(results) if function == "Fn::And" else any(results)
        raise TemplateError(f"{where}: condition function {function} is not supported locally")


def _check_intrinsics(value: Any, where: str) -> None:
    """Reject intrinsics and dynamic references the resolver does not implement, up front."""
    if isinstance(value, dict):
        for key, item in value.items():
            is_function = key.startswith("Fn::") or key == "Condition"
            if is_function and len(value) == 1 and key not in _INTRINSICS:
                raise TemplateError(f"{where}: intrinsic function {key} is not supported")
            _check_intrinsics(item, where)
    elif isinstance(value, list):
        for item in value:
            _check_intrinsics(item, where)
    elif isinstance(value, str) and "{{resolve:" in value:
        raise TemplateError(f"{where}: dynamic references ({{{{resolve:...}}}}) are not supported")


def _is_intrinsic(value: Any) -> bool:
    if not (isinstance(value, dict) and len(value) == 1):
        return False
    key = str(next(iter(value)))
    return key == "Ref" or key.startswith("Fn::")


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rule: maps merge (the resource wins), lists add up, scalars are replaced.

    An intrinsic function counts as a scalar, as in SAM.
    """
    if (
        isinstance(global_value, dict)
        and isinstance(local_value, dict)
        and not _is_intrinsic(global_value)
        and not _is_intrinsic(local_value)
    ):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _resolve_parameters(
    declared: dict[str, Any], overrides: Mapping[str, str]
) -> dict[str, str | list[str]]:
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, str | list[str]] = {}
    for name, decl in declared.items():
        kind = decl.get("Type", "String")
        if kind not in _PARAMETER_TYPES:
            raise TemplateError(f"parameter {name}: type {kind} is not supported locally")
        raw = overrides.get(name, decl.get("Default"))
        if raw is None:
            raise TemplateError(f"parameter {name} has no Default and no value was given")
        value = _scalar_text(raw, f"parameter {name}")
        _validate_parameter(name, decl, value)
        if kind in {"CommaDelimitedList", "List<Number>"}:
            values[name] = [item.strip() for item in value.split(",")]
        else:
            values[name] = value
    return values


def _validate_parameter(name: str, decl: dict[str, Any], value: str) -> None:
    allowed = decl.get("AllowedValues")
    if allowed is not None and value not in [_scalar_text(a, name) for a in allowed]:
        raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
    pattern = decl.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise TemplateError(f"parameter {name}={value!r} does not match {pattern!r}")
    if "MinLength" in decl and len(value) < int(decl["MinLength"]):
        raise TemplateError(f"parameter {name}={value!r} is shorter than {decl['MinLength']}")
    if "MaxLength" in decl and len(value) > int(decl["MaxLength"]):
        raise TemplateError(f"parameter {name}={value!r} is longer than {decl['MaxLength']}")
    if decl.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            raise TemplateError(f"parameter {name}={value!r} is not a number") from None
        if "MinValue" in decl and number < float(decl["MinValue"]):
            raise TemplateError(f"parameter {name}={value} is below {decl['MinValue']}")
        if "MaxValue" in decl and number > float(decl["MaxValue"]):
            raise TemplateError(f"parameter {name}={value} is above {decl['MaxValue']}")


def _scalar_text(value: Any, where: str) -> str:
    """CloudFormation's text form of a scalar (booleans are lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {json.dumps(value, default=str)}")


class Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters and resources.

    ``lookup(logical_id, attribute)`` answers Ref (``attribute`` None) and GetAtt on resources,
    creating them on demand if needed; ``pseudo`` holds ``AWS::Region`` and friends.
    """

    def __init__(
        self,
        template: Template,
        lookup: Callable[[str, str | None], Any],
        pseudo: Mapping[str, str],
    ) -> None:
        self._template = template
        self._lookup = lookup
        self._pseudo = pseudo

    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with every intrinsic function replaced by its value."""
        if isinstance(value, list):
            return [self.resolve(item, where) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref":
                return self._ref(arg, where)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg, where)
        return {key: self.resolve(item, where) for key, item in value.items()}

    def text(self, value: Any, where: str) -> str:
        """Resolve ``value`` and require a scalar, returned as CloudFormation text."""
        return _scalar_text(self.resolve(value, where), where)

    def _function(self, key: str, arg: Any, where: str) -> Any:
        handlers: dict[str, Callable[[Any, str], Any]] = {
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::FindInMap": self._find_in_map,
        }
        handler = handlers.get(key)
        if handler is None:
            raise TemplateError(f"{where}: intrinsic function {key} is not supported")
        return handler(arg, where)

    def _ref(self, name: Any, where: str) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"{where}: Ref needs a name, got {name!r}")
        if name in self._template.parameters:
            return self._template.parameters[name]
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._template.resources:
            return self._lookup(name, None)
        raise TemplateError(f"{where}: Ref to unknown parameter or resource {name!r}")

    def _get_att(self, arg: Any, where: str) -> Any:
        if isinstance(arg, str):
            logical_id, _, attribute = arg.partition(".")
        elif isinstance(arg, list) and len(arg) == 2:
            logical_id, attribute = arg[0], self.text(arg[1], where)
        else:
            raise TemplateError(f"{where}: malformed Fn::GetAtt {arg!r}")
        if logical_id not in self._template.resources:
            raise TemplateError(f"{where}: Fn::GetAtt on unknown resource {logical_id!r}")
        if not attribute:
            raise TemplateError(f"{where}: Fn::GetAtt {logical_id} names no attribute")
        return self._lookup(logical_id, attribute)

    def _sub(self, arg: Any, where: str) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
            text, variables = arg[0], {k: self.text(v, where) for k, v in arg[1].items()}
        else:
            raise TemplateError(f"{where}: malformed Fn::Sub {arg!r}")
        if not isinstance(text, str):
            raise TemplateError(f"{where}: Fn::Sub needs a string, got {text!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return variables[name]
            if name in self._template.parameters or name in self._pseudo:
                return self.text({"Ref": name}, where)
            head, _, attribute = name.partition(".")
            if head in self._template.resources:
                return self.text(
                    {"Fn::GetAtt": [head, attribute]} if attribute else {"Ref": head}, where
                )
            raise TemplateError(f"{where}: Fn::Sub variable ${{{name}}} is not defined")

        return _SUB_VARIABLE.sub(replace, text)

    def _join(self, arg: Any, where: str) -> str:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: malformed Fn::Join {arg!r}")
        delimiter = self.text(arg[0], where)
        items = self.resolve(arg[1], where)
        if not isinstance(items, list):
            raise TemplateError(f"{where}: Fn::Join needs a list, got {items!r}")
        return delimiter.join(_scalar_text(item, where) for item in items)

    def _select(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: malformed Fn::Select {arg!r}")
        index = int(self.text(arg[0], where))
        items = self.resolve(arg[1], where)
        if not isinstance(items, list) or not 0 <= index < len(items):
            raise TemplateError(f"{where}: Fn::Select index {index} out of range of {items!r}")
        return items[index]

    def _split(self, arg: Any, where: str) -> list[str]:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise TemplateError(f"{where}: malformed Fn::Split {arg!r}")
        return self.text(arg[1], where).split(self.text(arg[0], where))

    def _find_in_map(self, arg: Any, where: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3):
            raise TemplateError(f"{where}: malformed Fn::FindInMap {arg!r}")
        map_name, top, second = (self.text(item, where) for item in arg)
        try:
            return self._template.mappings[map_name][top][second]
        except KeyError:
            raise TemplateError(
                f"{where}: Fn::FindInMap has no entry {map_name}/{top}/{second}"
            ) from None


def apply_definition_substitutions(
    definition: str, substitutions: Mapping[str, str], where: str
) -> str:
    """Replace ``${Name}`` in an ASL definition; a variable left over is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise TemplateError(
                f"{where}: ${{{name}}} in the definition is not in DefinitionSubstitutions"
            )
        return substitutions[name]

    text = _DEFINITION_VARIABLE.sub(replace, definition)
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{where}: the definition is not valid JSON: {exc}") from None
    return text


def load_definition(path: Path, substitutions: Mapping[str, str], where: str) -> str:
    """Read an ASL file and apply DefinitionSubstitutions to it (see above)."""
    if not path.is_file():
        raise TemplateError(f"{where}: DefinitionUri {path} does not exist")
    return apply_definition_substitutions(path.read_text(encoding="utf-8"), substitutions, where)
