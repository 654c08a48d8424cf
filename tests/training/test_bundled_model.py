"""The bundled model (triton_models/hfrisk): its top is ranked, not a tie, and its card says so.

The earlier bundled model gave 12.6 % of its reference cohort one identical maximum score (its
three-unit risk head switched off); the retrained one must order the top of a population.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hfrisk.model.contract.card import CARD_FILENAME, load_card
from hfrisk.model.frontend import prepare_many
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.serving.scorers import OnnxScorer

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "triton_models" / "hfrisk"
RECORDS = sorted((ROOT / "tests" / "data" / "ecg" / "ptbxl").rglob("*.hea"))


@pytest.fixture(scope="module")
def card():
    return load_card(BUNDLED / CARD_FILENAME)


def test_the_card_records_a_resolved_top_on_its_reference_cohort(card):
    top = card.training["top_resolution"]
    assert top["share"] == 0.1 and top["n_top"] >= 100
    # Every subject of the top 10 % has a score of its own; at most a handful of exact repeats anywhere.
    assert top["distinct_in_top"] >= top["n_top"] - 2
    assert top["largest_tie_share"] < 0.005
    assert card.risk_scale is not None and card.serving.preprocess_on == ("worker", "server")


def test_real_records_get_distinct_scores_from_the_shipped_onnx(card):
    scorer = OnnxScorer.from_model_dir(BUNDLED / "1")
    x, prepared = prepare_many([read_ecg(path.with_suffix("")) for path in RECORDS], card)
    x = x[[p.quality.fit_to_score for p in prepared]]
    assert len(x) >= 20
    log_risk = scorer.score(x)["log_risk"].reshape(-1)
    assert np.all(np.isfinite(log_risk))
    assert len(np.unique(log_risk)) == len(log_risk)  # no two ECGs share a score
    # The percentiles of these scores spread over the reference cohort rather than piling on one value.
    percentiles = np.asarray(card.risk_scale.reference.percentile(log_risk))
    assert len(np.unique(np.round(percentiles, 3))) == len(percentiles)
