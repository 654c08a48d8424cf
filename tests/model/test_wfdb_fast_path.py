"""The format-16 fast path of ``read_wfdb`` reads what ``wfdb.rdrecord`` reads, bit for bit.

``hfrisk.model.readers.wfdb_fast.read_whole_fast`` parses ordinary headers with wfdb's own grammar and
field specs and reads the samples with numpy (docs/bench/screening.md: ~3 ms of wfdb's header
parsing per 12-lead record). Every record shipped in tests/data goes through both readers; the
fast path must either decline (``None``) or agree on every header field and every sample.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, time, timezone
from pathlib import Path

import numpy as np
import pytest
import wfdb

from hfrisk.model.readers import wfdb_fast
from hfrisk.model.contract.ecg import ECG, rows_to_millivolts
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.wfdb_io import read_wfdb, write_wfdb

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"
RECORDS = sorted(p.with_suffix("") for p in DATA.rglob("*.hea"))
TAKEN = [r for r in RECORDS if wfdb_fast.read_whole_fast(r) is not None]
FIELDS = (
    "record_name", "n_sig", "fs", "counter_freq", "base_counter", "sig_len", "base_time", "base_date",
    "file_name", "fmt", "samps_per_frame", "skew", "byte_offset", "adc_gain", "baseline", "units",
    "adc_res", "adc_zero", "init_value", "checksum", "block_size", "sig_name", "comments",
)  # fmt: skip


def _assert_same_record(fast: wfdb.Record, slow: wfdb.Record) -> None:
    for field in FIELDS:
        assert getattr(fast, field) == getattr(slow, field), field
        assert type(getattr(fast, field)) is type(getattr(slow, field)), field
    assert fast.p_signal.dtype == slow.p_signal.dtype == np.float64
    np.testing.assert_array_equal(fast.p_signal, slow.p_signal)  # NaN == NaN here


def _forced_slow(monkeypatch) -> None:
    monkeypatch.setattr(wfdb_fast, "read_ordinary", lambda record, parsed=None: None)


def test_the_shipped_records_cover_both_paths():
    taken = TAKEN
    declined = [r for r in RECORDS if r not in TAKEN]
    # PTB-XL (format 16) takes the fast path; MIT-BIH's 212, multi-file and multi-segment records do not.
    assert any("ptbxl" in str(r) for r in taken)
    assert len(taken) >= 10 and len(declined) >= 3


@pytest.mark.parametrize("record", TAKEN, ids=lambda p: str(p.relative_to(DATA)))
def test_fast_path_reads_what_wfdb_reads(record):
    # Declined records are read by wfdb itself (test_read_wfdb_is_the_same_either_way).
    _assert_same_record(wfdb_fast.read_whole_fast(record), wfdb.rdrecord(str(record), m2s=False))


def _same_ecg(a: ECG, b: ECG) -> None:
    np.testing.assert_array_equal(a.samples, b.samples)
    assert (a.fs_hz, a.lead_names, a.patient_id, a.device_id, a.acquired_at) == (
        b.fs_hz, b.lead_names, b.patient_id, b.device_id, b.acquired_at,
    )  # fmt: skip
    assert a.metadata == b.metadata


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: str(p.relative_to(DATA)))
def test_read_wfdb_is_the_same_either_way(record, monkeypatch):
    try:
        fast = read_wfdb(record)
    except ECGInputError as exc:
        _forced_slow(monkeypatch)
        with pytest.raises(ECGInputError) as slow_exc:
            read_wfdb(record)
        assert slow_exc.value.reason == exc.reason
        return
    _forced_slow(monkeypatch)
    _same_ecg(fast, read_wfdb(record))


def _write(tmp_path: Path, header: str, digital: np.ndarray, name: str = "rec") -> Path:
    (tmp_path / f"{name}.hea").write_text(header)
    digital.astype("<i2").tofile(tmp_path / f"{name}.dat")
    return tmp_path / name


def test_header_defaults_and_special_cases_follow_wfdb(tmp_path):
    rng = np.random.default_rng(0)
    digital = rng.integers(-2000, 2000, size=(300, 3))
    digital[17, 1] = -32768  # format 16's missing sample
    header = (
        "# leading comment\n"
        "rec 3 250.0 300 12:30:15.5 02/03/2001\n"
        "rec.dat 16 0/uV 16 40 0 0 0 V1\n"  # gain 0 means 200; baseline from the ADC zero
        "rec.dat 16 500(-3)/mV 12 0 0 0 0 II\n"
        "rec.dat 16 ECG\n"  # no gain, no units: wfdb's defaults (200, mV)
        "#Age: 61\n"
    )
    record = _write(tmp_path, header, digital)
    fast = wfdb_fast.read_whole_fast(record)
    assert fast is not None
    _assert_same_record(fast, wfdb.rdrecord(str(record), m2s=False))
    assert fast.adc_gain == [200.0, 500.0, 200.0] and fast.baseline == [40, -3, 0]
    assert fast.base_date == date(2001, 3, 2) and fast.base_time == time(12, 30, 15, 500000)
    assert np.isnan(fast.p_signal[17, 1])


@pytest.mark.parametrize(
    ("why", "header", "rows"),
    [
        ("truncated signal file", "rec 2 500 100\nrec.dat 16 200/mV 0 0 I\nrec.dat 16 200/mV 0 0 II\n", 99),
        ("longer signal file", "rec 2 500 100\nrec.dat 16 200/mV 0 0 I\nrec.dat 16 200/mV 0 0 II\n", 101),
        ("format 212", "rec 2 500 100\nrec.dat 212 200/mV 0 0 I\nrec.dat 212 200/mV 0 0 II\n", 100),
        ("byte offset", "rec 2 500 100\nrec.dat 16+2 200/mV 0 0 I\nrec.dat 16+2 200/mV 0 0 II\n", 100),
        ("two samples per frame", "rec 2 500 100\nrec.dat 16x2 200/mV 0 0 I\nrec.dat 16x2 200/mV 0 0 II\n", 100),
        ("no signal length", "rec 2 500\nrec.dat 16 200/mV 0 0 I\nrec.dat 16 200/mV 0 0 II\n", 100),
        ("signal count disagrees", "rec 3 500 100\nrec.dat 16 200/mV 0 0 I\nrec.dat 16 200/mV 0 0 II\n", 100),
        ("multi-segment", "rec/2 2 500 100\nseg1 50\nseg2 50\n", 100),
    ],
)
def test_fast_path_declines_what_it_does_not_read(tmp_path, why, header, rows):
    record = _write(tmp_path, header, np.zeros((rows, 2)))
    assert wfdb_fast.read_whole_fast(record) is None, why


def test_truncated_file_is_still_an_unreadable_error(tmp_path):
    header = "rec 2 500 100\nrec.dat 16 200/mV 0 0 I\nrec.dat 16 200/mV 0 0 II\n"
    record = _write(tmp_path, header, np.zeros((99, 2)))
    with pytest.raises(ECGInputError) as exc:
        read_wfdb(record)
    assert exc.value.reason is InputErrorReason.UNREADABLE


def test_what_write_wfdb_writes_takes_the_fast_path(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    names = ("I", "II", "V1")
    ecg = ECG(
        samples=rng.normal(0, 0.5, (3, 1000)), fs_hz=500, lead_names=names, patient_id="p-7", device_id="bed-3",
        acquired_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
    )  # fmt: skip
    record = write_wfdb(ecg, tmp_path, "made")
    assert wfdb_fast.read_whole_fast(record) is not None
    fast = read_wfdb(record)
    assert fast.acquired_at == ecg.acquired_at and fast.patient_id == "p-7"
    _forced_slow(monkeypatch)
    _same_ecg(fast, read_wfdb(record))


def test_copied_ptbxl_record_with_signal_file_missing(tmp_path):
    src = next(r for r in RECORDS if "ptbxl" in str(r))
    shutil.copy(f"{src}.hea", tmp_path / f"{src.name}.hea")
    assert wfdb_fast.read_whole_fast(tmp_path / src.name) is None
    with pytest.raises(ECGInputError) as exc:
        read_wfdb(tmp_path / src.name)
    assert exc.value.reason is InputErrorReason.UNREADABLE


def _slow_millivolts(digital, baseline, gain, units, keep) -> np.ndarray:
    """What read_wfdb did before digital_to_millivolts: wfdb's float64 samples, then rows_to_millivolts."""
    physical = (digital.astype(np.float64) - np.asarray(baseline, np.float64)) / np.asarray(gain, np.float64)
    physical[digital == -32768] = np.nan
    return rows_to_millivolts([physical[:, i] for i in keep], units)


@pytest.mark.parametrize(
    ("gains", "baselines"),
    [
        ([1000.0] * 4, [0] * 4),  # PTB-XL: float32 gains, zero baselines
        ([200.0, 12.375, 0.5, -81.0], [0, 40, -3, 2047]),  # float32 gains, baselines to subtract
        ([200.1, 1e3 / 3, 0.7, 1234.567], [0, 5, -1, 0]),  # not float32 values: the float64 way
        ([1000.0, 200.0, 500.0, 1000.0], [0, 2**23, -(2**24), 7]),  # baselines float32 cannot subtract exactly
    ],
)
@pytest.mark.parametrize("keep", [[0, 1, 2, 3], [3, 1], [2]])
def test_digital_to_millivolts_is_the_float64_route_bit_for_bit(gains, baselines, keep):
    rng = np.random.default_rng(len(keep))
    digital = rng.integers(-32768, 32768, size=(2000, 4)).astype("<i2")
    digital[5, :] = -32768  # missing samples
    digital[6, :] = np.asarray(baselines).clip(-32767, 32767)  # a zero after subtracting
    units = ["mV", "uV", "V", "µV"]
    kept_units = [units[i] for i in keep]
    fast = wfdb_fast.digital_to_millivolts(digital, baselines, gains, kept_units, keep)
    slow = _slow_millivolts(digital, baselines, gains, kept_units, keep)
    assert fast.dtype == np.float32 and fast.flags.c_contiguous and fast.shape == (len(keep), 2000)
    np.testing.assert_array_equal(fast.view(np.uint32), slow.view(np.uint32))  # every bit: NaN and -0.0 too


def test_every_float32_gain_divides_as_float64_does():
    # The float32 shortcut rests on this: x / g rounded once to float32 equals the float64 quotient
    # rounded again, for integer x and float32 g. Checked over every int16 sample and awkward gains.
    x = np.arange(-32767, 32768, dtype=np.int16)[:, None]
    gains = np.array([[1000.0, 200.0, 3.0, 7.0, 0.1, 1 / 3, 65.53599548339844, 1e-3, 40000.0]], dtype=np.float32)
    for base in (0, 1, -5, 4096):
        float32_way = (x.astype(np.float32) - np.float32(base)) / gains
        float64_way = ((x.astype(np.float64) - base) / gains.astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(float32_way.view(np.uint32), float64_way.view(np.uint32))
