"""kafkaio.security: the client security settings every process builds from its environment."""

from __future__ import annotations

from pathlib import Path

import pytest

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
