"""EDF/EDF+ files written by pyedflib from a real PTB-XL record, read back through read_edf and read_ecg."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pyedflib
import pytest

from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.readers.dispatch import iter_records, read_ecg
from hfrisk.model.readers.edf_io import read_edf, write_edf
from hfrisk.model.readers.wfdb_io import read_wfdb


@pytest.fixture(scope="module")
def ptbxl_ecg(ptbxl_record_hr):
    return replace(read_wfdb(ptbxl_record_hr), acquired_at=datetime(2021, 3, 4, 5, 6, 7))


def test_round_trip_within_half_a_quantisation_step(tmp_path, ptbxl_ecg):
    path = write_edf(ptbxl_ecg, tmp_path / "ecg.edf", annotations=[(1.0, 0.5, "artefact"), (2.5, 0.0, "PVC")])
    ecg = read_ecg(path)
    assert ecg.metadata["format"] == "edf" and ecg.metadata["edf_plus"]
    assert ecg.fs_hz == 500.0 and ecg.samples.shape == (12, 5000)
    assert conform_leads(ecg).mask.all()
    step = np.asarray(ecg.metadata["quantisation_mv"])[:, None]
    # Half a step, plus float32 rounding of values up to a few mV.
    assert (np.abs(ecg.samples - ptbxl_ecg.samples) <= step / 2 + 1e-6).all()
    assert ecg.patient_id == ptbxl_ecg.patient_id == "00001_hr"
    assert ecg.acquired_at == datetime(2021, 3, 4, 5, 6, 7)
    assert ecg.metadata["annotations"] == [[1.0, 0.5, "artefact"], [2.5, 0.0, "PVC"]]


def test_labels_units_and_non_ecg_signals_as_a_recorder_writes_them(tmp_path, ptbxl_ecg):
    """ECG-prefixed labels in mV, a respiration channel and an EEG channel beside them."""
    path = tmp_path / "holter.edf"
    rows = [ptbxl_ecg.samples[0], ptbxl_ecg.samples[1], np.sin(np.arange(5000) / 50), ptbxl_ecg.samples[2]]
    headers = [
        pyedflib.highlevel.make_signal_header("ECG I", "mV", 500, -5, 5),
        pyedflib.highlevel.make_signal_header("EKG II", "mV", 500, -5, 5),
        pyedflib.highlevel.make_signal_header("Resp", "Ohm", 500, -2, 2),
        pyedflib.highlevel.make_signal_header("EEG Fpz-Cz", "uV", 500, -5000, 5000),
    ]
    pyedflib.highlevel.write_edf(str(path), [r.astype(np.float64) for r in rows[:3]] + [rows[3] * 1000.0],
                                 headers, pyedflib.highlevel.make_header(patientcode="MRN-7"))
    ecg = read_edf(path)
    assert ecg.lead_names == ("ECG I", "EKG II")
    assert [d["name"] for d in ecg.metadata["dropped_channels"]] == ["Resp", "EEG Fpz-Cz"]
    assert conform_leads(ecg).present == ("I", "II", "III", "aVR", "aVL", "aVF")  # III... derived
    np.testing.assert_allclose(ecg.samples[0], ptbxl_ecg.samples[0], atol=10 / 65535)
    assert ecg.patient_id == "MRN-7"


def test_leads_at_different_rates_are_refused(tmp_path, ptbxl_ecg):
    path = tmp_path / "mixed.edf"
    headers = [pyedflib.highlevel.make_signal_header("I", "mV", 500, -5, 5),
               pyedflib.highlevel.make_signal_header("II", "mV", 250, -5, 5)]
    pyedflib.highlevel.write_edf(str(path), [ptbxl_ecg.samples[0].astype(float), ptbxl_ecg.samples[1, ::2].astype(float)], headers)
    with pytest.raises(ECGInputError) as err:
        read_edf(path)
    assert err.value.reason is InputErrorReason.BAD_SAMPLING_RATE


def test_no_voltage_channel_is_bad_units(tmp_path):
    path = tmp_path / "spo2.edf"
    headers = [pyedflib.highlevel.make_signal_header("SpO2", "%", 100, 0, 100)]
    pyedflib.highlevel.write_edf(str(path), [np.full(1000, 97.0)], headers)
    with pytest.raises(ECGInputError) as err:
        read_edf(path)
    assert err.value.reason is InputErrorReason.BAD_UNITS


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_files_are_unreadable(tmp_path, ptbxl_ecg, damage):
    path = write_edf(ptbxl_ecg, tmp_path / "ecg.edf")
    data = path.read_bytes()
    path.write_bytes(b"not an EDF header at all" * 20 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ECGInputError) as err:
        read_ecg(path)
    assert err.value.reason is InputErrorReason.UNREADABLE
    assert str(path) in str(err.value)


def test_bdf_round_trip_is_finer(tmp_path, ptbxl_ecg):
    ecg = read_ecg(write_edf(ptbxl_ecg, tmp_path / "ecg.bdf", bdf=True))
    assert max(ecg.metadata["quantisation_mv"]) < 1e-6
    np.testing.assert_allclose(ecg.samples, ptbxl_ecg.samples, atol=2e-6)


def test_iter_records_finds_edf_files(tmp_path, ptbxl_ecg):
    write_edf(ptbxl_ecg, tmp_path / "a.edf")
    (tmp_path / "notes.json").write_text("{}")
    assert list(iter_records(tmp_path)) == [tmp_path / "a.edf"]


def test_discontinuous_edf_plus_is_refused_not_read_as_continuous(tmp_path, ptbxl_ecg):
    """EDF+D records have gaps between data records; reading them back to back would shift time."""
    path = write_edf(ptbxl_ecg, tmp_path / "ecg.edf")
    data = bytearray(path.read_bytes())
    at = data.find(b"EDF+C")
    data[at:at + 5] = b"EDF+D"
    path.write_bytes(bytes(data))
    with pytest.raises(ECGInputError) as err:
        read_edf(path)
    assert err.value.reason is InputErrorReason.UNREADABLE and "discontinuous" in str(err.value)
