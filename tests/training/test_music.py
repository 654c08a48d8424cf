"""The MUSIC cohort: its loader, the Cox fits on it, the committed coefficients and `hfrisk evaluate --format music`.

MUSIC itself is not committed (docs/training/music.md says why): every test builds a table in MUSIC's own file
format with outcomes drawn from a known hazard; the two tests on the real table skip where it is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hfrisk.training.data.music import (
    ECG_COVARIATES,
    MUSIC_SCORE_PREDICTORS,
    SOURCE_COLUMNS,
    MusicError,
    endpoint,
    load_music,
    music_score_predictors,
)
from hfrisk.training.evaluation.music_cox import fit_cox, music_cox_coefficients

REAL_MUSIC = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "outcomes" / "music" / "subject-info.csv"

# The hazard the synthetic tables are drawn from, per unit of each ECG covariate.
TRUE_BETA = {"age_years": 0.04, "heart_rate_bpm": 0.02, "qrs_ms": 0.01, "lbbb": 0.5, "q_waves": 0.7, "af_or_flutter": 0.4}


def _covariates(n: int, rng: np.random.Generator) -> pd.DataFrame:
    conduction = rng.choice([0, 1, 2, 3, 4, 5, 6, 7], size=n, p=[0.4, 0.05, 0.28, 0.06, 0.01, 0.03, 0.01, 0.16])
    return pd.DataFrame({
        "age_years": rng.normal(65, 11, n).round().clip(18, 95),
        "male": rng.integers(0, 2, n),
        "rr_ms": rng.normal(850, 140, n).round().clip(450, 1500),
        "rhythm_code": rng.choice([0, 1, 2, 3], size=n, p=[0.7, 0.18, 0.02, 0.1]),
        "conduction_code": conduction,
        "qrs_ms": rng.normal(125, 30, n).round().clip(70, 240),
        "qtc_ms": rng.normal(444, 35, n).round().clip(310, 650),
        "lvh": (rng.random(n) < 0.25).astype(int),
        "q_waves": (rng.random(n) < 0.3).astype(int),
    })


def _true_log_hazard(x: pd.DataFrame) -> np.ndarray:
    derived = {
        "age_years": x["age_years"], "heart_rate_bpm": 60_000.0 / x["rr_ms"], "qrs_ms": x["qrs_ms"],
        "lbbb": (x["conduction_code"] == 2).astype(float), "q_waves": x["q_waves"],
        "af_or_flutter": x["rhythm_code"].isin([1, 2]).astype(float),
    }
    return sum(TRUE_BETA[name] * (derived[name] - derived[name].mean()) for name in TRUE_BETA).to_numpy()


def music_like_table(n: int = 400, seed: int = 0, weibull_shape: float = 1.0) -> pd.DataFrame:
    """A raw table in MUSIC's format (its column names, text values with decimal commas, blank exits, ">89", PR 999).

    Pump-failure deaths follow TRUE_BETA with a Weibull baseline; sudden and non-cardiac deaths are competing
    risks with a hazard of their own; follow-up ends at 4-5.5 years.
    """
    rng = np.random.default_rng(seed)
    x = _covariates(n, rng)
    eta = _true_log_hazard(x)
    pump = (rng.exponential(size=n) / (np.exp(eta) * 2e-4 ** weibull_shape)) ** (1 / weibull_shape)
    sudden = rng.exponential(1 / 6e-5, n)
    other = rng.exponential(1 / 4e-5, n)
    end = rng.uniform(1460, 2000, n)
    first = np.minimum.reduce([pump, sudden, other, end])
    cause = np.select([first == pump, first == sudden, first == other], [6, 3, 1], 0)
    cause = np.where((cause == 6) & (rng.random(n) < 0.1), 7, cause)  # both pump-failure codes
    raw = pd.DataFrame({
        SOURCE_COLUMNS["patient_id"]: [f"P{i:04d}" for i in range(1, n + 1)],
        SOURCE_COLUMNS["follow_up_days"]: np.ceil(first).astype(int).astype(str),
        SOURCE_COLUMNS["exit_code"]: np.where(cause > 0, "3", ""),
        SOURCE_COLUMNS["death_cause_code"]: cause.astype(str),
        SOURCE_COLUMNS["pr_ms"]: np.where(x["rhythm_code"] == 0, "180", "999"),
    })
    for name in ("age_years", "male", "rhythm_code", "conduction_code", "qrs_ms", "qtc_ms", "rr_ms", "lvh", "q_waves"):
        raw[SOURCE_COLUMNS[name]] = x[name].astype(int).astype(str)
    raw.loc[raw[SOURCE_COLUMNS["age_years"]].astype(int) > 89, SOURCE_COLUMNS["age_years"]] = ">89"
    raw[SOURCE_COLUMNS["weight_kg"]] = "78,5"  # a decimal comma, as the file writes it
    raw[SOURCE_COLUMNS["height_cm"]] = "168"
    return raw


def write_music_csv(raw: pd.DataFrame, path: Path) -> Path:
    raw.to_csv(path, sep=";", index=False, encoding="latin-1")
    return path


def test_loader_reads_the_file_format_and_codes(tmp_path):
    raw = music_like_table(300, seed=1)
    raw.loc[0, SOURCE_COLUMNS["age_years"]] = ">89"
    raw.loc[1, [SOURCE_COLUMNS["exit_code"], SOURCE_COLUMNS["death_cause_code"]]] = ["2", "0"]  # a transplant
    table = load_music(write_music_csv(raw, tmp_path / "subject-info.csv"))
    assert len(table) == 300 and table["patient_id"].iloc[0] == "P0001"
    assert table.loc[0, "age_years"] == 90.0
    assert table.loc[1, "exit"] == "transplant"
    assert table["weight_kg"].eq(78.5).all()
    assert table["pr_ms"].isna().sum() == (raw[SOURCE_COLUMNS["pr_ms"]] == "999").sum() > 0
    # Indicators from the codes: LBBB is code 2 only; RBBB with a hemiblock counts as both.
    codes = raw[SOURCE_COLUMNS["conduction_code"]].astype(int)
    assert table["lbbb"].sum() == (codes == 2).sum()
    assert table.loc[codes == 5, ["rbbb", "fascicular_block"]].eq(1).all().all()
    np.testing.assert_allclose(table["heart_rate_bpm"], 60_000 / raw[SOURCE_COLUMNS["rr_ms"]].astype(float))
    assert list(table[list(ECG_COVARIATES)].columns) == list(ECG_COVARIATES)


def test_endpoints_censor_competing_causes():
    table = load_music_frame(music_like_table(300, seed=2))
    pump, time = endpoint(table, "pump_failure")
    cardiac, _ = endpoint(table, "cardiac")
    cause = table["death_cause_code"].to_numpy()
    assert pump.sum() == np.isin(cause, [6, 7]).sum() > 0
    assert cardiac.sum() == np.isin(cause, [3, 6, 7]).sum() > pump.sum()
    # A sudden death is censored for pump failure at its own time, not dropped.
    sudden = np.flatnonzero(cause == 3)
    assert len(time) == len(table) and not pump[sudden].any() and cardiac[sudden].all()
    with pytest.raises(ValueError, match="endpoint must be one of"):
        endpoint(table, "heart_failure")


def load_music_frame(raw: pd.DataFrame) -> pd.DataFrame:
    from hfrisk.training.data.music import tidy_music

    return tidy_music(raw)


def test_loader_reports_every_problem_at_once(tmp_path):
    raw = music_like_table(50, seed=3)
    raw.loc[3, SOURCE_COLUMNS["death_cause_code"]] = "5"
    raw.loc[4, SOURCE_COLUMNS["follow_up_days"]] = "-2"
    raw.loc[5, SOURCE_COLUMNS["patient_id"]] = "P0001"
    with pytest.raises(MusicError) as caught:
        load_music(write_music_csv(raw, tmp_path / "bad.csv"))
    message = str(caught.value)
    assert "cause of death is not one of" in message and "P0004" in message
    assert "follow-up is missing" in message and "P0005" in message
    assert "listed twice" in message
    with pytest.raises(MusicError, match="missing columns"):
        load_music_frame(raw.drop(columns=[SOURCE_COLUMNS["qrs_ms"]]))


def test_music_score_predictors_are_missing_where_their_inputs_are():
    table = load_music_frame(music_like_table(40, seed=4))
    predictors = music_score_predictors(table)
    assert list(predictors.columns) == list(MUSIC_SCORE_PREDICTORS)
    # The synthetic table has no labs: their predictors are unknown, not "absent".
    assert predictors["nt_probnp_over_1000"].isna().all()
    assert predictors["atrial_fibrillation"].eq(table["rhythm_code"].eq(1).astype(float)).all()


def test_cox_recovers_the_coefficients_it_was_simulated_with():
    table = load_music_frame(music_like_table(4000, seed=5, weibull_shape=1.3))
    event, time = endpoint(table, "pump_failure")
    assert 300 < event.sum() < 3000
    fitter = fit_cox(table[list(ECG_COVARIATES)], event, time)
    for name, beta in TRUE_BETA.items():
        estimate, se = fitter.params_[name], fitter.standard_errors_[name]
        assert abs(estimate - beta) < 3.5 * se, (name, estimate, beta, se)
    for name in set(ECG_COVARIATES) - set(TRUE_BETA) - {"rbbb", "fascicular_block", "other_ivcd", "paced"}:
        assert abs(fitter.params_[name]) < 3.5 * fitter.standard_errors_[name], name


def test_exported_fit_matches_lifelines_baseline_and_the_weibull_shape():
    table = load_music_frame(music_like_table(3000, seed=6, weibull_shape=1.3))
    fit = music_cox_coefficients(table, endpoints=("pump_failure",))
    model = fit["endpoints"]["pump_failure"]
    assert abs(model["weibull_baseline"]["shape"] - 1.3) < 0.15
    # The Breslow baseline at the covariate means equals lifelines' own baseline (it centres the same way).
    event, time = endpoint(table, "pump_failure")
    fitter = fit_cox(table[list(ECG_COVARIATES)], event, time)
    reference = fitter.baseline_cumulative_hazard_.iloc[:, 0]
    for label, days in (("1y", 365.25), ("3y", 3 * 365.25)):
        expected = float(reference[reference.index <= days].iloc[-1])
        assert model["baseline_cumulative_hazard_at_centre"][label] == pytest.approx(expected, rel=1e-6)
    assert fit["centre"]["age_years"] == pytest.approx(table["age_years"].mean())


def test_committed_coefficients_are_complete_and_sourced():
    from hfrisk.training.data.music_hazard import MUSIC_COX_FILE, MusicHazard

    document = json.loads(MUSIC_COX_FILE.read_text())
    assert {"command", "date", "data", "data_sha256"} <= set(document["provenance"])
    assert "hfrisk evaluate" in document["provenance"]["command"]
    for name in ("pump_failure", "cardiac"):
        hazard = MusicHazard.from_json(name)
        assert set(hazard.coefficients) == set(ECG_COVARIATES) == set(document["units"])
        assert hazard.weibull_shape > 0
        # The hazard of a patient at the centre is zero: the linear predictor is centred.
        assert hazard.log_hazard(pd.DataFrame([hazard.centre])) == pytest.approx([0.0], abs=1e-12)


@pytest.mark.skipif(not REAL_MUSIC.is_file(), reason="the MUSIC table (../shared/data/outcomes/music) is not on this machine")
def test_real_music_table_loads_with_its_documented_counts():
    table = load_music(REAL_MUSIC)
    assert len(table) == 992
    assert table["death_cause"].value_counts().to_dict() == {
        "none": 726, "pump_failure": 111, "sudden_cardiac": 94, "non_cardiac": 61}
    assert table[list(ECG_COVARIATES)].notna().all().all()


@pytest.mark.skipif(not REAL_MUSIC.is_file(), reason="the MUSIC table (../shared/data/outcomes/music) is not on this machine")
def test_committed_coefficients_are_reproduced_from_the_real_table():
    from hfrisk.training.data.music_hazard import MUSIC_COX_FILE

    committed = json.loads(MUSIC_COX_FILE.read_text())
    refit = music_cox_coefficients(load_music(REAL_MUSIC))
    for name, model in refit["endpoints"].items():
        for covariate, beta in model["coefficients_per_unit"].items():
            assert committed["endpoints"][name]["coefficients_per_unit"][covariate] == pytest.approx(beta, rel=1e-6)


def test_evaluate_command_runs_on_a_music_table(tmp_path):
    from hfrisk.training.commands import evaluate_command
    from hfrisk.training.data.music_hazard import MusicHazard

    path = write_music_csv(music_like_table(400, seed=7), tmp_path / "subject-info.csv")
    out = tmp_path / "music"
    evaluate_command(cohort=path, out=out, cohort_format="music", repeats=2, n_boot=50,
                     coefficients_out=tmp_path / "cox.json")
    summary = json.loads((out / "summary.json").read_text())
    pump = summary["pump_failure"]
    assert pump["n_events"] == int((load_music(path)["death_cause"] == "pump_failure").sum())
    # The ECG covariates carry the simulated hazard; age and sex carry only part of it.
    assert pump["ecg"]["harrell_c"] > pump["age_sex"]["harrell_c"]
    low, high = pump["ecg"]["harrell_c_ci95"]
    assert low < pump["ecg"]["harrell_c"] < high
    calibration = pd.read_csv(out / "calibration_pump_failure_ecg.csv")
    assert len(calibration) == 10 and calibration["n"].sum() == 400
    assert (out / "calibration_pump_failure_ecg.png").stat().st_size > 0
    # What it wrote is what the MUSIC scenario of synthetic-cohort reads.
    hazard = MusicHazard.from_json("cardiac", tmp_path / "cox.json")
    assert set(hazard.coefficients) == set(ECG_COVARIATES)


def test_evaluate_command_rejects_a_table_that_is_not_music(tmp_path):
    import typer
    from hfrisk.training.commands import evaluate_command

    path = tmp_path / "cohort.csv"
    pd.DataFrame({"record": ["a"], "time": [1.0], "event": [1]}).to_csv(path, sep=";", index=False)
    with pytest.raises(typer.BadParameter, match="missing columns"):
        evaluate_command(cohort=path, out=tmp_path / "out", cohort_format="music")
