"""WFDB reading and writing on the real recordings in tests/data/ecg and on records made here."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.wfdb_io import is_ecg_channel, read_wfdb, resolve_record, write_wfdb

PTBXL_NAMES = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
CINC_NAMES = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SHARED_SAMPLES = Path("/work/shared/data/ecg/wfdb-samples")


def _first_values(record: Path) -> np.ndarray:
    """First sample of each channel in mV from the header alone: (initial value - baseline) / gain.

    An independent check of the scaling: the header's initial-value field is the first stored
    sample, written by the tool that made the record.
    """
    header = wfdb.rdheader(str(record))
    return (np.array(header.init_value) - np.array(header.baseline)) / np.array(header.adc_gain)


def _copy_record(src: Path, dest_dir: Path) -> Path:
    for f in src.parent.glob(f"{src.name}.*"):
        shutil.copy(f, dest_dir / f.name)
    return dest_dir / src.name


# --- real records ----------------------------------------------------------------------------


def test_ptbxl_100hz_is_12_leads_in_mv(ptbxl_record_lr):
    ecg = read_wfdb(ptbxl_record_lr)
    assert ecg.samples.shape == (12, 1000)
    assert ecg.fs_hz == 100.0 and ecg.duration_s == pytest.approx(10.0)
    # Names as written in the header; leads.py maps AVR -> aVR.
    assert ecg.lead_names == PTBXL_NAMES
    assert ecg.units == "mV" and ecg.samples.dtype == np.float32
    assert np.abs(ecg.samples).max() < 10.0
    assert (ecg.samples.std(axis=1) > 0.01).all()
    np.testing.assert_allclose(ecg.samples[:, 0], _first_values(ptbxl_record_lr), atol=1e-6)
    assert ecg.patient_id == ecg.device_id == "00001_lr"
    assert ecg.acquired_at is None
    assert ecg.metadata["format"] == "wfdb" and ecg.metadata["dropped_channels"] == []


def test_ptbxl_500hz_agrees_with_100hz_version_of_same_ecg(ptbxl_record_lr, ptbxl_record_hr):
    low, high = read_wfdb(ptbxl_record_lr), read_wfdb(ptbxl_record_hr)
    assert high.samples.shape == (12, 5000) and high.fs_hz == 500.0
    assert np.abs(high.samples).max() < 10.0
    ii = PTBXL_NAMES.index("II")
    down = resample_poly(high.samples[ii], up=1, down=5)
    assert down.shape == low.samples[ii].shape
    assert np.corrcoef(down, low.samples[ii])[0, 1] > 0.95


@pytest.mark.parametrize("suffix", ["", ".hea", ".dat"])
def test_record_path_with_or_without_extension(ptbxl_record_lr, suffix):
    path = Path(f"{ptbxl_record_lr}{suffix}")
    assert resolve_record(path) == ptbxl_record_lr
    assert read_wfdb(path).samples.shape == (12, 1000)


def test_cinc_lowercase_mv_units_in_mat_file(cinc_record):
    ecg = read_wfdb(cinc_record.with_suffix(".mat"))
    assert ecg.samples.shape == (12, 5000) and ecg.fs_hz == 500.0
    assert ecg.lead_names == CINC_NAMES
    assert ecg.metadata["units_original"] == ["mv"] * 12
    np.testing.assert_allclose(ecg.samples[:, 0], _first_values(cinc_record), atol=1e-6)
    assert np.abs(ecg.samples).max() < 10.0
    fields = ecg.metadata["header_fields"]
    assert fields["Age"] == "59" and fields["Sex"] == "Female"
    assert fields["Dx"].split(",") == ["164934002", "426783006"]
    assert "Dx: 164934002,426783006" in ecg.metadata["comments"]


def test_cpsc_record_date_that_wfdb_misparses_is_read(ecg_data_dir):
    # Header record line: "A0689 12 500 5000 12-May-2020 12:33:59" (not WFDB's HH:MM:SS DD/MM/YYYY).
    ecg = read_wfdb(ecg_data_dir / "cinc2021" / "A0689")
    assert ecg.acquired_at == datetime(2020, 5, 12, 12, 33, 59)
    assert ecg.metadata["header_fields"]["Dx"] == "164889003"
    assert ecg.samples.shape == (12, 5000)


def test_georgia_mat_record_read_from_header_path(ecg_data_dir):
    record = ecg_data_dir / "cinc2021" / "E07500"
    ecg = read_wfdb(record.with_suffix(".hea"))
    assert ecg.lead_names == CINC_NAMES and ecg.samples.shape == (12, 5000)
    np.testing.assert_allclose(ecg.samples[:, 0], _first_values(record), atol=1e-6)


def test_ptb_diagnostic_15_leads_keeps_frank_leads_and_comments(ptb_15lead_record):
    ecg = read_wfdb(ptb_15lead_record)
    assert ecg.samples.shape == (15, 38400) and ecg.fs_hz == 1000.0
    # Frank leads are voltages: kept, named as found; leads.py decides to ignore them.
    assert ecg.lead_names[:3] == ("i", "ii", "iii") and ecg.lead_names[-3:] == ("vx", "vy", "vz")
    np.testing.assert_allclose(ecg.samples[:, 0], _first_values(ptb_15lead_record), atol=1e-6)
    assert ecg.metadata["header_fields"]["age"] == "81"
    assert ecg.metadata["header_fields"]["Reason for admission"] == "Myocardial infarction"
    assert np.abs(ecg.samples).max() < 20.0


def test_mitbih_slice_by_sample_range(mitbih_record):
    head = read_wfdb(mitbih_record, sampto=10)
    # Format 212 with baseline 1024, gain 200: first samples (995-1024)/200, (1011-1024)/200.
    np.testing.assert_allclose(head.samples[:, 0], [-0.145, -0.065], atol=1e-6)
    part = read_wfdb(mitbih_record, sampfrom=3600, sampto=7200)
    assert part.lead_names == ("MLII", "V5")
    assert part.samples.shape == (2, 3600) and part.fs_hz == 360.0
    reference = wfdb.rdrecord(str(mitbih_record), sampfrom=3600, sampto=7200).p_signal.T
    np.testing.assert_allclose(part.samples, reference, atol=1e-6)
    assert part.metadata["record_samples"] == 650000
    assert part.metadata["sampfrom"] == 3600 and part.metadata["sampto"] == 7200


def test_channels_subset_and_order_by_name_or_index(mitbih_record, ptb_15lead_record):
    both = read_wfdb(mitbih_record, sampto=1000)
    swapped = read_wfdb(mitbih_record, sampto=1000, channels=["V5", "MLII"])
    assert swapped.lead_names == ("V5", "MLII")
    np.testing.assert_array_equal(swapped.samples, both.samples[::-1])
    by_index = read_wfdb(mitbih_record, sampto=1000, channels=[1])
    np.testing.assert_array_equal(by_index.samples, both.samples[1:])
    # s0010_re writes 'avr'; asking for 'aVR' finds it, and the name stays as written.
    avr = read_wfdb(ptb_15lead_record, sampto=100, channels=["aVR", "vz"])
    assert avr.lead_names == ("avr", "vz")


@pytest.mark.parametrize("channels", [["V7"], [5]])
def test_unknown_channel_is_missing_leads(mitbih_record, channels):
    with pytest.raises(ECGInputError) as err:
        read_wfdb(mitbih_record, sampto=100, channels=channels)
    assert err.value.reason is InputErrorReason.MISSING_LEADS


def test_slice_beyond_end_or_empty_is_too_short(mitbih_record):
    for kw in ({"sampto": 650001}, {"sampfrom": 100, "sampto": 100}):
        with pytest.raises(ECGInputError) as err:
            read_wfdb(mitbih_record, **kw)
        assert err.value.reason is InputErrorReason.TOO_SHORT


@pytest.mark.skipif(not (SHARED_SAMPLES / "03700181.hea").exists(), reason="shared wfdb-samples absent")
def test_mimic_record_with_nan_resp_loads_its_ecg():
    ecg = read_wfdb(SHARED_SAMPLES / "03700181")
    # MCL1 is stored at 4 samples per 125-Hz frame: kept at its full 500 Hz.
    assert ecg.lead_names == ("MCL1",) and ecg.fs_hz == 500.0
    assert ecg.samples.shape == (1, 300000)
    assert [d["name"] for d in ecg.metadata["dropped_channels"]] == ["ABP", "RESP"]
    assert ecg.acquired_at == datetime(1994, 8, 15, 17, 27, 45)


# --- records made here -------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, signals: dict[str, tuple[np.ndarray, str]], fs=250, **kw) -> Path:
    wfdb.wrsamp(
        name,
        fs=fs,
        units=[u for _, u in signals.values()],
        sig_name=list(signals),
        p_signal=np.stack([s for s, _ in signals.values()], axis=1),
        fmt=["16"] * len(signals),
        write_dir=str(tmp_path),
        **kw,
    )
    return tmp_path / name


@pytest.mark.parametrize(
    "fmt, bits", [("16", 16), ("24", 24), ("32", 32), ("80", 8), ("212", 12), ("516", 16)]
)
def test_storage_formats_read_to_within_their_resolution(tmp_path, fmt, bits):
    t = np.arange(999) / 250
    lead_i, lead_ii_uv = np.sin(2 * np.pi * t), 1500 * np.cos(2 * np.pi * 1.3 * t)
    wfdb.wrsamp("f", fs=250, units=["mV", "uV"], sig_name=["I", "II"], fmt=[fmt, fmt],
                p_signal=np.stack([lead_i, lead_ii_uv], axis=1), write_dir=str(tmp_path))
    ecg = read_wfdb(tmp_path / "f")
    assert ecg.metadata["fmt"] == [fmt, fmt] and ecg.samples.shape == (2, 999)
    # One quantisation step of a signal spanning its format's full range, or float32's precision.
    for got, want in ((ecg.samples[0], lead_i), (ecg.samples[1], lead_ii_uv / 1000)):
        step = 2 * np.abs(want).max() / 2**bits
        np.testing.assert_allclose(got, want, atol=max(1.01 * step, 1e-6))


def test_per_channel_units_are_converted(tmp_path, cinc_record):
    record = _copy_record(cinc_record, tmp_path)
    header = record.with_suffix(".hea")
    lines = header.read_text().splitlines()
    # Same stored numbers; channel I now declares microvolts, channel II volts.
    lines[1] = lines[1].replace("/mv", "/uV")
    lines[2] = lines[2].replace("/mv", "/V")
    header.write_text("\n".join(lines) + "\n")
    original, relabelled = read_wfdb(cinc_record), read_wfdb(record)
    np.testing.assert_allclose(relabelled.samples[0], original.samples[0] / 1000, rtol=1e-6)
    np.testing.assert_allclose(relabelled.samples[1], original.samples[1] * 1000, rtol=1e-6)
    np.testing.assert_array_equal(relabelled.samples[2:], original.samples[2:])


def test_non_ecg_channels_are_dropped_even_with_nan(tmp_path):
    t = np.arange(2500) / 250
    resp = np.sin(t)
    resp[100:104] = np.nan  # as MIMIC's RESP: invalid samples in a channel we do not use
    record = _write(
        tmp_path,
        "icu",
        {
            "II": (np.sin(2 * np.pi * t), "mV"),
            "ABP": (80 + 40 * np.sin(2 * np.pi * t), "mmHg"),
            # WFDB reads a header without a unit as mV: only the name says it is not ECG.
            "RESP": (resp, "mV"),
            "PLETH": (np.cos(t), "NU"),
        },
    )
    ecg = read_wfdb(record)
    assert ecg.lead_names == ("II",)
    assert np.isfinite(ecg.samples).all()
    dropped = {d["name"]: d for d in ecg.metadata["dropped_channels"]}
    assert set(dropped) == {"ABP", "RESP", "PLETH"}
    assert dropped["ABP"]["units"] == "mmHg" and dropped["ABP"]["reason"] == "not a voltage"
    assert dropped["RESP"]["reason"] == "not an ECG signal"
    with pytest.raises(ECGInputError) as err:
        read_wfdb(record, channels=["II", "ABP"])
    assert err.value.reason is InputErrorReason.BAD_UNITS


def test_record_without_any_ecg_channel_is_bad_units(tmp_path):
    record = _write(tmp_path, "bp", {"ABP": (np.full(500, 90.0), "mmHg")})
    with pytest.raises(ECGInputError) as err:
        read_wfdb(record)
    assert err.value.reason is InputErrorReason.BAD_UNITS


def test_nan_in_ecg_channel_is_non_finite_with_path(tmp_path):
    lead = np.sin(np.arange(1000) / 20)
    lead[10] = np.nan
    record = _write(tmp_path, "gap", {"I": (lead, "mV"), "II": (np.cos(np.arange(1000) / 20), "mV")})
    with pytest.raises(ECGInputError) as err:
        read_wfdb(record)
    assert err.value.reason is InputErrorReason.NON_FINITE
    assert str(record) in str(err.value) and "['I']" in str(err.value)


def test_channels_at_different_rates_are_frame_smoothed(tmp_path):
    fast, slow = np.sin(np.arange(400) / 10), np.sin(np.arange(200) / 5)
    wfdb.wrsamp(
        "mixed", fs=125, units=["mV", "mV"], sig_name=["V1", "V2"], e_p_signal=[fast, slow],
        samps_per_frame=[4, 2], fmt=["16", "16"], write_dir=str(tmp_path),
    )
    ecg = read_wfdb(tmp_path / "mixed")
    assert ecg.fs_hz == 125.0 and ecg.samples.shape == (2, 100)
    assert ecg.metadata["frame_smoothed"] is True
    np.testing.assert_allclose(ecg.samples[0], fast.reshape(100, 4).mean(axis=1), atol=1e-4)


def test_multi_segment_record_reads_across_segments(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(100, 2)) for _ in range(2)]
    for k, part in enumerate(parts, 1):
        wfdb.wrsamp(f"ms_{k}", fs=360, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=part,
                    fmt=["16", "16"], write_dir=str(tmp_path))
    (tmp_path / "ms.hea").write_text("ms/2 2 360 200\nms_1 100\nms_2 100\n")
    ecg = read_wfdb(tmp_path / "ms", sampfrom=50, sampto=150, channels=["V5"])
    assert ecg.lead_names == ("V5",) and ecg.samples.shape == (1, 100)
    np.testing.assert_allclose(ecg.samples[0], np.r_[parts[0][50:, 1], parts[1][:50, 1]], atol=1e-3)


# --- writing -----------------------------------------------------------------------------------


def test_write_read_round_trip_keeps_signal_ids_time_and_comments(tmp_path):
    rng = np.random.default_rng(1)
    samples = rng.normal(scale=0.5, size=(3, 2000)).astype(np.float32)
    samples[2] *= 100  # a 50-mV-scale lead would clip at 1000 counts/mV: written at a lower gain
    at = datetime(2024, 3, 1, 8, 30, 15, tzinfo=timezone(timedelta(hours=1)))
    ecg = ECG(samples, 500.0, ("I", "II", "V1"), patient_id="p-7", device_id="cart-3",
              acquired_at=at, metadata={"comments": ["Age: 63", "Dx: 426783006"]})
    record = write_wfdb(ecg, tmp_path / "out", "rt1")
    assert record == tmp_path / "out" / "rt1"
    back = read_wfdb(record)
    assert back.lead_names == ecg.lead_names and back.fs_hz == 500.0
    np.testing.assert_allclose(back.samples[:2], samples[:2], atol=0.5e-3 + 1e-6)
    np.testing.assert_allclose(back.samples[2], samples[2], atol=np.abs(samples[2]).max() / 32767)
    assert (back.patient_id, back.device_id) == ("p-7", "cart-3")
    assert back.acquired_at == at  # written as UTC, read back aware
    assert back.metadata["header_fields"]["Age"] == "63"
    # Writing the read-back record again does not pile up id/timezone comment lines.
    again = read_wfdb(write_wfdb(back, tmp_path / "out", "rt2"))
    assert again.metadata["comments"] == back.metadata["comments"]
    # The time of a slice is the record start plus the offset.
    assert read_wfdb(record, sampfrom=1000).acquired_at == at + timedelta(seconds=2)


def test_real_record_round_trips_exactly(tmp_path, cinc_record):
    ecg = read_wfdb(cinc_record)
    back = read_wfdb(write_wfdb(ecg, tmp_path, "HR06000_copy"), patient_id="x")
    # Stored at 1000 counts/mV as the source: identical values.
    np.testing.assert_array_equal(back.samples, ecg.samples)
    assert back.lead_names == ecg.lead_names and back.patient_id == "x"


def test_write_refuses_bad_record_name(tmp_path):
    ecg = ECG(np.zeros((1, 10)), 100.0, ("I",))
    with pytest.raises(ValueError):
        write_wfdb(ecg, tmp_path, "bad name.hea")


# --- unreadable files ---------------------------------------------------------------------------


def _assert_unreadable(path: Path, record: Path) -> None:
    with pytest.raises(ECGInputError) as err:
        read_wfdb(path)
    assert err.value.reason is InputErrorReason.UNREADABLE
    assert str(record) in str(err.value)


@pytest.mark.parametrize("which", ["ptbxl", "mitbih"])
def test_truncated_dat_is_unreadable(tmp_path, ptbxl_record_lr, mitbih_record, which):
    # Format 16 (PTB-XL) and format 212 (MIT-BIH), cut in half mid-frame.
    record = _copy_record(ptbxl_record_lr if which == "ptbxl" else mitbih_record, tmp_path)
    dat = record.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2 + 1])
    _assert_unreadable(record, record)
    # The part that is there still reads.
    assert read_wfdb(record, sampto=400).n_samples == 400


def test_truncated_mat_is_unreadable(tmp_path, cinc_record):
    record = _copy_record(cinc_record, tmp_path)
    mat = record.with_suffix(".mat")
    mat.write_bytes(mat.read_bytes()[:1000])
    _assert_unreadable(record, record)


def test_empty_dat_is_unreadable(tmp_path, ptbxl_record_lr):
    record = _copy_record(ptbxl_record_lr, tmp_path)
    record.with_suffix(".dat").write_bytes(b"")
    _assert_unreadable(record, record)


def test_header_pointing_to_missing_file_is_unreadable(tmp_path, ptbxl_record_lr):
    record = _copy_record(ptbxl_record_lr, tmp_path)
    record.with_suffix(".dat").unlink()
    _assert_unreadable(record, record)


def test_garbage_header_is_unreadable(tmp_path):
    (tmp_path / "junk.hea").write_text("this is not\na wfdb header at all\n")
    _assert_unreadable(tmp_path / "junk", tmp_path / "junk")
    (tmp_path / "bin.hea").write_bytes(bytes(range(256)) * 4)
    _assert_unreadable(tmp_path / "bin.hea", tmp_path / "bin")


def test_missing_header_is_unreadable(tmp_path):
    (tmp_path / "lonely.dat").write_bytes(b"\x00" * 100)
    _assert_unreadable(tmp_path / "lonely.dat", tmp_path / "lonely")
    _assert_unreadable(tmp_path / "nowhere", tmp_path / "nowhere")


@pytest.mark.parametrize(
    "name, units, is_ecg",
    [("II", "mV", True), ("V5", "mv", True), ("vx", "uV", True), ("ABP", "mmHg", False),
     ("RESP", "mV", False), ("Resp (chest)", "mV", False), ("PLETH", "NU", False),
     ("SpO2", "%", False), ("ECG II", "V", True)],
)
def test_is_ecg_channel(name, units, is_ecg):
    assert is_ecg_channel(name, units) is is_ecg
