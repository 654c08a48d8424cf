"""Per-patient windowing on a real feed: six PTB-XL 500 Hz records played back to back as 1-s
int16 chunks (what ``hfrisk replay`` sends), cut into 10-s windows every 5 s.

Every window must equal the slice of the concatenated recordings at its grid position, bit for
bit, whatever the delivery order, duplication or restarts; every grid index must come out once,
as a window or inside a skipped range with the right reason.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hfrisk.core.config import StreamSettings
from hfrisk.model.contract.card import default_card
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.stream.messages import EcgChunk, wire_samples
from hfrisk.stream.windowing import (
    STATE_VERSION,
    PatientBuffer,
    SkippedWindows,
    SkipReason,
    Window,
    WindowAssembler,
    parse_window_id,
    window_id,
)

PATIENT = "bed-1"
T0_US = 1_700_000_000_123_456
FS = 500
WINDOW_S, HOP_S, REORDER_S = 10.0, 5.0, 5.0
N_WIN, N_HOP = int(WINDOW_S * FS), int(HOP_S * FS)


def _records(ecg_data_dir, folder: str, suffix: str, ids: range) -> list:
    root = ecg_data_dir / "ptbxl" / folder / "00000"
    return [read_ecg(root / f"{i:05d}_{suffix}") for i in ids]


def _chunks(ecgs, *, first_seq: int = 0, t0_us: int = T0_US, patient: str = PATIENT) -> list[EcgChunk]:
    """1-s chunks of the recordings played back to back, as replay cuts them."""
    chunks, seq = [], first_seq
    for ecg in ecgs:
        wire, n = wire_samples(ecg), int(ecg.fs_hz)
        for start in range(0, ecg.n_samples, n):
            at = t0_us + (seq - first_seq) * 1_000_000
            chunks.append(
                EcgChunk.from_wire(wire, start, start + n, patient_id=patient, sequence=seq, acquired_at_us=at)
            )
            seq += 1
    return chunks


@pytest.fixture(scope="module")
def feed(ecg_data_dir):
    """(chunks, signal): 60 one-second chunks and the 12 x 30,000 mV signal they carry."""
    ecgs = _records(ecg_data_dir, "records500", "hr", range(1, 7))
    assert all(e.fs_hz == FS and e.n_samples == 5000 for e in ecgs)
    return _chunks(ecgs), np.concatenate([e.samples for e in ecgs], axis=1)


def _buffer(**kw) -> PatientBuffer:
    return PatientBuffer(PATIENT, WINDOW_S, HOP_S, reorder_s=kw.pop("reorder_s", REORDER_S), **kw)


def _run(chunks, buffer: PatientBuffer | None = None, *, close: bool = True):
    buffer = buffer or _buffer()
    out = [o for c in chunks for o in buffer.feed(c)]
    if close:
        out += buffer.close()
    return out, buffer


def _windows(outcomes) -> list[Window]:
    return [o for o in outcomes if isinstance(o, Window)]


def _skips(outcomes) -> list[SkippedWindows]:
    return [o for o in outcomes if isinstance(o, SkippedWindows)]


def _accounted(outcomes) -> list[tuple[int, int]]:
    """(segment, index) of every window the grid defined, in the order they were decided."""
    keys = []
    for o in outcomes:
        keys += [(o.segment, o.index)] if isinstance(o, Window) else [(o.segment, k) for k in o.indices]
    return keys


def _assert_slices(windows, signal, *, origin_us=T0_US, fs=FS, offset=0):
    n_win, n_hop = int(WINDOW_S * fs), int(HOP_S * fs)
    for w in windows:
        start = offset + w.index * n_hop
        np.testing.assert_array_equal(w.ecg.samples, signal[:, start : start + n_win])
        assert w.start_us == origin_us + w.index * 5_000_000
        assert w.ecg.fs_hz == fs and w.ecg.duration_s == WINDOW_S


def test_in_order_feed_gives_exact_slices_on_a_grid_anchored_at_the_first_chunk(feed):
    chunks, signal = feed
    out, buffer = _run(chunks)

    windows = _windows(out)
    assert [w.index for w in windows] == list(range(11))  # (60 - 10) / 5 + 1
    _assert_slices(windows, signal)
    assert windows[3].window_id == f"{T0_US}-3" == window_id(T0_US, 3)
    assert parse_window_id(windows[3].window_id) == (T0_US, 3)
    assert windows[3].sequences == tuple(range(15, 25))
    assert windows[3].ecg.acquired_at == windows[3].start
    assert windows[3].ecg.lead_names == chunks[0].lead_names
    # The window starting at 55 s never completes: reported at close, not dropped silently.
    (end,) = _skips(out)
    assert (end.first_index, end.stop_index, end.reason) == (11, 12, SkipReason.STREAM_END)
    assert _accounted(out) == [(0, k) for k in range(12)]
    assert buffer.stats.windows == 11 and buffer.stats.windows_skipped == 1 and buffer.stats.chunks == 60
    # A redelivery after the close is recognised as such, not taken for a new feed.
    assert buffer.feed(chunks[58]) == [] and buffer.stats.duplicates == 1 and buffer.stats.segments == 1


def test_a_feed_resuming_after_close_starts_a_new_segment(feed):
    chunks, signal = feed
    buffer = _buffer(reorder_s=0.0)
    first, _ = _run(chunks[:30], buffer)
    resumed = [replace(c, acquired_at_us=c.acquired_at_us + 60_000_000) for c in chunks[30:]]
    second, _ = _run(resumed, buffer)

    assert {w.segment for w in _windows(first)} == {0} and {w.segment for w in _windows(second)} == {1}
    assert _windows(second)[0].origin_us == T0_US + 90_000_000
    _assert_slices(_windows(second), signal, origin_us=T0_US + 90_000_000, offset=30 * FS)


def test_windows_come_out_as_soon_as_their_last_chunk_arrives_and_memory_stays_bounded(feed):
    chunks, _ = feed
    buffer = _buffer(reorder_s=0.0)
    for i, chunk in enumerate(chunks):
        windows = _windows(buffer.feed(chunk))
        # Chunk i completes a window when 10 s .. i+1 s is a multiple of 5 s.
        assert len(windows) == (1 if (i + 1) >= 10 and (i + 1) % 5 == 0 else 0)
        # At most one window plus one chunk of samples is ever held.
        assert buffer.buffered_samples <= N_WIN + FS


def test_shuffled_within_the_horizon_and_duplicated_chunks_give_the_same_windows(feed):
    chunks, _ = feed
    reference, _ = _run(chunks)
    rng = random.Random(7)
    # Each chunk displaced by less than 5 positions (5 s of signal = the reorder horizon).
    order = sorted(range(len(chunks)), key=lambda i: i + rng.uniform(0, 5))
    delivered = [chunks[i] for i in order]
    for i in (0, 3, 17, 17, 42, 59):  # redeliveries, some right away, some much later
        delivered.insert(rng.randrange(order.index(i) + 1, len(delivered) + 1), chunks[i])

    out, buffer = _run(delivered)

    assert _windows(out) == _windows(reference)
    assert _skips(out) == _skips(reference)
    assert buffer.stats.duplicates == 6 and buffer.stats.late == 0 and buffer.stats.lost_chunks == 0


def test_a_dropped_chunk_skips_exactly_the_windows_overlapping_it(feed):
    chunks, signal = feed
    delivered = [c for c in chunks if c.sequence != 17]
    delivered.append(chunks[17])  # and it turns up long after it was declared lost

    out, buffer = _run(delivered)

    gaps = [s for s in _skips(out) if s.reason is SkipReason.MISSING_CHUNKS]
    assert len(gaps) == 1
    gap = gaps[0]
    # [17 s, 18 s) lies in windows 2 (10-20 s) and 3 (15-25 s) only.
    assert (gap.first_index, gap.stop_index) == (2, 4)
    assert gap.window_ids == [window_id(T0_US, 2), window_id(T0_US, 3)]
    assert gap.missing_sequences == (17, 18)
    assert gap.hole_us == (T0_US + 17_000_000, T0_US + 18_000_000)
    assert gap.first_start_us == T0_US + 10_000_000
    windows = _windows(out)
    assert [w.index for w in windows] == [0, 1, *range(4, 11)]
    _assert_slices(windows, signal)
    assert _accounted(out) == [(0, k) for k in range(12)]
    assert buffer.stats.lost_chunks == 1 and buffer.stats.late == 1


def test_a_chunk_may_be_overtaken_by_up_to_the_horizon_and_no_further(feed):
    chunks, _ = feed
    # Chunk 20 after 21..24 (4 s later signal, reaching 5 s past the hole): still in time.
    in_time = chunks[:20] + chunks[21:25] + [chunks[20]] + chunks[25:]
    assert not [s for s in _skips(_run(in_time)[0]) if s.reason is not SkipReason.STREAM_END]
    # After 21..25 the pending chunks reach 6 s past it: declared lost, and late when it comes.
    too_late = chunks[:20] + chunks[21:26] + [chunks[20]] + chunks[26:]
    out, buffer = _run(too_late)
    assert [(s.reason, s.first_index, s.stop_index) for s in _skips(out)][0] == (SkipReason.MISSING_CHUNKS, 3, 5)
    assert buffer.stats.late == 1


def test_a_pause_in_time_with_contiguous_sequences_skips_the_overlap_and_the_grid_goes_on(feed):
    chunks, signal = feed
    # The monitor stops for 2.5 s after 30 s; sequence numbers continue.
    delivered = [c if c.sequence < 30 else replace(c, acquired_at_us=c.acquired_at_us + 2_500_000) for c in chunks]

    out, _ = _run(delivered)

    gap = _skips(out)[0]
    assert gap.reason is SkipReason.TIME_GAP and gap.missing_sequences is None
    # [30 s, 32.5 s) lies in windows 5 (25-35 s) and 6 (30-40 s); window 7 starts at 35 s.
    assert (gap.first_index, gap.stop_index) == (5, 7)
    windows = _windows(out)
    # The feed now ends at 62.5 s: window 11 (55-65 s) is reported at close.
    assert [w.index for w in windows] == [0, 1, 2, 3, 4, 7, 8, 9, 10]
    assert (_skips(out)[-1].reason, _skips(out)[-1].first_index) == (SkipReason.STREAM_END, 11)
    _assert_slices(windows[:5], signal)
    # After the pause, time t holds signal sample (t - 2.5 s) * fs: same grid, shifted content.
    for w in windows[5:]:
        start = w.index * N_HOP - int(2.5 * FS)
        np.testing.assert_array_equal(w.ecg.samples, signal[:, start : start + N_WIN])
        assert w.start_us == T0_US + w.index * 5_000_000


def test_sub_tolerance_jitter_and_skipped_sequence_numbers_lose_nothing(feed):
    chunks, signal = feed
    jittered = [replace(c, acquired_at_us=c.acquired_at_us + (3_000 if c.sequence % 2 else -3_000)) for c in chunks]
    renumbered = [replace(c, sequence=c.sequence + (5 if c.sequence >= 33 else 0)) for c in jittered]
    renumbered[0] = chunks[0]  # the anchor itself on time

    out, _ = _run(renumbered)

    assert [w.index for w in _windows(out)] == list(range(11))
    _assert_slices(_windows(out), signal)


def test_a_rate_change_skips_the_windows_spanning_it_and_starts_a_new_segment(ecg_data_dir, feed):
    chunks, signal = feed
    slow = _records(ecg_data_dir, "records100", "lr", range(7, 10))  # 30 s at 100 Hz
    slow_signal = np.concatenate([e.samples for e in slow], axis=1)
    change_us = T0_US + 23_000_000
    delivered = chunks[:23] + _chunks(slow, first_seq=23, t0_us=change_us)

    out, buffer = _run(delivered)

    rate = [s for s in _skips(out) if s.reason is SkipReason.RATE_CHANGE]
    assert len(rate) == 1
    # Windows 3 (15-25 s) and 4 (20-30 s) had started at 500 Hz and cannot complete.
    assert (rate[0].segment, rate[0].first_index, rate[0].stop_index) == (0, 3, 5)
    assert "500 Hz -> 100 Hz" in rate[0].detail
    old = [w for w in _windows(out) if w.segment == 0]
    new = [w for w in _windows(out) if w.segment == 1]
    assert [w.index for w in old] == [0, 1, 2]
    _assert_slices(old, signal)
    assert [w.index for w in new] == [0, 1, 2, 3, 4]  # a new grid at the change, 30 s of signal
    _assert_slices(new, slow_signal, origin_us=change_us, fs=100)
    assert new[0].origin_us == change_us and new[0].window_id == f"{change_us}-0"
    ids = [w.window_id for w in _windows(out)]
    assert len(set(ids)) == len(ids)
    assert _accounted(out) == [(0, k) for k in range(5)] + [(1, k) for k in range(6)]
    assert buffer.stats.segments == 2


def test_a_lead_set_change_and_a_sequence_reset_each_start_a_new_segment(feed):
    chunks, _ = feed
    fewer = [
        replace(c, lead_names=c.lead_names[:8], samples=c.samples[:8], units=c.units[:8], gains=c.gains[:8],
                baselines=c.baselines[:8])
        for c in chunks[12:30]
    ]
    # After the lead change, the monitor reboots at 30 s and counts from 0 again.
    rebooted = [replace(c, sequence=c.sequence - 30) for c in chunks[30:]]
    out, buffer = _run(chunks[:12] + fewer + rebooted)

    reasons = [(s.segment, s.reason, s.first_index, s.stop_index) for s in _skips(out)]
    assert reasons == [
        (0, SkipReason.LEAD_CHANGE, 1, 3),  # 5-15 s and 10-20 s span the change at 12 s
        (1, SkipReason.SEQUENCE_RESET, 2, 4),  # 22-32 s and 27-37 s span the reset at 30 s
        (2, SkipReason.STREAM_END, 5, 6),
    ]
    assert [(w.segment, w.ecg.n_leads) for w in _windows(out)] == [(0, 12), (1, 8), (1, 8)] + [(2, 12)] * 5
    assert buffer.stats.segments == 3 and buffer.stats.duplicates == 0


def test_saved_bytes_round_trip_exactly_and_the_json_form_of_a_state_loads_into_the_same_state(feed):
    """States with waiting chunks (several arrays) and an id that looks like an array reference: the
    binary form gives back the same metadata and the same array bits, and the JSON form (version 1,
    what workers saved before the binary form) of the same moment loads into the same state."""
    import json

    chunks, _ = feed
    rng = random.Random(5)
    order = sorted(range(len(chunks)), key=lambda i: i + rng.uniform(0, 4))
    tricky = '"at":0,"shape":[] \x00 "f4le":"\u00000"'
    buffer = PatientBuffer(tricky, 10.0, 5.0)
    checked = 0
    for i in order[:40]:
        buffer.feed(replace(chunks[i], patient_id=tricky))
        saved = buffer.to_bytes()
        assert saved[:4] == b"HFWB"
        from_binary = PatientBuffer.from_bytes(saved)
        from_json = PatientBuffer.from_bytes(json.dumps(buffer.to_dict()).encode())
        for restored in (from_binary, from_json):
            assert restored.to_dict() == buffer.to_dict()  # arrays compared as the base64 of their bytes
            assert restored.to_bytes() == saved
            held, original = restored.to_state(), buffer.to_state()
            for a, b in zip([held.buf] + [c.samples for c in held.pending],
                            [original.buf] + [c.samples for c in original.pending], strict=True):
                assert a.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()
        checked += buffer.pending > 1
    assert checked > 0, "no state with several waiting chunks was checked"


def test_restored_state_continues_with_identical_windows_and_redelivery_recreates_them(feed):
    chunks, _ = feed
    rng = random.Random(3)
    order = sorted(range(len(chunks)), key=lambda i: i + rng.uniform(0, 4))
    delivered = [chunks[i] for i in order]
    reference, _ = _run(delivered)

    # Save mid-stream at a moment when chunks are waiting for an earlier one.
    original, before, cut = _buffer(), [], 0
    while cut < 30 or original.pending == 0:
        before += original.feed(delivered[cut])
        cut += 1
    saved = original.to_bytes()
    restored = PatientBuffer.from_bytes(saved)
    assert restored.to_bytes() == saved

    after_original = [o for c in delivered[cut:] for o in original.feed(c)] + original.close()
    after_restored = [o for c in delivered[cut:] for o in restored.feed(c)] + restored.close()
    assert after_restored == after_original
    assert before + after_original == reference

    # A worker that saved at `cut` and crashed later gets everything since its last commit again
    # (here from 10 chunks before the save on): the already-saved chunks are duplicates, the windows identical.
    assembler = WindowAssembler(WINDOW_S, HOP_S, reorder_s=REORDER_S)
    assembler.restore(PATIENT, saved)
    redelivered = [o for c in delivered[cut - 10 :] for o in assembler.feed(c)] + assembler.close(PATIENT)
    assert redelivered == after_original


def test_held_signal_appends_in_place_cuts_exact_columns_and_forgets_what_no_window_needs():
    from hfrisk.stream.windowing.held_signal import HeldSignal

    held = HeldSignal(2, 0)
    chunk = np.arange(10, dtype=np.float32).reshape(2, 5)
    held.append(0, chunk, spare=10)
    block = held.samples.base
    for seq in (1, 2):
        held.append(seq, chunk + 10 * seq, spare=10)
        assert held.samples.base is block  # written into the room left, not copied
    assert (held.start, held.end, held.spans) == (0, 15, [(0, 0, 5), (1, 5, 10), (2, 10, 15)])
    samples, sequences = held.cut(3, 4)
    assert sequences == (0, 1) and samples.tolist() == [[3, 4, 10, 11], [8, 9, 15, 16]]
    # A window is a view of the held columns (no 240-kB copy), so it must be read-only, and the
    # columns it covers must never be written again while the buffer moves on.
    assert not samples.flags.writeable and np.shares_memory(samples, block)
    held.drop_before(5)
    assert (held.start, held.spans, held.samples.shape) == (5, [(1, 5, 10), (2, 10, 15)], (2, 10))
    held.append(3, chunk, spare=10)  # past the block's room: a new block, the held columns copied once
    assert held.samples.base is not block and held.cut(5, 15)[0][0, :5].tolist() == [10, 11, 12, 13, 14]
    latest, _ = held.cut(15, 5)
    for seq in (4, 5):  # into the new block's room, right after the columns just cut
        held.append(seq, chunk + 100 * seq, spare=10)
    assert latest.tolist() == chunk.tolist() and samples.tolist() == [[3, 4, 10, 11], [8, 9, 15, 16]]
    held.drop_before(100)  # never past the end
    assert (held.start, held.end, held.spans) == (30, 30, [])


def test_held_signal_keeps_the_chunks_counts_by_reference_while_they_cover_every_column():
    from hfrisk.stream.windowing.held_signal import HeldSignal

    calibration, other = ((200.0, 200.0), (0, 0)), ((100.0, 200.0), (0, 0))
    counts = [np.arange(10, dtype=np.int16).reshape(2, 5) + 10 * k for k in range(3)]
    held = HeldSignal(2, 0)
    held.append(0, counts[0] / np.float32(200), spare=10, counts=counts[0], calibration=calibration)
    # The chunk's own array: nothing is copied per chunk.
    assert np.shares_memory(held.held_counts(), counts[0]) and held.held_counts().tolist() == counts[0].tolist()
    held.append(1, counts[1] / np.float32(200), spare=10, counts=counts[1], calibration=calibration)
    assert held.held_counts()[0].tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    held.drop_before(3)
    assert held.held_counts()[1].tolist() == [8, 9, 15, 16, 17, 18, 19]
    held.append(2, counts[2] / np.float32(100), spare=10, counts=counts[2], calibration=other)
    assert held.held_counts() is None and held.calibration == other  # counts of `other` from column 10
    held.drop_before(10)
    assert np.shares_memory(held.held_counts(), counts[2]) and held.held_counts().tolist() == counts[2].tolist()
    held.append(3, np.zeros((2, 5), np.float32), spare=10)  # no counts: none until it is dropped
    assert held.held_counts() is None
    held.drop_before(20)
    assert held.held_counts() is None and held.samples.shape == (2, 0)


# A buffer saved by the hand-written to_dict that preceded the pydantic models (captured from that
# code: 2 leads at 10 Hz, 2-s windows every 1 s, chunks of 0.5 s fed as 1 0 2 3 5 6 7 8 9 11, so
# sequence 4 was declared lost and 11 waits for 10). Workers in the field hold states like this one.
OLD_STATE = {
    "buf": {
        "f4le": "AAAAQQAABEEAAAhBAAAMQQAAEEEAABBBAAAUQQAAGEEAABxBAAAgQQAAFEEAABhBAAAcQQAAIEEAACRBAAAkQQAAKEEAACxBAAAwQQAANEE=",
        "shape": [2, 10],
    },
    "buf_start": 40, "closed": False, "device_id": "mon-7", "filled_end": 50, "fs_hz": 10.0, "hop_s": 1.0,
    "last_start_us": 1700000004500000, "lead_names": ["I", "II"], "lost": [[4, 5]], "max_pending": 16,
    "next_index": 4, "next_sequence": 10, "origin_us": 1700000000000000, "patient_id": "bed-9",
    "pending": [
        {
            "device_id": "mon-7", "fs_hz": 10.0, "lead_names": ["I", "II"],
            "samples": {"f4le": "AAAwQQAANEEAADhBAAA8QQAAQEEAAERBAABIQQAATEEAAFBBAABUQQ==", "shape": [2, 5]},
            "sequence": 11, "start_us": 1700000005500000,
        }
    ],
    "reorder_s": 1.0, "segment": 0, "spans": [[8, 40, 45], [9, 45, 50]], "state_version": 1,
    "stats": {"chunks": 9, "duplicates": 0, "late": 0, "lost_chunks": 1, "segments": 1, "windows": 2,
              "windows_skipped": 2},
    "time_tolerance_s": 0.05, "window_s": 2.0,
}


def _old_chunk(seq: int):
    class Plain:  # how OLD_STATE's chunks were made: samples already in mV
        patient_id, sequence, acquired_at_us, fs_hz, lead_names, device_id = (
            "bed-9", seq, 1_700_000_000_000_000 + seq * 500_000, 10.0, ("I", "II"), "mon-7")
        samples = np.arange(10, dtype=np.float32).reshape(2, 5) * 0.25 + seq

    return Plain()


def test_a_state_saved_before_the_pydantic_models_still_loads_and_is_written_back_unchanged():
    import json

    stored = json.dumps(OLD_STATE, separators=(",", ":"), sort_keys=True).encode()
    from_dict = PatientBuffer.from_dict(OLD_STATE)
    # Saved again, it is the binary form (version 3), which loads into the same state.
    saved_again = from_dict.to_bytes()
    assert saved_again[:6] == b"HFWB\x03\x00"
    for restored in (from_dict, PatientBuffer.from_bytes(stored), PatientBuffer.from_bytes(saved_again)):
        assert restored.to_dict() == OLD_STATE  # the JSON form, version 1, as it was saved
        assert restored.to_bytes() == saved_again
        assert (restored.next_sequence, restored.pending, restored.buffered_samples) == (10, 1, 10)
        assert restored.stats.lost_chunks == 1 and restored.stats.windows == 2
        # The missing chunk completes window 4 from the saved samples and the waiting chunk 11,
        # with the values the old code produced.
        (window,) = restored.feed(_old_chunk(10))
        assert window.window_id == "1700000000000000-4" and window.sequences == (8, 9, 10, 11)
        lead_i = [8.0, 8.25, 8.5, 8.75, 9.0, 9.0, 9.25, 9.5, 9.75, 10.0,
                  10.0, 10.25, 10.5, 10.75, 11.0, 11.0, 11.25, 11.5, 11.75, 12.0]
        assert window.ecg.samples[0].tolist() == lead_i
        assert window.ecg.samples[1].tolist() == [v + 1.25 for v in lead_i]
        assert restored.stats.chunks == 11 and restored.stats.windows == 3
        # A lost chunk turning up now is late, as the saved lost ranges say.
        assert restored.feed(_old_chunk(4)) == [] and restored.stats.late == 1

    # Pending chunks saved without a device id (allowed by the old loader) still load.
    no_device = json.loads(stored)
    del no_device["pending"][0]["device_id"]
    assert PatientBuffer.from_dict(no_device).to_state().pending[0].device_id == ""


def test_a_buffer_that_never_declares_chunks_lost_round_trips():
    # reorder_s=inf is stored as JSON's Infinity (in the binary form's metadata too), as json.dumps always wrote it.
    import json

    buffer = PatientBuffer("bed-9", 2.0, 1.0, reorder_s=float("inf"))
    buffer.feed(_old_chunk(0))
    saved = buffer.to_bytes()
    assert b'"reorder_s":Infinity' in saved
    assert PatientBuffer.from_bytes(saved).reorder_s == float("inf") and PatientBuffer.from_bytes(saved).to_bytes() == saved
    as_json = json.dumps(buffer.to_dict()).encode()
    assert b'"reorder_s": Infinity' in as_json and PatientBuffer.from_bytes(as_json).to_bytes() == saved


@pytest.mark.parametrize(
    "change, match",
    [
        ({"state_version": STATE_VERSION + 1}, f"state version {STATE_VERSION + 1}, expected one of"),
        ({"state_version": STATE_VERSION}, f"state version {STATE_VERSION} in the JSON form"),  # the binary form's
        ({"buf": {"shape": [2, 10]}}, "f4le"),
        ({"buf": {"shape": [3, 10], "f4le": OLD_STATE["buf"]["f4le"]}}, "reshape"),
        ({"stats": None}, "stats"),
    ],
)
def test_an_unusable_state_is_refused_with_a_value_error(change, match):
    # The worker catches ValueError and starts that patient afresh.
    with pytest.raises(ValueError, match=match):
        PatientBuffer.from_dict(OLD_STATE | change)
    without = {k: v for k, v in OLD_STATE.items() if k != "spans"}
    with pytest.raises(ValueError, match="spans"):
        PatientBuffer.from_dict(without)


def test_assembler_routes_patients_and_refuses_a_state_with_another_grid(feed):
    chunks, signal = feed
    other = [replace(c, patient_id="bed-2", acquired_at_us=c.acquired_at_us + 400_000) for c in chunks[:25]]
    assembler = WindowAssembler(WINDOW_S, HOP_S, reorder_s=0.0)
    out = list(assembler.feed_many(x for pair in zip(chunks[:25], other) for x in pair))
    by_patient = {p: [w for w in _windows(out) if w.patient_id == p] for p in (PATIENT, "bed-2")}
    assert [len(v) for v in by_patient.values()] == [4, 4]
    _assert_slices(by_patient["bed-2"], signal, origin_us=T0_US + 400_000)

    with pytest.raises(ValueError, match="grid"):
        WindowAssembler(WINDOW_S, 2.0).restore(PATIENT, assembler.state(PATIENT))
    configured = WindowAssembler.from_settings(default_card(), StreamSettings(hop_s=2.5, reorder_s=1.0))
    assert (configured.window_s, configured.hop_s, configured.reorder_s) == (default_card().window.window_s, 2.5, 1.0)
    with pytest.raises(ValueError, match="bed-2"):
        assembler.buffer(PATIENT).feed(other[0])


def test_non_finite_samples_are_refused_before_the_state_changes():
    class Plain:  # the minimal chunk protocol: samples already in mV
        def __init__(self, seq, samples):
            self.patient_id, self.sequence, self.acquired_at_us = PATIENT, seq, seq * 1_000_000
            self.fs_hz, self.lead_names, self.samples = 100.0, ("I", "II"), samples

    buffer = PatientBuffer(PATIENT, 2.0, 1.0, reorder_s=0.0)
    ok = np.ones((2, 100), np.float32)
    buffer.feed(Plain(0, ok))
    before = buffer.to_bytes()
    with pytest.raises(ValueError, match="NaN"):
        buffer.feed(Plain(1, np.full((2, 100), np.nan, np.float32)))
    assert buffer.to_bytes() == before
    assert [w.index for w in _windows(buffer.feed(Plain(1, ok)))] == [0]


def test_a_window_is_the_ecg_the_checking_constructor_makes_of_the_same_parts(feed):
    # Windows skip the constructor's scan for NaN/inf (every chunk was scanned when it came in).
    from hfrisk.model.contract.ecg import ECG

    chunks, _ = feed
    windows = _windows(_run(chunks[:20])[0])
    assert len(windows) == 3
    for w in windows:
        e = w.ecg
        checked = ECG(samples=e.samples, fs_hz=e.fs_hz, lead_names=e.lead_names, units=e.units,
                      patient_id=e.patient_id, device_id=e.device_id, acquired_at=e.acquired_at,
                      source=e.source, metadata=e.metadata)
        assert e == checked and e.metadata == checked.metadata
        assert {k: type(v) for k, v in vars(e).items()} == {k: type(v) for k, v in vars(checked).items()}
        assert e.samples.dtype == np.float32 and not e.samples.flags.writeable


# -- property: any delivery order within the horizon, any duplication, any lost chunks ---------


def _expected_outcome(n_chunks: int, dropped: set[int]) -> dict[int, str]:
    """Independent of the buffer: what happens to each grid index of a 1-s-chunk feed.

    Window k covers [5k, 5k + 10) s. It overlaps a lost chunk j if 5k < j + 1 and 5k + 10 > j;
    the feed ends with the last chunk that arrived.
    """
    end_s = max(set(range(n_chunks)) - dropped) + 1
    expected = {}
    for k in range(0, end_s // 5 + 1):
        start = 5 * k
        if start >= end_s:
            break
        if any(start < j + 1 and start + 10 > j for j in dropped if j < end_s):
            expected[k] = "missing_chunks"
        elif start + 10 > end_s:
            expected[k] = "stream_end"
        else:
            expected[k] = "window"
    return expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_any_order_within_the_horizon_any_duplicates_any_losses(feed, data):
    chunks, signal = feed
    n = len(chunks)
    # Losses (never the anchor) need a chunk next to a hole to arrive before the hole is declared
    # lost, so they get a tighter displacement bound than the horizon allows on its own.
    # No two adjacent: a run of k lost chunks lets later ones overtake further than one.
    dropped = data.draw(
        st.sets(st.integers(1, n - 1), max_size=4).filter(lambda s: all(j + 1 not in s for j in s)), label="dropped"
    )
    spread = data.draw(st.floats(0, 4 if dropped else 5, exclude_max=True), label="spread")
    offsets = data.draw(st.lists(st.floats(0, 1, exclude_max=True), min_size=n, max_size=n), label="offsets")
    order = [i for i in sorted(range(n), key=lambda i: i + spread * offsets[i]) if i not in dropped]
    duplicates = data.draw(st.lists(st.sampled_from(order), max_size=8), label="duplicates")
    delivered = [chunks[i] for i in order]
    for i in duplicates:
        # After the chunk's first delivery in the list as it now stands (earlier insertions shift
        # it): a copy placed before it would be reordering beyond the horizon, not duplication.
        first = next(p for p, c in enumerate(delivered) if c is chunks[i])
        delivered.insert(data.draw(st.integers(first + 1, len(delivered))), chunks[i])

    event(f"{len(dropped)} lost, {len(duplicates)} duplicated, spread {int(spread)}")
    out, buffer = _run(delivered)

    expected = _expected_outcome(n, dropped)
    got = {}
    for o in out:
        for k in [o.index] if isinstance(o, Window) else o.indices:
            assert k not in got, f"window {k} decided twice"
            got[k] = "window" if isinstance(o, Window) else o.reason.value
    assert got == expected
    _assert_slices(_windows(out), signal)
    assert buffer.stats.duplicates == len(duplicates)
    assert buffer.stats.late == 0
    assert buffer.stats.lost_chunks == len({j for j in dropped if j < max(order)})
