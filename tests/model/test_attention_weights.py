"""The one wire form of lead attention: order kept, rounding stated, bad input refused."""

import json
import math

import numpy as np
import pytest

from hfrisk.model.contract.attention_weights import (
    DECIMALS,
    decode_lead_weights,
    encode_lead_weights,
    lead_weights,
)
from hfrisk.model.contract.card import CANONICAL_LEADS


def test_round_trip_keeps_the_card_lead_order_and_rounds_to_the_stated_decimals():
    weights = np.random.default_rng(0).dirichlet(np.ones(12)).astype(np.float32)
    text = encode_lead_weights(CANONICAL_LEADS, weights)
    back = decode_lead_weights(text)
    assert list(back) == list(CANONICAL_LEADS)  # not sorted: aVR must not jump ahead of I
    assert np.allclose(list(back.values()), weights, atol=0.5 * 10**-DECIMALS + 1e-7)
    assert json.loads(text) == back


def test_no_attention_is_null_and_reads_back_empty():
    assert encode_lead_weights(CANONICAL_LEADS, None) == "null"
    for missing in (None, "", "null", math.nan):
        assert decode_lead_weights(missing) == {}


def test_a_weight_count_that_does_not_match_the_leads_is_refused():
    with pytest.raises(ValueError, match="3 lead-attention weights for 2 leads"):
        lead_weights(["I", "II"], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="not a JSON object"):
        decode_lead_weights("[0.5, 0.5]")
