import json

import pytest
from pydantic import ValidationError

from hfrisk.model.contract.card import CANONICAL_LEADS, ModelCard, default_card, load_card


def test_card_round_trips_through_json(tmp_path):
    card = default_card()
    path = card.save(tmp_path)
    assert path.name == "model_card.json"
    assert load_card(tmp_path) == card
    raw = json.loads(path.read_text())
    assert raw["input"]["leads"] == list(CANONICAL_LEADS)
    assert raw["risk_sign"] == "higher_is_riskier"


def test_card_declares_paper_input():
    card = default_card()
    assert card.input.shape == (-1, 12, 608)
    assert card.input.fs_hz == 500 and card.input.beat_samples == 600
    assert [o.name for o in card.outputs] == ["log_risk", "lead_attention", "lead_attention_map", "temporal_attention"]
    assert "higher = riskier" in card.output("log_risk").description
    with pytest.raises(KeyError):
        card.output("probability")


def test_inconsistent_cards_are_refused():
    with pytest.raises(ValidationError):
        ModelCard.model_validate({"input": {"beat_samples": 700, "length_samples": 608}})
    with pytest.raises(ValidationError):
        ModelCard.model_validate({"input": {"leads": ["I", "I"]}})
    with pytest.raises(ValidationError):
        ModelCard.model_validate({"unexpected": 1})
