"""Bad input, unit level: every named class of malformed chunk and 10,000 fuzzed mutations of real
messages are refused with ``ECGInputError`` and a reason (or a key mismatch), or decode to a chunk
that passes every rule; the decoder never raises anything else.

The same generators feed tests/integration/test_bad_input_at_scale.py through a running worker.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.stream.messages.dead_letter import KEY_MISMATCH
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import EcgChunk, decode_chunk, encode_chunk, validate_chunk

from tests.stream.malformed import (
    draw_messages,
    field_spans,
    mutated_messages,
    named_corpus,
    refusal,
    template_messages,
)

RECORDS = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500"
START_US = 1_700_000_000_000_000
MAX_BYTES = 64 * 1024  # a 1-s 12-lead int16 chunk is 12 kB; an 8-s one (96 kB) is oversized
WINDOW = default_card().window
TEMPLATES = template_messages(RECORDS, max_bytes=MAX_BYTES, start_us=START_US)
OTHER_KEYS = [b"bed-elsewhere", None]


def _corpus():
    int16 = next(v for k, v in TEMPLATES if decode_chunk(v, max_bytes=MAX_BYTES).sample_dtype == "INT16")
    float32 = next(v for k, v in TEMPLATES if decode_chunk(v, max_bytes=MAX_BYTES).sample_dtype == "FLOAT32")
    long_chunk = next(c for _, c in feed([RECORDS], beds=1, chunk_s=8.0, max_records=1, start_us=START_US))
    return named_corpus(int16, float32, encode_chunk(long_chunk, max_bytes=10 * MAX_BYTES))


CORPUS = _corpus()


def test_templates_are_valid_int16_and_float32_messages():
    dtypes = Counter(decode_chunk(v, max_bytes=MAX_BYTES).sample_dtype for _, v in TEMPLATES)
    assert dtypes["INT16"] >= 2 and dtypes["FLOAT32"] >= 2
    assert all(refusal(k, v, max_bytes=MAX_BYTES, window=WINDOW) is None for k, v in TEMPLATES)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_each_class_of_bad_message_is_refused_with_its_reason(case):
    assert refusal(case.key, case.value, max_bytes=MAX_BYTES, window=WINDOW) == case.reason
    if case.reason != KEY_MISMATCH:
        with pytest.raises(ECGInputError) as info:
            decode_chunk(case.value, max_bytes=MAX_BYTES, window=WINDOW)
        assert info.value.detail.strip(), "a refusal must say why"


def test_the_corpus_cuts_the_record_at_every_structural_boundary():
    template = next(v for k, v in TEMPLATES if decode_chunk(v, max_bytes=MAX_BYTES).sample_dtype == "INT16")
    cuts = {len(c.value) for c in CORPUS if c.name.startswith("truncated_")}
    spans = field_spans(template)
    assert [s.name for s in spans][0] == "patient_id" and spans[-1].end == len(template)
    for span in spans:  # the start of every field and every inner boundary of it
        assert {span.start, *span.marks} - {len(template)} <= cuts, span.name
    # Every reason the decoder can give is exercised by at least one named case.
    assert {c.reason for c in CORPUS} >= {"bad_message", "oversized", "non_finite", "unknown_lead",
                                          "duplicate_lead", "bad_sampling_rate", "bad_units", KEY_MISMATCH}


def test_finite_samples_that_overflow_in_millivolts_are_refused_by_the_encoder_too():
    chunk = EcgChunk(patient_id="bed-1", sequence=0, acquired_at_us=START_US, fs_hz=500.0, lead_names=("I", "II"),
                     samples=np.full((2, 50), 3e38, np.float32), units=("V", "mV"))
    with pytest.raises(ECGInputError) as info:
        encode_chunk(chunk, max_bytes=MAX_BYTES)
    assert info.value.reason is InputErrorReason.NON_FINITE and "lead I" in info.value.detail
    # The same values in mV, and int16 at a plausible gain, are fine (and stay finite).
    fine = EcgChunk(patient_id="bed-1", sequence=0, acquired_at_us=START_US, fs_hz=500.0, lead_names=("I",),
                    samples=np.full((1, 50), 3e38, np.float32))
    assert np.isfinite(validate_chunk(fine).to_ecg().samples).all()
    counts = EcgChunk(patient_id="bed-1", sequence=0, acquired_at_us=START_US, fs_hz=500.0, lead_names=("I",),
                      samples=np.full((1, 50), -32768, np.int16), gains=(1e-3,), baselines=(2**31 - 1,))
    assert np.isfinite(validate_chunk(counts).to_ecg().samples).all()


def _check_contract(key: bytes | None, value: bytes) -> str | None:
    """The decoder's promise: ECGInputError with a reason and a message, or a valid chunk."""
    try:
        chunk = decode_chunk(value, max_bytes=MAX_BYTES, window=WINDOW)
    except ECGInputError as err:
        assert err.detail.strip()
        return err.reason.value
    # Accepted means usable: it re-encodes to a message that decodes to the same chunk, and its
    # signal is finite in millivolts.
    assert decode_chunk(encode_chunk(chunk, max_bytes=MAX_BYTES), max_bytes=MAX_BYTES) == chunk
    assert np.isfinite(chunk.to_ecg().samples).all()
    assert math.isfinite(chunk.fs_hz) and chunk.sequence >= 0 and chunk.patient_id.strip()
    return refusal(key, value, max_bytes=MAX_BYTES, window=WINDOW)


@settings(max_examples=10_000, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_messages(TEMPLATES, OTHER_KEYS))
def test_ten_thousand_fuzzed_messages_are_refused_with_a_reason_or_decode_valid(message):
    _check_contract(*message)


def test_the_fuzzed_corpus_is_reproducible_and_mostly_refused_for_many_reasons():
    strategy = mutated_messages(TEMPLATES, OTHER_KEYS)
    first = draw_messages(strategy, 600, seed_value=7)
    assert first == draw_messages(strategy, 600, seed_value=7)
    reasons = Counter(refusal(k, v, max_bytes=MAX_BYTES, window=WINDOW) for k, v in first)
    assert reasons[None] < 0.25 * len(first), reasons
    assert len(set(reasons) - {None}) >= 4, reasons
