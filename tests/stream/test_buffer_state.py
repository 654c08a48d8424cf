"""The saved window buffer's binary form (stream/windowing/stored.py, STATE_VERSION 3): its layout
read back independently of the decoder, exact round trips of any float32 bits, held samples saved
as the int16 counts they came as (restored bit for bit), and a clear ``ValueError`` for every
truncation and for each kind of corruption (the worker catches ``ValueError`` and starts that
patient afresh: tests/stream/test_worker_unit.py)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from hfrisk.stream.messages import EcgChunk
from hfrisk.stream.windowing import STATE_VERSION, PatientBuffer, Window
from hfrisk.stream.windowing.stored import decode_state, encode_state

HEADER = struct.Struct("<4sHI")


class Plain:
    """A chunk of the minimal protocol: 2 leads at 10 Hz, 0.5 s, samples already in mV."""

    def __init__(self, seq: int, patient_id: str = "bed-9"):
        self.patient_id, self.sequence, self.acquired_at_us = patient_id, seq, 1_700_000_000_000_000 + seq * 500_000
        self.fs_hz, self.lead_names, self.device_id = 10.0, ("I", "II"), "mon-7"
        self.samples = np.arange(10, dtype=np.float32).reshape(2, 5) * 0.1 + seq


@pytest.fixture
def buffer() -> PatientBuffer:
    """Held samples and two chunks waiting for sequence 4 (three arrays in the payload)."""
    buffer = PatientBuffer("bed-9", 2.0, 1.0, reorder_s=2.0)
    for seq in (0, 1, 2, 3, 5, 6):
        buffer.feed(Plain(seq))
    assert buffer.pending == 2 and buffer.buffered_samples > 0
    return buffer


def _split(saved: bytes) -> tuple[tuple, dict, bytes]:
    header = HEADER.unpack_from(saved)
    end = HEADER.size + header[2]
    return header, json.loads(saved[HEADER.size : end]), saved[end:]


def test_the_layout_is_a_header_json_metadata_and_the_arrays_little_endian_one_after_another(buffer):
    saved = buffer.to_bytes()
    (magic, version, _), meta, payload = _split(saved)
    assert (magic, version, meta["state_version"]) == (b"HFWB", STATE_VERSION, STATE_VERSION)
    state = buffer.to_state()
    arrays = [state.buf] + [c.samples for c in state.pending]
    refs = [meta["buf"]] + [c["samples"] for c in meta["pending"]]
    assert payload == b"".join(np.ascontiguousarray(a, "<f4").tobytes() for a in arrays)
    at = 0
    for a, ref in zip(arrays, refs, strict=True):
        assert ref == {"shape": list(a.shape), "at": at}
        at += a.nbytes
    # Everything else is the JSON form's metadata, value for value.
    as_json = buffer.to_dict()
    for data in (meta, as_json):
        del data["buf"], data["state_version"]
        for chunk in data["pending"]:
            del chunk["samples"]
    assert meta == as_json


def test_any_float32_bits_round_trip_exactly(buffer):
    # NaNs with payloads, -0.0, denormals, infinities: the live buffer refuses non-finite samples,
    # the stored form must not depend on that.
    bits = np.random.default_rng(0).integers(0, 2**32, size=(2, 64), dtype=np.uint32)
    bits[0, :6] = [0x7FC00001, 0xFFBFFFFF, 0x80000000, 0x00000001, 0x7F800000, 0xFF800000]
    state = buffer.to_state()
    odd = state.model_copy(update={"buf": bits.view(np.float32)})
    back = decode_state(encode_state(odd))
    assert back.buf.dtype == np.float32 and back.buf.flags.writeable
    assert back.buf.view(np.uint32).tolist() == bits.tolist()
    assert back.model_dump(exclude={"buf"}) == odd.model_dump(exclude={"buf"})


def test_an_empty_buffer_and_a_closed_one_round_trip():
    empty = PatientBuffer("bed-1", 10.0, 5.0)
    assert PatientBuffer.from_bytes(empty.to_bytes()).to_dict() == empty.to_dict()
    closed = PatientBuffer("bed-1", 2.0, 1.0, reorder_s=0.0)
    closed.feed(Plain(0, "bed-1"))
    closed.close()
    restored = PatientBuffer.from_bytes(closed.to_bytes())
    assert restored.to_dict() == closed.to_dict() and not restored.started


def test_every_truncation_is_refused_with_a_value_error_saying_so(buffer):
    saved = buffer.to_bytes()
    for n in range(len(saved)):
        with pytest.raises(ValueError, match="truncated" if n >= 4 else "not a saved window buffer"):
            PatientBuffer.from_bytes(saved[:n])


def _with_meta(saved: bytes, change) -> bytes:
    (magic, version, _), meta, payload = _split(saved)
    change(meta)
    text = json.dumps(meta).encode()
    return HEADER.pack(magic, version, len(text)) + text + payload


def _set(**values):
    return lambda meta: meta.update(values)


def _overlap(meta):
    meta["pending"][0]["samples"]["at"] = meta["pending"][1]["samples"]["at"]


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda b: b"XXXX" + b[4:], "not a saved window buffer"),
        (lambda b: b[:4] + struct.pack("<H", 4) + b[6:], "state version 4, this worker reads 1, 2 and 3"),
        (lambda b: b[:4] + struct.pack("<H", 1) + b[6:], "state version 1, this worker reads"),
        (lambda b: b[:6] + struct.pack("<I", len(b)) + b[10:], "truncated"),
        (lambda b: b[:6] + struct.pack("<I", 7) + b[10:], "Invalid JSON"),
        (lambda b: b + b"\x00\x00\x00\x00", r"payload has (\d+) bytes, its arrays account for (?!\1)\d+"),
        (lambda b: _with_meta(b, _overlap), "overlapped or unused"),
        (lambda b: _with_meta(b, _set(state_version=1)), "header says version 3, its metadata 1"),
        (lambda b: _with_meta(b, _set(buf={"shape": [2, -1], "at": 0})), "bad array reference"),
        (lambda b: _with_meta(b, _set(buf={"shape": [2, 10], "f4le": ""})), "'at'"),
        (lambda b: _with_meta(b, lambda m: m.pop("spans")), "spans"),
    ],
)
def test_a_corrupt_binary_state_is_refused_with_a_value_error_saying_what_is_wrong(buffer, corrupt, match):
    with pytest.raises(ValueError, match=match):
        PatientBuffer.from_bytes(corrupt(buffer.to_bytes()))


@pytest.mark.parametrize("where", ["held", "waiting"])
@pytest.mark.parametrize("bad, match", [(np.nan, "NaN/inf"), (np.inf, "NaN/inf"), ("rows", "expected float32 with 2 leads")])
def test_a_state_whose_samples_no_live_buffer_could_hold_is_refused(buffer, where, bad, match):
    # Windows are cut from restored samples without scanning them again (ECG.from_checked): a
    # stored NaN, or samples of another lead count, must be refused here, as corruption is.
    state = buffer.to_state()
    if where == "held":
        samples = state.buf.copy()
        odd = state.model_copy(update={"buf": np.vstack([samples, samples]) if bad == "rows" else samples})
    else:
        samples = state.pending[0].samples.copy()
        first = state.pending[0].__class__(**{**vars(state.pending[0]), "samples": samples[:1] if bad == "rows" else samples})
        odd = state.model_copy(update={"pending": [first, *state.pending[1:]]})
    if bad != "rows":
        samples[1, 2] = bad
    saved = encode_state(odd)
    with pytest.raises(ValueError, match=match):
        PatientBuffer.from_bytes(saved)
    assert PatientBuffer.from_bytes(encode_state(state)).to_bytes() == buffer.to_bytes()


# -- held samples saved as int16 counts (version 3) ------------------------------------------

# float32-exact gains, one of them not a power of two or an integer, and baselines of both signs.
GAINS = (200.0, float(np.float32(204.8)), 1000.0)
BASELINES = (0, -1024, 2048)
LEADS = ("I", "II", "V1")


def _counts_chunk(seq: int, counts: np.ndarray, *, gains=GAINS, units=None, dtype=np.int16) -> EcgChunk:
    """A 1-s chunk at 100 Hz as a monitor sends it: int16 ADC counts and their calibration."""
    return EcgChunk(patient_id="bed-3", sequence=seq, acquired_at_us=1_700_000_000_000_000 + seq * 1_000_000,
                    fs_hz=100.0, lead_names=LEADS, samples=counts.astype(dtype), gains=gains,
                    baselines=BASELINES, units=units, device_id="mon-3")


def _every_int16() -> list[np.ndarray]:
    """656 chunks of 100 counts that, together, take every int16 value in every lead (shuffled,
    the first 64 twice)."""
    values = np.random.default_rng(1).permutation(np.arange(-(2**15), 2**15, dtype=np.int32))
    values = np.concatenate([values, values[:64]])
    return np.split(np.tile(values, (3, 1)), values.size // 100, axis=1)


def test_held_samples_that_came_as_counts_are_saved_as_counts_and_restored_bit_for_bit():
    # Windows of 700 s at 100 Hz, so that every int16 value of every lead is held at once.
    buffer = PatientBuffer("bed-3", 700.0, 200.0, reorder_s=0.0)
    chunks = _every_int16()
    for seq, counts in enumerate(chunks):
        buffer.feed(_counts_chunk(seq, counts))
    assert buffer.buffered_samples == 65_600  # nothing cut yet: every value is held
    saved = buffer.to_bytes()
    (magic, version, _), meta, payload = _split(saved)
    assert (magic, version) == (b"HFWB", STATE_VERSION) and "buf" not in meta
    assert meta["buf_counts"]["gains"] == list(GAINS) and meta["buf_counts"]["baselines"] == list(BASELINES)
    assert meta["buf_counts"]["counts"] == {"shape": [3, 65_600], "at": 0}
    # Half the bytes of the float32 samples: the counts as sent, little-endian.
    assert payload == np.concatenate(chunks, axis=1).astype("<i2").tobytes()
    restored = PatientBuffer.from_bytes(saved)
    live, back = buffer.to_state().buf, restored.to_state().buf
    assert back.dtype == np.float32 and back.view(np.uint32).tolist() == live.view(np.uint32).tolist()
    assert restored.to_bytes() == saved and restored.to_dict() == buffer.to_dict()
    # The JSON form carries the counts too (base64 of int16), and loads into the same state.
    as_json = buffer.to_dict()
    assert "buf" not in as_json and set(as_json["buf_counts"]["counts"]) == {"shape", "i2le"}
    assert PatientBuffer.from_dict(as_json).to_bytes() == saved


def test_held_samples_are_saved_as_counts_only_while_every_held_column_came_as_counts_of_one_calibration():
    rng = np.random.default_rng(2)
    others = {
        3: dict(dtype=np.float32),  # float32 samples: no counts
        6: dict(gains=(100.0, *GAINS[1:])),  # another calibration
        9: dict(units=("mV", "uV", "mV")),  # a lead scaled to mV: not its counts
    }
    chunks = [_counts_chunk(seq, rng.integers(-3000, 3000, (3, 100)), **others.get(seq, {})) for seq in range(12)]
    reference = PatientBuffer("bed-3", 4.0, 2.0, reorder_s=0.0)
    buffer, forms = PatientBuffer("bed-3", 4.0, 2.0, reorder_s=0.0), []
    for chunk in chunks:
        # Saved and restored after every chunk: the same windows as a buffer never saved. (A
        # restored buffer knows counts only for what it restored as counts, so it saves float32
        # more often than the reference, whose forms are recorded.)
        assert buffer.feed(chunk) == reference.feed(chunk)
        saved = buffer.to_bytes()
        buffer = PatientBuffer.from_bytes(saved)
        assert buffer.to_state().buf.tobytes() == reference.to_state().buf.tobytes()
        assert buffer.to_bytes() == saved
        forms.append("counts" if "buf_counts" in _split(reference.to_bytes())[1] else "float32")
    # 4-s windows every 2 s of 1-s chunks: chunks 2k.. are held once window k - 1 is out. Chunk 7
    # starts counts of its own calibration, different from chunk 6's.
    assert forms == ["counts"] * 3 + ["float32"] * 2 + ["counts"] + ["float32"] * 5 + ["counts"]
    assert sum(isinstance(o, Window) for o in reference.close()) == 0 and reference.stats.windows == 5


def test_a_version_2_state_still_loads_and_is_saved_again_as_version_3(buffer):
    v3 = buffer.to_bytes()
    (magic, _, _), meta, payload = _split(v3)
    meta["state_version"] = 2
    text = json.dumps(meta).encode()
    v2 = HEADER.pack(magic, 2, len(text)) + text + payload
    restored = PatientBuffer.from_bytes(v2)
    assert restored.to_bytes() == v3 and restored.to_dict() == buffer.to_dict()


def _counts_state() -> bytes:
    buffer = PatientBuffer("bed-3", 4.0, 2.0, reorder_s=0.0)
    buffer.feed(_counts_chunk(0, np.arange(300).reshape(3, 100)))
    return buffer.to_bytes()


def _version_2(saved: bytes) -> bytes:
    (magic, _, _), meta, payload = _split(saved)
    text = json.dumps(meta | {"state_version": 2}).encode()
    return HEADER.pack(magic, 2, len(text)) + text + payload


def _counts_meta(**values):
    return lambda meta: meta["buf_counts"].update(values)


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda b: _with_meta(b, _counts_meta(gains=[0.1, 1.0, 1.0])), "not an exact float32 calibration"),
        (lambda b: _with_meta(b, _counts_meta(baselines=[0, 0])), "with as many baselines"),
        (lambda b: _with_meta(b, _counts_meta(counts={"shape": [2, 150], "at": 0})), "expected int16 counts of 3 leads"),
        (lambda b: _with_meta(b, _counts_meta(counts={"shape": [3, 101], "at": 0})), "truncated"),
        (lambda b: _with_meta(b, lambda m: m.pop("buf_counts")), "needs buf or buf_counts"),
        (_version_2, "version 2 with held counts"),
    ],
)
def test_a_corrupt_state_with_counts_is_refused_with_a_value_error_saying_what_is_wrong(corrupt, match):
    assert PatientBuffer.from_bytes(_counts_state()).to_bytes() == _counts_state()
    with pytest.raises(ValueError, match=match):
        PatientBuffer.from_bytes(corrupt(_counts_state()))
