"""A throw-away PKI for the security tests: a CA, a broker certificate, client certificates.

Made with the `openssl` command (Debian's; .ci/run installs it), into a
directory of the test's own. The broker gets a PKCS#12 keystore (what
Kafka's JVM reads everywhere) and trusts the CA as PEM; clients get PEM
files, as librdkafka and Python's ssl module read them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

DAYS = "2"


@dataclass(frozen=True)
class Pki:
    ca: Path
    #: The broker's key and certificate chain, PKCS#12, password `keystore_password`.
    keystore: Path
    keystore_password: str
    directory: Path

    def client(self, name: str) -> tuple[Path, Path]:
        """A client certificate (CN=`name`, signed by the CA) and its key, PEM."""
        key, cert = self.directory / f"{name}.key", self.directory / f"{name}.crt"
        if not cert.exists():
            _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                     "-subj", f"/CN={name}", "-out", self.directory / f"{name}.csr")  # fmt: skip
            _sign(self, self.directory / f"{name}.csr", cert, extensions=None)
        return cert, key


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS tests (.ci/run installs it)", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", DAYS, "-subj", "/CN=ledger test CA")  # fmt: skip
    pki = Pki(ca, directory / "broker.p12", "broker-keystore-secret", directory)
    key, csr, cert = directory / "broker.key", directory / "broker.csr", directory / "broker.crt"
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-subj", "/CN=localhost", "-out", csr)  # fmt: skip
    # Clients check the name they dialled (127.0.0.1) against the certificate.
    extensions = directory / "broker.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _sign(pki, csr, cert, extensions)
    _openssl("pkcs12", "-export", "-in", cert, "-inkey", key, "-certfile", ca,
             "-name", "broker", "-out", pki.keystore,
             "-password", f"pass:{pki.keystore_password}")  # fmt: skip
    return pki


def broker_config(pki: Pki) -> dict[str, str]:
    """Kafka properties for SSL and SASL_SSL listeners with this PKI (SCRAM-SHA-512 on SASL)."""
    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki.keystore),
        "ssl.keystore.password": pki.keystore_password,
        "ssl.key.password": pki.keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        # The SSL listener is the mutual-TLS one: no certificate, no connection.
        "listener.name.ssl.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
    }


def _sign(pki: Pki, csr: Path, cert: Path, extensions: Path | None) -> None:
    ca_key = pki.directory / "ca.key"
    args: list[str | Path] = ["x509", "-req", "-in", csr, "-CA", pki.ca, "-CAkey", ca_key,
                              "-CAcreateserial", "-out", cert, "-days", DAYS]  # fmt: skip
    if extensions is not None:
        args += ["-extfile", extensions]
    _openssl(*args)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)
