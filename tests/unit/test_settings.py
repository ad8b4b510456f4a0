"""Settings come from the environment variable of each field's name, in any case."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from erphub.settings import HttpSettings
from erphub.settings.rossum import FinalizeSettings, RejectPolicy

ROSSUM = {
    "LEDGER_TABLE": "ledger",
    "PAYLOAD_BUCKET": "payloads",
    "ROSSUM_BASE_URL": "https://acme.rossum.app/api",
}


def test_fields_come_from_variables_of_any_case_and_keywords_come_first() -> None:
    settings = FinalizeSettings.from_env(
        {**ROSSUM, "reject_policy": "keep_confirmed", "Http_Max_Attempts": "7", "OTHER": "x"},
        lease_seconds=5,
    )
    assert settings.reject_policy is RejectPolicy.KEEP_CONFIRMED
    assert settings.http_max_attempts == 7
    assert settings.lease_seconds == 5
    assert settings.aws_endpoint_url is None


def test_the_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "2.5")
    assert HttpSettings.from_env().http_timeout_seconds == 2.5
    assert HttpSettings.from_env({}).http_timeout_seconds == 30.0


def test_a_missing_or_wrong_variable_is_named() -> None:
    with pytest.raises(ValidationError) as failed:
        FinalizeSettings.from_env({**ROSSUM, "LEDGER_TABLE": "", "ROSSUM_BASE_URL": "https://x"})
    assert {e["loc"][0] for e in failed.value.errors()} == {"ledger_table", "rossum_base_url"}
    assert "ROSSUM_BASE_URL must end in /api" in str(failed.value)
