"""FHIR R4 ECG Observations built with fhir.resources from a real PTB-XL record, read back; and the
shapes other senders use (FHIR's own ECG example, MDC_ECG_LEAD_* codes, display-only codes)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import conform_leads
from hfrisk.model.readers.dispatch import iter_records, read_ecg
from hfrisk.model.readers.fhir_io import ecg_to_observation, read_fhir
from hfrisk.model.readers.wfdb_io import read_wfdb

MDC = "urn:oid:2.16.840.1.113883.6.24"


@pytest.fixture(scope="module")
def ptbxl_ecg(ptbxl_record_hr):
    return replace(read_wfdb(ptbxl_record_hr), acquired_at=datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc))


@pytest.fixture()
def observation(ptbxl_ecg) -> dict:
    return json.loads(ecg_to_observation(ptbxl_ecg, observation_id="ecg-1").model_dump_json())


@pytest.mark.parametrize("resolution_uv", [1.0, 2.5])
def test_round_trip_within_half_the_resolution(tmp_path, ptbxl_ecg, resolution_uv):
    obs = ecg_to_observation(ptbxl_ecg, observation_id="ecg-1", resolution_uv=resolution_uv)
    path = tmp_path / "ecg.fhir.json"
    path.write_text(obs.model_dump_json())
    ecg = read_ecg(path)
    assert ecg.metadata["format"] == "fhir" and ecg.metadata["observation_reference"] == "Observation/ecg-1"
    assert ecg.fs_hz == 500.0 and conform_leads(ecg).mask.all()
    assert np.abs(ecg.samples - ptbxl_ecg.samples).max() <= resolution_uv / 2000 + 1e-6
    assert ecg.patient_id == "00001_hr" and ecg.device_id == "00001_hr"
    assert ecg.acquired_at == ptbxl_ecg.acquired_at


def test_fhir_example_shape_origin_factor_limits_and_no_unit():
    """As FHIR's own ECG example: MDC 131329/131330/131389, origin 2048, factor 1.612, limits."""
    def component(code, display, data):
        return {"code": {"coding": [{"system": MDC, "code": code, "display": display}]},
                "valueSampledData": {"origin": {"value": 2048}, "period": 10, "factor": 1.612,
                                     "lowerLimit": -3300, "upperLimit": 3300, "dimensions": 1, "data": data}}
    resource = {
        "resourceType": "Observation", "id": "ekg", "status": "final",
        "code": {"coding": [{"system": MDC, "code": "131328", "display": "MDC_ECG_ELEC_POTL"}]},
        "subject": {"reference": "Patient/f001"}, "effectiveDateTime": "2015-02-19T09:30:35+01:00",
        "device": {"display": "12 lead EKG Device Metrics"},
        "component": [component("131329", "MDC_ECG_ELEC_POTL_I", "2041 2043 L"),
                      component("131330", "MDC_ECG_ELEC_POTL_II", "2037 2038 U"),
                      component("131389", "MDC_ECG_ELEC_POTL_III", "2044 2045 2046")],
    }
    with pytest.raises(ECGInputError) as err:
        read_fhir(resource)  # the example gives no unit: refusing beats guessing one
    assert err.value.reason is InputErrorReason.BAD_UNITS
    ecg = read_fhir(resource, units="uV")
    assert ecg.lead_names == ("I", "II", "III") and ecg.fs_hz == 100.0
    expected_i = np.array([2048 + 1.612 * 2041, 2048 + 1.612 * 2043, -3300]) / 1000
    np.testing.assert_allclose(ecg.samples[0], expected_i, rtol=1e-6)
    assert ecg.samples[1, 2] == pytest.approx(3.3)
    assert ecg.patient_id == "f001" and ecg.device_id == "12 lead EKG Device Metrics"
    assert ecg.acquired_at.utcoffset().total_seconds() == 3600


@pytest.mark.parametrize(
    "coding, lead",
    [({"code": "131073", "display": "MDC_ECG_LEAD_I"}, "I"),
     ({"code": "MDC_ECG_LEAD_AVR"}, "aVR"),
     ({"display": "Lead V5"}, "V5"),
     ({"system": "http://loinc.org", "code": "unknown-to-us", "display": "aVF"}, "aVF")],
)
def test_lead_by_code_or_display(observation, coding, lead):
    observation["component"] = observation["component"][:1]
    observation["component"][0]["code"] = {"coding": [coding]}
    assert read_fhir(observation).lead_names == (lead,)


def test_bundle_of_observations(observation):
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": observation}, {"resource": {**observation, "id": "ecg-2"}}]}
    with pytest.raises(ECGInputError) as err:
        read_fhir(bundle)
    assert err.value.reason is InputErrorReason.BAD_MESSAGE and "index" in str(err.value)
    assert read_fhir(bundle, index=1).metadata["observation_id"] == "ecg-2"


def _broken(observation, how):
    comp = observation["component"]
    if how == "not json":
        return "{not json"
    if how == "wrong resource":
        return {"resourceType": "Patient", "id": "x"}
    if how == "schema":
        comp[0]["valueSampledData"]["period"] = "fast"
    elif how == "no waveform":
        observation["component"] = [{"code": {"text": "heart rate"}, "valueQuantity": {"value": 60}}]
    elif how == "bad token":
        comp[0]["valueSampledData"]["data"] = "1 2 x 4"
    elif how == "error sample":
        comp[0]["valueSampledData"]["data"] = " ".join(["1"] * 4999 + ["E"])
    elif how == "unknown lead":
        comp[0]["code"] = {"coding": [{"system": MDC, "code": "999999", "display": "MDC_PULS_OXIM_PLETH"}]}
    elif how == "duplicate lead":
        comp[1]["code"] = comp[0]["code"]
    elif how == "not volts":
        comp[0]["valueSampledData"]["origin"] = {"value": 0, "code": "mm[Hg]"}
    elif how == "mixed periods":
        comp[1]["valueSampledData"]["period"] = 4
    elif how == "mixed lengths":
        comp[1]["valueSampledData"]["data"] = "1 2 3"
    elif how == "dimensions":
        comp[0]["valueSampledData"]["dimensions"] = 2
    elif how == "empty":
        comp[0]["valueSampledData"]["data"] = "   "
    return observation


@pytest.mark.parametrize(
    "how, reason",
    [("not json", "bad_message"), ("wrong resource", "bad_message"), ("schema", "bad_message"),
     ("no waveform", "bad_message"), ("bad token", "bad_message"), ("error sample", "non_finite"),
     ("unknown lead", "unknown_lead"), ("duplicate lead", "duplicate_lead"), ("not volts", "bad_units"),
     ("mixed periods", "bad_sampling_rate"), ("mixed lengths", "bad_shape"), ("dimensions", "bad_shape"),
     ("empty", "too_short")],
)
def test_every_malformed_class_is_refused_with_its_reason(observation, how, reason):
    with pytest.raises(ECGInputError) as err:
        read_fhir(_broken(observation, how))
    assert err.value.reason.value == reason


def test_folders_hold_fhir_records_by_name_only(tmp_path, observation):
    (tmp_path / "a.fhir.json").write_text(json.dumps(observation))
    (tmp_path / "model_card.json").write_text("{}")
    assert list(iter_records(tmp_path)) == [tmp_path / "a.fhir.json"]


def test_single_lead_observation_names_its_lead_in_its_code(observation):
    one = {k: v for k, v in observation.items() if k != "component"}
    first = observation["component"][1]  # lead II
    one["code"], one["valueSampledData"] = first["code"], first["valueSampledData"]
    ecg = read_fhir(one)
    assert ecg.lead_names == ("II",) and ecg.samples.shape == (1, 5000)
    one["code"] = {"coding": [{"system": MDC, "code": "131328", "display": "MDC_ECG_ELEC_POTL"}]}
    with pytest.raises(ECGInputError) as err:
        read_fhir(one)
    assert err.value.reason is InputErrorReason.UNKNOWN_LEAD
