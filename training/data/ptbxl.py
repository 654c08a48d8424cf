"""PTB-XL: metadata, SCP codes, labels and standard folds for the records present on disk.

Works on a complete copy or a subset: rows without a record and records without a row are
dropped, counted and logged, so every id the dataset lists has a waveform and labels.

>>> ds = PTBXL("tests/data/ecg/ptbxl", sampling_rate=100)          # doctest: +SKIP
>>> train = ds.split("train")  # folds 1-8                         # doctest: +SKIP
>>> train.scp_codes(1)                                             # doctest: +SKIP
{'NORM': 100.0}
>>> ds.superclass_labels().loc[1].to_dict()                        # doctest: +SKIP
{'NORM': 1, 'MI': 0, 'STTC': 0, 'HYP': 0, 'CD': 0}
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hfrisk.core.logs import get_logger

from hfrisk.training.data.report_text import clean_raw_report, read_scp_statements

__all__ = ["PTBXL", "SUPERCLASSES", "SPLIT_FOLDS", "read_ptbxl_database"]

log = get_logger(__name__)

# Order of the diagnostic superclasses in label matrices (PTB-XL benchmark order).
SUPERCLASSES: tuple[str, ...] = ("NORM", "MI", "STTC", "HYP", "CD")

# Recommended split of the ten patient-wise stratified folds (Wagner et al. 2020).
SPLIT_FOLDS: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 3, 4, 5, 6, 7, 8),
    "validation": (9,),
    "test": (10,),
}
_SPLIT_ALIASES = {"val": "validation", "valid": "validation"}

# v1.0.3 replaced ages above 89 with 300 (HIPAA); v1.0.1 keeps the true age.
_AGE_CODE_OVER_89 = 300
_AGE_OVER_89 = 90.0

_RECORD_NAME = re.compile(r"^(\d+)_(lr|hr)\.hea$")
_SUFFIX = {100: "lr", 500: "hr"}


def read_ptbxl_database(path: str | Path) -> pd.DataFrame:
    """Read ``ptbxl_database.csv`` indexed by ``ecg_id``, with ``scp_codes`` parsed into dicts."""
    db = pd.read_csv(path, index_col="ecg_id")
    db.index = db.index.astype(int)
    # A Python dict literal per row, e.g. "{'NORM': 100.0, 'SR': 0.0}".
    db["scp_codes"] = db["scp_codes"].map(ast.literal_eval)
    return db


def _records_on_disk(root: Path, sampling_rate: int) -> dict[int, str]:
    """``ecg_id -> relative record path`` (no extension) for every header under ``records{rate}``.

    One directory walk instead of a stat per metadata row: the full dataset has ~21.8k rows.
    """
    folder = root / f"records{sampling_rate}"
    suffix = _SUFFIX[sampling_rate]
    found: dict[int, str] = {}
    if not folder.is_dir():
        return found
    for dirpath, _, filenames in os.walk(folder):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in filenames:
            match = _RECORD_NAME.match(name)
            if match and match.group(2) == suffix:
                # Only records with their signal file count; a lone header is unreadable.
                stem = name[: -len(".hea")]
                if os.path.exists(os.path.join(dirpath, stem + ".dat")):
                    found[int(match.group(1))] = f"{rel_dir}/{stem}"
    return found


class PTBXL:
    """The PTB-XL records at one sampling rate that have both a waveform and a metadata row.

    Args:
        root: folder holding ``ptbxl_database.csv``, ``scp_statements.csv`` and ``records{rate}/``.
        sampling_rate: 100 (``filename_lr``) or 500 (``filename_hr``).

    Views made by :meth:`split`, :meth:`validated` and :meth:`subset` share the tables and keep the
    drop counts of the dataset they came from.
    """

    def __init__(self, root: str | Path, sampling_rate: Literal[100, 500] = 100):
        if sampling_rate not in _SUFFIX:
            raise ValueError(f"sampling_rate must be 100 or 500 Hz, got {sampling_rate!r}")
        self.root = Path(root)
        self.sampling_rate = int(sampling_rate)
        self.statements = read_scp_statements(self.root / "scp_statements.csv")
        db = read_ptbxl_database(self.root / "ptbxl_database.csv")

        on_disk = _records_on_disk(self.root, self.sampling_rate)
        if not on_disk:
            raise FileNotFoundError(
                f"no {self.sampling_rate} Hz PTB-XL records under {self.root / f'records{self.sampling_rate}'}"
            )
        column = self._filename_column
        # A row counts as present only if its own filename is on disk (not merely its ecg_id).
        present = db[column].astype(str).str.removesuffix(".hea").isin(set(on_disk.values()))
        self.rows_without_record = int((~present).sum())
        self.unlabelled_ids = np.array(sorted(set(on_disk) - set(db.index)), dtype=np.int64)
        self.records_without_row = int(len(self.unlabelled_ids))
        self.metadata = db.loc[present].sort_index()
        self.database = db
        log.info(
            "ptbxl.loaded",
            root=str(self.root),
            sampling_rate=self.sampling_rate,
            records=len(self.metadata),
            rows_without_record=self.rows_without_record,
            records_without_row=self.records_without_row,
        )

    @classmethod
    def catalogue(cls, root: str | Path) -> PTBXL:
        """Every row of ``ptbxl_database.csv``, whether or not a record of it is on disk.

        For the labels, text and patients of records read from elsewhere (ptbxl-extra): its
        :meth:`record_path` names the 100 Hz file the row lists, which need not exist.
        """
        view = object.__new__(cls)
        view.root = Path(root)
        view.sampling_rate = 100
        view.statements = read_scp_statements(view.root / "scp_statements.csv")
        view.database = read_ptbxl_database(view.root / "ptbxl_database.csv")
        view.metadata = view.database.sort_index()
        view.rows_without_record = view.records_without_row = 0
        view.unlabelled_ids = np.array([], dtype=np.int64)
        return view

    # --- views -----------------------------------------------------------------------------

    def subset(self, ecg_ids: Iterable[int]) -> PTBXL:
        """A view on the given ids (in ascending order); unknown ids raise ``KeyError``."""
        ids = pd.Index(sorted({int(i) for i in ecg_ids}))
        unknown = ids.difference(self.metadata.index)
        if len(unknown):
            raise KeyError(f"ecg_ids not in this PTB-XL view: {list(unknown[:10])}")
        view = object.__new__(PTBXL)
        view.__dict__.update(self.__dict__)
        view.metadata = self.metadata.loc[ids]
        return view

    def split(self, name: str) -> PTBXL:
        """The standard split: ``"train"`` (folds 1–8), ``"validation"`` (9) or ``"test"`` (10)."""
        key = _SPLIT_ALIASES.get(name, name)
        if key not in SPLIT_FOLDS:
            raise ValueError(f"unknown split {name!r}; use one of {sorted(SPLIT_FOLDS)}")
        return self.folds(SPLIT_FOLDS[key])

    def folds(self, folds: Iterable[int]) -> PTBXL:
        """The records whose ``strat_fold`` is one of ``folds`` (1–10)."""
        keep = self.metadata["strat_fold"].isin(list(folds))
        return self.subset(self.metadata.index[keep])

    def validated(self) -> PTBXL:
        """Only reports validated by a cardiologist (``validated_by_human``), as the paper pretrains on."""
        flag = self.metadata["validated_by_human"].astype(str).str.lower().eq("true")
        return self.subset(self.metadata.index[flag])

    # --- records ---------------------------------------------------------------------------

    @property
    def _filename_column(self) -> str:
        return "filename_lr" if self.sampling_rate == 100 else "filename_hr"

    @property
    def ids(self) -> np.ndarray:
        """The ``ecg_id`` of every record in this view, ascending."""
        return self.metadata.index.to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return len(self.metadata)

    def __contains__(self, ecg_id: object) -> bool:
        return ecg_id in self.metadata.index

    def __repr__(self) -> str:
        return f"PTBXL(root={str(self.root)!r}, sampling_rate={self.sampling_rate}, records={len(self)})"

    def record_name(self, ecg_id: int) -> str:
        """The record path relative to ``root``, without extension (``records100/00000/00001_lr``)."""
        return str(self._row(ecg_id)[self._filename_column])

    def record_path(self, ecg_id: int) -> Path:
        """Absolute-or-root-relative WFDB record path, without extension, as ``wfdb.rdrecord`` wants."""
        return self.root / self.record_name(ecg_id)

    def _row(self, ecg_id: int) -> pd.Series:
        try:
            return self.metadata.loc[int(ecg_id)]
        except KeyError:
            raise KeyError(f"ecg_id {ecg_id} is not in this PTB-XL view") from None

    # --- labels and text -------------------------------------------------------------------

    def scp_codes(self, ecg_id: int, *, include_zero: bool = False) -> dict[str, float]:
        """SCP code -> likelihood (0–100) of one record; likelihood-0 codes only if ``include_zero``."""
        codes = self._row(ecg_id)["scp_codes"]
        return {c: float(v) for c, v in codes.items() if include_zero or float(v) > 0}

    def codes_per_record(self, *, include_zero: bool = False) -> dict[int, dict[str, float]]:
        """``scp_codes`` of every record, keyed by ``ecg_id`` (the input of the text embeddings).

        With ``include_zero`` the likelihood-0 codes are kept, so that a caller can still fall back
        on them for records that have no positive code.
        """
        return {
            int(i): {c: float(v) for c, v in codes.items() if include_zero or float(v) > 0}
            for i, codes in self.metadata["scp_codes"].items()
        }

    def superclass_labels(self, min_likelihood: float = 0.0) -> pd.DataFrame:
        """Multi-hot diagnostic superclasses (columns :data:`SUPERCLASSES`), indexed by ``ecg_id``.

        A record has a superclass when one of its codes with ``diagnostic == 1`` in
        ``scp_statements.csv`` belongs to that ``diagnostic_class``. As in PTB-XL's own example
        code, every listed code counts (``min_likelihood=0``), including likelihood-0 ones: for
        diagnostic statements the likelihood is a confidence, not a presence flag. Raise
        ``min_likelihood`` to count only confident codes. A record may have no superclass at all.
        """
        diagnostic = self.statements[self.statements["diagnostic"] == 1]["diagnostic_class"].dropna()
        labels = np.zeros((len(self.metadata), len(SUPERCLASSES)), dtype=np.int8)
        column = {name: j for j, name in enumerate(SUPERCLASSES)}
        for row, codes in enumerate(self.metadata["scp_codes"]):
            for code, likelihood in codes.items():
                if code in diagnostic.index and float(likelihood) >= min_likelihood:
                    labels[row, column[diagnostic[code]]] = 1
        return pd.DataFrame(labels, index=self.metadata.index.copy(), columns=list(SUPERCLASSES))

    def reports(self) -> pd.Series:
        """The free-text report of every record (mostly German), whitespace-normalised."""
        return self.metadata["report"].map(clean_raw_report)

    def demographics(self) -> pd.DataFrame:
        """``age`` (years) and ``sex`` (0 = male, 1 = female) per record, indexed by ``ecg_id``.

        v1.0.3 writes 300 for ages above 89; that code is reported as 90 ("90 or older") so that
        age stays usable as a number. v1.0.1 rows keep the true age.
        """
        age = self.metadata["age"].astype(float).where(self.metadata["age"] != _AGE_CODE_OVER_89, _AGE_OVER_89)
        return pd.DataFrame({"age": age, "sex": self.metadata["sex"].astype("Int8")})
