"""Malformed ECG chunk messages: a named corpus of every way the schema can be broken, and a
hypothesis strategy that mutates valid messages.

Used by tests/stream/test_malformed.py (unit: the decoder refuses each with ECGInputError and a
reason, or decodes a valid chunk) and tests/integration/test_bad_input_at_scale.py (the same
messages through a running worker: one dead letter each).

* :func:`named_corpus`: one :class:`Malformed` per class of bad input, each with the dead-letter
  reason the worker must give it, built from a valid template message: not Avro, wrong magic,
  unknown schema version, truncation at every structural boundary of the Avro record, trailing
  bytes, oversized, NaN/inf float32 samples, int16 with a bad gain or baseline, unknown /
  duplicated / missing leads, ``n_samples`` that disagrees with the sample bytes, absurd or zero
  sampling rates, negative sequence, empty / too long / non-UTF-8 ids, bad units, bad enum index,
  a key that is not the patient id.
* :func:`mutated_messages`: a strategy of ``(key, value)`` pairs made by stacking bit flips,
  byte overwrites, truncations, splices of two templates, insertions and deletions, extreme
  varints written at a length or count, and field-level perturbations of valid records.
* :func:`draw_messages`: ``n`` examples of a strategy, the same ones on every run (fixed seed, no
  example database), for corpora that must be produced as a list.
* :func:`refusal`: what the worker does with a message: the dead-letter reason, or ``None`` when
  it would accept it (the worker's decode + key check, nothing else).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import fastavro
import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from hfrisk.model.contract.card import WindowSpec
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.stream.messages.dead_letter import KEY_MISMATCH
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import (
    HEADER_BYTES,
    MAGIC,
    SCHEMA_VERSION,
    EcgChunk,
    decode_chunk,
    encode_chunk,
    load_schema,
    message_key,
)

__all__ = [
    "Malformed",
    "named_corpus",
    "mutated_messages",
    "draw_messages",
    "refusal",
    "field_spans",
    "tamper",
    "template_messages",
]

_SCHEMA = load_schema()
_FIELDS = [(f["name"], f["type"]) for f in _SCHEMA["fields"]]


@dataclass(frozen=True)
class Malformed:
    """One bad message: ``reason`` is the dead-letter reason the worker must give it."""

    name: str
    key: bytes | None
    value: bytes
    reason: str


def refusal(key: bytes | None, value: bytes, *, max_bytes: int, window: WindowSpec | None = None) -> str | None:
    """The dead-letter reason the worker gives ``(key, value)``, or ``None`` if it accepts it.

    Mirrors ``StreamWorker._decode``; any exception other than ``ECGInputError`` propagates (a
    decoder bug, which the worker would dead-letter as ``internal_error``).
    """
    try:
        chunk = decode_chunk(value, max_bytes=max_bytes, window=window)
    except ECGInputError as err:
        return err.reason.value
    if key is None or bytes(key) != message_key(chunk.patient_id):
        return KEY_MISMATCH
    return None


# -- the Avro record, byte by byte -------------------------------------------------------------


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos


def _zigzag(value: int) -> bytes:
    """Avro's long encoding of any Python int (wider than 64 bits too: a hostile varint)."""
    n = (value << 1) ^ (value >> 70) if value < 0 else value << 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@dataclass(frozen=True)
class Span:
    """Where one field of a valid message lies; ``marks`` are its inner boundaries (after a
    length or count varint, after each array item), ``length_at`` the varint positions."""

    name: str
    start: int
    end: int
    marks: tuple[int, ...]
    length_at: tuple[int, ...]


def field_spans(value: bytes) -> list[Span]:
    """The fields of a valid message in wire order (this schema's types only)."""
    pos, spans = HEADER_BYTES, []
    for name, kind in _FIELDS:
        start, marks, length_at = pos, [], []
        if isinstance(kind, dict) and kind.get("type") == "array":
            while True:
                length_at.append(pos)
                count, pos = _read_long(value, pos)
                marks.append(pos)
                if count == 0:
                    break
                if not 0 < count <= len(value):  # block sizes and absurd counts: not a template
                    raise ValueError(f"array count {count} at byte {pos}")
                for _ in range(count):
                    pos = _skip(value, pos, kind["items"], marks, length_at)
                    marks.append(pos)
        else:
            pos = _skip(value, pos, kind, marks, length_at)
        if pos > len(value):
            raise ValueError(f"field {name} ends at byte {pos}, after the message")
        spans.append(Span(name, start, pos, tuple(marks), tuple(length_at)))
    if pos != len(value):
        raise ValueError(f"not a valid message: {len(value) - pos} bytes after the record")
    return spans


def _skip(value: bytes, pos: int, kind, marks: list[int], length_at: list[int]) -> int:
    if kind in ("string", "bytes"):
        length_at.append(pos)
        size, pos = _read_long(value, pos)
        marks.append(pos)
        if not 0 <= size <= len(value) - pos:
            raise ValueError(f"length {size} at byte {pos}")
        return pos + size
    if kind == "double":
        return pos + 8
    # long, int and enum indices are varints
    return _read_long(value, pos)[1]


def tamper(value: bytes, **changes) -> bytes:
    """``value`` re-encoded with some fields changed, without the encoder's checks."""
    record = fastavro.schemaless_reader(io.BytesIO(value[HEADER_BYTES:]), _SCHEMA, None)
    record.update(changes)
    out = io.BytesIO()
    out.write(value[:HEADER_BYTES])
    fastavro.schemaless_writer(out, _SCHEMA, record)
    return out.getvalue()


def _replace_string(value: bytes, field: str, raw: bytes) -> bytes:
    """Put raw bytes (e.g. invalid UTF-8) into a string field, which fastavro would not write."""
    span = next(s for s in field_spans(value) if s.name == field)
    return value[: span.start] + _zigzag(len(raw)) + raw + value[span.end:]


# -- the named corpus --------------------------------------------------------------------------


def named_corpus(int16_template: bytes, float32_template: bytes, oversized: bytes, *,
                 other_key: bytes = b"someone-else") -> list[Malformed]:
    """One message per class of bad input, from two valid templates of one patient.

    ``int16_template`` and ``float32_template``: valid messages (INT16 with ADC gains, FLOAT32
    in mV) of the same patient; ``oversized``: a valid message above the limit in use.
    """
    record = fastavro.schemaless_reader(io.BytesIO(int16_template[HEADER_BYTES:]), _SCHEMA, None)
    key = message_key(record["patient_id"])
    n_leads, n = len(record["lead_names"]), record["n_samples"]
    leads = list(record["lead_names"])
    f32 = np.frombuffer(
        fastavro.schemaless_reader(io.BytesIO(float32_template[HEADER_BYTES:]), _SCHEMA, None)["samples"], "<f4"
    ).reshape(n_leads, -1)

    def with_sample(value: float) -> bytes:
        samples = f32.copy()
        samples[n_leads // 2, samples.shape[1] // 2] = value
        return tamper(float32_template, samples=samples.tobytes())

    cases: list[tuple[str, bytes | None, bytes, str]] = [
        ("empty", key, b"", "bad_message"),
        ("not_avro_text", key, b'{"patient_id": "bed-1", "samples": [1, 2, 3]}', "bad_message"),
        ("not_avro_zeros", key, bytes(64), "bad_message"),
        ("wrong_magic", key, bytes([MAGIC ^ 0xFF]) + int16_template[1:], "bad_message"),
        ("magic_only", key, bytes([MAGIC]), "bad_message"),
        ("header_only", key, int16_template[:HEADER_BYTES], "bad_message"),
        ("schema_version_0", key, bytes([MAGIC, 0]) + int16_template[2:], "bad_message"),
        ("schema_version_next", key, bytes([MAGIC, SCHEMA_VERSION + 1]) + int16_template[2:], "bad_message"),
        ("schema_version_255", key, bytes([MAGIC, 255]) + int16_template[2:], "bad_message"),
        ("trailing_bytes", key, int16_template + b"\x00", "bad_message"),
        ("oversized", key, oversized, "oversized"),
        ("nan_sample", key, with_sample(math.nan), "non_finite"),
        ("inf_sample", key, with_sample(math.inf), "non_finite"),
        ("minus_inf_sample", key, with_sample(-math.inf), "non_finite"),
        ("all_nan", key, tamper(float32_template, samples=np.full_like(f32, np.nan).tobytes()), "non_finite"),
        # Finite float32 in volts whose value in millivolts is not: 3e38 V = 3e41 mV.
        ("volts_overflow", key, tamper(float32_template, samples=np.full_like(f32, 3e38).tobytes(),
                                       units=["V"] * n_leads), "non_finite"),
        ("int16_gain_zero", key, tamper(int16_template, gains=[0.0] * n_leads), "bad_message"),
        ("int16_gain_negative", key, tamper(int16_template, gains=[-200.0] * n_leads), "bad_message"),
        ("int16_gain_nan", key, tamper(int16_template, gains=[math.nan] * n_leads), "bad_message"),
        ("int16_gain_inf", key, tamper(int16_template, gains=[math.inf] * n_leads), "bad_message"),
        # Finite and > 0, but counts / 1e-300 overflow float32: the signal would be all inf.
        ("int16_gain_subnormal", key, tamper(int16_template, gains=[1e-300] * n_leads), "non_finite"),
        ("float32_gain_tiny", key, tamper(float32_template, gains=[1e-40] * n_leads), "non_finite"),
        ("gains_missing_one", key, tamper(int16_template, gains=list(record["gains"])[:-1]), "bad_message"),
        ("baselines_extra", key, tamper(int16_template, baselines=list(record["baselines"]) + [0]), "bad_message"),
        ("units_missing", key, tamper(int16_template, units=[]), "bad_message"),
        ("unit_unknown", key, tamper(int16_template, units=["mmHg"] * n_leads), "bad_units"),
        ("unit_empty", key, tamper(int16_template, units=[""] * n_leads), "bad_units"),
        ("lead_unknown", key, tamper(int16_template, lead_names=leads[:3] + ["Q7"] + leads[4:]), "unknown_lead"),
        ("lead_empty_name", key, tamper(int16_template, lead_names=leads[:-1] + [""]), "unknown_lead"),
        ("lead_duplicated", key, tamper(int16_template, lead_names=leads[:-1] + [leads[0]]), "duplicate_lead"),
        # The same lead under an alias (MLII is lead II).
        ("lead_duplicated_alias", key, tamper(int16_template, lead_names=["II", "MLII"] + leads[2:]),
         "duplicate_lead"),
        ("lead_missing_name", key, tamper(int16_template, lead_names=leads[:-1]), "bad_message"),
        ("lead_extra_name", key, tamper(int16_template, lead_names=leads + ["V7"]), "bad_message"),
        ("no_leads", key, tamper(int16_template, lead_names=[], units=[], gains=[], baselines=[], samples=b""),
         "bad_message"),
        ("n_samples_plus_one", key, tamper(int16_template, n_samples=n + 1), "bad_message"),
        ("n_samples_minus_one", key, tamper(int16_template, n_samples=n - 1), "bad_message"),
        ("n_samples_zero", key, tamper(int16_template, n_samples=0, samples=b""), "bad_message"),
        ("n_samples_negative", key, tamper(int16_template, n_samples=-n), "bad_message"),
        ("n_samples_int32_max", key, tamper(int16_template, n_samples=2**31 - 1), "bad_message"),
        ("samples_odd_bytes", key, tamper(int16_template, samples=bytes(2 * n_leads * n + 1)), "bad_message"),
        ("samples_float32_as_int16", key, tamper(int16_template, sample_dtype="FLOAT32"), "bad_message"),
        ("fs_zero", key, tamper(int16_template, fs_hz=0.0), "bad_sampling_rate"),
        ("fs_negative", key, tamper(int16_template, fs_hz=-500.0), "bad_sampling_rate"),
        ("fs_nan", key, tamper(int16_template, fs_hz=math.nan), "bad_sampling_rate"),
        ("fs_inf", key, tamper(int16_template, fs_hz=math.inf), "bad_sampling_rate"),
        ("fs_absurd_high", key, tamper(int16_template, fs_hz=5e6), "bad_sampling_rate"),
        ("fs_absurd_low", key, tamper(int16_template, fs_hz=1e-3), "bad_sampling_rate"),
        ("sequence_negative", key, tamper(int16_template, sequence=-1), "bad_message"),
        ("sequence_int64_min", key, tamper(int16_template, sequence=-(2**63)), "bad_message"),
        ("acquired_at_far_future", key, tamper(int16_template, acquired_at_us=2**62), "bad_message"),
        ("acquired_at_far_past", key, tamper(int16_template, acquired_at_us=-(2**62)), "bad_message"),
        ("patient_id_empty", b"", tamper(int16_template, patient_id=""), "bad_message"),
        ("patient_id_blank", b"   ", tamper(int16_template, patient_id="   "), "bad_message"),
        ("patient_id_too_long", b"p" * 300, tamper(int16_template, patient_id="p" * 300), "bad_message"),
        ("patient_id_not_utf8", b"\xff\xfe", _replace_string(int16_template, "patient_id", b"\xff\xfe"),
         "bad_message"),
        ("device_id_too_long", key, tamper(int16_template, device_id="d" * 300), "bad_message"),
        ("source_not_utf8", key, _replace_string(int16_template, "source", b"\xc3\x28"), "bad_message"),
        ("sample_dtype_bad_index", key, _replace_enum(int16_template, 7), "bad_message"),
        ("sample_dtype_negative_index", key, _replace_enum(int16_template, -1), "bad_message"),
        ("lead_count_huge", key, _replace_count(int16_template, "lead_names", 2**40), "bad_message"),
        ("gain_count_huge", key, _replace_count(int16_template, "gains", 2**40), "bad_message"),
        ("lead_count_negative", key, _replace_count(int16_template, "lead_names", -(2**40)), "bad_message"),
        ("samples_length_huge", key, _replace_count(int16_template, "samples", 2**62), "bad_message"),
        ("samples_length_negative", key, _replace_count(int16_template, "samples", -5), "bad_message"),
        ("varint_overlong", key, _replace_count(int16_template, "n_samples", 2**80), "bad_message"),
        ("key_other_patient", other_key, int16_template, KEY_MISMATCH),
        ("key_missing", None, int16_template, KEY_MISMATCH),
        ("key_empty", b"", int16_template, KEY_MISMATCH),
        ("key_case_differs", key.upper() if key.upper() != key else key + b"X", int16_template, KEY_MISMATCH),
    ]
    for span in field_spans(int16_template):
        # Cut at the start of the field, after each of its length/count varints and items, and
        # one byte before its end: every place a reader can run out of data.
        cuts = sorted({span.start, *span.marks, span.end - 1} - {len(int16_template)})
        for i, cut in enumerate(cuts):
            cases.append((f"truncated_{span.name}_{i}", key, int16_template[:cut], "bad_message"))
    return [Malformed(name, k, v, reason) for name, k, v, reason in cases]


def _replace_enum(value: bytes, index: int) -> bytes:
    span = next(s for s in field_spans(value) if s.name == "sample_dtype")
    return value[: span.start] + _zigzag(index) + value[span.end:]


def _replace_count(value: bytes, field: str, count: int) -> bytes:
    """Overwrite the first length/count varint of ``field`` (or the whole varint field) with ``count``."""
    span = next(s for s in field_spans(value) if s.name == field)
    at = span.length_at[0] if span.length_at else span.start
    _, after = _read_long(value, at)
    return value[:at] + _zigzag(count) + value[after:]


# -- the fuzzing strategy ----------------------------------------------------------------------

# Values that break, or sit on the edge of, each field's rules.
_HOSTILE_INTS = [0, -1, 1, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63)]
_HOSTILE_FLOATS = [0.0, -0.0, -1.0, 1e-300, 5e-324, 1e308, math.nan, math.inf, -math.inf, 99.999, 10_000.001, 3e38]
_HOSTILE_STRINGS = ["", " ", "\x00", "é", "p" * 257, "\U0001f493", "II", "V7"]
_FIELD_VALUES = {
    "patient_id": st.sampled_from(_HOSTILE_STRINGS),
    "device_id": st.sampled_from(_HOSTILE_STRINGS),
    "source": st.sampled_from(_HOSTILE_STRINGS),
    "sequence": st.sampled_from(_HOSTILE_INTS),
    "acquired_at_us": st.sampled_from(_HOSTILE_INTS),
    "fs_hz": st.sampled_from(_HOSTILE_FLOATS),
    "n_samples": st.sampled_from([v for v in _HOSTILE_INTS if -(2**31) <= v < 2**31]),
    "sample_dtype": st.sampled_from(["INT16", "FLOAT32"]),
}


@dataclass(frozen=True)
class _Mutation:
    kind: str
    a: int = 0
    b: int = 0
    c: int = 0
    payload: object = None

    def apply(self, value: bytes, templates: Sequence[bytes]) -> bytes:
        n = len(value)
        if self.kind == "bit_flips":
            out = bytearray(value)
            for pos, bit in self.payload:
                if out:
                    out[pos % len(out)] ^= 1 << bit
            return bytes(out)
        if self.kind == "overwrite":
            if not n:
                return value
            out = bytearray(value)
            out[self.a % n] = self.b
            return bytes(out)
        if self.kind == "truncate":
            return value[: self.a % (n + 1)]
        if self.kind == "cut_at_boundary":
            marks = _boundaries(value)
            return value[: marks[self.a % len(marks)]] if marks else value[: self.a % (n + 1)]
        if self.kind == "splice":
            other = templates[self.c % len(templates)]
            return value[: self.a % (n + 1)] + other[self.b % (len(other) + 1):]
        if self.kind == "insert":
            pos = self.a % (n + 1)
            return value[:pos] + self.payload + value[pos:]
        if self.kind == "delete":
            pos = self.a % (n + 1)
            return value[:pos] + value[pos + self.b:]
        if self.kind == "varint":
            spots = _length_spots(value)
            if not spots:
                return value
            at = spots[self.a % len(spots)]
            try:
                _, after = _read_long(value, at)
            except IndexError:
                return value
            return value[:at] + _zigzag(self.payload) + value[after:]
        if self.kind == "field":
            name, new = self.payload
            try:
                return tamper(value, **{name: new})
            except Exception:  # not a valid record any more (an earlier mutation), or unwritable value
                return value
        if self.kind == "lists":
            # Lead metadata arrays of a different length, or lead names swapped for hostile ones.
            name, new = self.payload
            try:
                record = fastavro.schemaless_reader(io.BytesIO(value[HEADER_BYTES:]), _SCHEMA, None)
            except Exception:
                return value
            items = list(record[name])
            if new == "drop" and items:
                items.pop(self.a % len(items))
            elif new == "dup" and items:
                items.append(items[self.a % len(items)])
            elif isinstance(new, tuple) and items:
                items[self.a % len(items)] = new[0]
            return tamper(value, **{name: items})
        if self.kind == "header":
            return bytes([self.a & 0xFF, self.b & 0xFF]) + value[HEADER_BYTES:]
        raise AssertionError(self.kind)


def _boundaries(value: bytes) -> list[int]:
    try:
        spans = field_spans(value)
    except (ValueError, IndexError):
        return []
    return sorted({0, 1, HEADER_BYTES, *(m for s in spans for m in (s.start, *s.marks, s.end - 1))})


def _length_spots(value: bytes) -> list[int]:
    try:
        spans = field_spans(value)
    except (ValueError, IndexError):
        return []
    return [at for s in spans for at in (s.length_at or (s.start,))]


_position = st.integers(0, 2**20)


def _mutations() -> st.SearchStrategy[_Mutation]:
    # Half the flips land in the first 256 bytes, where the header and all metadata fields live.
    flip = st.tuples(st.one_of(st.integers(0, 255), _position), st.integers(0, 7))
    list_fields = st.sampled_from(["lead_names", "units", "gains", "baselines"])
    list_change = st.one_of(
        st.tuples(list_fields, st.sampled_from(["drop", "dup"])),
        st.tuples(st.just("lead_names"), st.sampled_from(_HOSTILE_STRINGS + ["I", "avr", "MLII", "Q7"]).map(
            lambda s: (s,))),
        st.tuples(st.just("units"), st.sampled_from(["", "V", "uV", "mmHg", "µV"]).map(lambda s: (s,))),
        st.tuples(st.just("gains"), st.sampled_from(_HOSTILE_FLOATS).map(lambda s: (s,))),
        st.tuples(st.just("baselines"), st.sampled_from([-(2**31), 2**31 - 1, 0, 32767]).map(lambda s: (s,))),
    )
    field_change = st.sampled_from(sorted(_FIELD_VALUES)).flatmap(
        lambda name: _FIELD_VALUES[name].map(lambda v: (name, v))
    )
    return st.one_of(
        st.builds(_Mutation, st.just("bit_flips"), payload=st.lists(flip, min_size=1, max_size=8)),
        st.builds(_Mutation, st.just("overwrite"), a=st.one_of(st.integers(0, 255), _position), b=st.integers(0, 255)),
        st.builds(_Mutation, st.just("truncate"), a=_position),
        st.builds(_Mutation, st.just("cut_at_boundary"), a=st.integers(0, 200)),
        st.builds(_Mutation, st.just("splice"), a=_position, b=_position, c=st.integers(0, 15)),
        st.builds(_Mutation, st.just("insert"), a=_position, payload=st.binary(min_size=1, max_size=16)),
        st.builds(_Mutation, st.just("delete"), a=_position, b=st.integers(1, 64)),
        st.builds(_Mutation, st.just("varint"), a=st.integers(0, 50),
                  payload=st.sampled_from([-1, 0, 1, 2**31, -(2**31), 2**62, -(2**62), 2**64, 2**80])),
        st.builds(_Mutation, st.just("field"), payload=field_change),
        st.builds(_Mutation, st.just("lists"), a=st.integers(0, 15), payload=list_change),
        st.builds(_Mutation, st.just("header"), a=st.integers(0, 255), b=st.integers(0, 255)),
    )


def mutated_messages(templates: Sequence[tuple[bytes, bytes]],
                     keys: Sequence[bytes | None] = ()) -> st.SearchStrategy[tuple[bytes | None, bytes]]:
    """``(key, value)``: a template message with 1-3 mutations stacked, keyed by its own key
    (mostly) or one of ``keys`` (other patients, ``None``)."""
    values = [v for _, v in templates]

    def build(index: int, mutations: list[_Mutation], key_choice: int) -> tuple[bytes | None, bytes]:
        key, value = templates[index % len(templates)]
        for mutation in mutations:
            value = mutation.apply(value, values)
        if keys and key_choice < len(keys):
            key = keys[key_choice]
        return key, value

    key_choice = st.integers(0, 3 * max(1, len(keys)))  # a quarter of the messages take another key
    return st.builds(build, st.integers(0, len(templates) - 1), st.lists(_mutations(), min_size=1, max_size=3),
                     key_choice)


def draw_messages(strategy: st.SearchStrategy, n: int, *, seed_value: int = 0) -> list:
    """``n`` examples of ``strategy``, identical on every run (fixed seed, no example database)."""
    drawn: list = []

    @seed(seed_value)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example) -> None:
        drawn.append(example)

    collect()
    return drawn



def template_messages(records: Path, *, max_bytes: int, start_us: int, salt: str = "malformed",
                      ) -> list[tuple[bytes, bytes]]:
    """Valid ``(key, value)`` messages of real PTB-XL recordings to mutate: int16 chunks with
    ADC gains and the same signal as float32 mV, two patients. Mostly 0.1-s chunks (1.4 kB as
    int16), which break in all the same places as 1-s ones and keep a large corpus small."""
    out = []
    for beds, chunk_s, count in ((2, 0.1, 6), (1, 1.0, 1)):
        for _, chunk in islice(feed([records], beds=beds, chunk_s=chunk_s, max_records=1, start_us=start_us,
                                    salt=salt), count):
            out.append((chunk.key, encode_chunk(chunk, max_bytes=max_bytes)))
            as_float = EcgChunk.from_ecg(chunk.to_ecg(), sequence=chunk.sequence)
            out.append((as_float.key, encode_chunk(as_float, max_bytes=max_bytes)))
    return out
