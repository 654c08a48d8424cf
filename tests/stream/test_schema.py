"""The ECG chunk message: exact round trips from real records, every refusal, size, docs in sync."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hfrisk.core.config import get_settings
from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.stream.messages import (
    MAGIC,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    EcgChunk,
    decode_chunk,
    encode_chunk,
    load_schema,
    message_key,
    wire_samples,
)

R = InputErrorReason
DOC = Path(__file__).resolve().parents[2] / "docs" / "message-schema.md"
T0_US = 1_700_000_000_123_456


def _one_second(record) -> tuple:
    ecg = read_ecg(record)
    n = int(ecg.fs_hz)
    return ecg, wire_samples(ecg), n


def _chunk(**overrides) -> EcgChunk:
    fields = dict(
        patient_id="bed-1",
        device_id="monitor-1",
        sequence=7,
        acquired_at_us=T0_US,
        fs_hz=500.0,
        lead_names=("I", "II", "V1"),
        samples=np.arange(3 * 50, dtype=np.int16).reshape(3, 50) - 75,
        units=("mV", "mV", "uV"),
        gains=(1000.0, 1000.0, 1.0),
        baselines=(0, 0, 0),
        source="test",
    )
    return EcgChunk(**(fields | overrides))


def _raw_message(header: bytes | None = None, **overrides) -> bytes:
    """A message written field by field with fastavro, bypassing encode_chunk's checks."""
    record = dict(
        patient_id="bed-1",
        device_id="monitor-1",
        sequence=7,
        acquired_at_us=T0_US,
        fs_hz=500.0,
        lead_names=["I", "II", "V1"],
        units=["mV", "mV", "mV"],
        gains=[1000.0, 1000.0, 1000.0],
        baselines=[0, 0, 0],
        sample_dtype="INT16",
        n_samples=50,
        samples=bytes(3 * 50 * 2),
        source="test",
    )
    record.update(overrides)
    out = io.BytesIO()
    out.write(bytes((MAGIC, SCHEMA_VERSION)) if header is None else header)
    fastavro.schemaless_writer(out, load_schema(), record)
    return out.getvalue()


def _reason(call) -> InputErrorReason:
    with pytest.raises(ECGInputError) as info:
        call()
    return info.value.reason


# --- round trips on real recordings ---------------------------------------------------------


@pytest.mark.parametrize(
    "fixture", ["ptbxl_record_hr", "ptbxl_record_lr", "cinc_record", "mitbih_record", "ptb_15lead_record"]
)
def test_int16_round_trip_gives_back_the_records_samples_exactly(fixture, request):
    ecg, wire, n = _one_second(request.getfixturevalue(fixture))
    assert wire.is_int16, "a WFDB record's ADC counts must travel as int16"
    chunk = EcgChunk.from_wire(wire, 0, n, patient_id="bed-0", sequence=0, acquired_at_us=T0_US)

    back = decode_chunk(encode_chunk(chunk))

    assert back == chunk and back.sample_dtype == "INT16"
    # Counts / gain (in each lead's unit, then to mV) is bit for bit what the WFDB reader gives.
    assert back.to_ecg().samples.tobytes() == ecg.samples[:, :n].tobytes()
    assert back.to_ecg().lead_names == ecg.lead_names and back.to_ecg().fs_hz == ecg.fs_hz


def test_ptbxl_counts_are_the_adc_values_at_gain_1000(ptbxl_record_hr):
    raw = __import__("wfdb").rdrecord(str(ptbxl_record_hr), physical=False, sampto=500)
    _, wire, n = _one_second(ptbxl_record_hr)
    back = decode_chunk(encode_chunk(EcgChunk.from_wire(wire, 0, n, patient_id="p", sequence=0, acquired_at_us=0)))
    assert back.gains == (1000.0,) * 12 and back.units == ("mV",) * 12
    np.testing.assert_array_equal(back.samples, raw.d_signal.T)


def test_float32_round_trip_is_bit_exact(cinc_record):
    ecg = read_ecg(cinc_record)
    wire = wire_samples(ecg, prefer_int16=False)
    chunk = EcgChunk.from_wire(wire, 250, 750, patient_id="bed-2", sequence=3, acquired_at_us=T0_US)

    back = decode_chunk(encode_chunk(chunk))

    assert back == chunk and back.sample_dtype == "FLOAT32"
    assert back.to_ecg().samples.tobytes() == ecg.samples[:, 250:750].tobytes()


def test_from_ecg_keeps_ids_time_and_source(ptbxl_record_lr):
    ecg = read_ecg(ptbxl_record_lr)
    at = datetime(2026, 11, 3, 8, 30, 0, 250_000, tzinfo=timezone.utc)
    chunk = EcgChunk.from_ecg(ecg.slice_s(0, 1), patient_id="p-9", sequence=4, acquired_at_us=int(at.timestamp() * 1e6))
    back = decode_chunk(encode_chunk(chunk)).to_ecg()
    assert back.acquired_at == at and back.patient_id == "p-9" and back.source == ecg.source
    assert back.metadata["sequence"] == 4 and back.metadata["schema_version"] == SCHEMA_VERSION


def test_units_and_baseline_are_applied_per_lead():
    chunk = _chunk(
        samples=np.array([[1000, 2000], [1010, 1020], [-500, 500]], dtype=np.int16),
        units=("mV", "mV", "uV"),
        gains=(1000.0, 10.0, 1.0),
        baselines=(0, 1000, 0),
    )
    mv = decode_chunk(encode_chunk(chunk)).to_ecg().samples
    np.testing.assert_allclose(mv, [[1.0, 2.0], [1.0, 2.0], [-0.5, 0.5]], rtol=1e-6)


def test_key_is_the_patient_id_in_utf8():
    assert message_key("bed-3") == b"bed-3"
    assert _chunk(patient_id="Zoë-7").key == "Zoë-7".encode()


def test_acquisition_time_and_end_time():
    chunk = _chunk()  # 50 samples at 500 Hz = 100 ms
    assert chunk.end_us == T0_US + 100_000
    assert chunk.acquired_at == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=timezone.utc)


def test_one_second_twelve_lead_500hz_int16_chunk_is_under_15kb(ptbxl_record_hr):
    _, wire, n = _one_second(ptbxl_record_hr)
    data = encode_chunk(EcgChunk.from_wire(wire, 0, n, patient_id="bed-0", device_id="monitor-0",
                                           sequence=123_456, acquired_at_us=T0_US, source="00001_hr"))
    assert wire.samples.shape == (12, 5000) and n == 500
    assert 12_000 < len(data) < 15_000


def test_samples_are_little_endian_and_lead_major():
    samples = np.array([[1, 2, 3], [256, 512, -1]], dtype=np.int16)
    data = encode_chunk(_chunk(lead_names=("I", "II"), samples=samples, units=None, gains=None, baselines=None))
    payload = np.array([1, 2, 3, 256, 512, -1], dtype="<i2").tobytes()
    assert payload in data
    big_endian = samples.astype(">i2")
    assert decode_chunk(encode_chunk(_chunk(lead_names=("I", "II"), samples=big_endian, units=None,
                                            gains=None, baselines=None))) == _chunk(
        lead_names=("I", "II"), samples=samples, units=None, gains=None, baselines=None)


def test_a_decoded_chunk_has_every_field_the_constructor_gives_with_the_same_types():
    """decode_chunk builds chunks without the constructor's normalising (from_decoded): the fields
    and their types must still be the constructor's, pseudonymised copies included."""
    made = _chunk(samples=np.arange(3 * 50, dtype=np.int16).reshape(3, 50))
    for back in (decode_chunk(encode_chunk(made)), decode_chunk(encode_chunk(made)).with_patient_id("bed-1")):
        assert back == made
        assert {k: type(v) for k, v in vars(back).items()} == {k: type(v) for k, v in vars(made).items()}
        assert [type(x) for x in (*back.gains, *back.baselines, *back.units, *back.lead_names)] == \
            [type(x) for x in (*made.gains, *made.baselines, *made.units, *made.lead_names)]
    assert decode_chunk(encode_chunk(made)).with_patient_id("p-x").patient_id == "p-x"


def test_decoded_samples_are_a_read_only_view():
    back = decode_chunk(encode_chunk(_chunk()))
    assert not back.samples.flags.writeable


# --- refusals --------------------------------------------------------------------------------

# Content rules: the same chunk is refused by encode and, written raw, by decode.
CONTENT_CASES = {
    "zero rate": (dict(fs_hz=0.0), R.BAD_SAMPLING_RATE),
    "negative rate": (dict(fs_hz=-500.0), R.BAD_SAMPLING_RATE),
    "absurd rate": (dict(fs_hz=1e9), R.BAD_SAMPLING_RATE),
    "below card minimum": (dict(fs_hz=50.0), R.BAD_SAMPLING_RATE),
    "nan rate": (dict(fs_hz=float("nan")), R.BAD_SAMPLING_RATE),
    "unknown lead": (dict(lead_names=("I", "II", "foo")), R.UNKNOWN_LEAD),
    "duplicate lead": (dict(lead_names=("I", "II", "MLII")), R.DUPLICATE_LEAD),
    "duplicate inverted lead": (dict(lead_names=("aVR", "-AVR", "V1")), R.DUPLICATE_LEAD),
    "unknown unit": (dict(units=("mV", "mmHg", "mV")), R.BAD_UNITS),
    "zero gain": (dict(gains=(1000.0, 0.0, 1.0)), R.BAD_MESSAGE),
    "negative gain": (dict(gains=(-1.0, 1.0, 1.0)), R.BAD_MESSAGE),
    "negative sequence": (dict(sequence=-1), R.BAD_MESSAGE),
    "blank patient": (dict(patient_id="  "), R.BAD_MESSAGE),
    "year 10000": (dict(acquired_at_us=253_402_300_800_000_000), R.BAD_MESSAGE),
}


@pytest.mark.parametrize("case", list(CONTENT_CASES))
def test_encode_and_decode_refuse_the_same_content(case):
    overrides, reason = CONTENT_CASES[case]
    assert _reason(lambda: encode_chunk(_chunk(**overrides))) == reason
    raw = {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()}
    if "units" in raw or "gains" in raw:
        raw.setdefault("units", ["mV", "mV", "uV"])
    assert _reason(lambda: decode_chunk(_raw_message(**raw))) == reason


def test_non_lead_channels_are_accepted():
    chunk = _chunk(lead_names=("I", "RESP", "vx"))
    assert decode_chunk(encode_chunk(chunk)).lead_names == ("I", "RESP", "vx")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float32_samples_are_refused(bad):
    samples = np.zeros((3, 50), dtype=np.float32)
    samples[1, 17] = bad
    chunk = _chunk(samples=samples, gains=None, baselines=None, units=None)
    assert _reason(lambda: encode_chunk(chunk)) == R.NON_FINITE
    raw = _raw_message(sample_dtype="FLOAT32", samples=samples.astype("<f4").tobytes(), gains=[1.0] * 3)
    assert _reason(lambda: decode_chunk(raw)) == R.NON_FINITE


MESSAGE_CASES = {
    "empty": b"",
    "one byte": bytes((MAGIC,)),
    "json": b'{"patient_id": "bed-1", "samples": [1, 2, 3]}',
    "confluent framing": b"\x00\x00\x00\x00\x01" + _raw_message()[2:],
    "unknown version": bytes((MAGIC, SCHEMA_VERSION + 1)) + _raw_message()[2:],
    "garbage body": bytes((MAGIC, SCHEMA_VERSION)) + bytes(range(256)) * 4,
    "truncated in samples": _raw_message()[:-40],
    "truncated in header fields": _raw_message()[:12],
    "trailing bytes": _raw_message() + b"\x00\x01",
    "too few sample bytes": _raw_message(samples=bytes(3 * 50 * 2 - 2)),
    "too many sample bytes": _raw_message(samples=bytes(3 * 50 * 2 + 2)),
    "bytes for float32 but says int16": _raw_message(samples=bytes(3 * 50 * 4)),
    "zero samples": _raw_message(n_samples=0, samples=b""),
    "negative samples": _raw_message(n_samples=-50),
    "no leads": _raw_message(lead_names=[], units=[], gains=[], baselines=[], samples=b""),
    "units missing": _raw_message(units=[]),
    "gains for two leads": _raw_message(gains=[1.0, 1.0]),
    "baselines for four leads": _raw_message(baselines=[0, 0, 0, 0]),
}


@pytest.mark.parametrize("case", list(MESSAGE_CASES))
def test_undecodable_messages_are_bad_messages(case):
    assert _reason(lambda: decode_chunk(MESSAGE_CASES[case])) == R.BAD_MESSAGE


def test_every_truncation_of_a_valid_message_is_a_bad_message():
    data = _raw_message()
    for cut in range(len(data)):
        assert _reason(lambda cut=cut: decode_chunk(data[:cut])) == R.BAD_MESSAGE, cut


def test_non_bytes_values_are_bad_messages():
    assert _reason(lambda: decode_chunk("not bytes")) == R.BAD_MESSAGE


def test_oversized_messages_are_refused_before_decoding():
    data = encode_chunk(_chunk())
    assert _reason(lambda: decode_chunk(data, max_bytes=len(data) - 1)) == R.OVERSIZED
    assert _reason(lambda: encode_chunk(_chunk(), max_bytes=len(data) - 1)) == R.OVERSIZED
    assert decode_chunk(data, max_bytes=len(data)) == _chunk()


def test_default_size_limit_is_the_kafka_setting():
    limit = get_settings().kafka.max_message_bytes
    assert _reason(lambda: decode_chunk(bytes((MAGIC, SCHEMA_VERSION)) + bytes(limit - 1))) == R.OVERSIZED
    big = _chunk(lead_names=("I",), samples=np.zeros((1, limit // 2), np.int16),
                 units=None, gains=None, baselines=None)
    assert _reason(lambda: encode_chunk(big)) == R.OVERSIZED


@pytest.mark.parametrize(
    "overrides",
    [
        dict(samples=np.zeros((3, 50), dtype=np.float64)),
        dict(samples=np.zeros((3, 50), dtype=np.int32)),
        dict(samples=np.zeros((2, 50), dtype=np.int16)),
        dict(samples=np.zeros((3, 0), dtype=np.int16)),
        dict(samples=np.zeros(150, dtype=np.int16)),
        dict(gains=(1.0, 1.0)),
    ],
    ids=["float64", "int32", "rows != leads", "no samples", "1-D", "gains short"],
)
def test_chunks_that_do_not_fit_together_cannot_be_made(overrides):
    assert _reason(lambda: _chunk(**overrides)) == R.BAD_MESSAGE


# --- property: any valid chunk round-trips ---------------------------------------------------

_LEAD_SPELLINGS = {name: [name, name.upper(), f"Lead {name}", f"-{name}"] for name in CANONICAL_LEADS}


@st.composite
def valid_chunks(draw) -> EcgChunk:
    leads = draw(st.lists(st.sampled_from(CANONICAL_LEADS), min_size=1, max_size=12, unique=True))
    names = tuple(draw(st.sampled_from(_LEAD_SPELLINGS[lead])) for lead in leads)
    n_leads = len(names)
    n = draw(st.integers(1, 300))
    if draw(st.booleans()):
        samples = draw(st.lists(st.integers(-32768, 32767), min_size=n_leads * n, max_size=n_leads * n))
        array = np.array(samples, dtype=np.int16).reshape(n_leads, n)
    else:
        # Valid means finite in millivolts too: 1e29 / (gain 1e-6) * 1000 (V -> mV) still fits float32
        # (bigger values are refused as non_finite: tests/stream/test_malformed.py).
        bound = float(np.float32(1e29))
        values = st.floats(-bound, bound, width=32, allow_nan=False, allow_infinity=False)
        array = np.array(draw(st.lists(values, min_size=n_leads * n, max_size=n_leads * n)), dtype=np.float32)
        array = array.reshape(n_leads, n)
    per_lead = st.lists  # one value per lead
    return EcgChunk(
        patient_id=draw(st.text(min_size=1, max_size=40).filter(str.strip)),
        device_id=draw(st.text(max_size=40)),
        sequence=draw(st.integers(0, 2**63 - 1)),
        acquired_at_us=draw(st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)),
        fs_hz=draw(st.floats(100.0, 10_000.0)),
        lead_names=names,
        samples=array,
        units=tuple(draw(per_lead(st.sampled_from(["mV", "uV", "µV", "V", "MV"]), min_size=n_leads, max_size=n_leads))),
        gains=tuple(draw(per_lead(st.floats(1e-6, 1e9), min_size=n_leads, max_size=n_leads))),
        baselines=tuple(draw(per_lead(st.integers(-(2**31), 2**31 - 1), min_size=n_leads, max_size=n_leads))),
        source=draw(st.text(max_size=60)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(valid_chunks())
def test_any_valid_chunk_round_trips(chunk):
    back = decode_chunk(encode_chunk(chunk))
    assert back == chunk
    assert back.samples.tobytes() == chunk.samples.astype(back.samples.dtype).tobytes()
    assert back.acquired_at_us == chunk.acquired_at_us and back.fs_hz == chunk.fs_hz


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(valid_chunks())
def test_millivolts_are_the_ecgs_samples_bit_for_bit(chunk):
    """What a window buffer keeps of a chunk (millivolts) is to_ecg's samples, and the WFDB
    formula written out: counts minus baseline over gain in float64, float32, times the unit's scale."""
    from hfrisk.model.contract.ecg import UNIT_SCALE_TO_MV

    mv = chunk.millivolts()
    assert mv.dtype == np.float32 and mv.tobytes() == chunk.to_ecg().samples.tobytes()
    scales = np.asarray([UNIT_SCALE_TO_MV[u.strip().lower()] for u in chunk.units], np.float32)[:, None]
    expected = _wfdb_formula(chunk) * scales
    assert mv.tobytes() == expected.astype(np.float32).tobytes()


def _wfdb_formula(chunk: EcgChunk) -> np.ndarray:
    """The reference: counts minus baseline over gain in float64, then float32 (as WFDB computes)."""
    gains = np.asarray(chunk.gains, np.float64)[:, None]
    baselines = np.asarray(chunk.baselines, np.float64)[:, None]
    return ((chunk.samples.astype(np.float64) - baselines) / gains).astype(np.float32)


def test_the_float32_shortcut_gives_the_float64_bits_for_every_int16_count():
    """Chunks whose gains a float32 holds are converted in float32 (a third of the cost); on every
    int16 value, for gains across the allowed range and baselines up to the bound, the bits are the
    float64 formula's. Gains a float32 does not hold take the float64 path and match too."""
    from hfrisk.stream.messages.chunk import _EXACT_BASELINE, _calibration

    rng = np.random.default_rng(15)
    counts = np.arange(-32768, 32768, dtype=np.int16)
    exponents = rng.uniform(-100, 100, 400)
    gains = [float(np.float32(2.0**e)) for e in exponents] + [1000.0, 200.0, 1.0, 2.0**-100, 2.0**100, 3.0, 0.1]
    baselines = [0, 1, -1, _EXACT_BASELINE, -_EXACT_BASELINE, *rng.integers(-_EXACT_BASELINE, _EXACT_BASELINE, 8)]
    checked = 0
    for i, gain in enumerate(gains):
        # Three leads: this gain with two baselines, and a gain of 1 (nothing to divide by).
        pair = (int(baselines[i % len(baselines)]), int(baselines[(i * 7 + 3) % len(baselines)]))
        chunk = _chunk(lead_names=("I", "II", "V1"), units=("mV",) * 3, samples=np.stack([counts] * 3),
                       gains=(gain, gain, 1.0), baselines=(*pair, 0))
        took_float32 = _calibration(chunk.gains, chunk.baselines).float32_exact(chunk.samples.dtype)
        assert took_float32 == (gain != 0.1), f"gain {gain!r}: float32 shortcut {took_float32}"
        assert chunk.physical().tobytes() == _wfdb_formula(chunk).tobytes(), f"gain {gain!r}, baselines {pair}"
        checked += took_float32
    assert checked == len(gains) - 1


@pytest.mark.parametrize("calibration", [dict(gains=(1.0,) * 3, baselines=(0,) * 3),
                                         dict(gains=(1.0, 1.0, 2.0), baselines=(0,) * 3),
                                         dict(gains=(1.0,) * 3, baselines=(0, 5, 0)),
                                         dict(gains=(1.0, 3.0, 3.0), baselines=(0, 7, -7)),
                                         dict(gains=(1.0, 1.0, 3.0), baselines=(0, 0, 2**24 + 1))],
                         ids=["identity", "a gain", "a baseline", "a gain and a baseline", "baseline past the bound"])
def test_float32_samples_and_large_baselines_keep_the_float64_bits(calibration):
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1e3, 1500), rng.uniform(-1, 1, 1500),
                             [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1e-39]])
    samples = values.astype(np.float32)[: 3 * 1000].reshape(3, 1000)
    samples[0, :7] = values[-7:].astype(np.float32)
    chunk = _chunk(samples=samples, units=("mV",) * 3, **calibration)
    assert chunk.physical().tobytes() == _wfdb_formula(chunk).tobytes()
    int16 = _chunk(samples=np.arange(-1500, 1500, dtype=np.int16).reshape(3, 1000), units=("mV",) * 3, **calibration)
    assert int16.physical().tobytes() == _wfdb_formula(int16).tobytes()


def test_millivolts_refuse_what_to_ecg_refuses_with_the_same_error():
    samples = np.zeros((3, 4), np.float32)
    samples[1, 2] = np.nan
    chunk = _chunk(samples=samples)  # the constructor does not look at values; validate_chunk would
    with pytest.raises(ECGInputError) as from_ecg:
        chunk.to_ecg()
    with pytest.raises(ECGInputError) as from_mv:
        chunk.millivolts()
    assert from_ecg.value.reason == from_mv.value.reason == InputErrorReason.NON_FINITE
    assert str(from_mv.value) == str(from_ecg.value)


# --- the schema and its documentation ---------------------------------------------------------


def test_schema_file_declares_the_version_in_the_header():
    raw = json.loads(SCHEMA_PATH.read_text())
    assert raw["hfrisk_schema_version"] == SCHEMA_VERSION
    assert encode_chunk(_chunk())[:2] == bytes((0xEC, SCHEMA_VERSION))


def test_every_schema_field_is_documented():
    doc = DOC.read_text()
    fields = [f["name"] for f in json.loads(SCHEMA_PATH.read_text())["fields"]]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.M))
    assert set(fields) <= documented, f"undocumented fields: {set(fields) - documented}"
    for reason in ("oversized", "bad_message", "bad_sampling_rate", "unknown_lead", "duplicate_lead", "non_finite"):
        assert f"`{reason}`" in doc
