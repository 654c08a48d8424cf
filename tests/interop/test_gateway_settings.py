"""Gateway settings: loopback by default, anything else only with TLS (and a token for FHIR)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hfrisk.gateway.settings import GatewaySettings


def test_defaults_are_loopback_and_env_overrides(monkeypatch):
    monkeypatch.setenv("HFRISK_GATEWAY__HL7_PORT", "12575")
    monkeypatch.setenv("HFRISK_GATEWAY__CHUNK_S", "2.5")
    settings = GatewaySettings()
    assert (settings.hl7_host, settings.fhir_host) == ("127.0.0.1", "127.0.0.1")
    assert settings.hl7_port == 12575 and settings.chunk_s == 2.5
    assert settings.server_ssl_context() is None and settings.bearer_token() is None


def test_other_addresses_need_tls_and_a_token(tmp_path):
    with pytest.raises(ValidationError, match="TLS_CERTFILE"):
        GatewaySettings(hl7_host="0.0.0.0")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    assert GatewaySettings(hl7_host="0.0.0.0", tls_certfile=cert, tls_keyfile=key).hl7_host == "0.0.0.0"
    with pytest.raises(ValidationError, match="FHIR_TOKEN"):
        GatewaySettings(fhir_host="10.0.0.5", tls_certfile=cert, tls_keyfile=key)
    token = tmp_path / "token"
    token.write_text("abc\n")
    settings = GatewaySettings(fhir_host="10.0.0.5", tls_certfile=cert, tls_keyfile=key, fhir_token_file=token)
    assert settings.bearer_token() == "abc"
