"""The Kafka security flags of every command-line tool (produce-csv, export-snapshot, ledger-admin).

Each flag overrides its environment variable (kafkaio.security), which the
tools' settings and every client they open then read: one way in, whatever
the tool. There is no flag for a password itself, only for a file holding
it: a command line is visible to every user of the host (`ps`), and stays
in shell histories.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: (flag, environment variable it overrides, what it takes)
FLAGS = (
    (
        "--security-protocol",
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    ),
    ("--sasl-mechanism", "KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."),
    ("--sasl-username", "KAFKA_SASL_USERNAME", "The SASL user."),
    ("--sasl-password-file", "KAFKA_SASL_PASSWORD_FILE", "A file holding the SASL password."),
    ("--ssl-ca-location", "KAFKA_SSL_CA_LOCATION", "CA bundle (PEM) the broker must chain to."),
    ("--ssl-certificate-location", "KAFKA_SSL_CERTIFICATE_LOCATION", "Client certificate (PEM)."),
    ("--ssl-key-location", "KAFKA_SSL_KEY_LOCATION", "Its private key (PEM)."),
    (
        "--ssl-key-password-file",
        "KAFKA_SSL_KEY_PASSWORD_FILE",
        "A file holding the key's password.",
    ),
)


def _into_environment(variable: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is None:
            return
        os.environ[variable] = value
        if variable.endswith("_FILE"):
            # The flag's file replaces an inline secret from the environment
            # (kafkaio.security refuses both set at once).
            os.environ.pop(variable.removesuffix("_FILE"), None)

    return callback


def kafka_security_options(fn: F) -> F:
    """Add the security flags to a click command; parsed before the command runs."""
    for flag, variable, what in reversed(FLAGS):
        fn = click.option(
            flag,
            expose_value=False,
            callback=_into_environment(variable),
            help=f"{what} Overrides {variable}.",
        )(fn)
    return fn
