"""One frozen settings object from the environment (kafkaio.settings)."""

from __future__ import annotations

import pytest

from kafkaio.errors import SettingsError
from kafkaio.settings import Settings


def test_readers_are_read_committed_unless_the_environment_says_otherwise() -> None:
    assert Settings.from_env({}).isolation_level == "read_committed"
    tansu = Settings.from_env({"LEDGER_ISOLATION_LEVEL": "read_uncommitted"})
    assert tansu.isolation_level == "read_uncommitted"


def test_an_unknown_isolation_level_is_refused_with_the_variable_named() -> None:
    with pytest.raises(SettingsError, match="LEDGER_ISOLATION_LEVEL"):
        Settings.from_env({"LEDGER_ISOLATION_LEVEL": "committed"})


def test_flags_override_the_environment_and_none_means_not_given() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "a:1", "LEDGER_APP_ID": "env"}
    settings = Settings.from_env(env, bootstrap_servers="b:2", app_id=None)
    assert (settings.bootstrap_servers, settings.app_id) == ("b:2", "env")


def test_a_request_timeout_below_the_session_timeout_is_refused() -> None:
    with pytest.raises(SettingsError, match="request timeout"):
        Settings.from_env({"LEDGER_SESSION_TIMEOUT": "10", "LEDGER_REQUEST_TIMEOUT": "5"})
