"""RiskAssessments of scored windows: valid R4 resources, the card's model and version, relative
risk; absolute risk checked against lifelines' own Cox survival prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from hfrisk.gateway.risk_assessment import HEART_FAILURE, risk_assessment
from hfrisk.model.contract.card import default_card

SCORE = {"patient_id": "p-1", "window_id": "p-1:1714979289000000", "window_start_us": 1_714_979_289_000_000,
         "window_end_us": 1_714_979_299_000_000, "scored": True, "log_risk": -0.3, "model_version": "7",
         "device_id": "mon-3"}


def test_relative_risk_method_subject_and_basis():
    card = default_card()
    resource = risk_assessment(SCORE, card=card, subject_id="MRN-1", basis=["Observation/ecg-1"])
    data = resource.model_dump(mode="json")
    assert data["resourceType"] == "RiskAssessment" and data["status"] == "final"
    assert data["subject"] == {"reference": "Patient/MRN-1"}
    assert data["occurrenceDateTime"].startswith("2024-05-06T07:08:19")
    assert data["method"]["coding"][0] == {"system": "urn:hfrisk:model", "code": card.name, "version": "7",
                                           "display": f"{card.name} 7"}
    assert data["basis"] == [{"reference": "Observation/ecg-1"}]
    prediction = data["prediction"][0]
    assert prediction["outcome"]["coding"][0]["code"] == HEART_FAILURE["code"]
    assert float(prediction["relativeRisk"]) == pytest.approx(np.exp(-0.3), rel=1e-5)
    # The default card has no baseline survival: no probability is made up.
    assert "probabilityDecimal" not in prediction and "whenRange" not in prediction


def test_unscored_windows_make_none():
    assert risk_assessment({**SCORE, "scored": False, "log_risk": None}, card=default_card()) is None
    assert risk_assessment({**SCORE, "scored": None, "fit_to_score": False}, card=default_card()) is None


def test_absolute_risk_matches_lifelines_survival_prediction():
    """p = 1 - S0(h) ** exp(log_risk) against lifelines' predict_survival_function for the same subject."""
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=n)
    time = rng.exponential(scale=1000 * np.exp(-0.8 * x))
    event = time < 1500
    frame = pd.DataFrame({"x": x, "T": np.minimum(time, 1500), "E": event.astype(int)})
    fitter = CoxPHFitter().fit(frame, "T", "E")
    horizon = 365.0
    subject = pd.DataFrame({"x": [0.9]})
    # lifelines centres covariates: its log partial hazard and baseline survival belong together.
    log_risk = float(fitter.predict_log_partial_hazard(subject).iloc[0])
    # S0(h): lifelines' survival of a subject at the covariate mean (log partial hazard 0).
    s0 = float(fitter.predict_survival_function(pd.DataFrame({"x": [x.mean()]}), times=[horizon]).iloc[0, 0])
    expected = 1 - float(fitter.predict_survival_function(subject, times=[horizon]).iloc[0, 0])

    card = default_card().model_copy(update={"training": {"absolute_risk": {"horizon_days": horizon, "baseline_survival": s0}}})
    prediction = risk_assessment({**SCORE, "log_risk": log_risk}, card=card).prediction[0]
    assert float(prediction.probabilityDecimal) == pytest.approx(expected, rel=1e-4)
    assert float(prediction.whenRange.high.value) == horizon and prediction.whenRange.high.code == "d"


def test_relay_value_names_a_pseudonymous_subject_by_identifier_only():
    import json

    from hfrisk.gateway.relay import risk_assessment_value
    from hfrisk.model.contract.errors import ECGInputError

    value = json.dumps({**SCORE, "patient_id": "p-0123456789abcdef0123"}).encode()
    resource = json.loads(risk_assessment_value(value, default_card(), pseudonymous=True))
    assert resource["subject"] == {"identifier": {"system": "urn:hfrisk:pseudonym", "value": "p-0123456789abcdef0123"}}
    plain = json.loads(risk_assessment_value(value, default_card(), pseudonymous=False))
    assert plain["subject"] == {"reference": "Patient/p-0123456789abcdef0123"}
    assert risk_assessment_value(json.dumps({**SCORE, "scored": False}).encode(), default_card(), pseudonymous=False) is None
    for garbage in (b"\xff not json", b"[1, 2]", json.dumps({"scored": True, "log_risk": 1.0}).encode()):
        with pytest.raises(ECGInputError) as err:
            risk_assessment_value(garbage, default_card(), pseudonymous=False)
        assert err.value.reason.value == "bad_message"


def test_a_cards_risk_scale_gives_probability_and_percentile():
    """The card's risk scale (model card field ``risk_scale``) is preferred to training["absolute_risk"]."""
    from hfrisk.model.contract.card import ModelCard

    if "risk_scale" not in ModelCard.model_fields:
        pytest.skip("this model card has no risk_scale field")
    from hfrisk.model.contract.risk_scale import AbsoluteRisk, ReferenceDistribution, RiskScale

    scale = RiskScale(
        reference=ReferenceDistribution(cohort="toy", n=5, percentiles=(0.0, 50.0, 100.0), log_risk=(-1.0, 0.0, 1.0)),
        absolute_risk=AbsoluteRisk(cohort="toy", n=5, n_events=2, horizon_days=1826.25, baseline_survival=0.9))
    card = default_card().model_copy(update={"risk_scale": scale})
    prediction = risk_assessment({**SCORE, "log_risk": 0.5}, card=card).model_dump(mode="json")["prediction"][0]
    assert float(prediction["probabilityDecimal"]) == pytest.approx(1 - 0.9 ** np.exp(0.5), rel=1e-5)
    assert float(prediction["whenRange"]["high"]["value"]) == 1826.25
    percentile = {e["url"]: e["valueDecimal"] for e in prediction["extension"]}["urn:hfrisk:fhir:reference-percentile"]
    assert float(percentile) == pytest.approx(75.0)
