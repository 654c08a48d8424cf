"""The MUSIC chronic heart-failure cohort: real deaths by cause, follow-up, and 12-lead ECG measurements.

MUSIC (Vazquez et al., Eur Heart J 2009; PhysioNet doi:10.13026/cec2-9w70) followed 992 ambulatory
patients with chronic heart failure for about four years. Its ``subject-info.csv`` is semicolon-separated,
latin-1, with decimal commas and 103 columns named in words; :func:`load_music` reads it (or a table in the
same format) into one tidy row per patient, names in snake case with units, and checks it once: every
problem of every row is reported together (:class:`MusicError`). There are no waveforms, so this is a
cohort for survival models on the ECG *measurements* the study recorded (:data:`ECG_COVARIATES`).

Endpoints (:func:`endpoint`) are cause-specific: a death of another cause, a heart transplant and loss to
follow-up are censored at their time. Codes and their reading: docs/training/music.md.

>>> music = load_music("../shared/data/outcomes/music/subject-info.csv")  # doctest: +SKIP
>>> event, time_days = endpoint(music, "pump_failure")                     # doctest: +SKIP
>>> int(event.sum()), len(music)                                           # doctest: +SKIP
(111, 992)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hfrisk.core.logs import get_logger

__all__ = [
    "MusicError",
    "load_music",
    "read_music_csv",
    "endpoint",
    "ecg_covariates",
    "music_score_predictors",
    "ENDPOINTS",
    "ECG_COVARIATES",
    "UNITS",
    "MUSIC_SCORE_PREDICTORS",
    "SOURCE_COLUMNS",
]

log = get_logger(__name__)

# Tidy name -> the column's name in subject-info.csv (trailing spaces and typos are the file's own).
SOURCE_COLUMNS: dict[str, str] = {
    "patient_id": "Patient ID",
    "follow_up_days": "Follow-up period from enrollment (days)",
    "exit_code": "Exit of the study",
    "death_cause_code": "Cause of death",
    "age_years": "Age",
    "male": "Gender (male=1)",
    "weight_kg": "Weight (kg)",
    "height_cm": "Height (cm)",
    "rhythm_code": "ECG rhythm ",
    "q_waves": "Q-waves (necrosis, yes=1)",
    "pr_ms": "PR interval (ms)",
    "qrs_ms": "QRS duration (ms)",
    "qt_ms": "QT interval (ms)",
    "qtc_ms": "QT corrected ",
    "rr_ms": "Average RR (ms) ",
    "lvh": "Left ventricular hypertrophy (yes=1)",
    "conduction_code": "Intraventricular conduction disorder",
    # For the MUSIC score's predictors (Vazquez 2009), not ECG covariates:
    "prior_mi": "Prior Myocardial Infarction (yes=1)",
    "peripheral_vascular_disease": "Peripheral vascular disease (yes=1)",
    "revascularisation_code": "Prior Revascularization",
    "left_atrial_size_mm": "Left atrial size (mm)",
    "lvef_percent": "LVEF (%)",
    # 1 only where the Holter had NSVT AND more than 10 VPBs per hour (column CH... of the file: CC > 10).
    "holter_nsvt_with_frequent_vpb": "Non-sustained ventricular tachycardia (CH>10)",
    "creatinine_umol_l": "Creatinine (?mol/L)",
    "sodium_meq_l": "Sodium (mEq/L)",
    "nt_probnp_ng_l": "Pro-BNP (ng/L)",
    # Troponin over each hospital's assay cut-off (the hospitals used different assays).
    "troponin_normalised": "Normalized Troponin",
}
# Needed for any use; the rest may be absent from a smaller table (their features are then missing).
_REQUIRED = ("patient_id", "follow_up_days", "exit_code", "death_cause_code", "age_years", "male")
_ECG_REQUIRED = ("rhythm_code", "q_waves", "qrs_ms", "qtc_ms", "rr_ms", "lvh", "conduction_code")

# subject-info_codes.csv. Exit: blank or 0 survivor, 1 lost to follow-up, 2 transplant, 3 death.
EXIT_CODES = {0: "survivor", 1: "lost_to_follow_up", 2: "transplant", 3: "death"}
# Cause of death: 0 none, 1 non-cardiac, 3 sudden cardiac death, 6 and 7 pump-failure death.
DEATH_CAUSE_CODES = {0: "none", 1: "non_cardiac", 3: "sudden_cardiac", 6: "pump_failure", 7: "pump_failure"}
ENDPOINTS: dict[str, tuple[int, ...]] = {
    "pump_failure": (6, 7),
    "cardiac": (3, 6, 7),
    "sudden_cardiac": (3,),
    "all_cause": (1, 3, 6, 7),
}
# ECG rhythm: 0 sinus, 1 permanent AF, 2 atrial flutter, 3 pacemaker.
RHYTHM_CODES = {0: "sinus", 1: "atrial_fibrillation", 2: "atrial_flutter", 3: "paced"}
# Intraventricular conduction: 0 none (not in the codes file, but 390 rows), 1 RBBB, 2 LBBB, 3 left anterior
# hemiblock, 4 left posterior hemiblock, 5 RBBB + anterior, 6 RBBB + posterior, 7 others.
CONDUCTION_CODES = {0: "none", 1: "rbbb", 2: "lbbb", 3: "lafb", 4: "lpfb", 5: "rbbb_lafb", 6: "rbbb_lpfb", 7: "other"}
# The file writes "999" where a PR interval does not exist (AF, paced) and ">89" for the oldest ages.
_PR_NOT_MEASURABLE = 999.0
_AGE_OVER_89 = 90.0

# What a 12-lead ECG gives, plus age and sex: the covariates of the ECG Cox models (names carry units).
ECG_COVARIATES: tuple[str, ...] = (
    "age_years", "male", "heart_rate_bpm", "af_or_flutter", "paced", "qrs_ms", "lbbb", "rbbb",
    "fascicular_block", "other_ivcd", "qtc_ms", "lvh", "q_waves",
)
UNITS: dict[str, str] = {
    "age_years": "years", "male": "1 = male, 0 = female", "heart_rate_bpm": "beats per minute (60000 / mean RR)",
    "af_or_flutter": "0/1, atrial fibrillation or flutter", "paced": "0/1, paced rhythm", "qrs_ms": "ms",
    "lbbb": "0/1, complete left bundle-branch block", "rbbb": "0/1, right bundle-branch block (alone or with a hemiblock)",
    "fascicular_block": "0/1, left anterior or posterior hemiblock (alone or with RBBB)",
    "other_ivcd": "0/1, other intraventricular conduction delay", "qtc_ms": "ms (Bazett)",
    "lvh": "0/1, left ventricular hypertrophy", "q_waves": "0/1, pathological Q waves (necrosis)",
}
# The ten predictors of the published MUSIC risk score as this table allows them (docs/training/music.md).
MUSIC_SCORE_PREDICTORS: tuple[str, ...] = (
    "prior_atherosclerotic_event", "left_atrium_over_26_mm_m2", "lvef_35_or_less", "atrial_fibrillation",
    "lbbb_or_ivcd", "nsvt_and_frequent_vpb", "egfr_under_60", "sodium_138_or_less", "nt_probnp_over_1000",
    "troponin_positive",
)


class MusicError(ValueError):
    """A MUSIC table that cannot be used; ``problems`` maps each rule broken to the offending patients."""

    def __init__(self, source: str, problems: dict[str, list[str]]):
        self.problems = problems
        lines = [f"MUSIC table {source} is not usable:"]
        for rule, rows in problems.items():
            shown = ", ".join(rows[:10]) + (", …" if len(rows) > 10 else "")
            lines.append(f"  {rule}: {len(rows)} ({shown})")
        super().__init__("\n".join(lines))


def read_music_csv(path: str | Path) -> pd.DataFrame:
    """The raw table as the file holds it: ``;``-separated, latin-1, decimal commas, every value text."""
    return pd.read_csv(path, sep=";", encoding="latin-1", dtype=str, keep_default_na=True)


def _numbers(text: pd.Series) -> pd.Series:
    return pd.to_numeric(text.astype("string").str.strip().str.replace(",", ".", regex=False), errors="coerce")


def tidy_music(raw: pd.DataFrame, source: str = "<memory>") -> pd.DataFrame:
    """Rename, convert and check a raw MUSIC frame (see :func:`load_music`)."""
    # Exact names: stripping spaces would merge the ECG's "Average RR (ms) " with the Holter's "Average RR (ms)".
    wanted = SOURCE_COLUMNS
    missing = [name for tidy, name in wanted.items() if tidy in (*_REQUIRED, *_ECG_REQUIRED) and name not in raw]
    if missing:
        raise MusicError(source, {"missing columns": missing})
    table = pd.DataFrame({"patient_id": raw[wanted["patient_id"]].astype("string").str.strip()})
    problems: dict[str, list[str]] = {}
    ids = table["patient_id"]

    def flag(rule: str, mask: pd.Series) -> None:
        bad = ids[mask.fillna(True).to_numpy()].fillna("<blank id>").tolist()
        if bad:
            problems[rule] = bad

    flag("patient id is blank", ids.isna() | ids.eq(""))
    flag("patient id is listed twice", ids.duplicated(keep=False) & ids.notna())
    age_text = raw[wanted["age_years"]].astype("string").str.strip()
    for tidy, name in wanted.items():
        if tidy == "patient_id" or name not in raw:
            continue
        table[tidy] = _numbers(raw[name])
    table["age_years"] = table["age_years"].where(age_text != ">89", _AGE_OVER_89)
    table["exit_code"] = table["exit_code"].fillna(0)  # blank: still in the study at its close
    flag("follow-up is missing, not a number or not positive", ~(table["follow_up_days"] > 0))
    flag("cause of death is not one of 0, 1, 3, 6, 7", ~table["death_cause_code"].isin(list(DEATH_CAUSE_CODES)))
    flag("exit is not one of blank, 0, 1, 2, 3", ~table["exit_code"].isin(list(EXIT_CODES)))
    died = table["death_cause_code"] > 0
    flag("a cause of death without exit 3 (death), or exit 3 without a cause", died != table["exit_code"].eq(3))
    flag("age is missing or outside 0-120 years", ~table["age_years"].between(0, 120))
    flag("sex is not 0 or 1", ~table["male"].isin([0, 1]))
    flag("ECG rhythm is not one of 0-3", ~table["rhythm_code"].isin(list(RHYTHM_CODES)))
    flag("conduction disorder is not one of 0-7", ~table["conduction_code"].isin(list(CONDUCTION_CODES)))
    for name in ("q_waves", "lvh"):
        flag(f"{name} is not 0 or 1", ~table[name].isin([0, 1]))
    for name, (low, high) in {"qrs_ms": (40, 300), "qtc_ms": (200, 800), "rr_ms": (200, 3000)}.items():
        flag(f"{name} is missing or outside {low}-{high}", ~table[name].between(low, high))
    if problems:
        raise MusicError(source, problems)
    if "pr_ms" in table:
        table["pr_ms"] = table["pr_ms"].where(table["pr_ms"] != _PR_NOT_MEASURABLE)
    table["death_cause"] = table["death_cause_code"].map(DEATH_CAUSE_CODES)
    table["exit"] = table["exit_code"].map(EXIT_CODES)
    return table.join(ecg_covariates(table).drop(columns=[c for c in ECG_COVARIATES if c in table]))


def load_music(path: str | Path) -> pd.DataFrame:
    """Read and check MUSIC's ``subject-info.csv`` (or a table in its format): one tidy row per patient.

    Columns: ``patient_id``, ``follow_up_days``, ``exit``/``exit_code``, ``death_cause``/``death_cause_code``,
    the source measurements under :data:`SOURCE_COLUMNS`' names, and the :data:`ECG_COVARIATES`.
    ``">89"`` ages become 90 (as PTB-XL's code 300 does); a PR of 999 ("none": AF, paced) becomes missing.

    Raises:
        MusicError: a ``ValueError`` naming every missing column, or every rule broken and by whom.
    """
    path = Path(path)
    table = tidy_music(read_music_csv(path), str(path))
    log.info("music.loaded", source=str(path), patients=len(table),
             deaths={k: int(v) for k, v in table["death_cause"].value_counts().items()})
    return table


def endpoint(table: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(event, time_days)`` of a cause-specific endpoint (:data:`ENDPOINTS`).

    A death of a cause outside the endpoint, a transplant and loss to follow-up are censored at their time
    (cause-specific hazards: the competing causes are censored, not excluded).
    """
    if name not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {name!r}")
    event = table["death_cause_code"].isin(ENDPOINTS[name]).to_numpy(dtype=np.int64)
    return event, table["follow_up_days"].to_numpy(dtype=np.float64)


def ecg_covariates(table: pd.DataFrame) -> pd.DataFrame:
    """:data:`ECG_COVARIATES` from the tidy columns: rate from the mean RR, 0/1 indicators from the codes.

    A combined block (RBBB + hemiblock) counts as both RBBB and a fascicular block.
    """
    conduction = table["conduction_code"]
    rhythm = table["rhythm_code"]
    return pd.DataFrame(
        {
            "age_years": table["age_years"].astype(float),
            "male": table["male"].astype(float),
            "heart_rate_bpm": 60_000.0 / table["rr_ms"].astype(float),
            "af_or_flutter": rhythm.isin([1, 2]).astype(float),
            "paced": rhythm.eq(3).astype(float),
            "qrs_ms": table["qrs_ms"].astype(float),
            "lbbb": conduction.eq(2).astype(float),
            "rbbb": conduction.isin([1, 5, 6]).astype(float),
            "fascicular_block": conduction.isin([3, 4, 5, 6]).astype(float),
            "other_ivcd": conduction.eq(7).astype(float),
            "qtc_ms": table["qtc_ms"].astype(float),
            "lvh": table["lvh"].astype(float),
            "q_waves": table["q_waves"].astype(float),
        },
        index=table.index,
    )


def _egfr_mdrd(creatinine_umol_l: pd.Series, age_years: pd.Series, male: pd.Series) -> pd.Series:
    # 4-variable MDRD (IDMS-traceable, 175), the equation of the MUSIC era; race is not recorded.
    creatinine_mg_dl = creatinine_umol_l / 88.4
    return 175.0 * creatinine_mg_dl ** -1.154 * age_years ** -0.203 * np.where(male == 1, 1.0, 0.742)


def music_score_predictors(table: pd.DataFrame) -> pd.DataFrame:
    """The published MUSIC score's ten predictors as 0/1 columns, NaN where the table lacks the input.

    A reconstruction, not the study's own coding (docs/training/music.md says where it may differ):
    a prior atherosclerotic event is a prior MI, revascularisation or peripheral vascular disease; the
    left atrium is indexed by Mosteller's body surface area; AF is the enrolment ECG's permanent AF;
    "LBBB or IVCD" is LBBB or an unclassified conduction delay (code 7); NSVT with frequent VPBs is the
    table's own column (NSVT and > 10 VPBs per hour); troponin is positive above the assay's cut-off
    (normalised troponin > 1).
    """
    def column(name: str) -> pd.Series:
        return table[name].astype(float) if name in table else pd.Series(np.nan, index=table.index)

    def indicator(condition: pd.Series, *inputs: pd.Series) -> pd.Series:
        known = pd.concat(inputs, axis=1).notna().all(axis=1)
        return condition.astype(float).where(known)

    bsa_m2 = np.sqrt(column("height_cm") * column("weight_kg") / 3600.0)
    la_index = column("left_atrial_size_mm") / bsa_m2
    egfr = _egfr_mdrd(column("creatinine_umol_l"), column("age_years"), column("male"))
    atherosclerotic = (column("prior_mi").eq(1) | column("peripheral_vascular_disease").eq(1)
                       | column("revascularisation_code").gt(0))
    return pd.DataFrame(
        {
            "prior_atherosclerotic_event": indicator(atherosclerotic, column("prior_mi")),
            "left_atrium_over_26_mm_m2": indicator(la_index > 26.0, la_index),
            "lvef_35_or_less": indicator(column("lvef_percent") <= 35.0, column("lvef_percent")),
            "atrial_fibrillation": indicator(column("rhythm_code").eq(1), column("rhythm_code")),
            "lbbb_or_ivcd": indicator(column("conduction_code").isin([2, 7]), column("conduction_code")),
            "nsvt_and_frequent_vpb": indicator(column("holter_nsvt_with_frequent_vpb").eq(1), column("holter_nsvt_with_frequent_vpb")),
            "egfr_under_60": indicator(egfr < 60.0, egfr),
            "sodium_138_or_less": indicator(column("sodium_meq_l") <= 138.0, column("sodium_meq_l")),
            "nt_probnp_over_1000": indicator(column("nt_probnp_ng_l") > 1000.0, column("nt_probnp_ng_l")),
            "troponin_positive": indicator(column("troponin_normalised") > 1.0, column("troponin_normalised")),
        },
        index=table.index,
    )
