"""kafkaio.security: the client security settings every process builds from its environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kafkaio.errors import SettingsError
from kafkaio.security import Security, client_config
from kafkaio.settings import Settings

PASSWORD = "pa55-w0rd-in-the-env"


def _sasl(**more: str) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "ledger",
        "KAFKA_SASL_PASSWORD": PASSWORD,
        **more,
    }


def test_nothing_set_means_plaintext_and_no_extra_client_settings() -> None:
    assert Security.from_env({}).librdkafka() == {"security.protocol": "plaintext"}
    assert client_config("h:1", Security()) == {
        "bootstrap.servers": "h:1",
        "security.protocol": "plaintext",
    }


def test_sasl_settings_become_librdkafka_settings() -> None:
    config = Security.from_env(_sasl()).librdkafka()
    assert config == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "ledger",
        "sasl.password": PASSWORD,
    }


def test_the_password_never_shows_in_the_settings_repr_or_str() -> None:
    settings = Settings.from_env(_sasl())
    for text in (repr(settings), str(settings), f"{settings.security}", repr(settings.security)):
        assert PASSWORD not in text
    assert settings.security.sasl_password is not None
    assert settings.security.sasl_password.reveal() == PASSWORD


def test_a_password_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env = _sasl(KAFKA_SASL_PASSWORD="", KAFKA_SASL_PASSWORD_FILE=str(secret))
    assert Security.from_env(env).librdkafka()["sasl.password"] == PASSWORD


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
        (_sasl(KAFKA_SASL_MECHANISM=""), "needs KAFKA_SASL_MECHANISM"),
        (_sasl(KAFKA_SASL_MECHANISM="GSSAPI"), "needs KAFKA_SASL_MECHANISM"),
        (_sasl(KAFKA_SASL_PASSWORD=""), "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (_sasl(KAFKA_SASL_PASSWORD_FILE="/x"), "not both"),
        (_sasl(KAFKA_SECURITY_PROTOCOL="PLAINTEXT"), "set it to SASL_SSL"),
        ({"KAFKA_SSL_CA_LOCATION": "/etc/hostname"}, "set it to SSL or SASL_SSL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nope"}, "no readable"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/hostname"},
            "needs its key",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **_sasl(KAFKA_SASL_PASSWORD_FILE="/nope")}
            | {"KAFKA_SASL_PASSWORD": ""},
            "cannot read",
        ),
    ],
)
def test_settings_that_would_connect_otherwise_than_meant_are_refused_without_the_secret(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError, match=says) as refused:
        Settings.from_env(env)
    assert PASSWORD not in str(refused.value)


# --- the tools' flags (runner.kafka_options), through click's CliRunner ----------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A copy of the environment for the flags to write into, dropped after the test."""
    copy = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    monkeypatch.setattr(os, "environ", copy)
    return copy


def test_each_security_flag_overrides_its_environment_variable(
    environment: dict[str, str], tmp_path: Path
) -> None:
    from processor.ledger_admin import cli

    secret, ca = tmp_path / "password", tmp_path / "ca.pem"
    secret.write_text(PASSWORD + "\n")
    ca.write_text("not checked before a connection\n")
    environment["KAFKA_SASL_PASSWORD"] = "from-the-environment"  # the file flag replaces it
    result = CliRunner().invoke(
        cli,
        ["acls", "producer", "--principal", "User:p", "--security-protocol", "SASL_SSL",
         "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "flagged",
         "--sasl-password-file", str(secret), "--ssl-ca-location", str(ca)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    security = Settings.from_env().security
    assert security.protocol == "SASL_SSL"
    assert security.sasl_mechanism == "SCRAM-SHA-256"
    assert security.sasl_username == "flagged"
    assert security.sasl_password is not None and security.sasl_password.reveal() == PASSWORD
    assert security.ssl_ca_location == str(ca)
    assert PASSWORD not in result.output


def test_a_bad_security_flag_is_refused_with_exit_2_naming_it(environment: dict[str, str]) -> None:
    from processor.exporter import cli

    result = CliRunner().invoke(cli, ["--security-protocol", "BOGUS"])
    assert result.exit_code == 2, result.output
    assert "KAFKA_SECURITY_PROTOCOL must be one of" in result.output


def test_no_flag_takes_a_password_itself_only_a_file() -> None:
    from runner.kafka_options import FLAGS

    flags = {flag for flag, _variable, _what in FLAGS}
    assert "--sasl-password-file" in flags and "--ssl-key-password-file" in flags
    assert not flags & {"--sasl-password", "--ssl-key-password"}
