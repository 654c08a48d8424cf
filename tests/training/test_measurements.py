"""ECG measurements on real PTB-XL records: rate against the preprocessing, physiological intervals.

No record among PTB-XL ecg_id 1–24 carries a bundle-branch-block code (CLBBB, CRBBB, ILBBB,
IRBBB; checked below), so QRS widening is tested on LUDB records instead (tests/training/test_intervals.py),
with the intervals against the cardiologists' marks.

Normal ranges are LUDB's: the QRS is measured from the earliest onset to the latest offset over the
leads, as LUDB's cardiologists mark it, and on LUDB's records with sinus rhythm and nothing else reported
they marked 104–130 ms (5th–95th percentile), longer than the 80–100 ms of textbooks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.training.data.measurements import MEASUREMENTS, METHOD, frontal_axis_deg, measure_ecg, measure_records
from hfrisk.training.data.ptbxl import PTBXL

PTBXL_ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"
BBB_CODES = {"CLBBB", "CRBBB", "ILBBB", "IRBBB", "LAFB/LPFB", "IVCD"}



@pytest.fixture(scope="module")
def measured(ptbxl, tmp_path_factory) -> pd.DataFrame:
    paths = [ptbxl.record_path(i) for i in ptbxl.ids]
    frame = measure_records(paths, cache=tmp_path_factory.mktemp("m") / "measurements.parquet")
    frame.index = ptbxl.ids
    return frame


def _normal_sinus_ids(ptbxl: PTBXL) -> list[int]:
    """Records a cardiologist called NORM with confidence >= 80 and no rhythm other than sinus."""
    ids = []
    for i in ptbxl.ids:
        codes = ptbxl.scp_codes(int(i), include_zero=True)
        if codes.get("NORM", 0) >= 80 and not {"AFLT", "AFIB"} & codes.keys():
            ids.append(int(i))
    return ids


def test_no_bundle_branch_block_among_the_test_records(ptbxl):
    # Documents why QRS widening is not asserted: none of ids 1-24 has such a code.
    codes = set().union(*(ptbxl.scp_codes(int(i), include_zero=True) for i in ptbxl.ids))
    assert not codes & BBB_CODES


def test_heart_rate_agrees_with_the_preprocessing(ptbxl, measured):
    card = default_card()
    for i in ptbxl.ids:
        expected = prepare(read_ecg(ptbxl.record_path(int(i))), card).heart_rate_bpm
        assert abs(measured.loc[i, "heart_rate_bpm"] - expected) < 3.0, i
        assert measured.loc[i, "rr_ms"] == pytest.approx(60_000.0 / measured.loc[i, "heart_rate_bpm"])


def test_intervals_are_physiological_on_normal_records(ptbxl, measured):
    normal = measured.loc[_normal_sinus_ids(ptbxl)]
    assert len(normal) >= 15
    assert normal["qrs_ms"].between(90, 140).all(), normal["qrs_ms"]
    assert normal["qt_ms"].between(320, 480).all(), normal["qt_ms"]
    assert normal["qtc_ms"].between(350, 490).all(), normal["qtc_ms"]
    pr = normal["pr_ms"].dropna()
    assert len(pr) >= 0.8 * len(normal) and pr.between(100, 220).all(), pr
    # Normal frontal QRS axis is -30..+90 degrees; the QRS-T angle of a normal ECG is small.
    assert normal["qrs_axis_deg"].between(-30, 100).all(), normal["qrs_axis_deg"]
    assert (normal["qrs_t_angle_deg"] < 90).all()
    # Bazett, exactly.
    expected_qtc = normal["qt_ms"] / np.sqrt(normal["rr_ms"] / 1000.0)
    np.testing.assert_allclose(normal["qtc_ms"], expected_qtc)


def test_atrial_flutter_records_are_fast(ptbxl, measured):
    flutter = [int(i) for i in ptbxl.ids if "AFLT" in ptbxl.scp_codes(int(i))]
    assert flutter  # ids 17, 18, 20, 23
    assert (measured.loc[flutter, "heart_rate_bpm"] > 100).all()


def test_same_record_at_100_and_500_hz_measures_alike():
    m100 = measure_ecg(read_ecg(PTBXL_ROOT / "records100/00000/00001_lr"))
    m500 = measure_ecg(read_ecg(PTBXL_ROOT / "records500/00000/00001_hr"))
    assert abs(m100["heart_rate_bpm"] - m500["heart_rate_bpm"]) < 1.0
    assert abs(m100["qrs_ms"] - m500["qrs_ms"]) < 15.0
    assert abs(m100["qt_ms"] - m500["qt_ms"]) < 30.0


def test_flat_recording_is_not_measurable():
    flat = ECG(samples=np.zeros((12, 5000)), fs_hz=500, lead_names=default_card().input.leads)
    values = measure_ecg(flat)
    assert set(values) == set(MEASUREMENTS)
    assert all(math.isnan(v) for v in values.values())


@pytest.mark.parametrize("theta", [-90.0, -30.0, 0.0, 45.0, 60.0, 120.0, 180.0])
def test_frontal_axis_inverts_einthoven(theta):
    rad = math.radians(theta)
    lead_i, lead_avf = math.cos(rad), math.sqrt(3) / 2 * math.sin(rad)
    got = frontal_axis_deg(lead_i, lead_avf)
    assert min(abs(got - theta), 360 - abs(got - theta)) < 1e-9


def test_cache_is_reused(tmp_path):
    path = PTBXL_ROOT / "records500/00000/00002_hr"
    cache = tmp_path / "m.parquet"
    first = measure_records([path], cache=cache)
    cached = pd.read_parquet(cache)
    cached.loc[str(path), "qrs_ms"] = 999.0  # a cached value is returned as is
    cached.to_parquet(cache)
    again = measure_records([path], cache=cache)
    assert again.iloc[0]["qrs_ms"] == 999.0 and first.iloc[0]["qrs_ms"] != 999.0


def test_cache_of_another_method_is_measured_again(tmp_path):
    path = str(PTBXL_ROOT / "records500/00000/00002_hr")
    cache = tmp_path / "m.parquet"
    stale = pd.DataFrame({name: [999.0] for name in MEASUREMENTS}, index=[path])  # no method column
    stale.to_parquet(cache)
    again = measure_records([path], cache=cache)
    assert again.iloc[0]["qrs_ms"] != 999.0
    assert (pd.read_parquet(cache)["method"] == METHOD).all()
