"""PTB-XL 500-Hz records read into memory for the front-end benchmarks, with the time reading took
(what any consumer pays anyway, so the benchmarks time it apart)."""

from __future__ import annotations

import time
from pathlib import Path

import wfdb

from hfrisk.model.contract.ecg import ECG

__all__ = ["DEFAULT_DATA", "read_records"]

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "ecg" / "ptbxl" / "records500"


def read_records(folder: Path, limit: int) -> tuple[list[ECG], float]:
    """The first ``limit`` ``*_hr`` records under ``folder`` (sorted), and the seconds reading took."""
    paths = sorted(folder.rglob("*_hr.hea"))[:limit]
    if not paths:
        raise SystemExit(f"no PTB-XL 500-Hz records (*_hr.hea) under {folder}")
    start = time.perf_counter()
    ecgs = []
    for path in paths:
        rec = wfdb.rdrecord(str(path.with_suffix("")))
        ecgs.append(ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name)))
    return ecgs, time.perf_counter() - start
