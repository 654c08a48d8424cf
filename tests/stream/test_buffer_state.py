"""The saved window buffer's binary form (stream/windowing/stored.py, STATE_VERSION 2): its layout
read back independently of the decoder, exact round trips of any float32 bits, and a clear
``ValueError`` for every truncation and for each kind of corruption (the worker catches
``ValueError`` and starts that patient afresh: tests/stream/test_worker_unit.py)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from hfrisk.stream.windowing import STATE_VERSION, PatientBuffer
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
        (lambda b: b[:4] + struct.pack("<H", 3) + b[6:], "state version 3, this worker reads 1 and 2"),
        (lambda b: b[:4] + struct.pack("<H", 1) + b[6:], "state version 1, this worker reads"),
        (lambda b: b[:6] + struct.pack("<I", len(b)) + b[10:], "truncated"),
        (lambda b: b[:6] + struct.pack("<I", 7) + b[10:], "Invalid JSON"),
        (lambda b: b + b"\x00\x00\x00\x00", r"payload has (\d+) bytes, its arrays account for (?!\1)\d+"),
        (lambda b: _with_meta(b, _overlap), "overlapped or unused"),
        (lambda b: _with_meta(b, _set(state_version=1)), "header says version 2, its metadata 1"),
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
