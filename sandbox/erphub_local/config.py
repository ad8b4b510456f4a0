"""Local configuration: the environment variables of DESIGN §3 -> template parameters and secrets.

The same names configure a local stack and a deployed one; locally, the credentials are put into
the emulated Secrets Manager, so the handlers read them exactly as they do in AWS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import dotenv_values

if TYPE_CHECKING:
    from collections.abc import Iterable

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
STATE_DIR = ROOT / ".erphub"

#: environment variable -> template parameter
PARAMETERS = {
    "ROSSUM_BASE_URL": "RossumBaseUrl",
    "ROSSUM_QUEUE_IDS": "RossumQueueIds",
    "ERP_BASE_URL": "ErpBaseUrl",
    "ERP_CONCURRENCY": "ErpConcurrency",
    "ERPHUB_LEASE_SECONDS": "LeaseSeconds",
    "ERPHUB_REJECT_POLICY": "RejectPolicy",
    "ERPHUB_REJECT_ATTEMPTS": "RejectAttempts",
    "BEQOM_TOKEN_URL": "BeqomTokenUrl",
    "BEQOM_IMPORT_URL": "BeqomImportUrl",
    "BEQOM_MAX_CONCURRENCY": "BeqomMaxConcurrency",
    "PROCUROS_BASE_URL": "ProcurosBaseUrl",
    "PROCUROS_ERROR_REPORT_AFTER": "ProcurosErrorReportAfter",
    "PROCUROS_DOCUMENT_TYPES": "ProcurosDocumentTypes",
    "PROCUROS_SEND_SCHEDULE": "ProcurosSendSchedule",
    "PROCUROS_KNOWN_PARTNERS_DAYS": "ProcurosKnownPartnersDays",
    "EBILL_BASE_URL": "EbillBaseUrl",
    "EBILL_AUTH_SCHEME": "EbillAuthScheme",
    "EBILL_AUTH_HEADER": "EbillAuthHeader",
    "EBILL_DROP_PREFIX": "EbillDropPrefix",
    "EBILL_POLL_INITIAL_SECONDS": "EbillPollInitialSeconds",
    "EBILL_POLL_MAX_SECONDS": "EbillPollMaxSeconds",
    "EBILL_POLL_DEADLINE_SECONDS": "EbillPollDeadlineSeconds",
    # an SSM parameter name holding a mapping file (see erphub.mapfile)
    "ROSSUM_MAPPING_PARAMETER": "RossumMappingParameter",
    "PROCUROS_MAPPING_PARAMETER": "ProcurosMappingParameter",
}
#: secret logical id -> {secret field: environment variable}
SECRETS = {
    "RossumSecret": {"username": "ROSSUM_USERNAME", "password": "ROSSUM_PASSWORD"},
    "ErpSecret": {"apiToken": "ERP_API_TOKEN"},
    "BeqomSecret": {"clientId": "BEQOM_CLIENT_ID", "clientSecret": "BEQOM_CLIENT_SECRET"},
    "ProcurosSecret": {"apiToken": "PROCUROS_API_TOKEN"},
    "EbillSecret": {"username": "EBILL_USERNAME", "password": "EBILL_PASSWORD"},
}
#: passed to every function as is (HTTP tuning)
PASSTHROUGH = (
    "HTTP_TIMEOUT_SECONDS",
    "HTTP_MAX_ATTEMPTS",
    "HTTP_BACKOFF_SECONDS",
    "HTTP_MAX_RETRY_AFTER_SECONDS",
    "LOG_LEVEL",
    # a mapping file path (or ssm:/name), overriding the template's parameter locally
    "ROSSUM_MAPPING",
    "PROCUROS_MAPPING",
)


@dataclass
class LocalConfig:
    """What a local stack is provisioned with."""

    parameters: dict[str, str] = field(default_factory=dict)
    secret_values: dict[str, dict[str, str]] = field(default_factory=dict)
    env_overrides: dict[str, str] = field(default_factory=dict)

    def missing(self, variables: Iterable[str]) -> list[str]:
        """Those of ``variables`` that are not set."""
        secret_fields = {
            variable: (secret, key)
            for secret, fields in SECRETS.items()
            for key, variable in fields.items()
        }
        lacking = []
        for variable in variables:
            if variable in PARAMETERS:
                present = PARAMETERS[variable] in self.parameters
            elif variable in secret_fields:
                secret, key = secret_fields[variable]
                present = key in self.secret_values.get(secret, {})
            else:
                present = variable in self.env_overrides
            if not present:
                lacking.append(variable)
        return lacking


def environment(env: dict[str, str] | None = None, env_file: Path | None = None) -> dict[str, str]:
    """``env`` (default: os.environ) over the variables of a ``.env`` file (default: the root's)."""
    values: dict[str, str] = {}
    dotenv = env_file if env_file is not None else ROOT / ".env"
    if dotenv.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if env is None else env)
    return values


def load(env: dict[str, str] | None = None, env_file: Path | None = None) -> LocalConfig:
    """Read the configuration from ``env`` (default: os.environ) over a ``.env`` file."""
    values = environment(env, env_file)
    config = LocalConfig()
    for variable, parameter in PARAMETERS.items():
        if values.get(variable):
            config.parameters[parameter] = values[variable]
    for secret, fields in SECRETS.items():
        secret_value = {key: values[var] for key, var in fields.items() if values.get(var)}
        if secret_value:
            config.secret_values[secret] = secret_value
    config.env_overrides = {k: values[k] for k in PASSTHROUGH if values.get(k)}
    return config
