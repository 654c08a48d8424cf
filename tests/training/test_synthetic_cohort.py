"""The semi-synthetic HF cohort: event rate, oracle C, reproducibility and the documented hazard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hfrisk.training.data.cohort import load_cohort
from hfrisk.training.data.synthetic_cohort import (
    ORACLE_FILENAME,
    SPEC_FILENAME,
    HazardSpec,
    log_hazard,
    simulate_outcomes,
    synthetic_hf_cohort,
    write_synthetic_cohort,
)
from lifelines import CoxPHFitter


def _covariates(n: int, seed: int = 1) -> pd.DataFrame:
    """Labels at about PTB-XL's superclass prevalences, ages like its patients'."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "MI": (rng.random(n) < 0.25).astype(int),
        "HYP": (rng.random(n) < 0.12).astype(int),
        "CD": (rng.random(n) < 0.22).astype(int),
        "STTC": (rng.random(n) < 0.24).astype(int),
        "age": rng.normal(60, 17, n).clip(18, 95),
        "sex": rng.integers(0, 2, n),
    })


@pytest.mark.parametrize("rate", [0.01, 0.03, 0.05])
def test_event_rate_is_the_requested_one(rate):
    outcomes = simulate_outcomes(_covariates(4000), event_rate=rate, seed=3)
    assert outcomes.event.sum() == round(rate * 4000)
    assert 0.01 <= outcomes.event_rate <= 0.05
    # Observed time is the earlier of event and censoring, in whole days.
    assert np.all(outcomes.time >= 1) and np.all(outcomes.time == np.ceil(outcomes.time))
    observed = np.where(outcomes.event == 1, outcomes.event_time, outcomes.censor_time)
    np.testing.assert_array_equal(outcomes.time, np.maximum(1, np.ceil(observed)))


def test_oracle_c_is_informative():
    covariates = _covariates(4000)
    outcomes = simulate_outcomes(covariates, event_rate=0.03, seed=0)
    from hfrisk.training.metrics import HarrellC

    assert HarrellC()(outcomes.log_hazard, outcomes.event, outcomes.time) > 0.65


def test_hazard_is_the_documented_formula(ptbxl):
    covariates = ptbxl.superclass_labels().join(ptbxl.demographics())
    eta = pd.Series(log_hazard(covariates), index=covariates.index)
    # ecg_id 8: inferior MI (IMI), 48-year-old man; ecg_id 1: normal, 56-year-old woman.
    assert covariates.loc[8, ["MI", "HYP", "CD", "STTC"]].tolist() == [1, 0, 0, 0]
    assert eta[8] == pytest.approx(0.9 + 0.5 * (48 - 60) / 10 + 0.25)
    assert eta[1] == pytest.approx(0.5 * (56 - 60) / 10)
    assert "0.9·MI" in HazardSpec().describe()


def test_cox_fit_recovers_the_stated_coefficients():
    covariates = _covariates(6000, seed=2)
    spec = HazardSpec()
    outcomes = simulate_outcomes(covariates, event_rate=0.3, seed=4, spec=spec)
    frame = covariates.assign(
        age_decades=(covariates["age"] - 60) / 10, male=(covariates["sex"] == 0).astype(int),
        time=outcomes.time, event=outcomes.event,
    ).drop(columns=["age", "sex"])
    fitted = CoxPHFitter().fit(frame, "time", "event").params_
    for label, beta in spec.label_coefficients.items():
        assert fitted[label] == pytest.approx(beta, abs=0.15), label
    assert fitted["age_decades"] == pytest.approx(spec.age_per_decade, abs=0.1)
    assert fitted["male"] == pytest.approx(spec.male, abs=0.15)


def test_real_ptbxl_cohort_is_reproducible_and_informative(ptbxl):
    first = synthetic_hf_cohort(ptbxl, event_rate=0.25, seed=7)
    again = synthetic_hf_cohort(ptbxl, event_rate=0.25, seed=7)
    other = synthetic_hf_cohort(ptbxl, event_rate=0.25, seed=8)
    pd.testing.assert_frame_equal(first.cohort.table, again.cohort.table)
    assert not first.cohort.table["time"].equals(other.cohort.table["time"])
    assert len(first.cohort) == 24 and first.cohort.n_events == 6
    assert first.cohort.record_path(0).with_suffix(".hea").exists()
    # The true hazard is the same whatever the seed; only the draws change.
    pd.testing.assert_series_equal(first.log_hazard, other.log_hazard)
    # 24 records with 6 events is a small sample: the oracle C is informative on average over seeds.
    oracle = [synthetic_hf_cohort(ptbxl, event_rate=0.25, seed=s).oracle_c() for s in range(10)]
    assert np.mean(oracle) > 0.6


def test_written_cohort_loads_back(ptbxl, tmp_path):
    synth = synthetic_hf_cohort(ptbxl, event_rate=0.25, seed=0)
    path = write_synthetic_cohort(synth, tmp_path)
    loaded = load_cohort(path, records_root=ptbxl.root)
    pd.testing.assert_frame_equal(loaded.table, synth.cohort.table, check_dtype=False)
    oracle = pd.read_csv(tmp_path / ORACLE_FILENAME, index_col="ecg_id")["true_log_hazard"]
    np.testing.assert_allclose(oracle.to_numpy(), synth.log_hazard.to_numpy())
    assert "true_log_hazard" not in loaded.table.columns  # never a covariate
    assert (tmp_path / SPEC_FILENAME).exists()


def test_too_low_a_rate_for_the_cohort_is_refused():
    with pytest.raises(ValueError, match="no event"):
        simulate_outcomes(_covariates(24), event_rate=0.01, seed=0)
