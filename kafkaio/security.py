"""How every Kafka client of ours authenticates and encrypts: read once, built in one place.

The environment uses the usual Kafka names (the Confluent images' and most
operators' convention):

    KAFKA_SECURITY_PROTOCOL          PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
    KAFKA_SASL_MECHANISM             PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    KAFKA_SASL_USERNAME
    KAFKA_SASL_PASSWORD              or KAFKA_SASL_PASSWORD_FILE (a mounted secret)
    KAFKA_SSL_CA_LOCATION            CA bundle (PEM) the broker's certificate must chain to
    KAFKA_SSL_CERTIFICATE_LOCATION   client certificate (PEM), for mutual TLS
    KAFKA_SSL_KEY_LOCATION           its private key (PEM)
    KAFKA_SSL_KEY_PASSWORD           or KAFKA_SSL_KEY_PASSWORD_FILE, if the key is encrypted

Two client libraries run here: librdkafka (confluent-kafka: producer,
changelog writer, exporter, tools) and aiokafka (Faust's consumer and
producer). `librdkafka()` and `ssl_context()` + the SASL fields give each
the same settings; processor.faust_app turns them into Faust credentials.

Secrets are `Secret`s: their repr and str are masked, so a settings object
in a log line, a traceback or an error message shows no password.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafkaio.errors import SettingsError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: GSSAPI and OAUTHBEARER need more than a name and a password: not offered.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class Secret:
    """A string that never shows itself by accident (repr, str, f-strings, logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Security:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret | None = None
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: Secret | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Security:
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, "").strip()

        security = cls(
            protocol=(get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=get("KAFKA_SASL_MECHANISM").upper(),
            sasl_username=get("KAFKA_SASL_USERNAME"),
            sasl_password=_secret(env, "KAFKA_SASL_PASSWORD"),
            ssl_ca_location=get("KAFKA_SSL_CA_LOCATION"),
            ssl_certificate_location=get("KAFKA_SSL_CERTIFICATE_LOCATION"),
            ssl_key_location=get("KAFKA_SSL_KEY_LOCATION"),
            ssl_key_password=_secret(env, "KAFKA_SSL_KEY_PASSWORD"),
        )
        security.validate()
        return security

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def validate(self) -> None:
        """Refuse combinations that would silently connect differently than meant."""
        if self.protocol not in PROTOCOLS:
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise SettingsError(
                    f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_MECHANISM, one "
                    f"of {', '.join(MECHANISMS)} (got {self.sasl_mechanism or 'nothing'})"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise SettingsError(
                    f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_USERNAME and "
                    "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
                )
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password is not None:
            # Credentials given but a protocol that never sends them: almost
            # certainly a forgotten KAFKA_SECURITY_PROTOCOL, not a wish to
            # connect unauthenticated.
            raise SettingsError(
                f"SASL credentials are set but KAFKA_SECURITY_PROTOCOL is {self.protocol}: "
                "set it to SASL_SSL (or SASL_PLAINTEXT)"
            )
        tls_files = (self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location)
        if not self.uses_tls and any(tls_files):
            raise SettingsError(
                f"TLS files are set but KAFKA_SECURITY_PROTOCOL is {self.protocol}: "
                "set it to SSL or SASL_SSL"
            )
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise SettingsError(
                "a client certificate needs its key, and a key its certificate: set both "
                "KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
            )
        for var, location in (
            ("KAFKA_SSL_CA_LOCATION", self.ssl_ca_location),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", self.ssl_certificate_location),
            ("KAFKA_SSL_KEY_LOCATION", self.ssl_key_location),
        ):
            if location and not Path(location).is_file():
                raise SettingsError(f"{var}: no readable file at {location!r}")

    def librdkafka(self) -> dict[str, str]:
        """The settings a confluent-kafka client needs, beyond bootstrap.servers."""
        config = {"security.protocol": self.protocol.lower()}
        if self.uses_sasl:
            assert self.sasl_password is not None  # validate()
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.reveal()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        if self.ssl_certificate_location:
            config["ssl.certificate.location"] = self.ssl_certificate_location
            config["ssl.key.location"] = self.ssl_key_location
        if self.ssl_key_password is not None:
            config["ssl.key.password"] = self.ssl_key_password.reveal()
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for aiokafka (Faust), verifying the broker as librdkafka does."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_location or None)
        if self.ssl_certificate_location:
            password = self.ssl_key_password.reveal() if self.ssl_key_password else None
            context.load_cert_chain(self.ssl_certificate_location, self.ssl_key_location, password)
        return context


def client_config(bootstrap: str, security: Security | None = None) -> dict[str, Any]:
    """bootstrap.servers and the security settings: the base of every librdkafka client.

    Without `security`, the environment's: tools and helpers that get only a
    bootstrap string still connect the way the process was configured.
    """
    return {
        "bootstrap.servers": bootstrap,
        **(security or Security.from_env()).librdkafka(),
    }


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    """NAME, or the content of the file NAME_FILE names (a mounted secret); not both."""
    value, path = env.get(name, ""), env.get(f"{name}_FILE", "").strip()
    if value and path:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            # One trailing newline is an artefact of how the file was
            # written (echo, kubectl create secret --from-file); keep the rest.
            return Secret(Path(path).read_text().removesuffix("\n"))
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {path!r}: {exc.strerror}") from None
    return Secret(value) if value else None
