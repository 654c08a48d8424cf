"""The canonical in-memory ECG: every reader produces it, every pipeline consumes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from hfrisk.model.contract.errors import ECGInputError, InputErrorReason

__all__ = ["ECG", "to_millivolts", "rows_to_millivolts", "scale_to_mv", "UNIT_SCALE_TO_MV"]

# Physical units readers meet in WFDB/DICOM headers, and the factor to millivolts.
UNIT_SCALE_TO_MV: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


def scale_to_mv(units: str) -> float:
    """The factor from ``units`` (mV, uV, µV or V, any case) to millivolts; ``BAD_UNITS`` otherwise."""
    scale = UNIT_SCALE_TO_MV.get(units.strip().lower())
    if scale is None:
        raise ECGInputError(
            InputErrorReason.BAD_UNITS,
            f"unknown physical unit {units!r}; expected one of mV, uV, V",
        )
    return scale


def to_millivolts(samples: np.ndarray, units: str) -> np.ndarray:
    """Scale ``samples`` given in ``units`` (mV, uV, µV or V, any case) to millivolts."""
    return np.asarray(samples, dtype=np.float32) * np.float32(scale_to_mv(units))


def rows_to_millivolts(rows: np.ndarray | Sequence[np.ndarray], units: Sequence[str]) -> np.ndarray:
    """``np.stack([to_millivolts(row, unit) for row, unit in zip(rows, units)])``, bit for bit, in
    one float32 array: ``rows`` a 2-D array (a view of a reader's columns, say) or equal-length rows.

    Readers convert every lead of every record: done a lead at a time it was ~85 µs of a 12-lead
    record's ~0.6 ms of reading, ~40 this way. A float32 value times ``float32(1.0)`` is itself, so
    rows already in mV are only cast.
    """
    if len(rows) != len(units):
        raise ValueError(f"{len(rows)} rows for {len(units)} units")
    scales = np.array([scale_to_mv(u) for u in units], dtype=np.float32)
    if isinstance(rows, np.ndarray):
        out = np.array(rows, dtype=np.float32, order="C")
    else:
        lengths = {len(row) for row in rows}
        if len(lengths) > 1:
            raise ValueError(f"rows of different lengths {sorted(lengths)}")
        out = np.empty((len(rows), lengths.pop() if lengths else 0), np.float32)
        for j, row in enumerate(rows):
            out[j] = row
    if (scales != 1.0).any():
        out *= scales[:, None]
    return out


@dataclass(frozen=True)
class ECG:
    """A multi-lead ECG recording in physical units.

    ``samples`` has shape ``(n_leads, n_samples)``, lead-major, in ``units`` (mV after any
    reader in this package). ``lead_names`` are as found in the source; :mod:`hfrisk.model.contract.leads`
    normalises and reorders them to the model's order.
    """

    samples: np.ndarray
    fs_hz: float
    lead_names: tuple[str, ...]
    units: str = "mV"
    patient_id: str = ""
    device_id: str = ""
    acquired_at: datetime | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_checked(
        cls, samples: np.ndarray, fs_hz: float, lead_names: tuple[str, ...], **fields
    ) -> "ECG":
        """An ECG from parts whose values its caller has already checked: float32 samples, all
        finite, and ``fs_hz`` a finite float > 0. The shape is still checked here; the scan of every
        sample for NaN/inf is not.

        For a stream's windows: their samples are the chunks' millivolts, each chunk refused if not
        finite when it was buffered. Scanning the 60,000 samples of a window again cost ~34 µs of
        the ~55 µs a window took to cut (docs/bench/worker-chunk.md).
        """
        if samples.dtype != np.float32 or samples.ndim != 2 or samples.shape[0] != len(lead_names) \
                or samples.shape[1] == 0:
            raise ValueError(f"samples must be float32 (n_leads={len(lead_names)}, n>0), got "
                             f"{samples.dtype} {samples.shape}")
        ecg = object.__new__(cls)
        defaults = {"units": "mV", "patient_id": "", "device_id": "", "acquired_at": None, "source": "",
                    "metadata": {}}
        unknown = set(fields) - set(defaults)
        if unknown:
            raise TypeError(f"unknown ECG fields {sorted(unknown)}")
        ecg.__dict__.update(defaults, samples=samples, fs_hz=float(fs_hz), lead_names=lead_names, **fields)
        return ecg

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples)
        if samples.ndim != 2:
            raise ECGInputError(
                InputErrorReason.BAD_SHAPE,
                f"samples must be 2-D (n_leads, n_samples), got shape {samples.shape}",
            )
        if samples.shape[0] != len(self.lead_names):
            raise ECGInputError(
                InputErrorReason.BAD_SHAPE,
                f"{samples.shape[0]} signal rows but {len(self.lead_names)} lead names "
                f"{list(self.lead_names)}; samples must be (n_leads, n_samples)",
            )
        if samples.shape[1] == 0:
            raise ECGInputError(InputErrorReason.TOO_SHORT, "recording has no samples")
        if not np.isfinite(self.fs_hz) or self.fs_hz <= 0:
            raise ECGInputError(
                InputErrorReason.BAD_SAMPLING_RATE, f"sampling rate must be > 0 Hz, got {self.fs_hz}"
            )
        if not np.issubdtype(samples.dtype, np.number):
            raise ECGInputError(InputErrorReason.BAD_SHAPE, f"samples must be numeric, got {samples.dtype}")
        bad = ~np.isfinite(samples)
        if bad.any():
            leads = [self.lead_names[i] for i in np.flatnonzero(bad.any(axis=1))]
            raise ECGInputError(
                InputErrorReason.NON_FINITE,
                f"{int(bad.sum())} NaN/inf samples in leads {leads}; repair or drop those leads first",
            )
        object.__setattr__(self, "samples", samples.astype(np.float32, copy=False))
        object.__setattr__(self, "lead_names", tuple(str(n) for n in self.lead_names))
        object.__setattr__(self, "fs_hz", float(self.fs_hz))

    @property
    def n_leads(self) -> int:
        return self.samples.shape[0]

    @property
    def n_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz

    def in_millivolts(self) -> "ECG":
        if self.units.strip().lower() == "mv":
            return self
        return replace(self, samples=to_millivolts(self.samples, self.units), units="mV")

    def slice_s(self, start_s: float, stop_s: float) -> "ECG":
        """The part of the recording between ``start_s`` and ``stop_s`` seconds."""
        start, stop = int(round(start_s * self.fs_hz)), int(round(stop_s * self.fs_hz))
        samples = self.samples[:, start:stop]
        if samples.shape[1] == 0:
            return replace(self, samples=samples)  # refused as a recording with no samples
        # Part of a checked recording: its samples were scanned for NaN/inf when it was made (a
        # second scan was ~15 µs of every window cut from a recording).
        return type(self).from_checked(samples, self.fs_hz, self.lead_names, units=self.units,
                                       patient_id=self.patient_id, device_id=self.device_id,
                                       acquired_at=self.acquired_at, source=self.source, metadata=self.metadata)
