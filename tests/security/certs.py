"""Test certificates: one throw-away CA and server certificates for 127.0.0.1, made with trustme.

Kafka's PEM keystore wants the private key in PKCS#8 form and RSA keys suit every TLS stack
involved (the JVM, OpenSSL in Redis, Python's ssl), so keys are RSA and written as PKCS#8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

__all__ = ["CertFiles", "make_pki"]


@dataclass(frozen=True)
class CertFiles:
    cafile: Path
    certfile: Path
    keyfile: Path
    client_certfile: Path
    client_keyfile: Path
    other_cafile: Path  # a CA that signed nothing here: a client trusting only it must refuse the server


def _pkcs8(key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(folder: Path) -> CertFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    client = ca.issue_cert("hfrisk-worker", key_type=trustme.KeyType.RSA)
    paths = CertFiles(*(folder / name for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key", "other-ca.pem")))
    ca.cert_pem.write_to_path(str(paths.cafile))
    paths.certfile.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    paths.keyfile.write_bytes(_pkcs8(server.private_key_pem.bytes()))
    paths.client_certfile.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    paths.client_keyfile.write_bytes(_pkcs8(client.private_key_pem.bytes()))
    trustme.CA(key_type=trustme.KeyType.RSA).cert_pem.write_to_path(str(paths.other_cafile))
    for key in (paths.keyfile, paths.client_keyfile):
        key.chmod(0o600)
    return paths
