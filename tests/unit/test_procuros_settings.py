"""Procuros send settings and credentials: checked at cold start, errors name the variable."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from erphub.errors import ConfigurationError
from erphub.settings.procuros import (
    ProcurosListSettings,
    ProcurosScheduleSettings,
    ProcurosSendSettings,
    procuros_credentials,
)

BASE = {
    "LEDGER_TABLE": "ledger",
    "PAYLOAD_BUCKET": "payloads",
    "ERP_BASE_URL": "https://erp.example.com/api",
    "PROCUROS_BASE_URL": "https://api.procuros.io/v2",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    for name in (
        "PROCUROS_ERROR_REPORT_AFTER",
        "PROCUROS_DOCUMENT_TYPES",
        "PROCUROS_KNOWN_PARTNERS_DAYS",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_send_the_four_types_and_report_after_three_failures(
    env: pytest.MonkeyPatch,
) -> None:
    settings = ProcurosSendSettings.from_env()
    assert settings.procuros_error_report_after == 3
    assert settings.document_types == {
        "INVOICE",
        "ORDER_RESPONSE",
        "SHIPPING_NOTICE",
        "CREDIT_NOTE",
    }


def test_the_document_types_are_configurable(env: pytest.MonkeyPatch) -> None:
    env.setenv("PROCUROS_DOCUMENT_TYPES", " INVOICE , CREDIT_NOTE,INVOICE")
    env.setenv("PROCUROS_ERROR_REPORT_AFTER", "5")
    settings = ProcurosSendSettings.from_env()
    assert settings.document_types == {"INVOICE", "CREDIT_NOTE"}
    assert settings.procuros_error_report_after == 5


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PROCUROS_BASE_URL", "https://api.procuros.io", "PROCUROS_BASE_URL must end in /v2"),
        ("PROCUROS_DOCUMENT_TYPES", "INVOICE,PAYMENT", "unknown: PAYMENT"),
        ("PROCUROS_DOCUMENT_TYPES", " , ", "unknown: none given"),
        ("PROCUROS_ERROR_REPORT_AFTER", "0", "procuros_error_report_after"),
    ],
)
def test_a_wrong_setting_fails_the_cold_start_naming_it(
    env: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        ProcurosSendSettings.from_env()


def test_dry_runs_read_a_year_of_procuros_history_unless_told_otherwise(
    env: pytest.MonkeyPatch,
) -> None:
    assert ProcurosListSettings.from_env().procuros_known_partners_days == 365
    env.setenv("PROCUROS_KNOWN_PARTNERS_DAYS", "0")
    assert ProcurosListSettings.from_env().procuros_known_partners_days == 0
    env.setenv("PROCUROS_KNOWN_PARTNERS_DAYS", "-1")
    with pytest.raises(ValidationError, match="procuros_known_partners_days"):
        ProcurosListSettings.from_env()


def test_the_list_step_needs_the_procuros_url_for_its_dry_runs(env: pytest.MonkeyPatch) -> None:
    env.delenv("PROCUROS_BASE_URL")
    with pytest.raises(ValidationError, match="procuros_base_url"):
        ProcurosListSettings.from_env()


def test_the_scheduler_needs_its_state_machine(env: pytest.MonkeyPatch) -> None:
    env.delenv("PROCUROS_SEND_STATE_MACHINE_ARN", raising=False)
    with pytest.raises(ValidationError, match="procuros_send_state_machine_arn"):
        ProcurosScheduleSettings.from_env()


def test_the_token_comes_from_the_variable_without_a_secret_and_stays_secret() -> None:
    credentials = procuros_credentials(None, SecretStr("t0ken"))
    assert credentials.api_token.get_secret_value() == "t0ken"
    assert "t0ken" not in repr(credentials)


def test_no_token_at_all_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="set PROCUROS_SECRET_ARN, or PROCUROS_API_TOKEN"):
        procuros_credentials(None, None)
