"""What a window's result carries into Redis and onto the scores topic, without servers: beats
detected and used travel apart from ``prepare`` to every stored form, and values stored before the
split (one ``n_beats``) still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.stream.messages.scores import score_record
from hfrisk.stream.sinks import WindowResult
from hfrisk.stream.sinks import encoding as enc
from hfrisk.stream.windowing import Window

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"
T0_US = 1_700_000_000_000_000


@pytest.fixture(scope="module")
def prepared_window():
    """MIT-BIH 100 from 10 s: a window whose edges cut beats, so fewer beats are used than found."""
    rec = wfdb.rdrecord(str(DATA / "wfdb-samples/100"), sampfrom=3600, sampto=7200)
    ecg = ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name), device_id="m-1")
    item = prepare(ecg, default_card())
    window = Window("bed-1", 0, 0, T0_US, T0_US, T0_US + 10_000_000, ecg, (0,))
    return window, item


def test_beat_counts_travel_from_prepare_to_redis_and_the_topic(prepared_window):
    window, item = prepared_window
    assert item.n_beats_detected > item.n_beats_used > 0
    outputs = {"log_risk": np.array([[0.5]], np.float32),
               "lead_attention": np.full((1, 12), 1 / 12, np.float32)}
    result = WindowResult.from_scoring(window, item, outputs, model_version="1", scored_at_us=T0_US)
    assert (result.n_beats_detected, result.n_beats_used) == (item.n_beats_detected, item.n_beats_used)
    assert result.heart_rate_bpm == pytest.approx(item.heart_rate_bpm)

    latest = enc.parse_latest(enc.latest_fields(result))
    assert (latest["n_beats_detected"], latest["n_beats_used"]) == (item.n_beats_detected, item.n_beats_used)
    assert "n_beats" not in latest
    member = enc.parse_quality_record(enc.quality_record(result))
    assert (member["n_beats_detected"], member["n_beats_used"]) == (item.n_beats_detected, item.n_beats_used)

    record = json.loads(score_record(result, redelivered=False, chunk_timestamp_ms=None))
    assert (record["n_beats_detected"], record["n_beats_used"]) == (item.n_beats_detected, item.n_beats_used)
    assert "n_beats" not in record and record["heart_rate_bpm"] == pytest.approx(item.heart_rate_bpm)


def test_a_latest_hash_from_before_the_split_reads_as_beats_used(prepared_window):
    window, item = prepared_window
    result = WindowResult.from_scoring(window, item, {"log_risk": np.array([0.5])}, scored_at_us=T0_US)
    fields = {k: v for k, v in enc.latest_fields(result).items() if not k.startswith("n_beats")}
    old = enc.parse_latest({k.encode(): v.encode() for k, v in (fields | {"n_beats": "9"}).items()})
    assert (old["n_beats_used"], old["n_beats_detected"]) == (9, None) and "n_beats" not in old
    assert old["log_risk"] == 0.5
    member = enc.parse_quality_record(b'{"log_risk":null,"n_beats":7,"quality_score":0.3,"reasons":[],"window_id":"w"}')
    assert (member["n_beats_used"], member["n_beats_detected"]) == (7, None)


def test_percentile_and_absolute_risk_travel_from_the_bundled_card_to_redis_and_the_topic(prepared_window):
    from hfrisk.model.contract.card import load_card

    window, item = prepared_window
    scale = load_card(Path(__file__).resolve().parents[2] / "triton_models" / "hfrisk").risk_scale
    assert scale is not None, "the bundled model's card carries a risk scale"
    log_risk = np.float32(0.7)
    result = WindowResult.from_scoring(window, item, {"log_risk": np.array([[log_risk]])}, scored_at_us=T0_US,
                                       risk_scale=scale)
    expected_percentile = float(scale.percentile(float(log_risk)))
    expected_risk = 1 - scale.absolute_risk.baseline_survival ** np.exp(float(log_risk))
    assert result.risk_percentile == pytest.approx(expected_percentile, abs=1e-9) and 0 < expected_percentile < 100
    assert result.absolute_risk == pytest.approx(expected_risk, rel=1e-9)
    assert result.absolute_risk_horizon_days == scale.absolute_risk.horizon_days

    latest = enc.parse_latest(enc.latest_fields(result))
    assert (latest["risk_percentile"], latest["absolute_risk"], latest["absolute_risk_horizon_days"]) == (
        result.risk_percentile, result.absolute_risk, result.absolute_risk_horizon_days)
    record = json.loads(score_record(result, redelivered=False, chunk_timestamp_ms=None))
    assert record["risk_percentile"] == result.risk_percentile and record["absolute_risk"] == result.absolute_risk

    # No scale (a card from before), no score, or a hash written before: empty, never made up.
    plain = WindowResult.from_scoring(window, item, {"log_risk": np.array([0.7])}, scored_at_us=T0_US)
    unscored = WindowResult.from_scoring(window, item, None, risk_scale=scale)
    for r in (plain, unscored):
        assert (r.risk_percentile, r.absolute_risk, r.absolute_risk_horizon_days) == (None, None, None)
    assert enc.parse_latest(enc.latest_fields(plain))["absolute_risk"] is None
    old = {k: v for k, v in enc.latest_fields(result).items() if k not in ("risk_percentile", "absolute_risk")}
    assert enc.parse_latest(old)["risk_percentile"] is None


def test_flag_rules_become_the_alert_policys_log_risk_thresholds():
    from hfrisk.core.config import StreamSettings
    from hfrisk.model.contract.card import load_card
    from hfrisk.stream.alerts.policy import AlertPolicy

    scale = load_card(Path(__file__).resolve().parents[2] / "triton_models" / "hfrisk").risk_scale
    by_risk = AlertPolicy.from_settings(StreamSettings(flag_on="absolute_risk", flag_absolute_risk=0.1,
                                                       clear_absolute_risk=0.05), risk_scale=scale)
    assert float(scale.absolute_risk_at_horizon(by_risk.threshold)) == pytest.approx(0.1)
    assert float(scale.absolute_risk_at_horizon(by_risk.clear_threshold)) == pytest.approx(0.05)
    by_rank = AlertPolicy.from_settings(StreamSettings(flag_on="percentile", flag_percentile=80,
                                                       clear_percentile=70), risk_scale=scale)
    assert float(scale.percentile(by_rank.threshold)) >= 80 > float(scale.percentile(by_rank.threshold - 1e-6))
    # Without a scale only the log-risk rule exists.
    plain = AlertPolicy.from_settings(StreamSettings(flag_on="percentile", risk_threshold=1.3, clear_threshold=1.1))
    assert (plain.threshold, plain.clear_threshold) == (1.3, 1.1)
    with pytest.raises(ValueError, match="above"):
        StreamSettings(flag_percentile=90, clear_percentile=95)


def test_flag_rule_settings_come_from_the_environment(monkeypatch):
    from hfrisk.core.config import Settings

    monkeypatch.setenv("HFRISK_STREAM__FLAG_ON", "percentile")
    monkeypatch.setenv("HFRISK_STREAM__FLAG_PERCENTILE", "97.5")
    stream = Settings().stream
    assert (stream.flag_on, stream.flag_percentile, stream.clear_percentile) == ("percentile", 97.5, 90.0)
