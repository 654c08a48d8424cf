"""Which PTB-XL records pretraining may use: one record per ``ecg_id`` across sources, minus exclusions.

**Sources**, in order of preference: ``"500"`` (``records500``, raw), ``"100"`` (``records100``,
raw), ``"extra"`` (ptbxl-extra, band-passed and z-scored at 100 Hz,
:mod:`~hfrisk.training.data.ptbxl_extra`). An ``ecg_id`` found in several takes the first source
listed (:func:`choose_sources`); its text comes from ``ptbxl_database.csv`` by ``ecg_id`` whatever
the source.

**Exclusions** keep an evaluation's records out of pretraining, train and validation alike
(:func:`excluded_ids`): listed ``ecg_id`` s, listed ``patient_id`` s and whole ``strat_fold`` s,
and by default every other record of a patient one of those belongs to (PTB-XL assigns folds per
patient, but an id list need not follow them).

>>> choose_sources({"500": [1, 2], "100": [1, 2, 3], "extra": [3, 9]}, ("500", "100", "extra"))
{1: '500', 2: '500', 3: '100', 9: 'extra'}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

__all__ = ["SOURCES", "choose_sources", "excluded_ids", "read_id_file", "ids_digest"]

# Preference order when one ecg_id is in several sources: raw 500 Hz, raw 100 Hz, then the
# third party's z-scored copy.
SOURCES: tuple[str, ...] = ("500", "100", "extra")


def choose_sources(available: Mapping[str, Iterable[int]], order: Sequence[str]) -> dict[int, str]:
    """``ecg_id -> source`` with each id taken from the first source of ``order`` that has it."""
    chosen: dict[int, str] = {}
    for source in order:
        for ecg_id in available.get(source, ()):
            chosen.setdefault(int(ecg_id), source)
    return dict(sorted(chosen.items()))


def read_id_file(path: str | Path, column: str = "ecg_id") -> set[int]:
    """Integer ids from a text file: one per line (``#`` starts a comment), or a CSV with a
    ``column`` header (``ecg_id`` or ``patient_id``)."""
    path = Path(path)
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if lines and not lines[0].replace(".", "", 1).isdigit():
        table = pd.read_csv(path, comment="#")
        if column not in table.columns:
            raise ValueError(f"{path}: no {column!r} column (columns: {list(table.columns)})")
        return {int(v) for v in table[column].dropna()}
    try:
        return {int(float(line.split(",")[0])) for line in lines}
    except ValueError:
        raise ValueError(f"{path}: expected one integer {column} a line") from None


def excluded_ids(
    database: pd.DataFrame,
    *,
    ecg_ids: Iterable[int] = (),
    patient_ids: Iterable[int] = (),
    folds: Iterable[int] = (),
    same_patient: bool = True,
) -> set[int]:
    """Every ``ecg_id`` of ``database`` (``ptbxl_database.csv``, indexed by ``ecg_id``) to leave out.

    The listed ``ecg_ids``, the records of ``patient_ids`` and of ``folds``; with ``same_patient``
    also every other record of the patients those records belong to. Listed ids the database does
    not hold are kept in the set (they cannot leak, but they are not silently forgotten).
    """
    ids = {int(i) for i in ecg_ids}
    folds = [int(f) for f in folds]
    if folds:
        ids |= {int(i) for i in database.index[database["strat_fold"].isin(folds)]}
    patients = {float(p) for p in patient_ids}
    if same_patient:
        known = database.index.intersection(sorted(ids))
        patients |= {float(p) for p in database.loc[known, "patient_id"].dropna()}
    if patients:
        ids |= {int(i) for i in database.index[database["patient_id"].astype(float).isin(patients)]}
    return ids


def ids_digest(ids: Iterable[int]) -> str:
    """SHA-256 of the sorted ids, to record which exclusion a run used."""
    return hashlib.sha256(",".join(str(i) for i in sorted({int(i) for i in ids})).encode()).hexdigest()
