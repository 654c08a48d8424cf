"""The MUSIC scenario of the semi-synthetic cohort: PTB-XL covariates, event rates, and fidelity to its hazard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hfrisk.training.data.music import ECG_COVARIATES
from hfrisk.training.data.music_hazard import (
    MEASURED_COVARIATES,
    MusicHazard,
    music_ecg_cohort,
    ptbxl_music_covariates,
)
from hfrisk.training.data.ptbxl import PTBXL
from hfrisk.training.data.synthetic_cohort import SPEC_FILENAME, simulate_outcomes, write_synthetic_cohort
from hfrisk.training.evaluation.music_cox import fit_cox

PTBXL_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"



def _measurements(ptbxl: PTBXL) -> pd.DataFrame:
    """Values a front end might give, one per record, with a failed QTc on the first record."""
    ids = [int(i) for i in ptbxl.ids]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"heart_rate_bpm": rng.normal(70, 12, len(ids)), "qrs_ms": rng.normal(95, 15, len(ids)),
                          "qtc_ms": rng.normal(420, 25, len(ids))}, index=pd.Index(ids, name="ecg_id"))
    frame.iloc[0, 2] = np.nan
    return frame


def _population(n: int, seed: int) -> pd.DataFrame:
    """ECG covariates at about PTB-XL's prevalences, ages like its patients'."""
    rng = np.random.default_rng(seed)
    binary = {"af_or_flutter": 0.08, "paced": 0.01, "lbbb": 0.03, "rbbb": 0.04, "fascicular_block": 0.08,
              "other_ivcd": 0.04, "lvh": 0.1, "q_waves": 0.2, "male": 0.52}
    frame = pd.DataFrame({name: (rng.random(n) < p).astype(float) for name, p in binary.items()})
    frame["age_years"] = rng.normal(60, 17, n).clip(18, 90)
    frame["heart_rate_bpm"] = rng.normal(72, 14, n).clip(35, 160)
    frame["qrs_ms"] = rng.normal(100, 18, n).clip(60, 200)
    frame["qtc_ms"] = rng.normal(430, 30, n).clip(330, 560)
    return frame[list(ECG_COVARIATES)]


def test_ptbxl_covariates_come_from_measurements_and_statements(ptbxl):
    measurements = _measurements(ptbxl)
    covariates = ptbxl_music_covariates(ptbxl, measurements)
    assert list(covariates.columns) == list(ECG_COVARIATES) and len(covariates) == len(ptbxl)
    codes = ptbxl.codes_per_record()
    flutter = [i for i, c in codes.items() if "AFLT" in c or "AFIB" in c]
    infarcts = [i for i, c in codes.items() if "IMI" in c]
    assert flutter and infarcts  # the committed subset has both
    assert covariates.loc[flutter, "af_or_flutter"].eq(1).all()
    assert covariates["af_or_flutter"].sum() == len(flutter)
    assert covariates.loc[infarcts, "q_waves"].eq(1).all()
    # A failed measurement takes the median of the others; the rest are the front end's own values.
    first = int(ptbxl.ids[0])
    assert covariates.loc[first, "qtc_ms"] == pytest.approx(measurements["qtc_ms"].iloc[1:].median())
    pd.testing.assert_series_equal(covariates["qrs_ms"], measurements.loc[covariates.index, "qrs_ms"])
    demographics = ptbxl.demographics()
    assert covariates["male"].eq((demographics["sex"] == 0).astype(float).loc[covariates.index]).all()


def test_ptbxl_covariates_refuse_records_without_measurements(ptbxl):
    measurements = _measurements(ptbxl).iloc[1:]
    with pytest.raises(ValueError, match="no measurements for 1 records"):
        ptbxl_music_covariates(ptbxl, measurements)
    with pytest.raises(ValueError, match="lack columns"):
        ptbxl_music_covariates(ptbxl, _measurements(ptbxl).drop(columns="qrs_ms"))


@pytest.mark.parametrize("endpoint", ["pump_failure", "cardiac"])
@pytest.mark.parametrize("event_rate", [0.05, 0.25])
def test_simulation_hits_its_target_event_rate(endpoint, event_rate):
    covariates = _population(1000, seed=1)
    outcomes = simulate_outcomes(covariates, event_rate, seed=3, spec=MusicHazard.from_json(endpoint))
    assert outcomes.event.sum() == round(event_rate * 1000)
    assert np.all(outcomes.time >= 1)


def test_simulated_outcomes_carry_musics_coefficients():
    """Fitting a Cox model to the simulated outcomes gives back the hazard they were drawn from."""
    hazard = MusicHazard.from_json("cardiac")
    covariates = _population(8000, seed=2)
    outcomes = simulate_outcomes(covariates, 0.25, seed=4, spec=hazard)
    fitter = fit_cox(covariates, outcomes.event, outcomes.time)
    for name in ("age_years", "heart_rate_bpm", "q_waves", "lbbb"):
        estimate, se = fitter.params_[name], fitter.standard_errors_[name]
        assert abs(estimate - hazard.coefficients[name]) < 3.5 * se, (name, estimate, hazard.coefficients[name])


def test_music_cohort_on_ptbxl_records(ptbxl, tmp_path):
    synth = music_ecg_cohort(ptbxl, "pump_failure", event_rate=0.25, seed=0, measurements=_measurements(ptbxl))
    assert synth.cohort.n_events == round(0.25 * len(ptbxl))
    hazard = MusicHazard.from_json("pump_failure")
    covariates = ptbxl_music_covariates(ptbxl, _measurements(ptbxl))
    np.testing.assert_allclose(synth.log_hazard.loc[covariates.index], hazard.log_hazard(covariates))
    write_synthetic_cohort(synth, tmp_path)
    summary = json.loads((tmp_path / SPEC_FILENAME).read_text())
    assert summary["hazard"].startswith("MUSIC pump_failure Cox") and summary["spec"]["endpoint"] == "pump_failure"


def test_synthetic_cohort_command_selects_the_music_scenario(ptbxl, tmp_path):
    from hfrisk.training.commands import synthetic_cohort_command

    # A measurements cache keyed as measure_records keys it, so the command measures nothing.
    cache = tmp_path / "measurements.parquet"
    measured = _measurements(ptbxl)
    frame = measured.set_axis([str(ptbxl.record_path(int(i))) for i in measured.index])
    for column in ("rr_ms", "p_duration_ms", "pr_ms", "qt_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg",
                   "qrs_t_angle_deg", "sokolow_lyon_mv", "limb_qrs_mv"):
        frame[column] = np.nan
    frame.to_parquet(cache)
    synthetic_cohort_command(PTBXL_ROOT, out=tmp_path / "music", sampling_rate=500, event_rate=0.25, seed=0,
                             validated_only=False, scenario="music-cardiac", measurements_cache=cache)
    summary = json.loads((tmp_path / "music" / SPEC_FILENAME).read_text())
    assert summary["n_events"] == round(0.25 * len(ptbxl)) and summary["spec"]["endpoint"] == "cardiac"
    assert set(MEASURED_COVARIATES) <= set(summary["spec"]["coefficients"])


def test_ecg_only_hazard_ignores_age_and_sex_but_keeps_the_adjusted_ecg_effects():
    full, ecg_only = MusicHazard.from_json("cardiac"), MusicHazard.from_json("cardiac", demographics=False)
    covariates = _population(200, seed=5)
    older = covariates.assign(age_years=covariates["age_years"] + 10, male=1 - covariates["male"])
    np.testing.assert_allclose(ecg_only.log_hazard(older), ecg_only.log_hazard(covariates))
    assert not np.allclose(full.log_hazard(older), full.log_hazard(covariates))
    # What remains is exactly the full hazard less its age and sex terms.
    demographic = sum(full.coefficients[c] * (covariates[c] - full.centre[c]) for c in ("age_years", "male"))
    np.testing.assert_allclose(ecg_only.log_hazard(covariates), full.log_hazard(covariates) - demographic)
    assert "ECG terms only" in ecg_only.describe() and "age_years" not in ecg_only.describe()
