from datetime import datetime, timezone

import numpy as np
import pytest

from hfrisk.model.contract.ecg import ECG, to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason


def _ecg(samples, names=("I", "II"), fs=500.0, **kw):
    return ECG(samples=samples, fs_hz=fs, lead_names=names, **kw)


def test_valid_ecg_is_float32_and_knows_its_duration():
    ecg = _ecg(np.zeros((2, 5000), dtype=np.int16), acquired_at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert ecg.samples.dtype == np.float32
    assert ecg.duration_s == pytest.approx(10.0)
    assert ecg.slice_s(2.0, 4.0).n_samples == 1000


def test_a_slice_is_what_the_checking_constructor_makes_of_the_same_part():
    rng = np.random.default_rng(0)
    ecg = _ecg(rng.standard_normal((2, 5000)).astype(np.float32), patient_id="p1", device_id="bed-4",
               acquired_at=datetime(2024, 1, 1, tzinfo=timezone.utc), source="x.hea", units="uV",
               metadata={"site": "ward 3"})
    part = ecg.slice_s(2.0, 4.0)
    checked = _ecg(ecg.samples[:, 1000:2000], patient_id="p1", device_id="bed-4",
                   acquired_at=datetime(2024, 1, 1, tzinfo=timezone.utc), source="x.hea", units="uV",
                   metadata={"site": "ward 3"})
    for name in ECG.__dataclass_fields__:
        a, b = getattr(part, name), getattr(checked, name)
        assert type(a) is type(b), name
        assert np.array_equal(a, b) if name == "samples" else a == b, name
    assert part.samples.dtype == np.float32 and np.shares_memory(part.samples, ecg.samples)
    with pytest.raises(ECGInputError) as err:  # nothing left of it
        ecg.slice_s(10.0, 12.0)
    assert err.value.reason is InputErrorReason.TOO_SHORT


@pytest.mark.parametrize(
    "samples, names, fs, reason",
    [
        (np.zeros(5000), ("I",), 500, InputErrorReason.BAD_SHAPE),
        (np.zeros((3, 5000)), ("I", "II"), 500, InputErrorReason.BAD_SHAPE),
        (np.zeros((2, 0)), ("I", "II"), 500, InputErrorReason.TOO_SHORT),
        (np.zeros((2, 10)), ("I", "II"), 0, InputErrorReason.BAD_SAMPLING_RATE),
        (np.zeros((2, 10)), ("I", "II"), float("nan"), InputErrorReason.BAD_SAMPLING_RATE),
        (np.array([[0.0, np.nan], [0.0, 0.0]]), ("I", "II"), 500, InputErrorReason.NON_FINITE),
        (np.array([[0.0, 1.0], [np.inf, 0.0]]), ("I", "II"), 500, InputErrorReason.NON_FINITE),
    ],
)
def test_bad_ecgs_raise_one_exception_type(samples, names, fs, reason):
    with pytest.raises(ECGInputError) as err:
        _ecg(samples, names, fs)
    assert err.value.reason is reason
    assert isinstance(err.value, ValueError)


def test_non_finite_message_names_the_leads():
    with pytest.raises(ECGInputError, match=r"\['II'\]"):
        _ecg(np.array([[0.0, 1.0], [np.nan, 0.0]]))


def test_unit_conversion():
    np.testing.assert_allclose(to_millivolts(np.array([1000.0]), "uV"), [1.0])
    np.testing.assert_allclose(to_millivolts(np.array([1.0]), "mv"), [1.0])
    np.testing.assert_allclose(to_millivolts(np.array([0.001]), "V"), [1.0])
    with pytest.raises(ECGInputError) as err:
        to_millivolts(np.array([1.0]), "mmHg")
    assert err.value.reason is InputErrorReason.BAD_UNITS


def test_from_checked_skips_only_the_scan_for_nan_and_still_checks_the_shape():
    samples = np.zeros((2, 10), np.float32)
    a = ECG.from_checked(samples, 100, ("I", "II"), patient_id="p")
    b = ECG.from_checked(samples, 100, ("I", "II"))
    assert a == ECG(samples=samples, fs_hz=100.0, lead_names=("I", "II"), patient_id="p")
    assert type(a.fs_hz) is float and a.units == "mV" and a.metadata == {}
    a.metadata["x"] = 1
    assert b.metadata == {}  # each ECG its own metadata, as with the constructor
    for bad in (np.zeros((2, 10)), np.zeros((3, 10), np.float32), np.zeros((2, 0), np.float32), np.zeros(10, np.float32)):
        with pytest.raises(ValueError, match="float32"):
            ECG.from_checked(bad, 100, ("I", "II"))
    with pytest.raises(TypeError, match="colour"):
        ECG.from_checked(samples, 100, ("I", "II"), colour="red")


@pytest.mark.parametrize("units", [["mV"] * 12, ["uV"] * 12, ["mV", "uV", "V", "µV", " MV "] * 2 + ["v", "mv"]])
def test_rows_to_millivolts_gives_what_converting_each_row_gives_bit_for_bit(units):
    from hfrisk.model.contract.ecg import rows_to_millivolts

    rng = np.random.default_rng(7)
    columns = rng.normal(0, 3, size=(500, 12)) * 10.0 ** rng.integers(-6, 6, size=12)
    columns[:3, 0] = [np.nan, np.inf, -0.0]
    columns[3, 5] = 1e300  # beyond float32: inf either way
    expected = np.stack([to_millivolts(columns[:, j], u) for j, u in enumerate(units)])
    for rows in (columns.T, [columns[:, j] for j in range(12)], np.ascontiguousarray(columns.T)):
        got = rows_to_millivolts(rows, units)
        assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (12, 500)
        assert got.view(np.uint32).tolist() == expected.view(np.uint32).tolist()


def test_rows_to_millivolts_refuses_what_to_millivolts_refuses():
    from hfrisk.model.contract.ecg import rows_to_millivolts

    with pytest.raises(ECGInputError) as err:
        rows_to_millivolts(np.zeros((2, 5)), ["mV", "furlongs"])
    assert err.value.reason == InputErrorReason.BAD_UNITS and "furlongs" in err.value.detail
    with pytest.raises(ValueError, match="2 rows for 3 units"):
        rows_to_millivolts(np.zeros((2, 5)), ["mV"] * 3)
    with pytest.raises(ValueError, match="different lengths"):
        rows_to_millivolts([np.zeros(5), np.zeros(4)], ["mV"] * 2)
