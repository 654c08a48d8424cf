r"""A semi-synthetic outcome about the ECG, grounded in real data: MUSIC's Cox fits applied to PTB-XL records.

``music_cox.json`` (beside this module) holds cause-specific Cox models fitted on the real MUSIC heart-failure
cohort (pump-failure death, cardiac death) on what a 12-lead ECG gives, plus age and sex
(:data:`~hfrisk.training.data.music.ECG_COVARIATES`). :class:`MusicHazard` applies one of them to each PTB-XL
record's OWN covariates:

* heart rate, QRS duration and QTc measured from the record by the front end
  (:mod:`hfrisk.training.data.measurements`; NaN where a measurement failed takes the cohort's median);
* rhythm, conduction disturbances, LVH and Q waves from the record's SCP statements (:data:`SCP_INDICATORS`),
  which a cardiologist read from the same ECG; age and sex from PTB-XL's metadata.

The true log-hazard is :math:`\eta = \sum_j \beta_j (x_j - \bar x_j)` with MUSIC's :math:`\beta` and centre;
event times are Weibull with MUSIC's baseline shape, and the scale is solved for the requested event rate
exactly as for the diagnosis-label scenario (:func:`~hfrisk.training.data.synthetic_cohort.simulate_outcomes`).
How each covariate maps and what it leaves out: docs/training/music.md.

>>> synth = music_ecg_cohort(PTBXL(root, 500), "pump_failure", event_rate=0.05)  # doctest: +SKIP
>>> synth.oracle_c()                                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from hfrisk.core.logs import get_logger

from hfrisk.training.data.music import ECG_COVARIATES
from hfrisk.training.data.synthetic_cohort import SyntheticCohort, build_synthetic_cohort

__all__ = [
    "MUSIC_COX_FILE",
    "SCP_INDICATORS",
    "MEASURED_COVARIATES",
    "DEMOGRAPHICS",
    "MusicHazard",
    "ptbxl_music_covariates",
    "measure_ptbxl",
    "music_ecg_cohort",
]

log = get_logger(__name__)

MUSIC_COX_FILE = Path(__file__).with_name("music_cox.json")
# Covariates the front end measures on the waveform (names shared with measurements.MEASUREMENTS).
MEASURED_COVARIATES: tuple[str, ...] = ("heart_rate_bpm", "qrs_ms", "qtc_ms")
DEMOGRAPHICS: tuple[str, ...] = ("age_years", "male")
# 0/1 covariates from PTB-XL's SCP statements: set when the record lists any of these codes.
SCP_INDICATORS: dict[str, tuple[str, ...]] = {
    "af_or_flutter": ("AFIB", "AFLT"),
    "paced": ("PACE",),
    "lbbb": ("CLBBB",),
    "rbbb": ("CRBBB",),
    "fascicular_block": ("LAFB", "LPFB"),
    # MUSIC's "others": conduction delays that are neither bundle-branch nor fascicular blocks.
    "other_ivcd": ("IVCD", "ILBBB"),
    "lvh": ("LVH",),
    # Q waves of necrosis: the explicit statement, or a myocardial infarction diagnosed from the ECG.
    "q_waves": ("QWAVE", "IMI", "ASMI", "ILMI", "AMI", "ALMI", "LMI", "IPLMI", "IPMI", "PMI"),
}


@lru_cache(maxsize=4)
def _read_fit(path: str) -> dict:
    return json.loads(Path(path).read_text())


class MusicHazard(BaseModel):
    """The true hazard of the MUSIC scenario: one endpoint's coefficients, centre and baseline shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: Literal["pump_failure", "cardiac"] = "pump_failure"
    coefficients: dict[str, float]
    centre: dict[str, float]
    weibull_shape: float
    follow_up_years: tuple[float, float] = (3.0, 7.0)
    dropout_per_year: float = 0.02
    source: str = "training/data/music_cox.json"
    # False: the hazard keeps MUSIC's age- and sex-ADJUSTED ECG effects but leaves age and sex out, so the
    # outcome is about the ECG only (on PTB-XL, age otherwise carries most of the hazard: docs/training/music.md).
    demographics: bool = True

    @property
    def terms(self) -> list[str]:
        """The covariates that enter the log-hazard."""
        return [c for c in self.coefficients if self.demographics or c not in DEMOGRAPHICS]

    @classmethod
    def from_json(cls, endpoint: str = "pump_failure", path: str | Path | None = None, **overrides) -> MusicHazard:
        """The hazard of ``endpoint`` from ``music_cox.json`` (or another file written by ``write_music_cox``)."""
        fit = _read_fit(str(Path(path) if path else MUSIC_COX_FILE))
        if endpoint not in fit["endpoints"]:
            raise ValueError(f"{path or MUSIC_COX_FILE} has no endpoint {endpoint!r}; it has {sorted(fit['endpoints'])}")
        model = fit["endpoints"][endpoint]
        return cls(endpoint=endpoint, coefficients=model["coefficients_per_unit"], centre=fit["centre"],
                   weibull_shape=model["weibull_baseline"]["shape"], source=str(path or "training/data/music_cox.json"),
                   **overrides)

    def log_hazard(self, covariates: pd.DataFrame) -> np.ndarray:
        """:math:`\\sum_j \\beta_j (x_j - \\bar x_j)` per row; every covariate must be present and finite."""
        missing = [c for c in self.terms if c not in covariates.columns]
        if missing:
            raise ValueError(f"covariates lack columns {missing}")
        x = covariates[self.terms].astype(float)
        if not np.isfinite(x.to_numpy()).all():
            bad = x.columns[~np.isfinite(x.to_numpy()).all(axis=0)].tolist()
            raise ValueError(f"covariates {bad} have missing or infinite values; impute them first")
        beta = np.array([self.coefficients[c] for c in x.columns])
        centre = np.array([self.centre[c] for c in x.columns])
        return (x.to_numpy() - centre) @ beta

    def describe(self) -> str:
        terms = [f"{self.coefficients[c]:+.3g}·({c}−{self.centre[c]:.3g})" for c in self.terms]
        scope = "" if self.demographics else ", ECG terms only"
        return f"MUSIC {self.endpoint} Cox{scope}: " + " ".join(terms)


def measure_ptbxl(ptbxl, *, cache: str | Path | None = None, progress: bool = False) -> pd.DataFrame:
    """The front end's :data:`~hfrisk.training.data.measurements.MEASUREMENTS` of every record, by ``ecg_id``."""
    from hfrisk.training.data.measurements import measure_records

    ids = [int(i) for i in ptbxl.ids]
    frame = measure_records([ptbxl.record_path(i) for i in ids], cache=cache, progress=progress)
    return frame.set_axis(pd.Index(ids, name="ecg_id"))


def ptbxl_music_covariates(ptbxl, measurements: pd.DataFrame, *, min_likelihood: float = 0.0) -> pd.DataFrame:
    """:data:`~hfrisk.training.data.music.ECG_COVARIATES` of every PTB-XL record, indexed by ``ecg_id``.

    ``measurements``: indexed by ``ecg_id`` with :data:`MEASURED_COVARIATES` (e.g. :func:`measure_ptbxl`).
    A measurement the front end could not make takes the median of the records that have it (counted in the
    log); a record missing from ``measurements`` is an error, not a silent imputation.
    """
    ids = pd.Index([int(i) for i in ptbxl.ids], name="ecg_id")
    absent = ids.difference(measurements.index)
    if len(absent):
        raise ValueError(f"no measurements for {len(absent)} records (e.g. ecg_id {list(absent[:5])})")
    lacking = [c for c in MEASURED_COVARIATES if c not in measurements.columns]
    if lacking:
        raise ValueError(f"measurements lack columns {lacking}")
    out = measurements.loc[ids, list(MEASURED_COVARIATES)].astype(float).copy()
    imputed = {}
    for column in MEASURED_COVARIATES:
        missing = ~np.isfinite(out[column])
        if missing.all():
            raise ValueError(f"no record has a {column} measurement")
        imputed[column] = int(missing.sum())
        out.loc[missing, column] = float(out.loc[~missing, column].median())
    codes = ptbxl.codes_per_record()
    for name, scp in SCP_INDICATORS.items():
        out[name] = [float(any(code in codes[i] and codes[i][code] >= min_likelihood for code in scp))
                     for i in ids]
    demographics = ptbxl.demographics().loc[ids]
    age = demographics["age"].astype(float)
    out["age_years"] = age.fillna(age.median())
    # PTB-XL's sex: 0 male, 1 female; a missing sex counts as female, as in the label scenario.
    out["male"] = (demographics["sex"].astype("Float64") == 0).fillna(False).astype(float).to_numpy()
    log.info("music_hazard.covariates", records=len(out), imputed_measurements=imputed,
             prevalence={k: round(float(out[k].mean()), 3) for k in SCP_INDICATORS})
    out.attrs["imputed_measurements"] = imputed
    return out[list(ECG_COVARIATES)]


def music_ecg_cohort(
    ptbxl,
    endpoint: str = "pump_failure",
    event_rate: float = 0.05,
    seed: int = 0,
    *,
    measurements: pd.DataFrame | None = None,
    cache: str | Path | None = None,
    hazard: MusicHazard | None = None,
    with_demographics: bool = False,
    progress: bool = False,
) -> SyntheticCohort:
    """Simulated outcomes for every record of ``ptbxl`` from MUSIC's ``endpoint`` Cox model (module docstring).

    ``measurements`` (by ``ecg_id``) skips measuring; otherwise the records are measured (``cache``: a parquet
    file that keeps them for the next call).
    """
    hazard = hazard or MusicHazard.from_json(endpoint)
    if measurements is None:
        measurements = measure_ptbxl(ptbxl, cache=cache, progress=progress)
    covariates = ptbxl_music_covariates(ptbxl, measurements)
    return build_synthetic_cohort(ptbxl, covariates, hazard, event_rate, seed, with_demographics=with_demographics)
