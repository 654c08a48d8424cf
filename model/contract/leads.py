"""Lead names: normalise aliases, reorder to the model's order, derive missing limb leads, mask the rest.

Sources disagree on lead naming and order (PTB-XL writes ``AVR``, MIT-BIH ``MLII``, DICOM
"Lead I (Einthoven)", some Cabrera layouts ``-aVR``); the model needs one order. Limb leads that
are absent but computable from two others are derived (Einthoven: I + III = II; Goldberger:
aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2). Any other absent lead is all-zero and flagged
False in the mask: never zero-filled without saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason

__all__ = ["ConformedECG", "conform_leads", "normalise_lead_name", "LIMB_LEADS", "IGNORED_CHANNELS"]

LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")

# Keys are upper-cased, with "LEAD"/"ECG" prefixes, brackets and separators removed.
_ALIASES: dict[str, str] = {
    **{name.upper(): name for name in CANONICAL_LEADS},
    "DI": "I", "DII": "II", "DIII": "III",
    # Modified limb leads of Holter/MIT-BIH recordings stand in for the limb lead they imitate.
    "MLI": "I", "MLII": "II", "MLIII": "III",
    "L1": "I", "L2": "II", "L3": "III", "LI": "I", "LII": "II", "LIII": "III",
    # IEC names the precordial electrodes C1–C6.
    **{f"C{i}": f"V{i}" for i in range(1, 7)},
}

# Channels that are legitimately in ECG files but are not one of the 12 leads: dropped, reported.
IGNORED_CHANNELS = frozenset(
    {
        "VX", "VY", "VZ", "X", "Y", "Z",  # Frank orthogonal leads (PTB Diagnostic)
        "ABP", "ART", "PAP", "CVP", "ICP", "PLETH", "PPG", "RESP", "SPO2", "PULSE", "CO2", "TEMP",
        "V", "MCL1",  # unspecified chest / modified chest leads of monitoring records
    }
)

_STRIP = re.compile(r"\(.*?\)|[\s_\-:.]")
_PREFIX = re.compile(r"^(LEAD|ECG|EKG)")


def _key(raw: str) -> tuple[str, bool]:
    text = raw.strip()
    inverted = text.startswith("-")
    if inverted:
        text = text[1:]
    key = _STRIP.sub("", text.upper())
    key = _PREFIX.sub("", key)
    return key, inverted


@lru_cache(maxsize=1024)
def normalise_lead_name(raw: str) -> tuple[str | None, bool]:
    """``(canonical name, inverted)`` for a source lead name; name ``None`` for an ignored channel.

    Raises ``ECGInputError(UNKNOWN_LEAD)`` for names that are neither a lead nor a known
    non-lead channel (never cached: each call raises again).

    Cached: every window of every recording names its leads, and a source names them the same
    way each time; the two regular expressions cost ~2 µs a lead.
    """
    key, inverted = _key(raw)
    if key in _ALIASES:
        return _ALIASES[key], inverted
    if key in IGNORED_CHANNELS:
        return None, inverted
    raise ECGInputError(
        InputErrorReason.UNKNOWN_LEAD,
        f"unknown lead name {raw!r}; expected one of {', '.join(CANONICAL_LEADS)} "
        "(aliases such as DI, MLII, AVR, C1 are accepted)",
    )


@dataclass(frozen=True)
class ConformedECG:
    """An ECG in the model's lead order: ``samples`` (len(leads), n) in mV, ``mask`` True = real."""

    samples: np.ndarray
    mask: np.ndarray
    leads: tuple[str, ...]
    fs_hz: float
    derived: tuple[str, ...]
    dropped: tuple[str, ...]
    source: ECG

    @property
    def present(self) -> tuple[str, ...]:
        return tuple(name for name, ok in zip(self.leads, self.mask) if ok)


def _derive_limb_leads(have: dict[str, np.ndarray]) -> list[str]:
    """Fill ``have`` with limb leads computable from the ones present; returns what was derived."""
    derived: list[str] = []

    # Each formula is computed only for a lead that is missing: a 12-lead recording has them all,
    # and computing the six to throw them away cost ~17 µs a window.
    def put(name: str, value) -> None:
        if name not in have:
            have[name] = value().astype(np.float32)
            derived.append(name)

    if "I" in have and "III" in have:
        put("II", lambda: have["I"] + have["III"])
    if "II" in have and "III" in have:
        put("I", lambda: have["II"] - have["III"])
    if "I" in have and "II" in have:
        i, ii = have["I"], have["II"]
        put("III", lambda: ii - i)
        put("aVR", lambda: -(i + ii) / 2)
        put("aVL", lambda: i - ii / 2)
        put("aVF", lambda: ii - i / 2)
    return derived


def conform_leads(ecg: ECG, leads: Sequence[str] = CANONICAL_LEADS) -> ConformedECG:
    """Reorder ``ecg`` to ``leads``, deriving limb leads where possible and masking the rest."""
    ecg = ecg.in_millivolts()
    have: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    any_inverted = False
    for row, raw in zip(ecg.samples, ecg.lead_names):
        name, inverted = normalise_lead_name(raw)
        any_inverted |= inverted
        if name is None:
            dropped.append(raw)
            continue
        if name in have:
            raise ECGInputError(
                InputErrorReason.DUPLICATE_LEAD,
                f"lead {name} appears more than once (source names {list(ecg.lead_names)})",
            )
        have[name] = -row if inverted else row
    if not have:
        raise ECGInputError(
            InputErrorReason.MISSING_LEADS,
            f"no ECG lead among channels {list(ecg.lead_names)}",
        )
    if not dropped and not any_inverted and list(have) == list(leads):
        # Already the card's leads in its order, none inverted (PTB-XL's and most 12-lead files):
        # the samples as they are, not a copy (~20 µs a window, and the cache it fills). Read-only,
        # so that nothing writes through the window into the recording.
        out = ecg.samples.view()
        out.flags.writeable = False
        return ConformedECG(samples=out, mask=np.ones(len(leads), dtype=bool), leads=tuple(leads), fs_hz=ecg.fs_hz,
                            derived=(), dropped=(), source=ecg)
    derived = [name for name in _derive_limb_leads(have) if name in leads]

    out = np.zeros((len(leads), ecg.n_samples), dtype=np.float32)
    mask = np.zeros(len(leads), dtype=bool)
    for i, name in enumerate(leads):
        if name in have:
            out[i] = have[name]
            mask[i] = True
    return ConformedECG(
        samples=out,
        mask=mask,
        leads=tuple(leads),
        fs_hz=ecg.fs_hz,
        derived=tuple(derived),
        dropped=tuple(dropped),
        source=ecg,
    )
