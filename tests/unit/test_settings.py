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


def test_other_workers_reach_this_one_at_its_bind_address_unless_told_otherwise() -> None:
    assert Settings.from_env({"LEDGER_WEB_PORT": "7001"}).web_url == "http://127.0.0.1:7001"
    told = Settings.from_env({"LEDGER_ADVERTISED_URL": "http://ledger-worker-0.ledger:6066/"})
    assert told.web_url == "http://ledger-worker-0.ledger:6066"
    anywhere = Settings.from_env({"LEDGER_WEB_BIND": "0.0.0.0"})
    assert anywhere.web_url.startswith("http://") and "0.0.0.0" not in anywhere.web_url


def test_the_api_token_never_shows_in_the_settings_repr() -> None:
    settings = Settings.from_env({"LEDGER_API_TOKEN": "s3cret-token"})
    assert settings.api_token is not None and settings.api_token.reveal() == "s3cret-token"
    assert "s3cret" not in repr(settings)
    assert Settings.from_env({}).api_token is None


def test_producer_debug_is_off_by_default_and_takes_only_a_list_of_librdkafka_contexts() -> None:
    assert Settings.from_env({}).producer_debug == ""
    assert Settings.from_env({"LEDGER_PRODUCER_DEBUG": "eos,protocol"}).producer_debug == (
        "eos,protocol"
    )
    with pytest.raises(SettingsError, match="LEDGER_PRODUCER_DEBUG"):
        Settings.from_env({"LEDGER_PRODUCER_DEBUG": "eos; rm -rf"})
