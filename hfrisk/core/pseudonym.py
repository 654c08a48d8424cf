"""Keyed pseudonyms for patient ids: what Redis, dashboards, score/alert records and logs see.

``pseudonym = prefix + hex(HMAC-SHA256(key, patient_id))[:hex_digits]`` (``p-`` and 20 hex digits
by default). The same id and key always give the same pseudonym, so trends, alerts and saved
window buffers line up across workers and restarts; without the key the id cannot be recovered
or confirmed by hashing guesses (a plain hash of a medical record number could be, since such
numbers are few and guessable).

The mapping back (pseudonym -> id) is never stored: whoever holds the key and the list of ids
recomputes it on demand with :func:`pseudonym_map` (``hfrisk pseudonym map ID...``), and writes it
wherever their own rules allow, outside Redis and the dashboards.

Example::

    Pseudonymiser(b"a key of at least 16 bytes").pseudonym("patient-0001")  # 'p-' + 20 hex digits
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from hfrisk.core.config import PseudonymSettings
from hfrisk.core.security import read_secret

__all__ = ["MIN_KEY_BYTES", "Pseudonymiser", "pseudonym_map", "pseudonymiser_from_settings"]

# 128 bits: below that a key could be guessed as easily as the ids it protects.
MIN_KEY_BYTES = 16


class Pseudonymiser:
    """HMAC-SHA256 pseudonyms of patient ids under one key (bytes, at least 16)."""

    def __init__(self, key: bytes, *, prefix: str = "p-", hex_digits: int = 20):
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}")
        if not 16 <= hex_digits <= 64:
            raise ValueError(f"hex_digits must be between 16 and 64, got {hex_digits}")
        self._key = key
        self.prefix = prefix
        self.hex_digits = hex_digits

    def pseudonym(self, patient_id: str) -> str:
        digest = hmac.new(self._key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return self.prefix + digest[: self.hex_digits]

    __call__ = pseudonym

    def __repr__(self) -> str:
        return f"Pseudonymiser(prefix={self.prefix!r}, hex_digits={self.hex_digits}, key=<hidden>)"


def pseudonymiser_from_settings(settings: PseudonymSettings) -> Pseudonymiser | None:
    """The configured pseudonymiser, or ``None`` when pseudonymisation is off."""
    if not settings.enabled:
        return None
    key = read_secret(settings.key, settings.key_file, "pseudonym key")
    assert key is not None  # PseudonymSettings refuses enabled without a key
    return Pseudonymiser(key.encode("utf-8"), prefix=settings.prefix, hex_digits=settings.hex_digits)


def pseudonym_map(pseudonymiser: Pseudonymiser, patient_ids: Iterable[str]) -> dict[str, str]:
    """``{pseudonym: patient_id}`` for the given ids: the re-identification table, made on demand."""
    return {pseudonymiser.pseudonym(pid): pid for pid in patient_ids}


# -- command line: `hfrisk pseudonym map` -----------------------------------------------------
