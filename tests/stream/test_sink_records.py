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
