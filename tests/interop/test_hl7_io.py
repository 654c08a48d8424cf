"""HL7 v2 ORU^R01 waveform messages built with python-hl7 from a real PTB-XL record, in both forms
monitor gateways send (CD channel definitions; IHE PCD MDC codes with a sample-rate NM), read back."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.readers.dispatch import iter_records, read_ecg
from hfrisk.model.readers.hl7_io import HL7MessageError, ecg_to_oru_r01, read_hl7
from hfrisk.model.readers.wfdb_io import read_wfdb


@pytest.fixture(scope="module")
def ptbxl_ecg(ptbxl_record_hr):
    return replace(read_wfdb(ptbxl_record_hr), acquired_at=datetime(2021, 3, 4, 5, 6, 7, 250000, tzinfo=timezone.utc),
                   patient_id="MRN123", device_id="bed-7")


@pytest.mark.parametrize("channel_definitions", [True, False])
@pytest.mark.parametrize("resolution_uv", [1.0, 5.0])
def test_round_trip_within_half_the_resolution(tmp_path, ptbxl_ecg, channel_definitions, resolution_uv):
    message = ecg_to_oru_r01(ptbxl_ecg, channel_definitions=channel_definitions, resolution_uv=resolution_uv)
    path = tmp_path / "ecg.hl7"
    path.write_text(str(message))
    ecg = read_ecg(path)
    assert ecg.metadata["format"] == "hl7v2" and ecg.fs_hz == 500.0
    assert conform_leads(ecg).mask.all()
    assert np.abs(ecg.samples - ptbxl_ecg.samples).max() <= resolution_uv / 2000 + 1e-6
    assert (ecg.patient_id, ecg.device_id) == ("MRN123", "bed-7")
    assert ecg.acquired_at == ptbxl_ecg.acquired_at


def _gateway_message(lines):
    return "\r".join(["MSH|^~\\&|GW|ICU|HFRISK|H|20240101120000||ORU^R01^ORU_R01|42|P|2.5",
                      "PID|1||PAT-9^^^H^MR", "OBR|1||ORD1|ECG|||20240101120000"] + lines)


def test_cd_calibration_baseline_sensitivity_and_non_ecg_channels():
    """Value = (sample - baseline) * sensitivity * correction; a Pleth channel is dropped."""
    text = _gateway_message([
        "OBX|1|CD|131330^MDC_ECG_ELEC_POTL_II^MDC|1|1&II^^2.5&uV&UCUM^1.2&100&0^250||||||F",
        "OBX|2|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1|100^200^300||||||F",
        "OBX|3|CD|150452^MDC_PULS_OXIM_PLETH^MDC|2|2&Pleth^^1&%&UCUM^1&0&0^250||||||F",
        "OBX|4|NA|150452^MDC_PULS_OXIM_PLETH^MDC|2|1^2^3||||||F",
    ])
    ecg = read_hl7(text)
    assert ecg.lead_names == ("II",) and ecg.fs_hz == 250.0
    np.testing.assert_allclose(ecg.samples[0], np.array([0, 100, 200]) * 2.5 * 1.2 / 1000, rtol=1e-6)
    assert ecg.metadata["dropped_channels"][0]["name"] == "Pleth"
    assert ecg.patient_id == "PAT-9" and ecg.acquired_at == datetime(2024, 1, 1, 12, 0, 0)


def test_mdc_lead_codes_and_mdc_units_in_the_ihe_form():
    text = _gateway_message([
        "OBX|1|NM|MDC_ATTR_SAMP_RATE^Sample rate^MDC|0|360|Hz^^UCUM|||||F",
        "OBX|2|NA|131073^MDC_ECG_LEAD_I^MDC|1|1^2^3|266418^MDC_DIM_MICRO_VOLT^MDC|||||F",
        "OBX|3|NA|^MDC_ECG_LEAD_AVF^MDC|2|4^5^6|mV^^UCUM|||||F",
    ])
    ecg = read_hl7(text.encode())
    assert ecg.lead_names == ("I", "aVF") and ecg.fs_hz == 360.0
    np.testing.assert_allclose(ecg.samples, [[0.001, 0.002, 0.003], [4, 5, 6]], rtol=1e-6)


_LEAD = "OBX|2|NA|131329^MDC_ECG_ELEC_POTL_I^MDC|1|1^2^3|uV^^UCUM|||||F"
_RATE = "OBX|1|NM|MDC_ATTR_SAMP_RATE^Sample rate^MDC|0|500|Hz^^UCUM|||||F"


@pytest.mark.parametrize(
    "text, reason, rejected",
    [
        ("this is not HL7", "bad_message", True),
        ("MSH|^~\\&|GW|ICU|HFRISK|H|20240101||ADT^A01|1|P|2.5\rPID|1||X", "bad_message", True),
        (_gateway_message([_RATE, _LEAD]).replace("PID|1||PAT-9^^^H^MR", "PID|1||"), "bad_message", False),
        (_gateway_message([_RATE]), "bad_message", False),
        (_gateway_message([_RATE, _LEAD.replace("1^2^3", "1^two^3")]), "bad_message", False),
        (_gateway_message([_RATE, _LEAD.replace("131329^MDC_ECG_ELEC_POTL_I", "1^LEAD_Q")]), "unknown_lead", False),
        (_gateway_message([_RATE, _LEAD, _LEAD.replace("OBX|2", "OBX|3")]), "duplicate_lead", False),
        (_gateway_message([_RATE, _LEAD.replace("uV^^UCUM", "")]), "bad_units", False),
        (_gateway_message([_LEAD]), "bad_sampling_rate", False),
        (_gateway_message([_RATE, _LEAD, _LEAD.replace("131329^MDC_ECG_ELEC_POTL_I", "131330^MDC_ECG_ELEC_POTL_II")
                           .replace("1^2^3", "1^2")]), "bad_shape", False),
        (_gateway_message([_RATE.replace("|500|", "|0|"), _LEAD]), "bad_sampling_rate", False),
    ],
    ids=["not-hl7", "not-oru", "no-patient", "no-waveform", "bad-sample", "unknown-lead", "duplicate-lead",
         "no-unit", "no-rate", "lengths-differ", "zero-rate"],
)
def test_every_malformed_class_is_refused_with_its_reason(text, reason, rejected):
    with pytest.raises(ECGInputError) as err:
        read_hl7(text)
    assert err.value.reason.value == reason
    # Messages that are not an ORU^R01 at all are an application reject (AR), the rest an error (AE).
    assert isinstance(err.value, HL7MessageError) is rejected


def test_folder_discovery(tmp_path, ptbxl_ecg):
    (tmp_path / "a.oru").write_text(str(ecg_to_oru_r01(ptbxl_ecg)))
    assert list(iter_records(tmp_path)) == [tmp_path / "a.oru"]


def test_a_message_parsed_by_python_hl7_itself_reads_the_same(ptbxl_ecg):
    """oru_to_ecg takes python-hl7's own Message too (samples left in the OBX), with the same result
    as the reader's fast path, which keeps the sample arrays out of python-hl7's parse."""
    import hl7

    from hfrisk.model.readers.hl7_io import oru_to_ecg, parse_oru

    text = str(ecg_to_oru_r01(ptbxl_ecg, message_id="x"))
    fast, plain = oru_to_ecg(parse_oru(text)), oru_to_ecg(hl7.parse(text))
    assert fast.lead_names == plain.lead_names and fast.fs_hz == plain.fs_hz
    np.testing.assert_array_equal(fast.samples, plain.samples)
    obx = parse_oru(text).message.segments("OBX")
    assert str(obx[2][2]) == "NA" and str(obx[2][5]) == ""  # the NA values were kept aside


@pytest.mark.parametrize("resolution_uv", [1.0, 2.5])
def test_multiplexed_ma_round_trip(ptbxl_ecg, resolution_uv):
    text = str(ecg_to_oru_r01(ptbxl_ecg, multiplexed=True, resolution_uv=resolution_uv))
    assert "|MA|" in text and "|NA|" not in text
    ecg = read_hl7(text)
    assert ecg.lead_names == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    assert ecg.fs_hz == 500.0 and ecg.samples.shape == (12, 5000)
    assert np.abs(ecg.samples - ptbxl_ecg.samples).max() <= resolution_uv / 2000 + 1e-6


def test_multiplexed_channels_follow_channel_numbers_not_segment_order():
    text = _gateway_message([
        "OBX|1|CD|131330^MDC_ECG_ELEC_POTL_II^MDC|1|2&II^^1&mV&UCUM^1&0&0^100||||||F",
        "OBX|2|CD|131329^MDC_ECG_ELEC_POTL_I^MDC|1|1&I^^1&mV&UCUM^1&0&0^100||||||F",
        "OBX|3|MA|WAVE^Waveform^L|1|1^10~2^20~3^30||||||F",
    ])
    ecg = read_hl7(text)
    assert ecg.lead_names == ("I", "II")
    np.testing.assert_allclose(ecg.samples, [[1, 2, 3], [10, 20, 30]])


@pytest.mark.parametrize(
    "lines, reason",
    [(["OBX|1|MA|WAVE^Waveform^L|1|1^10~2^20||||||F"], "bad_message"),  # no channel definitions
     (["OBX|1|CD|131329^MDC_ECG_ELEC_POTL_I^MDC|1|1&I^^1&mV&UCUM^1&0&0^100||||||F",
       "OBX|2|CD|131330^MDC_ECG_ELEC_POTL_II^MDC|1|2&II^^1&mV&UCUM^1&0&0^100||||||F",
       "OBX|3|MA|WAVE^Waveform^L|1|1^10~2~3^30||||||F"], "bad_shape"),  # a sample missing a channel
     (["OBX|1|CD|131329^MDC_ECG_ELEC_POTL_I^MDC|1|1&I^^1&mV&UCUM^1&0&0^100||||||F",
       "OBX|2|MA|WAVE^Waveform^L|1|1~x~3||||||F"], "bad_message")],  # not a number
    ids=["ma-without-cd", "ma-ragged", "ma-not-a-number"],
)
def test_malformed_multiplexed_messages(lines, reason):
    with pytest.raises(ECGInputError) as err:
        read_hl7(_gateway_message(lines))
    assert err.value.reason.value == reason
