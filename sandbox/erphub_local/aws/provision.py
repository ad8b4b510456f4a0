"""Create the resources of a SAM template in the current moto backend, through boto3.

Resources are created on demand in dependency order (a Ref or GetAtt creates its target first),
so a circular reference is reported instead of looping. Event wiring (S3 notifications, SQS
event sources, SNS subscriptions, schedules) comes after every resource exists, as it does in
CloudFormation, so a function may name the bucket that triggers it.

Physical names are deterministic: the template's name property when there is one, otherwise
``<stack name>-<LogicalId>`` (lower case for buckets). Schedules are recorded, never fired: moto
does not run EventBridge schedules, the local runner fires them.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import boto3
import botocore.loaders
import botocore.session

from erphub_local.aws import inproc_lambda
from erphub_local.aws.template import (
    NO_OP_TYPES,
    Resolver,
    Resource,
    Template,
    TemplateError,
    apply_definition_substitutions,
    load_definition,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = [
    "EventSource",
    "FunctionInfo",
    "Notification",
    "Schedule",
    "Stack",
    "boto_session",
    "provision",
]

ROLE_NAME: Final = "erphub-local-execution-role"
_ASSUME_ROLE_POLICY: Final = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
_SAM_FUNCTION_DEFAULTS: Final = {"Timeout": 3, "MemorySize": 128}
_QUEUE_ATTRIBUTES: Final = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)
_RANDOM_PASSWORD_OPTIONS: Final = (
    "ExcludeCharacters",
    "ExcludeLowercase",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "IncludeSpace",
    "PasswordLength",
    "RequireEachIncludedType",
)

TargetKind = Literal["function", "state_machine"]


@dataclass(frozen=True)
class FunctionInfo:
    """A provisioned function and the environment its handler runs with."""

    logical_id: str
    name: str
    arn: str
    handler: str
    code_dir: str
    environment: dict[str, str]
    timeout: int
    memory: int


@dataclass(frozen=True)
class Schedule:
    """A Schedule/ScheduleV2 event of a function or state machine (SAM's logical id)."""

    logical_id: str
    kind: Literal["Schedule", "ScheduleV2"]
    target_kind: TargetKind
    target: str
    expression: str
    input: str | None
    enabled: bool
    source_arn: str


@dataclass(frozen=True)
class Notification:
    """One S3 bucket notification (SAM ``S3`` event or the bucket's own configuration)."""

    bucket: str
    target_kind: Literal["function", "queue", "topic"]
    target_arn: str
    events: tuple[str, ...]
    prefix: str | None
    suffix: str | None


@dataclass(frozen=True)
class EventSource:
    """An SQS event source mapping created for a SAM ``SQS`` event."""

    logical_id: str
    function: str
    source_arn: str
    batch_size: int
    uuid: str


@dataclass
class Stack:
    """What :func:`provision` created, by logical id."""

    name: str
    region: str
    account_id: str
    template_path: str
    parameters: dict[str, str | list[str]]
    types: dict[str, str] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    state_machines: dict[str, str] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    event_sources: list[EventSource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def physical(self, logical_id: str) -> str:
        """The resource's Ref value (name, URL or ARN, as CloudFormation defines it)."""
        return _known(self.physical_ids, logical_id, "resource")

    def attribute(self, logical_id: str, name: str) -> str:
        """The value of ``Fn::GetAtt logical_id.name``."""
        return _known(_known(self.attributes, logical_id, "resource"), name, "attribute")

    def function(self, logical_id: str) -> FunctionInfo:
        """The provisioned function ``logical_id``."""
        return _known(self.functions, logical_id, "function")

    def function_name(self, logical_id: str) -> str:
        """The physical name of a function."""
        return self.function(logical_id).name

    def function_arn(self, logical_id: str) -> str:
        """The ARN of a function."""
        return self.function(logical_id).arn

    def function_env(self, logical_id: str) -> dict[str, str]:
        """The resolved Environment variables of a function (Globals and overrides merged)."""
        return dict(self.function(logical_id).environment)

    def state_machine_arn(self, logical_id: str) -> str:
        """The ARN of a state machine."""
        return _known(self.state_machines, logical_id, "state machine")

    def schedule(self, logical_id: str) -> Schedule:
        """A recorded schedule, e.g. ``RossumScheduleFunctionEvery`` (resource + event name)."""
        return _known(self.schedules, logical_id, "schedule")

    def to_json(self) -> str:
        """The description as JSON (see :meth:`from_json`)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Stack:
        """Read a description written by :meth:`to_json`."""
        data = json.loads(text)
        data["functions"] = {k: FunctionInfo(**v) for k, v in data["functions"].items()}
        data["schedules"] = {k: Schedule(**v) for k, v in data["schedules"].items()}
        data["notifications"] = [
            Notification(**{**n, "events": tuple(n["events"])}) for n in data["notifications"]
        ]
        data["event_sources"] = [EventSource(**e) for e in data["event_sources"]]
        return cls(**data)


_V = TypeVar("_V")


_DATA_LOADER: Final = botocore.loaders.create_loader()


def boto_session(**kwargs: Any) -> boto3.session.Session:
    """A fresh boto3 session (credentials and endpoints read now) sharing one cache of service
    models, whose loading otherwise dominates provisioning time."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _DATA_LOADER)
    return boto3.session.Session(botocore_session=core, **kwargs)


def _known(mapping: Mapping[str, _V], key: str, what: str) -> _V:
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(f"no {what} {key!r}; known: {', '.join(sorted(mapping))}") from None


def provision(
    template_path: Path,
    *,
    parameters: Mapping[str, str] | None = None,
    secret_values: Mapping[str, dict[str, Any]] | None = None,
    env_overrides: Mapping[str, str] | None = None,
    stack_name: str | None = None,
) -> Stack:
    """Create every resource of the template in the moto backend boto3 currently talks to.

    ``secret_values`` gives the JSON value of secrets by logical id (others get the template's
    generated value); ``env_overrides`` is added to every function's environment. The stack
    name defaults to ``erphub-<Stage>`` (``erphub-local`` without a Stage parameter).
    """
    template = Template.load(template_path.resolve(), parameters)
    stage = template.parameters.get("Stage")
    name = stack_name or (f"erphub-{stage}" if isinstance(stage, str) else "erphub-local")
    unknown = sorted(
        set(secret_values or {})
        - {r.logical_id for r in template.of_type("AWS::SecretsManager::Secret")}
    )
    if unknown:
        raise TemplateError(f"secret_values names unknown secret(s): {', '.join(unknown)}")
    return _Provisioner(template, name, dict(secret_values or {}), dict(env_overrides or {})).run()


@dataclass
class _Created:
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


class _Provisioner:
    def __init__(
        self,
        template: Template,
        stack_name: str,
        secret_values: dict[str, dict[str, Any]],
        env_overrides: dict[str, str],
    ) -> None:
        self.template = template
        self.session = boto_session()
        if not self.session.region_name:
            raise TemplateError("no AWS region configured (set AWS_DEFAULT_REGION)")
        self.region: str = self.session.region_name
        self._clients: dict[str, Any] = {}
        self.account = str(self.client("sts").get_caller_identity()["Account"])
        self.secret_values = secret_values
        self.env_overrides = env_overrides
        self.stack = Stack(
            name=stack_name,
            region=self.region,
            account_id=self.account,
            template_path=str(template.path),
            parameters=dict(template.parameters),
        )
        self.resolver = Resolver(
            template,
            self._lookup,
            {
                "AWS::AccountId": self.account,
                "AWS::Region": self.region,
                "AWS::StackName": stack_name,
                "AWS::StackId": (
                    f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{stack_name}/local"
                ),
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
            },
        )
        self._created: dict[str, _Created] = {}
        self._creating: list[str] = []
        self._role_arn: str | None = None
        self._creators: dict[str, Callable[[Resource], _Created]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::SQS::Queue": self._queue,
            "AWS::SNS::Topic": self._topic,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::SSM::Parameter": self._ssm_parameter,
            "AWS::Serverless::Function": self._function,
            "AWS::Serverless::StateMachine": self._state_machine,
        }

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)  # type: ignore[call-overload]
        return self._clients[service]

    def run(self) -> Stack:
        for logical_id in self.template.resources:
            self._ensure(logical_id)
        _EventWiring(self).run()
        for name, output in self.template.outputs.items():
            self.stack.outputs[name] = self.resolver.resolve(output["Value"], f"output {name}")
        for logical_id, created in self._created.items():
            self.stack.types[logical_id] = self.template.resources[logical_id].type
            self.stack.physical_ids[logical_id] = created.ref
            self.stack.attributes[logical_id] = dict(created.attributes)
        return self.stack

    # --- resolution ------------------------------------------------------------------------------

    def _lookup(self, logical_id: str, attribute: str | None) -> str:
        self._ensure(logical_id)
        created = self._created[logical_id]
        if attribute is None:
            return created.ref
        if attribute not in created.attributes:
            resource_type = self.template.resources[logical_id].type
            raise TemplateError(
                f"{logical_id} ({resource_type}): attribute {attribute} is not available locally "
                f"(available: {', '.join(sorted(created.attributes)) or 'none'})"
            )
        return created.attributes[attribute]

    def _ensure(self, logical_id: str) -> None:
        if logical_id in self._created:
            return
        if logical_id in self._creating:
            cycle = [*self._creating[self._creating.index(logical_id) :], logical_id]
            raise TemplateError(f"circular reference: {' -> '.join(cycle)}")
        resource = self.template.resources[logical_id]
        self._creating.append(logical_id)
        try:
            creator = self._creators.get(resource.type, self._no_op)
            self._created[logical_id] = creator(resource)
        finally:
            self._creating.pop()

    def resolve(self, resource: Resource, name: str, default: Any = None) -> Any:
        """A resolved property (``default`` when absent)."""
        if name not in resource.properties:
            return default
        return self.resolver.resolve(resource.properties[name], f"{resource.logical_id}.{name}")

    def text(self, resource: Resource, name: str, default: str | None = None) -> str | None:
        """A resolved scalar property as text."""
        if name not in resource.properties:
            return default
        return self.resolver.text(resource.properties[name], f"{resource.logical_id}.{name}")

    def physical_name(self, resource: Resource, prop: str) -> str:
        """The name property if the template sets one, else ``<stack>-<LogicalId>``."""
        return self.text(resource, prop) or f"{self.stack.name}-{resource.logical_id}"

    def role_arn(self) -> str:
        # moto checks that a function's role exists; IAM is not enforced, so one role serves all.
        if self._role_arn is None:
            iam = self.client("iam")
            self._role_arn = str(
                iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=_ASSUME_ROLE_POLICY)[
                    "Role"
                ]["Arn"]
            )
        return self._role_arn

    # --- resources -------------------------------------------------------------------------------

    def _table(self, r: Resource) -> _Created:
        name = self.physical_name(r, "TableName")
        kwargs: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": self.resolve(r, "AttributeDefinitions"),
            "KeySchema": self.resolve(r, "KeySchema"),
            "BillingMode": self.text(r, "BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in r.properties:
            kwargs["ProvisionedThroughput"] = _throughput(self.resolve(r, "ProvisionedThroughput"))
        for prop in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if prop in r.properties:
                kwargs[prop] = [_index(index) for index in self.resolve(r, prop)]
        stream = self.resolve(r, "StreamSpecification")
        if stream:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        sse = self.resolve(r, "SSESpecification")
        if sse:
            kwargs["SSESpecification"] = {
                "Enabled": _bool(sse.get("SSEEnabled", False)),
                **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse},
            }
        ddb = self.client("dynamodb")
        description = ddb.create_table(**kwargs)["TableDescription"]
        ttl = self.resolve(r, "TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={
                    "Enabled": _bool(ttl.get("Enabled", False)),
                    "AttributeName": ttl["AttributeName"],
                },
            )
        attributes = {"Arn": description["TableArn"]}
        if "LatestStreamArn" in description:
            attributes["StreamArn"] = description["LatestStreamArn"]
        return _Created(name, attributes)

    def _bucket(self, r: Resource) -> _Created:
        name = self.physical_name(r, "BucketName").lower()
        s3 = self.client("s3")
        if self.region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        versioning = self.resolve(r, "VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": versioning["Status"]}
            )
        public_access = self.resolve(r, "PublicAccessBlockConfiguration")
        if public_access:
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={k: _bool(v) for k, v in public_access.items()},
            )
        encryption = self.resolve(r, "BucketEncryption")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        _encryption_rule(rule)
                        for rule in encryption["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        return _Created(
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            },
        )

    def _secret(self, r: Resource) -> _Created:
        name = self.physical_name(r, "Name")
        sm = self.client("secretsmanager")
        if r.logical_id in self.secret_values:
            value = json.dumps(self.secret_values[r.logical_id])
        elif "SecretString" in r.properties:
            value = str(self.text(r, "SecretString"))
        else:
            value = self._generated_secret(r, sm)
        arn = str(sm.create_secret(Name=name, SecretString=value)["ARN"])
        return _Created(arn, {"Id": arn})

    def _generated_secret(self, r: Resource, sm: Any) -> str:
        spec = self.resolve(r, "GenerateSecretString", {})
        options = {k: spec[k] for k in _RANDOM_PASSWORD_OPTIONS if k in spec}
        for key, value in options.items():
            options[key] = value if key == "ExcludeCharacters" else _typed_option(value)
        password = str(sm.get_random_password(**options)["RandomPassword"])
        if "GenerateStringKey" not in spec:
            return password
        document = json.loads(spec.get("SecretStringTemplate", "{}"))
        document[spec["GenerateStringKey"]] = password
        return json.dumps(document)

    def _queue(self, r: Resource) -> _Created:
        name = self.physical_name(r, "QueueName")
        fifo = _bool(self.resolve(r, "FifoQueue", False))
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[str, str] = {
            key: _attribute_text(self.resolve(r, key))
            for key in _QUEUE_ATTRIBUTES
            if key in r.properties
        }
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in r.properties:
                attributes[key] = json.dumps(self.resolve(r, key))
        sqs = self.client("sqs")
        url = str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return _Created(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _topic(self, r: Resource) -> _Created:
        name = self.physical_name(r, "TopicName")
        attributes = {
            key: _attribute_text(self.resolve(r, key))
            for key in ("FifoTopic", "ContentBasedDeduplication")
            if key in r.properties
        }
        if attributes.get("FifoTopic") == "true" and not name.endswith(".fifo"):
            name += ".fifo"
        arn = str(self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"])
        return _Created(arn, {"TopicArn": arn, "TopicName": name})

    def _subscription(self, r: Resource) -> _Created:
        attributes: dict[str, str] = {}
        for key in ("RawMessageDelivery", "FilterPolicyScope"):
            if key in r.properties:
                attributes[key] = _attribute_text(self.resolve(r, key))
        for key in ("FilterPolicy", "RedrivePolicy"):
            if key in r.properties:
                attributes[key] = json.dumps(self.resolve(r, key))
        arn = self.subscribe(
            str(self.text(r, "TopicArn")),
            str(self.text(r, "Protocol")),
            str(self.text(r, "Endpoint")),
            attributes,
        )
        return _Created(arn)

    def subscribe(
        self, topic_arn: str, protocol: str, endpoint: str, attributes: dict[str, str]
    ) -> str:
        """Subscribe ``endpoint`` to a topic; the subscription ARN."""
        response = self.client("sns").subscribe(
            TopicArn=topic_arn,
            Protocol=protocol,
            Endpoint=endpoint,
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )
        return str(response["SubscriptionArn"])

    def _ssm_parameter(self, r: Resource) -> _Created:
        name = self.physical_name(r, "Name")
        kwargs = {"Name": name, "Value": self.text(r, "Value"), "Type": self.text(r, "Type")}
        for key in ("Description", "AllowedPattern", "Tier", "DataType"):
            if key in r.properties:
                kwargs[key] = self.text(r, key)
        self.client("ssm").put_parameter(**kwargs)
        return _Created(name, {"Type": str(kwargs["Type"]), "Value": str(kwargs["Value"])})

    def _no_op(self, r: Resource) -> _Created:
        """Nothing to create; only the Ref/GetAtt values other resources may use."""
        assert r.type in NO_OP_TYPES  # the template module rejects other types
        prefix = f"arn:aws:{{}}:{self.region}:{self.account}"
        if r.type == "AWS::Serverless::LayerVersion":
            name = self.physical_name(r, "LayerName")
            return _Created(f"{prefix.format('lambda')}:layer:{name}:1")
        if r.type == "AWS::Logs::LogGroup":
            name = self.physical_name(r, "LogGroupName")
            return _Created(name, {"Arn": f"{prefix.format('logs')}:log-group:{name}:*"})
        if r.type == "AWS::CloudWatch::Alarm":
            name = self.physical_name(r, "AlarmName")
            return _Created(name, {"Arn": f"{prefix.format('cloudwatch')}:alarm:{name}"})
        if r.type == "AWS::CloudWatch::Dashboard":
            return _Created(self.physical_name(r, "DashboardName"))
        if r.type == "AWS::KMS::Key":
            # Nothing is encrypted locally; the key id is stable per stack and logical id.
            key_id = f"{self.stack.name}-{r.logical_id}"
            arn = f"{prefix.format('kms')}:key/{key_id}"
            return _Created(key_id, {"Arn": arn, "KeyId": key_id})
        return _Created(r.logical_id)

    def _function(self, r: Resource) -> _Created:
        where = r.logical_id
        for unsupported in ("InlineCode", "ImageUri"):
            if unsupported in r.properties:
                raise TemplateError(f"{where}: {unsupported} is not supported locally")
        if self.text(r, "PackageType", "Zip") != "Zip":
            raise TemplateError(f"{where}: only PackageType Zip is supported locally")
        runtime = str(self.text(r, "Runtime"))
        if not runtime.startswith("python"):
            raise TemplateError(f"{where}: runtime {runtime} cannot run in-process")
        code_uri = self.resolve(r, "CodeUri")
        if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
            raise TemplateError(f"{where}: CodeUri must be a local directory, got {code_uri!r}")
        name = self.physical_name(r, "FunctionName")
        handler = str(self.text(r, "Handler"))
        timeout = int(self.text(r, "Timeout", str(_SAM_FUNCTION_DEFAULTS["Timeout"])) or 0)
        memory = int(self.text(r, "MemorySize", str(_SAM_FUNCTION_DEFAULTS["MemorySize"])) or 0)
        variables = self.resolve(r, "Environment", {}).get("Variables", {})
        environment = {
            key: self.resolver.text(value, f"{where}.Environment.{key}")
            for key, value in variables.items()
        }
        environment.update(self.env_overrides)
        response = self.client("lambda").create_function(
            FunctionName=name,
            Runtime=runtime,
            Role=self.role_arn(),
            Handler=handler,
            Code={"ZipFile": _placeholder_zip()},
            Timeout=timeout,
            MemorySize=memory,
            Environment={"Variables": environment},
            Architectures=self.resolve(r, "Architectures", ["x86_64"]),
        )
        arn = str(response["FunctionArn"])
        code_dir = (self.template.base_dir / code_uri).resolve()
        spec = inproc_lambda.FunctionSpec(
            logical_id=r.logical_id,
            code_dir=code_dir,
            handler=handler,
            environment=environment,
            timeout=timeout,
            memory=memory,
        )
        inproc_lambda.register(spec, name, arn)
        self.stack.functions[r.logical_id] = FunctionInfo(
            r.logical_id, name, arn, handler, str(code_dir), environment, timeout, memory
        )
        return _Created(name, {"Arn": arn})

    def _state_machine(self, r: Resource) -> _Created:
        where = r.logical_id
        name = self.physical_name(r, "Name")
        substitutions = {
            key: self.resolver.text(value, f"{where}.DefinitionSubstitutions.{key}")
            for key, value in r.properties.get("DefinitionSubstitutions", {}).items()
        }
        if "Definition" in r.properties:
            definition = apply_definition_substitutions(
                json.dumps(self.resolve(r, "Definition")), substitutions, where
            )
        else:
            uri = self.resolve(r, "DefinitionUri")
            if not isinstance(uri, str) or uri.startswith("s3://"):
                raise TemplateError(f"{where}: DefinitionUri must be a local file, got {uri!r}")
            definition = load_definition(self.template.base_dir / uri, substitutions, where)
        arn = str(
            self.client("stepfunctions").create_state_machine(
                name=name,
                definition=definition,
                roleArn=self.role_arn(),
                type=self.text(r, "Type", "STANDARD"),
            )["stateMachineArn"]
        )
        self.stack.state_machines[r.logical_id] = arn
        return _Created(arn, {"Arn": arn, "Name": name})


class _EventWiring:
    """Everything that connects resources once they all exist."""

    def __init__(self, provisioner: _Provisioner) -> None:
        self.p = provisioner
        self.bucket_configs: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def run(self) -> None:
        template = self.p.template
        for bucket in template.of_type("AWS::S3::Bucket"):
            self._native_notifications(bucket)
        for function in template.of_type("AWS::Serverless::Function"):
            for event_name, event in function.properties.get("Events", {}).items():
                self._function_event(function, event_name, event)
        for state_machine in template.of_type("AWS::Serverless::StateMachine"):
            for event_name, event in state_machine.properties.get("Events", {}).items():
                self._schedule(state_machine, "state_machine", event_name, event)
        for topic in template.of_type("AWS::SNS::Topic"):
            for i, sub in enumerate(self.p.resolve(topic, "Subscription", [])):
                where = f"{topic.logical_id}.Subscription[{i}]"
                if set(sub) != {"Endpoint", "Protocol"}:
                    raise TemplateError(f"{where}: expected exactly Endpoint and Protocol")
                topic_arn = self.p.resolver.text({"Ref": topic.logical_id}, where)
                self.p.subscribe(topic_arn, sub["Protocol"], sub["Endpoint"], {})
        s3 = self.p.client("s3")
        for bucket_id, config in self.bucket_configs.items():
            s3.put_bucket_notification_configuration(
                Bucket=self.p.resolver.text({"Ref": bucket_id}, bucket_id),
                NotificationConfiguration=config,
            )

    def _function_event(self, function: Resource, event_name: str, event: dict[str, Any]) -> None:
        event_type = event.get("Type")
        if event_type in {"Schedule", "ScheduleV2"}:
            self._schedule(function, "function", event_name, event)
        elif event_type == "S3":
            self._s3_event(function, event_name, event)
        elif event_type == "SQS":
            self._sqs_event(function, event_name, event)
        elif event_type == "SNS":
            self._sns_event(function, event_name, event)
        else:
            raise TemplateError(
                f"{function.logical_id}: event {event_name} of type {event_type} is not "
                "supported locally"
            )

    def _props(self, resource: Resource, event_name: str, event: dict[str, Any]) -> dict[str, Any]:
        where = f"{resource.logical_id}.Events.{event_name}"
        props = self.p.resolver.resolve(event.get("Properties", {}), where)
        if not isinstance(props, dict):
            raise TemplateError(f"{where}: Properties must be a mapping")
        return props

    def _schedule(
        self, resource: Resource, kind: TargetKind, event_name: str, event: dict[str, Any]
    ) -> None:
        event_type = event.get("Type")
        logical_id = f"{resource.logical_id}{event_name}"
        if event_type not in {"Schedule", "ScheduleV2"}:
            raise TemplateError(
                f"{resource.logical_id}: event {event_name} of type {event_type} is not "
                "supported locally"
            )
        props = self._props(resource, event_name, event)
        p = self.p
        name = props.get("Name") or f"{p.stack.name}-{logical_id}"
        if event_type == "Schedule":
            expression = props["Schedule"]
            enabled = _bool(props.get("Enabled", True)) and props.get("State") != "DISABLED"
            source = f"arn:aws:events:{p.region}:{p.account}:rule/{name}"
        else:
            expression = props["ScheduleExpression"]
            enabled = props.get("State", "ENABLED") != "DISABLED"
            group = props.get("GroupName", "default")
            source = f"arn:aws:scheduler:{p.region}:{p.account}:schedule/{group}/{name}"
        schedule_input = props.get("Input")
        if schedule_input is not None and not isinstance(schedule_input, str):
            raise TemplateError(f"{resource.logical_id}.Events.{event_name}: Input must be text")
        p.stack.schedules[logical_id] = Schedule(
            logical_id=logical_id,
            kind=event_type,
            target_kind=kind,
            target=resource.logical_id,
            expression=str(expression),
            input=schedule_input,
            enabled=enabled,
            source_arn=source,
        )

    def _s3_event(self, function: Resource, event_name: str, event: dict[str, Any]) -> None:
        where = f"{function.logical_id}.Events.{event_name}"
        raw_bucket = event.get("Properties", {}).get("Bucket")
        bucket_id = raw_bucket.get("Ref") if isinstance(raw_bucket, dict) else None
        resource = self.p.template.resources.get(str(bucket_id))
        if resource is None or resource.type != "AWS::S3::Bucket":
            raise TemplateError(f"{where}: Bucket must be a Ref to a bucket of this template")
        props = self._props(function, event_name, event)
        events = props["Events"] if isinstance(props["Events"], list) else [props["Events"]]
        rules = props.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        self._add_notification(
            resource.logical_id,
            "function",
            self.p.stack.function_arn(function.logical_id),
            events,
            rules,
        )

    def _native_notifications(self, bucket: Resource) -> None:
        config = self.p.resolve(bucket, "NotificationConfiguration", {})
        kinds: dict[str, tuple[Literal["function", "queue", "topic"], str]] = {
            "LambdaConfigurations": ("function", "Function"),
            "QueueConfigurations": ("queue", "Queue"),
            "TopicConfigurations": ("topic", "Topic"),
        }
        for key in config:
            if key not in kinds:
                raise TemplateError(
                    f"{bucket.logical_id}.NotificationConfiguration: {key} is not supported locally"
                )
            kind, target_key = kinds[key]
            for item in config[key]:
                rules = item.get("Filter", {}).get("S3Key", {}).get("Rules", [])
                self._add_notification(
                    bucket.logical_id, kind, item[target_key], [item["Event"]], rules
                )

    def _add_notification(
        self,
        bucket_id: str,
        kind: Literal["function", "queue", "topic"],
        target_arn: str,
        events: list[str],
        rules: list[dict[str, str]],
    ) -> None:
        filters = {rule["Name"].lower(): rule["Value"] for rule in rules}
        entry: dict[str, Any] = {"Events": events}
        if filters:
            entry["Filter"] = {
                "Key": {"FilterRules": [{"Name": k, "Value": v} for k, v in filters.items()]}
            }
        api_key, arn_key = {
            "function": ("LambdaFunctionConfigurations", "LambdaFunctionArn"),
            "queue": ("QueueConfigurations", "QueueArn"),
            "topic": ("TopicConfigurations", "TopicArn"),
        }[kind]
        entry[arn_key] = target_arn
        self.bucket_configs.setdefault(bucket_id, {}).setdefault(api_key, []).append(entry)
        self.p.stack.notifications.append(
            Notification(
                bucket=bucket_id,
                target_kind=kind,
                target_arn=target_arn,
                events=tuple(events),
                prefix=filters.get("prefix"),
                suffix=filters.get("suffix"),
            )
        )

    def _sqs_event(self, function: Resource, event_name: str, event: dict[str, Any]) -> None:
        props = self._props(function, event_name, event)
        batch_size = int(props.get("BatchSize", 10))
        kwargs: dict[str, Any] = {
            "EventSourceArn": props["Queue"],
            "FunctionName": self.p.stack.function_arn(function.logical_id),
            "BatchSize": batch_size,
            "Enabled": _bool(props.get("Enabled", True)),
        }
        if "FunctionResponseTypes" in props:
            kwargs["FunctionResponseTypes"] = props["FunctionResponseTypes"]
        mapping = self.p.client("lambda").create_event_source_mapping(**kwargs)
        self.p.stack.event_sources.append(
            EventSource(
                logical_id=f"{function.logical_id}{event_name}",
                function=function.logical_id,
                source_arn=str(props["Queue"]),
                batch_size=batch_size,
                uuid=str(mapping["UUID"]),
            )
        )

    def _sns_event(self, function: Resource, event_name: str, event: dict[str, Any]) -> None:
        props = self._props(function, event_name, event)
        attributes = {}
        if "FilterPolicy" in props:
            attributes["FilterPolicy"] = json.dumps(props["FilterPolicy"])
        self.p.subscribe(
            str(props["Topic"]),
            "lambda",
            self.p.stack.function_arn(function.logical_id),
            attributes,
        )


def _bool(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _attribute_text(value: Any) -> str:
    """The text form AWS attribute maps want (booleans in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _typed_option(value: Any) -> Any:
    """Template text to the bool/int GetRandomPassword expects."""
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _throughput(value: dict[str, Any]) -> dict[str, int]:
    return {
        "ReadCapacityUnits": int(value["ReadCapacityUnits"]),
        "WriteCapacityUnits": int(value["WriteCapacityUnits"]),
    }


def _index(index: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation secondary index as the CreateTable API wants it."""
    result = {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
    if "ProvisionedThroughput" in index:
        result["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return result


def _encryption_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation bucket encryption rule as PutBucketEncryption wants it."""
    result: dict[str, Any] = {}
    if "ServerSideEncryptionByDefault" in rule:
        result["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
    if "BucketKeyEnabled" in rule:
        result["BucketKeyEnabled"] = _bool(rule["BucketKeyEnabled"])
    return result


def _placeholder_zip() -> bytes:
    """moto wants a code package; the handler itself is loaded from CodeUri."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Code is loaded from the template's CodeUri.\n")
    return buffer.getvalue()
