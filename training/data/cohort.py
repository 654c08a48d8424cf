"""The fine-tuning cohort: one ECG per subject with a time to heart failure or to censoring.

A CSV or Parquet file with ``record``, ``time`` and ``event`` columns plus covariates (the format:
docs/training/data.md), validated once on loading: every problem of every row is reported
together as a :class:`CohortError`. Times are used in the unit given (``time_unit``).

A ``patient_id`` column groups several ECGs of one person: the folds then never split a patient
between training and test (``by="patient"``, the default; docs/training/evaluation.md).

>>> cohort = load_cohort("cohort.csv", records_root="ecgs/")          # doctest: +SKIP
>>> for train, test in cohort.stratified_folds(n_splits=2, seed=42):  # doctest: +SKIP
...     fit, val = cohort.subset(train).inner_split(frac=0.2, seed=42)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hfrisk.core.logs import get_logger

__all__ = [
    "Cohort",
    "CohortError",
    "load_cohort",
    "cohort_from_ptbxl",
    "REQUIRED_COLUMNS",
    "IDENTIFIER_COLUMNS",
    "PAPER_CV_SEEDS",
    "FOLD_SCHEMES",
    "grouped_stratified_folds",
]

log = get_logger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("record", "time", "event")
# strat_fold is PTB-XL's own fold number: a grouping of records, never a covariate.
IDENTIFIER_COLUMNS: tuple[str, ...] = ("eid", "ecg_id", "patient_id", "subject_id", "strat_fold")
# What a fold keeps together: a patient's records (default), nothing (each record alone, the paper's
# split), or PTB-XL's ten strat_folds (patient-wise by construction, so coarser than patients).
FOLD_SCHEMES: tuple[str, ...] = ("patient", "record", "strat_fold")
# The paper repeats stratified 2-fold cross-validation with these seeds.
PAPER_CV_SEEDS: tuple[int, ...] = (42, 2021, 2022, 2023, 2024)
_PAPER_MONTH_DAYS = 30.0
_SHOWN_ROWS = 10


class CohortError(ValueError):
    """A cohort file that cannot be used; ``problems`` maps each rule broken to the offending rows."""

    def __init__(self, source: str, problems: dict[str, list[int]], missing_columns: Sequence[str] = ()):
        self.problems = problems
        self.missing_columns = list(missing_columns)
        lines = [f"cohort {source} is not usable:"]
        if missing_columns:
            lines.append(f"  missing columns {list(missing_columns)}; required: {list(REQUIRED_COLUMNS)}")
        for rule, rows in problems.items():
            shown = ", ".join(map(str, rows[:_SHOWN_ROWS])) + (", …" if len(rows) > _SHOWN_ROWS else "")
            lines.append(f"  {rule}: {len(rows)} rows ({shown})")
        super().__init__("\n".join(lines))


def _record_exists(path: Path) -> bool:
    # A WFDB record is named without extension; other readers take the file itself.
    return path.exists() or path.with_name(path.name + ".hea").exists()


@dataclass(frozen=True, eq=False)
class Cohort:
    """A validated survival cohort. ``table`` has ``record``, ``time``, ``event`` and covariates.

    Index arrays returned by the split methods are positions into this cohort (``iloc``).
    """

    table: pd.DataFrame
    time_unit: str = "days"
    records_root: Path | None = None
    source: str = field(default="<memory>", compare=False)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def records(self) -> list[str]:
        return self.table["record"].astype(str).tolist()

    @property
    def time(self) -> np.ndarray:
        return self.table["time"].to_numpy(dtype=np.float64)

    @property
    def event(self) -> np.ndarray:
        return self.table["event"].to_numpy(dtype=np.int64)

    @property
    def covariates(self) -> pd.DataFrame:
        """Every column that is neither required nor an identifier."""
        drop = [c for c in (*REQUIRED_COLUMNS, *IDENTIFIER_COLUMNS) if c in self.table.columns]
        return self.table.drop(columns=drop)

    @property
    def n_events(self) -> int:
        return int(self.event.sum())

    def record_path(self, i: int) -> Path:
        """The record of row ``i`` as a path: joined to ``records_root`` unless absolute."""
        record = Path(self.records[i])
        if self.records_root is None or record.is_absolute():
            return record
        return self.records_root / record

    def record_paths(self) -> list[Path]:
        return [self.record_path(i) for i in range(len(self))]

    def subset(self, index: Sequence[int] | np.ndarray) -> Cohort:
        """The rows at these positions, as a cohort of its own (for inner splits)."""
        return Cohort(self.table.iloc[np.asarray(index)].reset_index(drop=True), self.time_unit,
                      self.records_root, self.source)

    def groups(self, by: str = "patient") -> np.ndarray:
        """The label each row is kept together by under the fold scheme ``by`` (see :data:`FOLD_SCHEMES`).

        ``"patient"`` reads ``patient_id``; a cohort without it (one ECG per subject, as the cohort
        format assumes) and rows with a missing id count each record as its own patient.
        ``"strat_fold"`` needs PTB-XL's ``strat_fold`` column.
        """
        if by not in FOLD_SCHEMES:
            raise ValueError(f"unknown fold scheme {by!r}; use one of {list(FOLD_SCHEMES)}")
        records = np.array([f"record:{r}" for r in self.records], dtype=object)
        if by == "record" or (by == "patient" and "patient_id" not in self.table.columns):
            return records
        column = "patient_id" if by == "patient" else "strat_fold"
        if column not in self.table.columns:
            raise ValueError(f"fold scheme {by!r} needs a {column} column; the cohort has {list(self.table.columns)}")
        values = self.table[column]
        labels = np.array([f"{column}:{v}" for v in values], dtype=object)
        return np.where(values.isna().to_numpy(), records, labels)

    def fold_description(self, by: str = "patient") -> str:
        """What ``by`` means on this cohort, for summaries: e.g. ``patient (897 records, 821 patients)``."""
        groups = self.groups(by)
        n_groups = len(set(groups.tolist()))
        if by == "patient" and "patient_id" not in self.table.columns:
            return f"patient (no patient_id column: {len(self)} records taken as {n_groups} patients)"
        noun = {"patient": "patients", "record": "records", "strat_fold": "strat_folds"}[by]
        return f"{by} ({len(self)} records, {n_groups} {noun})"

    def stratified_folds(self, n_splits: int = 2, seed: int = 42, by: str = "patient") -> list[tuple[np.ndarray, np.ndarray]]:
        """``(train, test)`` positions of a shuffled K-fold split stratified on ``event``, grouped by ``by``.

        Every fold gets about the same share of events and no group (patient, by default) is in two
        folds. When every group is a single record the split is sklearn's ``StratifiedKFold``, the
        paper's, so cohorts without shared patients keep the folds they always had; otherwise
        :func:`grouped_stratified_folds`. The paper uses ``n_splits=2`` repeated over :data:`PAPER_CV_SEEDS`.
        """
        from sklearn.model_selection import StratifiedKFold

        self._check_stratifiable(n_splits, "stratified_folds")
        groups = self.groups(by)
        n_groups = len(set(groups.tolist()))
        if n_groups == len(self):
            folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            return [(train, test) for train, test in folds.split(np.zeros(len(self)), self.event)]
        if n_groups < n_splits:
            raise ValueError(f"{n_splits} folds need at least {n_splits} groups; {by} gives {n_groups}")
        return grouped_stratified_folds(self.event, groups, n_splits, seed)

    def inner_split(self, frac: float = 0.2, seed: int = 42, by: str = "patient") -> tuple[np.ndarray, np.ndarray]:
        """``(train, validation)`` positions, ``frac`` of the rows held out, stratified on ``event``.

        The paper selects checkpoints on such a 20 % validation part of each training fold. With
        shared patients the validation part is one fold of a grouped ``round(1 / frac)``-fold split
        (so its share is ``1 / round(1 / frac)``): a patient's ECGs are never on both sides, which
        would reward memorising the patient when choosing the checkpoint.
        """
        from sklearn.model_selection import train_test_split

        if not 0.0 < frac < 1.0:
            raise ValueError(f"frac must be in (0, 1), got {frac}")
        self._check_stratifiable(2, "inner_split")
        groups = self.groups(by)
        if len(set(groups.tolist())) == len(self):
            train, val = train_test_split(
                np.arange(len(self)), test_size=frac, stratify=self.event, random_state=seed, shuffle=True
            )
            return np.sort(train), np.sort(val)
        train, val = grouped_stratified_folds(self.event, groups, max(2, int(round(1.0 / frac))), seed)[0]
        return train, val

    def _check_stratifiable(self, n_groups: int, what: str) -> None:
        # sklearn would only warn and return folds without events, where the Cox loss is undefined.
        events, censored = self.n_events, len(self) - self.n_events
        if min(events, censored) < n_groups:
            raise ValueError(
                f"{what} needs at least {n_groups} events and {n_groups} censored subjects "
                f"to stratify, the cohort has {events} events and {censored} censored"
            )

    def in_paper_months(self) -> Cohort:
        """Times converted the paper's way: ``days / 30 + 1`` (needs ``time_unit == "days"``)."""
        if self.time_unit != "days":
            raise ValueError(f"the paper's conversion starts from days, this cohort is in {self.time_unit}")
        table = self.table.copy()
        table["time"] = table["time"].astype(float) / _PAPER_MONTH_DAYS + 1.0
        return Cohort(table, "paper_months", self.records_root, self.source)


def grouped_stratified_folds(
    event: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` positions of ``n_splits`` folds that keep each group whole and balance events.

    Groups are shuffled by ``seed``, ordered largest first (so that single records fill what the
    large ones leave), and each goes to the fold where the events and the censored rows end
    closest to their even shares (sum of squared relative shortfalls). sklearn's
    ``StratifiedGroupKFold(shuffle=True)`` was tried first: on 465 records of 150 patients with
    23 % events its two folds held 19-26 % events and 203-262 records; this split keeps both within
    one or two records of even when most groups are single records, as in PTB-XL.
    """
    event = np.asarray(event, dtype=np.int64)
    labels, group_of = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    n_events = np.bincount(group_of, weights=event, minlength=len(labels))
    n_rows = np.bincount(group_of, minlength=len(labels)).astype(np.float64)
    n_censored = n_rows - n_events
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(-n_rows[order], kind="stable")]
    target = np.array([n_events.sum(), n_censored.sum()]) / n_splits
    target = np.maximum(target, 1e-9)
    filled = np.zeros((n_splits, 2))
    fold_of = np.empty(len(labels), dtype=np.int64)
    for g in order:
        after = filled + np.array([n_events[g], n_censored[g]])
        # The cost of adding g to fold f: the deviation of fold f's counts after minus before.
        gain = (((after - target) / target) ** 2).sum(axis=1) - (((filled - target) / target) ** 2).sum(axis=1)
        best = int(np.argmin(gain))
        fold_of[g] = best
        filled[best] += (n_events[g], n_censored[g])
    row_fold = fold_of[group_of]
    rows = np.arange(len(event))
    return [(rows[row_fold != f], rows[row_fold == f]) for f in range(n_splits)]


def _validate(
    table: pd.DataFrame,
    source: str,
    records_root: Path | None,
    record_exists: Callable[[Path], bool],
) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CohortError(source, {}, missing)
    table = table.reset_index(drop=True).copy()
    problems: dict[str, list[int]] = {}

    def flag(rule: str, mask: pd.Series) -> None:
        rows = np.flatnonzero(mask.to_numpy()).tolist()
        if rows:
            problems[rule] = rows

    record = table["record"]
    blank = record.isna() | record.astype(str).str.strip().eq("")
    flag("record is empty", blank)
    flag("record is listed twice", ~blank & record.astype(str).duplicated(keep=False))

    time = pd.to_numeric(table["time"], errors="coerce")
    flag("time is missing or not a number", time.isna() | ~np.isfinite(time.fillna(0)))
    flag("time is negative", time < 0)

    event = pd.to_numeric(table["event"], errors="coerce")
    flag("event is not 0 or 1", ~event.isin([0, 1]))

    if records_root is not None:
        def unknown(value: object) -> bool:
            path = Path(str(value))
            return not record_exists(path if path.is_absolute() else records_root / path)

        flag(f"record not found under {records_root}", ~blank & record.map(unknown))

    if problems:
        raise CohortError(source, problems)
    table["record"] = record.astype(str)
    table["time"] = time.astype(float)
    table["event"] = event.astype(np.int64)
    return table


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    # record stays text: ids such as 00123 must not lose their zeros.
    return pd.read_csv(path, dtype={"record": str})


def load_cohort(
    path: str | Path,
    records_root: str | Path | None = None,
    time_unit: str = "days",
    record_exists: Callable[[Path], bool] = _record_exists,
) -> Cohort:
    """Read and validate a cohort file (see the module docstring for the columns).

    Args:
        path: ``.csv``, or ``.parquet``/``.pq``.
        records_root: folder the ``record`` paths are relative to. When given, every record must
            exist there (a file, or a WFDB record: ``<record>.hea``). When ``None``, records are
            taken as opaque ids and not checked.
        time_unit: the unit of ``time``, for the record (``"days"`` unless you say otherwise).
        record_exists: the existence rule, replaceable for other layouts.

    Raises:
        CohortError: a ``ValueError`` listing every missing column or offending row.
    """
    path = Path(path)
    root = Path(records_root) if records_root is not None else None
    table = _validate(_read_table(path), str(path), root, record_exists)
    cohort = Cohort(table, time_unit, root, str(path))
    log.info("cohort.loaded", source=str(path), subjects=len(cohort), events=cohort.n_events, time_unit=time_unit)
    return cohort


def cohort_from_ptbxl(
    ptbxl,
    times: Mapping[int, float] | pd.Series,
    events: Mapping[int, int] | pd.Series,
    time_unit: str = "days",
    with_demographics: bool = False,
) -> Cohort:
    """A cohort of PTB-XL records with outcomes supplied by the caller.

    PTB-XL has no follow-up, so ``times`` and ``events`` (``ecg_id -> value``, the same ids in
    both) come from elsewhere: a linked registry, or synthetic outcomes for exercising the
    fine-tuning pipeline. ``record`` is the WFDB path relative to ``ptbxl.root`` at the dataset's
    sampling rate; ``ecg_id``, ``patient_id`` and ``strat_fold`` are kept as identifiers (folds
    group by patient); ``with_demographics`` adds age and sex as covariates. Ids not in ``ptbxl`` are reported like unknown records.
    """
    times = pd.Series(times, dtype=float)
    events = pd.Series(events)
    if set(times.index) != set(events.index):
        raise ValueError("times and events must cover the same ecg_ids")
    ids = [int(i) for i in times.index]
    unknown = [i for i in ids if i not in ptbxl]
    if unknown:
        raise CohortError(
            "from PTB-XL", {f"ecg_id not in this PTB-XL view ({len(ptbxl)} records)": unknown}
        )
    table = pd.DataFrame(
        {
            "record": [ptbxl.record_name(i) for i in ids],
            "ecg_id": ids,
            **_ptbxl_identifiers(ptbxl, ids),
            "time": times.loc[times.index].to_numpy(),
            "event": events.loc[times.index].to_numpy(),
        }
    )
    if with_demographics:
        demographics = ptbxl.demographics().loc[ids].reset_index(drop=True)
        table = pd.concat([table, demographics], axis=1)
    table = _validate(table, "from PTB-XL", ptbxl.root, _record_exists)
    return Cohort(table, time_unit, Path(ptbxl.root), f"PTB-XL {ptbxl.root}")


def _ptbxl_identifiers(ptbxl, ids: list[int]) -> dict[str, object]:
    # Older metadata copies lacked patient ids for some rows: those stay missing (their own patient).
    found = {}
    for column in ("patient_id", "strat_fold"):
        if column in ptbxl.metadata.columns:
            found[column] = ptbxl.metadata.loc[ids, column].astype("Int64").to_numpy()
    return found
