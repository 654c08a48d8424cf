"""The replay feed without Kafka: bed assignment, continuity, pacing order, limits, bad records."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.stream.ingest.replay import ReplayStats, feed, patient_id_for

T0_US = 1_800_000_000_000_000


@pytest.fixture(scope="module")
def three_records(ecg_data_dir):
    folder = ecg_data_dir / "ptbxl" / "records500" / "00000"
    return [folder / f"0000{i}_hr.hea" for i in (1, 2, 3)]


def _by_bed(chunks):
    beds = defaultdict(list)
    for _, chunk in chunks:
        beds[chunk.patient_id].append(chunk)
    return beds


def test_beds_take_recordings_in_turn_and_play_them_continuously(three_records):
    stats = ReplayStats()
    out = list(feed(three_records, beds=2, chunk_s=1.0, start_us=T0_US, stats=stats))

    assert stats.records == 3 and stats.beds == 2 and stats.records_failed == 0
    assert stats.recordings == {"bed-0": ["00001_hr", "00003_hr"], "bed-1": ["00002_hr"]}
    beds = _by_bed(out)
    assert [len(beds["bed-0"]), len(beds["bed-1"])] == [20, 10]  # 10-s records, 1-s chunks
    for patient, chunks in beds.items():
        assert [c.sequence for c in chunks] == list(range(len(chunks)))
        # Each chunk starts where the one before ended, across the change of recording.
        assert all(b.acquired_at_us == a.end_us for a, b in zip(chunks, chunks[1:]))
        assert {c.device_id for c in chunks} == {f"monitor-{patient[-1]}"}
    # Bed 1 is staggered half a chunk after bed 0.
    assert beds["bed-0"][0].acquired_at_us == T0_US and beds["bed-1"][0].acquired_at_us == T0_US + 500_000


def test_chunks_come_in_due_order_and_are_due_when_their_last_sample_is_in(three_records):
    out = list(feed(three_records, beds=2, chunk_s=0.5, start_us=T0_US))
    dues = [due for due, _ in out]
    assert dues == sorted(dues)
    assert all(due == pytest.approx((chunk.end_us - T0_US) / 1e6) for due, chunk in out)


def test_reassembled_bed_feed_is_the_recordings_in_order(three_records):
    beds = _by_bed(feed(three_records, beds=2, chunk_s=0.3, start_us=T0_US))
    expected = np.concatenate([read_ecg(three_records[0]).samples, read_ecg(three_records[2]).samples], axis=1)
    got = np.concatenate([c.to_ecg().samples for c in beds["bed-0"]], axis=1)
    assert got.tobytes() == expected.tobytes()
    # 0.3 s at 500 Hz: 150-sample chunks, the last of each 5000-sample record 50 samples.
    assert [c.n_samples for c in beds["bed-1"]][-2:] == [150, 50]


def test_duration_limits_each_beds_signal_time(three_records):
    out = list(feed(three_records, beds=3, chunk_s=1.0, duration_s=2.25, start_us=T0_US))
    for chunks in _by_bed(out).values():
        assert sum(c.n_samples for c in chunks) == round(2.25 * 500)
        assert [c.n_samples for c in chunks] == [500, 500, 125]


def test_max_records_and_loop(three_records):
    stats = ReplayStats()
    out = list(feed(three_records, beds=1, loop=True, max_records=5, start_us=T0_US, stats=stats))
    assert stats.records == 5 and len(out) == 50
    assert stats.recordings["bed-0"] == ["00001_hr", "00002_hr", "00003_hr", "00001_hr", "00002_hr"]


def _chunk_bytes(out):
    return [(due, c.patient_id, c.sequence, c.acquired_at_us, c.samples.tobytes()) for due, c in out]


@pytest.mark.parametrize("cache_bytes", [None, 130_000])
def test_a_loop_reads_each_recording_once_while_it_fits_and_sends_the_same_chunks(monkeypatch, three_records, cache_bytes):
    import hfrisk.stream.ingest.replay as replay_module

    def looped():
        stats = ReplayStats()
        out = list(feed(three_records, beds=2, loop=True, max_records=9, start_us=T0_US, stats=stats))
        return out, stats

    default = replay_module.LOOP_CACHE_BYTES
    monkeypatch.setattr(replay_module, "LOOP_CACHE_BYTES", 0)
    uncached, uncached_stats = looped()
    reads = []
    monkeypatch.setattr(replay_module, "read_ecg", lambda path: reads.append(path.name) or read_ecg(path))
    # 130 kB: room for one 10-s record (120 kB of int16 counts).
    monkeypatch.setattr(replay_module, "LOOP_CACHE_BYTES", default if cache_bytes is None else cache_bytes)
    cached, stats = looped()

    assert _chunk_bytes(cached) == _chunk_bytes(uncached)
    assert stats.recordings == uncached_stats.recordings and stats.records == 9
    if cache_bytes is None:
        assert reads == ["00001_hr.hea", "00002_hr.hea", "00003_hr.hea"]
    else:  # only the first is kept: the others are read again on each pass
        assert reads == ["00001_hr.hea", "00002_hr.hea", "00003_hr.hea"] + ["00002_hr.hea", "00003_hr.hea"] * 2


def test_unreadable_recordings_are_skipped_and_counted(tmp_path, three_records):
    broken = tmp_path / "broken.hea"
    broken.write_text("this is not a WFDB header\n")
    stats = ReplayStats()
    paths = [three_records[0], tmp_path / "missing.hea", broken, three_records[1]]
    out = list(feed(paths, beds=1, start_us=T0_US, stats=stats))
    assert stats.records == 2 and stats.records_failed == 2 and len(out) == 20
    assert [path for path, _ in stats.failures] == [str(tmp_path / "missing.hea"), str(broken)]
    assert all("[unreadable]" in why for _, why in stats.failures)


def test_a_loop_over_nothing_readable_ends(tmp_path):
    stats = ReplayStats()
    assert list(feed([tmp_path / "missing.hea"], loop=True, stats=stats)) == []
    assert stats.records_failed == 1


def test_more_beds_than_recordings_leaves_the_rest_empty(three_records):
    stats = ReplayStats()
    out = list(feed(three_records[:1], beds=4, start_us=T0_US, stats=stats))
    assert stats.beds == 1 and {c.patient_id for _, c in out} == {"bed-0"}


def test_pseudonymous_ids_are_stable_per_salt():
    assert patient_id_for(3) == "bed-3"
    assert patient_id_for(3, salt="ward-7") == patient_id_for(3, salt="ward-7")
    assert patient_id_for(3, salt="ward-7") != patient_id_for(3, salt="ward-8")
    assert patient_id_for(3, salt="ward-7").startswith("pt-") and "bed" not in patient_id_for(3, salt="ward-7")


@pytest.mark.parametrize("kwargs", [dict(beds=0), dict(chunk_s=0), dict(duration_s=0)])
def test_bad_arguments_are_refused(kwargs, three_records):
    with pytest.raises(ValueError):
        list(feed(three_records, **kwargs))


def test_stagger_spreads_the_beds_starts_over_the_given_span(three_records):
    """With the worker's hop as the stagger, beds start evenly over 5 s (as a ward's monitors were
    attached at different times), so their windows fall due spread over the hop, not in one burst."""
    out = list(feed(three_records, beds=3, chunk_s=1.0, start_us=T0_US, stagger_s=5.0))
    starts = sorted(chunks[0].acquired_at_us - T0_US for chunks in _by_bed(out).values())
    assert starts == [0, 1_666_667, 3_333_334]  # i x round(5 s / 3)
    dues = [due for due, _ in out]
    assert dues == sorted(dues)
    with pytest.raises(ValueError, match="stagger_s"):
        next(feed(three_records, beds=2, stagger_s=-1.0))


class _RecordingProducer:
    """Stands in for kafka-python's producer: keeps its settings and what it was sent."""

    made: list["_RecordingProducer"] = []

    def __init__(self, **settings):
        self.settings, self.sent = settings, []
        _RecordingProducer.made.append(self)

    def send(self, topic, key, value):
        self.sent.append((topic, key))
        return self

    def add_errback(self, _callback):
        return self

    def flush(self):
        pass

    def close(self, timeout=None):
        pass


@pytest.mark.parametrize(("env", "argument", "expected"), [(None, None, 20), ("150", None, 150), ("150", 0, 0)])
def test_the_producers_linger_comes_from_the_argument_else_the_settings(monkeypatch, three_records, env, argument,
                                                                        expected):
    """``linger_ms`` (``hfrisk replay --linger-ms``) over ``HFRISK_KAFKA__REPLAY_LINGER_MS`` over 20 ms;
    whatever the linger, every chunk is sent."""
    from hfrisk.core.config import get_settings
    from hfrisk.stream.ingest import replay as replay_module

    _RecordingProducer.made.clear()
    monkeypatch.setattr(replay_module, "KafkaProducer", _RecordingProducer)
    if env is not None:
        monkeypatch.setenv("HFRISK_KAFKA__REPLAY_LINGER_MS", env)
    get_settings.cache_clear()
    try:
        stats = replay_module.replay(three_records, "127.0.0.1:9", "t", beds=2, realtime=False, linger_ms=argument,
                                     progress=False)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    (producer,) = _RecordingProducer.made
    assert producer.settings["linger_ms"] == stats.linger_ms == expected  # what ran, as the stats record it
    assert len(producer.sent) == stats.chunks == 30  # three 10-s records in 1-s chunks


def test_a_negative_linger_setting_is_refused(monkeypatch):
    from pydantic import ValidationError

    from hfrisk.core.config import KafkaSettings

    with pytest.raises(ValidationError):
        KafkaSettings(replay_linger_ms=-1)
