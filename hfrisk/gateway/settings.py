"""The gateways' typed settings: ``HFRISK_GATEWAY__*`` environment variables, defaults safe on one host.

They live with the gateways (not in :mod:`hfrisk.core.config`) because nothing else reads them;
the Kafka connection and the pseudonym key come from the shared :class:`~hfrisk.core.config.Settings`.

Both servers bind to loopback. Binding another address needs TLS (``tls_certfile`` and
``tls_keyfile``), and for the FHIR endpoint a bearer token too: patient ECGs never cross a network
in clear or unauthenticated. ``tls_client_cafile`` asks clients for a certificate signed by that CA
(mutual TLS, what MLLP deployments use instead of passwords).
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hfrisk.core.security import read_secret

__all__ = ["GatewaySettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HFRISK_GATEWAY__", extra="ignore")

    hl7_host: str = "127.0.0.1"
    # 2575 is the port IANA registered for HL7 over MLLP.
    hl7_port: int = Field(default=2575, ge=0, le=65535)
    fhir_host: str = "127.0.0.1"
    fhir_port: int = Field(default=8095, ge=0, le=65535)
    # Chunk length on the raw topic: the replay producer's default, so windows line up the same way.
    chunk_s: float = Field(default=1.0, gt=0)
    # Largest HL7 message or FHIR body taken: a 60-s 12-lead ECG at 1 kHz as text is ~4 MB.
    max_message_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Unit of FHIR SampledData whose origin names none (FHIR's own ECG example); unset: refused.
    fhir_default_units: str | None = None
    # Where `hfrisk gateway risk-assessments` publishes the RiskAssessment of each scored window.
    risk_assessment_topic: str = "ecg.risk-assessments"
    # How long a message may wait for Kafka to take its chunks before it is NAKed for a resend.
    kafka_timeout_s: float = Field(default=10.0, gt=0)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    tls_client_cafile: Path | None = None
    fhir_token: SecretStr | None = None
    fhir_token_file: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> GatewaySettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("gateway.tls_certfile and gateway.tls_keyfile go together")
        if self.fhir_token is not None and self.fhir_token_file is not None:
            raise ValueError("set gateway.fhir_token or gateway.fhir_token_file, not both")
        for name, host in (("hl7_host", self.hl7_host), ("fhir_host", self.fhir_host)):
            if not is_loopback(host) and self.tls_certfile is None:
                raise ValueError(
                    f"gateway.{name}={host} is not loopback: set HFRISK_GATEWAY__TLS_CERTFILE and "
                    "HFRISK_GATEWAY__TLS_KEYFILE so that ECGs do not cross the network in clear"
                )
        if not is_loopback(self.fhir_host) and self.fhir_token is None and self.fhir_token_file is None:
            raise ValueError(
                f"gateway.fhir_host={self.fhir_host} is not loopback: set HFRISK_GATEWAY__FHIR_TOKEN_FILE "
                "(bearer token clients must send)"
            )
        return self

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context both servers use, or ``None`` (plain TCP, loopback only)."""
        if self.tls_certfile is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_certfile, self.tls_keyfile)
        if self.tls_client_cafile is not None:
            context.load_verify_locations(self.tls_client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def uvicorn_ssl_options(self) -> dict:
        """The same TLS setup as :meth:`server_ssl_context`, in uvicorn's keyword arguments."""
        if self.tls_certfile is None:
            return {}
        options = {"ssl_certfile": str(self.tls_certfile), "ssl_keyfile": str(self.tls_keyfile)}
        if self.tls_client_cafile is not None:
            options |= {"ssl_ca_certs": str(self.tls_client_cafile), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options

    def bearer_token(self) -> str | None:
        """The FHIR endpoint's bearer token (read afresh, so a rotated file is picked up)."""
        return read_secret(self.fhir_token, self.fhir_token_file, "FHIR gateway token")
