"""DICOM 12-lead ECG reading on pydicom's waveform_ecg.dcm and on variants of it made here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.model.readers.dicom_io import clean_lead_label, is_dicom_file, read_dicom
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import normalise_lead_name


def _stored(ds, group: int) -> np.ndarray:
    """Stored integers of a multiplex group, decoded by hand: (channels, samples).

    Independent of pydicom's waveform handler: WaveformData interleaves channels sample by sample.
    """
    item = ds.WaveformSequence[group]
    assert (item.WaveformBitsAllocated, item.WaveformSampleInterpretation) == (16, "SS")
    raw = np.frombuffer(item.WaveformData, dtype="<i2")
    return raw.reshape(item.NumberOfWaveformSamples, item.NumberOfWaveformChannels).T.astype(np.float64)


def _save(ds, tmp_path: Path, name: str = "ecg.dcm") -> Path:
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_rhythm_strip_is_12_leads_10s_1000hz_in_mv(dicom_ecg_path):
    ecg = read_dicom(dicom_ecg_path)
    assert ecg.samples.shape == (12, 10000) and ecg.fs_hz == 1000.0
    assert ecg.duration_s == pytest.approx(10.0)
    assert ecg.lead_names == CANONICAL_LEADS
    assert ecg.units == "mV"
    # Sensitivity 1.25 uV per count, correction 1, baseline 0 in this file.
    expected_mv = _stored(pydicom.dcmread(dicom_ecg_path), 0) * 1.25 / 1000
    np.testing.assert_allclose(ecg.samples, expected_mv, rtol=1e-6, atol=1e-7)
    assert 0.5 < np.abs(ecg.samples).max() < 10.0
    assert ecg.patient_id == "642341"
    assert ecg.acquired_at == datetime(2013, 1, 25, 10, 59, 19)
    assert ecg.metadata["waveform"] == "RHYTHM"
    assert ecg.metadata["waveforms_available"] == ["RHYTHM", "MEDIAN BEAT"]
    assert ecg.metadata["channel_sources"][0]["meaning"] == "Lead I (Einthoven)"
    assert ecg.metadata["filters"][0] == {"low_hz": 0.05, "high_hz": 300.0, "notch_hz": 0.0}


def test_median_beat_is_1_2_s(dicom_ecg_path):
    beat = read_dicom(dicom_ecg_path, waveform="median")
    assert beat.samples.shape == (12, 1200) and beat.duration_s == pytest.approx(1.2)
    assert beat.metadata["waveform"] == "MEDIAN BEAT"
    assert read_dicom(dicom_ecg_path, waveform=1).samples.shape == (12, 1200)


def test_lead_labels_are_accepted_by_leads_module(dicom_ecg_path):
    ecg = read_dicom(dicom_ecg_path)
    assert [normalise_lead_name(n) for n in ecg.lead_names] == [(n, False) for n in CANONICAL_LEADS]
    # The raw code meanings too, should a caller use them.
    raw = [s["meaning"] for s in ecg.metadata["channel_sources"]]
    assert [normalise_lead_name(m)[0] for m in raw] == list(CANONICAL_LEADS)


@pytest.mark.parametrize(
    "meaning, label",
    [("Lead I (Einthoven)", "I"), ("Lead II", "II"), ("Lead aVR", "aVR"), ("Lead V1", "V1"),
     ("lead -aVR", "-aVR"), ("V4R", "V4R"), ("Lead III (Einthoven) ", "III")],
)
def test_clean_lead_label(meaning, label):
    assert clean_lead_label(meaning) == label


def test_sensitivity_correction_and_baseline_follow_the_standard(tmp_path, dicom_ecg_path):
    # PS3.3 C.10.9.1.4: value = stored * sensitivity * correction factor + baseline, where the
    # baseline is in the sensitivity units.
    ds = pydicom.dcmread(dicom_ecg_path)
    channels = ds.WaveformSequence[0].ChannelDefinitionSequence
    channels[0].ChannelSensitivity = "2.5"
    channels[0].ChannelSensitivityCorrectionFactor = "0.8"
    channels[0].ChannelBaseline = "100"
    channels[1].ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
    channels[1].ChannelSensitivityUnitsSequence[0].CodeMeaning = "millivolt"
    channels[1].ChannelSensitivity = "0.002"
    stored = _stored(ds, 0)
    ecg = read_dicom(_save(ds, tmp_path))
    np.testing.assert_allclose(ecg.samples[0], (stored[0] * 2.5 * 0.8 + 100) / 1000, rtol=1e-6)
    np.testing.assert_allclose(ecg.samples[1], stored[1] * 0.002, rtol=1e-6)
    np.testing.assert_allclose(ecg.samples[2], stored[2] * 1.25 / 1000, rtol=1e-6)


def test_unit_found_by_code_meaning_when_code_is_unusual(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    units = ds.WaveformSequence[0].ChannelDefinitionSequence[0].ChannelSensitivityUnitsSequence[0]
    units.CodeValue = "uv"  # lower-case: not UCUM, but known
    ds.WaveformSequence[0].ChannelDefinitionSequence[1].ChannelSensitivityUnitsSequence[0].CodeValue = "X"
    ecg = read_dicom(_save(ds, tmp_path))
    reference = read_dicom(dicom_ecg_path)
    np.testing.assert_allclose(ecg.samples, reference.samples)


def test_non_voltage_and_uncalibrated_channels_are_dropped(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    channels = ds.WaveformSequence[0].ChannelDefinitionSequence
    pressure = channels[11].ChannelSensitivityUnitsSequence[0]
    pressure.CodeValue, pressure.CodeMeaning = "mm[Hg]", "mmHg"
    del channels[10].ChannelSensitivity
    ecg = read_dicom(_save(ds, tmp_path))
    assert ecg.lead_names == CANONICAL_LEADS[:10]
    dropped = ecg.metadata["dropped_channels"]
    assert [(d["index"], d["name"], d["units"]) for d in dropped] == [(10, "V5", ""), (11, "V6", "mm[Hg]")]


def test_acquisition_time_zone_and_group_offset(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    ds.AcquisitionDateTime = "20130125105919.250000+0100"
    ds.WaveformSequence[0].MultiplexGroupTimeOffset = "500"
    ecg = read_dicom(_save(ds, tmp_path))
    tz = timezone(timedelta(hours=1))
    assert ecg.acquired_at == datetime(2013, 1, 25, 10, 59, 19, 750000, tzinfo=tz)


def test_ids_from_arguments_or_file(tmp_path, dicom_ecg_path):
    ecg = read_dicom(dicom_ecg_path, patient_id="p1", device_id="d1")
    assert (ecg.patient_id, ecg.device_id) == ("p1", "d1")
    ds = pydicom.dcmread(dicom_ecg_path)
    ds.DeviceSerialNumber = "SN-42"
    assert read_dicom(_save(ds, tmp_path)).device_id == "SN-42"


def test_padding_samples_are_non_finite(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    group = ds.WaveformSequence[0]
    raw = np.frombuffer(group.WaveformData, dtype="<i2").copy()
    raw[5 * 12 + 3] = -32768  # sample 5 of channel 3 (aVR) is absent
    group.WaveformData = raw.tobytes()
    group.add_new((0x5400, 0x100A), "OW", np.int16(-32768).tobytes())  # WaveformPaddingValue
    path = _save(ds, tmp_path)
    with pytest.raises(ECGInputError) as err:
        read_dicom(path)
    assert err.value.reason is InputErrorReason.NON_FINITE
    assert str(path) in str(err.value) and "aVR" in str(err.value)


def test_rhythm_chosen_by_length_when_groups_are_unlabelled(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    for group in ds.WaveformSequence:
        del group.MultiplexGroupLabel
    ds.WaveformSequence = pydicom.Sequence(list(ds.WaveformSequence)[::-1])
    assert read_dicom(_save(ds, tmp_path)).samples.shape == (12, 10000)


def test_missing_waveform_kind_is_unreadable(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    del ds.WaveformSequence[1]
    path = _save(ds, tmp_path)
    with pytest.raises(ECGInputError) as err:
        read_dicom(path, waveform="median")
    assert err.value.reason is InputErrorReason.UNREADABLE and "RHYTHM" in str(err.value)
    with pytest.raises(ValueError):
        read_dicom(path, waveform="summary")


# --- unreadable files ---------------------------------------------------------------------------


def _assert_unreadable(path: Path, **kw) -> None:
    with pytest.raises(ECGInputError) as err:
        read_dicom(path, **kw)
    assert err.value.reason is InputErrorReason.UNREADABLE
    assert str(path) in str(err.value)


def test_garbage_file_is_unreadable(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"not a dicom file" * 100)
    _assert_unreadable(path)
    (tmp_path / "empty.dcm").write_bytes(b"")
    _assert_unreadable(tmp_path / "empty.dcm")
    _assert_unreadable(tmp_path / "missing.dcm")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.2])
def test_truncated_file_is_unreadable(tmp_path, dicom_ecg_path, fraction):
    data = Path(dicom_ecg_path).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * fraction)])
    _assert_unreadable(path)


def test_dicom_image_without_waveform_is_unreadable():
    _assert_unreadable(Path(get_testdata_file("CT_small.dcm")))


def test_group_index_out_of_range_is_unreadable(dicom_ecg_path):
    _assert_unreadable(Path(dicom_ecg_path), waveform=5)


def test_is_dicom_file(tmp_path, dicom_ecg_path):
    assert is_dicom_file(dicom_ecg_path)
    (tmp_path / "x").write_bytes(b"\x00" * 200)
    assert not is_dicom_file(tmp_path / "x") and not is_dicom_file(tmp_path / "absent")


def test_sample_count_beyond_waveform_data_is_unreadable(tmp_path, dicom_ecg_path):
    ds = pydicom.dcmread(dicom_ecg_path)
    ds.WaveformSequence[0].NumberOfWaveformSamples = 20000  # data holds 10000
    _assert_unreadable(_save(ds, tmp_path))
