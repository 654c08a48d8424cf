"""The worker's batch logic without a broker, Redis or Triton: real PTB-XL chunks, real windowing
and real preprocessing (in a thread), with in-memory stand-ins for the sink, the buffer store,
the publisher and the model.

What is checked: windows of several patients share one model call; a message is acknowledged
only after its windows are written and the buffers saved; Triton and Redis outages hold the batch
instead of losing or dead-lettering it; every class of bad input becomes a dead letter with its
reason and original bytes while good chunks in between are scored; a restarted worker restores
the saved buffers and re-creates exactly the same windows; the metrics carry the agreed names.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import defaultdict
from pathlib import Path

import fastavro
import numpy as np
import pytest
from prometheus_client import generate_latest

from hfrisk.model.contract.card import default_card
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.serving.client import InferenceError, ServerNotReady
from hfrisk.stream.alerts.policy import AlertPolicy, AlertState
from hfrisk.stream.messages.dead_letter import DeadLetter, value_limit
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.stream.sinks import WriteOutcome
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import HEADER_BYTES, encode_chunk, load_schema, message_key
from hfrisk.core.retries import Backoff
from hfrisk.stream.scoring.batch import AsyncTritonScorer, InferenceRejected, Preprocessor
from hfrisk.stream.windowing import PatientBuffer, Window, WindowAssembler
from hfrisk.stream.worker.pipeline import StreamWorker, WorkerOptions
from hfrisk.stream.worker.records import BatchAborted, BatchFailed, ChunkRecord
from tests.stream.malformed import tamper

RECORDS = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500"
CARD = default_card()
TOPIC = "ecg.chunks"
START_US = 1_700_000_000_000_000
# Small enough that an 8-s chunk (96 kB) is oversized, large enough for 1-s chunks (12 kB).
MAX_BYTES = 64 * 1024


# -- input ---------------------------------------------------------------------------------------


def good_chunks(beds: int = 2, records: int = 4, salt: str | None = None) -> list:
    """Chunks as monitors would send them: 1-s chunks of PTB-XL records, beds interleaved."""
    return [chunk for _, chunk in feed([RECORDS], beds=beds, max_records=records, start_us=START_US, salt=salt)]


def bad_messages(template: bytes, patient_id: str, oversized_chunk) -> dict[str, tuple[bytes, bytes, str]]:
    """One message per class of bad input: name -> (key, value, expected dead-letter reason).

    ``template`` is a valid 12-lead int16 chunk of ``patient_id``; ``oversized_chunk`` a valid
    chunk that encodes to more than ``MAX_BYTES``.
    """
    key = message_key(patient_id)
    n_leads, n = 12, 500
    nan_samples = np.full((n_leads, n), np.nan, "<f4").tobytes()
    leads = list(fastavro.schemaless_reader(io.BytesIO(template[HEADER_BYTES:]), load_schema(), None)["lead_names"])
    leads[3] = "Q7"
    return {
        "undecodable": (key, b"\x00\x00\x00\x00\x17not an ecg chunk at all", "bad_message"),
        "truncated": (key, template[: len(template) // 2], "bad_message"),
        "schema_violation": (key, tamper(template, n_samples=n + 1), "bad_message"),
        "nan": (key, tamper(template, sample_dtype="FLOAT32", samples=nan_samples, gains=[1.0] * n_leads,
                            baselines=[0] * n_leads, units=["mV"] * n_leads), "non_finite"),
        "unknown_lead": (key, tamper(template, lead_names=leads), "unknown_lead"),
        "absurd_rate": (key, tamper(template, fs_hz=5e6), "bad_sampling_rate"),
        "oversized": (key, encode_chunk(oversized_chunk, max_bytes=10 * MAX_BYTES), "oversized"),
        "key_mismatch": (message_key("someone-else"), template, "key_mismatch"),
    }


def records_of(messages: list[tuple[bytes | None, bytes]], acks: list | None = None, first_offset: int = 0) -> list:
    out = []
    for i, (key, value) in enumerate(messages):
        offset = first_offset + i

        async def ack(offset=offset) -> None:
            if acks is not None:
                acks.append(offset)

        out.append(ChunkRecord(value=value, key=key, topic=TOPIC, partition=0, offset=offset,
                               timestamp_ms=1_000 + offset, ack=ack))
    return out


# -- stand-ins -----------------------------------------------------------------------------------


class MemorySink:
    """The sink's contract in memory: one write per window id, alert policy applied in order."""

    def __init__(self, policy: AlertPolicy | None = None, fail_after: int | None = None):
        self.windows: dict[tuple[str, str], object] = {}
        self.events: dict[tuple[str, str], tuple] = {}
        self.gaps: list = []
        self.order: list[tuple[str, str]] = []
        self.policy = policy or AlertPolicy(threshold=10.0, clear_threshold=9.0, min_windows=2)
        self.states: dict[str, AlertState] = defaultdict(AlertState)
        self.fail_after = fail_after

    def write_window_result(self, result) -> WriteOutcome:
        if self.fail_after is not None and len(self.order) >= self.fail_after:
            self.fail_after = None  # one outage, then Redis is back
            raise ConnectionError("redis went away")
        key = (result.patient_id, result.window_id)
        if key in self.windows:
            return WriteOutcome(result.window_id, duplicate=True, events=self.events[key])
        state, event = self.policy.observe(
            self.states[result.patient_id], patient_id=result.patient_id, window_id=result.window_id,
            window_start_us=result.window_start_us, log_risk=result.log_risk, fit_to_score=result.fit_to_score,
        )
        self.states[result.patient_id] = state
        self.windows[key] = result
        self.events[key] = (event,) if event else ()
        self.order.append(key)
        return WriteOutcome(result.window_id, duplicate=False, events=self.events[key])

    def write_window_results(self, results):
        for result in results:
            yield self.write_window_result(result)

    def write_skipped(self, skipped) -> bool:
        if skipped in self.gaps:
            return False
        self.gaps.append(skipped)
        return True


class MemoryStore:
    def __init__(self):
        self.saved: dict[str, bytes] = {}
        self.saves = 0

    def load_many(self, patient_ids):
        return {pid: self.saved[pid] for pid in patient_ids if pid in self.saved}

    def save_many(self, states):
        self.saves += 1
        self.saved.update(states)


class MemoryPublisher:
    def __init__(self, failures: int = 0):
        self.sent: list = []
        self.failures = failures

    async def publish(self, messages):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("kafka went away")
        self.sent.extend(messages)

    def of(self, role: str) -> list:
        return [m for m in self.sent if m.role == role]


def reference_risk(x: np.ndarray) -> np.ndarray:
    """A deterministic stand-in model: any function of the input will do for plumbing checks."""
    return x.reshape(len(x), -1).astype(np.float64).std(axis=1, keepdims=True).astype(np.float32) + np.float32(
        x[:, 1, 300:310].mean(axis=1, keepdims=True)
    )


class FakeScorer:
    model_version = "test"

    def __init__(self):
        self.calls: list[int] = []

    async def infer(self, x):
        self.calls.append(len(x))
        n = len(x)
        return {
            "log_risk": reference_risk(x),
            "lead_attention": np.full((n, 12), 1 / 12, np.float32),
            "temporal_attention": np.full((n, 12, 19), 1 / 19, np.float32),
        }

    async def close(self):
        pass


class FakeClient:
    """RiskClient's surface: raises ``errors`` in turn, then answers like FakeScorer."""

    model_version = "7"  # pinned, as with RiskClient(model_version="7"): no metadata lookup

    def __init__(self, errors=()):
        self.errors = list(errors)
        self.calls = 0

    async def infer(self, x):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return await FakeScorer().infer(x)

    async def close(self):
        pass


async def no_sleep(_seconds: float) -> None:
    return None


def triton_down_scorer() -> tuple[AsyncTritonScorer, asyncio.Event]:
    """A scorer whose Triton stays down: every batch that reaches it waits, retrying every 10 ms.
    The event is set once a call has failed (the outage counted) and the scorer holds its batch."""
    holding = asyncio.Event()

    async def sleep(_s):
        holding.set()
        await asyncio.sleep(0.01)

    return AsyncTritonScorer(FakeClient([ServerNotReady("down")] * 10_000), sleep=sleep), holding


@pytest.fixture(scope="module")
def preprocessor():
    pre = Preprocessor(CARD, workers=0)
    yield pre
    pre.close()


def make_worker(preprocessor, *, sink=None, store=None, publisher=None, scorer=None, metrics=None,
                checkpoint_s: float = 0.0, idle_patient_s: float = 0.0, clock=None) -> StreamWorker:
    return StreamWorker(
        card=CARD,
        assembler=WindowAssembler(window_s=CARD.window.window_s, hop_s=5.0, reorder_s=5.0),
        preprocessor=preprocessor,
        scorer=scorer or FakeScorer(),
        sink=sink or MemorySink(),
        store=store or MemoryStore(),
        publisher=publisher or MemoryPublisher(),
        metrics=metrics or StreamMetrics(),
        options=WorkerOptions(checkpoint_interval_s=checkpoint_s, backoff=Backoff(0.0, 0.0),
                              max_message_bytes=MAX_BYTES, idle_patient_s=idle_patient_s),
        sleep=no_sleep,
        **({"clock": clock} if clock is not None else {}),
    )


def offline_windows(chunks) -> list[Window]:
    assembler = WindowAssembler(window_s=CARD.window.window_s, hop_s=5.0, reorder_s=5.0)
    return [o for c in chunks for o in assembler.feed(c) if isinstance(o, Window)]


def run_batches(worker: StreamWorker, records: list, size: int) -> list:
    async def go():
        reports = [await worker.handle(records[i : i + size]) for i in range(0, len(records), size)]
        await worker.checkpoint()
        return reports

    return asyncio.run(go())


@pytest.fixture(scope="module")
def chunks():
    return good_chunks()


@pytest.fixture(scope="module")
def expected(chunks):
    """Window id -> log-risk as offline scoring gives it (prepare + the same stand-in model)."""
    out = {}
    for window in offline_windows(chunks):
        item = prepare(window.ecg, CARD)
        risk = float(reference_risk(item.x[None])[0, 0]) if item.quality.fit_to_score else None
        out[(window.patient_id, window.window_id)] = risk
    return out


# -- tests ---------------------------------------------------------------------------------------


def test_windows_of_several_patients_share_one_model_call_and_match_offline_scoring(preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    sink, scorer, publisher = MemorySink(), FakeScorer(), MemoryPublisher()
    worker = make_worker(preprocessor, sink=sink, scorer=scorer, publisher=publisher)
    run_batches(worker, records_of(messages), size=len(messages))

    assert set(sink.windows) == set(expected) and len(sink.order) == len(expected)
    assert len({pid for pid, _ in expected}) == 2
    # One batch held both beds' windows; the fit ones went to the model together.
    n_fit = sum(risk is not None for risk in expected.values())
    assert scorer.calls == [n_fit] and n_fit > 2
    for key, risk in expected.items():
        result = sink.windows[key]
        if risk is None:
            assert not result.scored
        else:
            assert result.scored and result.log_risk == pytest.approx(risk, abs=1e-6)
    scores = publisher.of("scores")
    assert len(scores) == len(expected) and not publisher.of("dead_letter")


def test_messages_are_acknowledged_only_after_their_windows_are_written_and_buffers_saved(preprocessor, chunks):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    acks: list[int] = []
    sink, store = MemorySink(), MemoryStore()
    worker = make_worker(preprocessor, sink=sink, store=store, checkpoint_s=3600.0)
    records = records_of(messages, acks)
    # What had been written when each offset was acknowledged.
    seen_at_ack: dict[int, tuple[int, int]] = {}
    for r in records:
        inner = r.ack

        async def ack(inner=inner, offset=r.offset):
            seen_at_ack[offset] = (len(sink.order), store.saves)
            await inner()

        object.__setattr__(r, "ack", ack)

    async def go():
        for i in range(0, len(records), 8):
            await worker.handle(records[i : i + 8])
        assert acks == [] and worker.pending == len(records), "nothing is acknowledged before a checkpoint"
        await worker.tick()  # not due yet (interval 1 h)
        assert acks == []
        return await worker.checkpoint()

    assert asyncio.run(go()) == len(records)
    assert acks == list(range(len(records)))
    n_windows = len(sink.order)
    assert all(written == n_windows and saves == 1 for written, saves in seen_at_ack.values())
    assert set(store.saved) == {c.patient_id for c in chunks}


def test_triton_outage_holds_the_batch_and_nothing_is_lost_or_dead_lettered(preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    client = FakeClient([ServerNotReady("down"), InferenceError("deadline", "StatusCode.DEADLINE_EXCEEDED"),
                         ServerNotReady("still down")])
    delays: list[float] = []

    async def sleep(s):
        delays.append(s)

    scorer = AsyncTritonScorer(client, backoff=Backoff(0.1, 1.0), sleep=sleep)
    sink, publisher, acks = MemorySink(), MemoryPublisher(), []
    worker = make_worker(preprocessor, sink=sink, publisher=publisher, scorer=scorer)
    run_batches(worker, records_of(messages, acks), size=len(messages))

    assert client.calls == 4 and delays == [0.1, 0.2, 0.4] and scorer.outages == 1
    assert set(sink.windows) == set(expected) and not publisher.of("dead_letter")
    assert acks == list(range(len(messages)))


def test_a_request_triton_rejects_dead_letters_only_the_window_at_fault(preprocessor, chunks, expected):
    class Picky(FakeScorer):
        async def infer(self, x):
            self.calls.append(len(x))
            bad = np.isclose(reference_risk(x)[:, 0], poisoned)
            if bad.any():
                raise InferenceRejected("INVALID_ARGUMENT: bad tensor")
            return await super().infer(x)

    poisoned = next(r for r in expected.values() if r is not None)
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    sink, publisher, metrics = MemorySink(), MemoryPublisher(), StreamMetrics()
    worker = make_worker(preprocessor, sink=sink, publisher=publisher, scorer=Picky(), metrics=metrics)
    run_batches(worker, records_of(messages), size=len(messages))

    letters = [DeadLetter.from_record(m.key, m.value, m.headers) for m in publisher.of("dead_letter")]
    assert [(d.kind, d.reason) for d in letters] == [("window", "inference_rejected")]
    assert letters[0].sequences and letters[0].value == b""
    assert len(sink.windows) == len(expected) - 1
    assert metrics.value("hfrisk_windows_total", outcome="dead_letter") == 1


def test_bad_input_is_dead_lettered_with_its_reason_and_bytes_while_good_chunks_are_scored(preprocessor):
    good = good_chunks(beds=1, records=2)
    pid = good[0].patient_id
    long_chunk = next(c for _, c in feed([RECORDS], beds=1, chunk_s=8.0, max_records=1, start_us=START_US))
    template = encode_chunk(good[0], max_bytes=MAX_BYTES)
    bad = bad_messages(template, pid, long_chunk)
    assert len(bad["oversized"][1]) > MAX_BYTES

    # Interleave: a bad message after every second good chunk, on the same key (same partition).
    messages, bad_offsets = [], {}
    bad_iter = iter(bad.items())
    for i, chunk in enumerate(good):
        messages.append((chunk.key, encode_chunk(chunk, max_bytes=MAX_BYTES)))
        if i % 2 == 1:
            item = next(bad_iter, None)
            if item:
                name, (key, value, reason) = item
                bad_offsets[len(messages)] = (name, key, value, reason)
                messages.append((key, value))
    assert len(bad_offsets) == len(bad)

    sink, publisher, metrics = MemorySink(), MemoryPublisher(), StreamMetrics()
    worker = make_worker(preprocessor, sink=sink, publisher=publisher, metrics=metrics)
    run_batches(worker, records_of(messages), size=7)

    sent = publisher.of("dead_letter")
    letters = {d.offset: d for d in (DeadLetter.from_record(m.key, m.value, m.headers) for m in sent)}
    assert set(letters) == set(bad_offsets)
    for offset, (name, key, value, reason) in bad_offsets.items():
        letter = letters[offset]
        assert letter.reason == reason, name
        assert letter.key == key and letter.topic == TOPIC and letter.partition == 0 and letter.kind == "chunk"
        assert letter.original_size == len(value) and letter.timestamp_ms == 1_000 + offset
        if name == "oversized":
            assert letter.truncated and letter.value == value[: value_limit(MAX_BYTES)]
        else:
            assert not letter.truncated and letter.value == value
    # Every window of the good chunks is there, as if the bad ones had never been sent.
    assert set(sink.windows) == {(w.patient_id, w.window_id) for w in offline_windows(good)}
    assert metrics.value("hfrisk_chunks_total", outcome="dead_letter") == len(bad)
    assert metrics.value("hfrisk_chunks_total", outcome="accepted") == len(good)
    for _, (_, _, _, reason) in bad_offsets.items():
        assert metrics.value("hfrisk_dead_letters_total", reason=reason) >= 1


def test_a_restarted_worker_restores_buffers_and_recreates_identical_windows(preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    records = records_of(messages)
    cut = 23  # mid-window for both beds
    sink, store = MemorySink(), MemoryStore()
    first = make_worker(preprocessor, sink=sink, store=store)
    run_batches(first, records[:cut], size=5)  # ends with a checkpoint: offsets < cut committed
    written_before = len(sink.order)
    assert 0 < written_before < len(expected)

    # The successor starts cold; Kafka redelivers from a few messages before the commit (as after
    # a crash between checkpoint and commit), then the rest.
    metrics = StreamMetrics()
    second = make_worker(preprocessor, sink=sink, store=store, metrics=metrics)
    run_batches(second, records[cut - 6 :], size=5)

    assert set(sink.windows) == set(expected) and len(sink.order) == len(expected)
    assert metrics.value("hfrisk_chunks_total", outcome="duplicate") == 6
    for key, risk in expected.items():
        assert (sink.windows[key].log_risk is None) == (risk is None)
        if risk is not None:
            assert sink.windows[key].log_risk == pytest.approx(risk, abs=1e-6)


class CutShortStore(MemoryStore):
    """Once ``cut_after`` is set, a save stores that many patients' buffers and then fails, as a
    worker killed halfway through a checkpoint's saves leaves Redis."""

    cut_after: int | None = None

    def save_many(self, states):
        if self.cut_after is None:
            return super().save_many(states)
        self.saved.update(dict(sorted(states.items())[: self.cut_after]))
        raise RuntimeError("killed halfway through the checkpoint")


def test_a_checkpoint_cut_short_after_some_patients_still_gives_every_window_once(preprocessor, chunks, expected):
    # Buffers are saved key by key, not in one transaction: a patient whose new buffer was saved
    # meets its redelivered chunks as duplicates, one whose save was cut resumes from the last one.
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    records = records_of(messages)
    committed, cut = 13, 29
    sink, store = MemorySink(), CutShortStore()
    first = make_worker(preprocessor, sink=sink, store=store)
    run_batches(first, records[:committed], size=5)
    store.cut_after = 1
    with pytest.raises(BatchFailed):
        run_batches(first, records[committed:cut], size=5)
    first_patient = min(c.patient_id for c in chunks)
    held = {pid: PatientBuffer.from_bytes(state).next_sequence for pid, state in store.saved.items()}
    saved_ahead = sum(1 for c in chunks[committed:] if c.patient_id == first_patient and c.sequence < held[first_patient])
    # The first patient's buffer is newer than the commit, the others' are as of it.
    assert saved_ahead > 0
    assert all(c.sequence >= held[c.patient_id] for c in chunks[committed:] if c.patient_id != first_patient)

    store.cut_after = None
    metrics = StreamMetrics()
    second = make_worker(preprocessor, sink=sink, store=store, metrics=metrics)
    run_batches(second, records[committed:], size=5)  # Kafka redelivers everything after the commit

    assert set(sink.windows) == set(expected) and len(sink.order) == len(expected)
    assert metrics.value("hfrisk_chunks_total", outcome="duplicate") == saved_ahead
    for key, risk in expected.items():
        assert (sink.windows[key].log_risk is None) == (risk is None)
        if risk is not None:
            assert sink.windows[key].log_risk == pytest.approx(risk, abs=1e-6)


def test_a_truncated_saved_buffer_is_set_aside_and_that_patient_starts_afresh(preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    records = records_of(messages)
    cut = 23
    store = MemoryStore()
    run_batches(make_worker(preprocessor, store=store), records[:cut], size=5)
    saved = dict(store.saved)
    bad, good = sorted(saved)
    assert saved[bad][:4] == b"HFWB"

    def successor(states: dict[str, bytes]) -> tuple[MemorySink, MemoryStore]:
        sink, store = MemorySink(), MemoryStore()
        store.saved.update(states)
        run_batches(make_worker(preprocessor, sink=sink, store=store), records[cut - 6 :], size=5)
        return sink, store

    # Cut inside the samples: the header and metadata are whole, so only the payload check can tell.
    truncated = saved[bad][: len(saved[bad]) - 1000]
    sink, store = successor({bad: truncated, good: saved[good]})
    # The same as if nothing had been saved for that patient: a new grid from the first chunk seen.
    unsaved, _ = successor({good: saved[good]})
    assert sink.windows.keys() == unsaved.windows.keys()
    fresh = {w for p, w in sink.windows if p == bad}
    assert fresh and not fresh & {w for p, w in expected if p == bad}  # new ids, no collision with the old grid
    # The other patient resumed its saved grid: its windows are those of the uninterrupted run.
    resumed = {k for k in sink.windows if k[0] == good}
    assert resumed and resumed <= set(expected)
    # The next checkpoint replaced the bad state by a good one.
    last = max(c.sequence for c in chunks if c.patient_id == bad)
    assert PatientBuffer.from_bytes(store.saved[bad]).next_sequence == last + 1


def test_redis_and_kafka_outages_mid_batch_resume_without_losing_or_double_counting(preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    sink, publisher, metrics, acks = MemorySink(fail_after=3), MemoryPublisher(failures=2), StreamMetrics(), []
    worker = make_worker(preprocessor, sink=sink, publisher=publisher, metrics=metrics)
    run_batches(worker, records_of(messages, acks), size=len(messages))

    assert set(sink.windows) == set(expected)
    scored = sum(r is not None for r in expected.values())
    assert metrics.value("hfrisk_windows_total", outcome="scored") == scored
    assert metrics.value("hfrisk_windows_total", outcome="low_quality") == len(expected) - scored
    assert len(publisher.of("scores")) == len(expected)
    assert acks == list(range(len(messages)))


def test_alert_events_go_to_the_alerts_topic_once_per_write_and_again_on_redelivery(preprocessor, chunks, expected):
    risks = sorted(r for r in expected.values() if r is not None)
    policy = AlertPolicy(threshold=risks[0] - 1, clear_threshold=risks[0] - 2, min_windows=1)  # everyone raises
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    sink, publisher, metrics = MemorySink(policy), MemoryPublisher(), StreamMetrics()
    worker = make_worker(preprocessor, sink=sink, publisher=publisher, metrics=metrics)
    run_batches(worker, records_of(messages), size=len(messages))
    alerts = publisher.of("alerts")
    assert len(alerts) == 2 and metrics.value("hfrisk_alerts_total", kind="raised") == 2
    assert {m.key for m in alerts} == {c.key for c in chunks}

    # The same messages again (a redelivery to a fresh process): the events are re-sent, not re-counted.
    again = make_worker(preprocessor, sink=sink, publisher=publisher, metrics=metrics)
    run_batches(again, records_of(messages), size=len(messages))
    assert [m.value for m in publisher.of("alerts")[2:]] == [m.value for m in alerts]
    assert metrics.value("hfrisk_alerts_total", kind="raised") == 2


def test_metrics_are_exposed_under_the_agreed_names():
    metrics = StreamMetrics()
    metrics.consumer_lag.labels(partition="0").set(3)
    metrics.patients_active.set(2)
    metrics.triton_latency.observe(0.01)
    metrics.end_to_end_latency.observe(1.2)
    metrics.batch_size.observe(8)
    text = generate_latest(metrics.registry).decode()
    for name in [
        'hfrisk_chunks_total{outcome="accepted"} 0.0',
        'hfrisk_chunks_total{outcome="duplicate"} 0.0',
        'hfrisk_chunks_total{outcome="late"} 0.0',
        'hfrisk_chunks_total{outcome="dead_letter"} 0.0',
        'hfrisk_windows_total{outcome="scored"} 0.0',
        'hfrisk_windows_total{outcome="low_quality"} 0.0',
        'hfrisk_windows_total{outcome="skipped"} 0.0',
        'hfrisk_windows_total{outcome="dead_letter"} 0.0',
        'hfrisk_alerts_total{kind="raised"} 0.0',
        'hfrisk_alerts_total{kind="cleared"} 0.0',
        "hfrisk_triton_latency_seconds_count 1.0",
        "hfrisk_end_to_end_latency_seconds_count 1.0",
        "hfrisk_batch_size_count 1.0",
        'hfrisk_consumer_lag{partition="0"} 3.0',
        "hfrisk_patients_active 2.0",
    ]:
        assert name in text, name
    assert "# TYPE hfrisk_dead_letters_total counter" in text


def test_model_monitoring_counts_each_window_once_by_device_outcome_and_score_bin(preprocessor, chunks):
    from hfrisk.model.contract.card import load_card
    from hfrisk.stream.worker.monitoring import ModelMonitor, bin_label

    scale = load_card(Path(__file__).resolve().parents[2] / "triton_models" / "hfrisk").risk_scale
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    sink, metrics = MemorySink(), StreamMetrics()
    monitor = ModelMonitor(metrics, risk_scale=scale)
    for _ in range(2):  # the second worker is sent everything again: every window a redelivery
        worker = make_worker(preprocessor, sink=sink, metrics=metrics)
        worker.monitor = monitor
        run_batches(worker, records_of(messages), size=7)

    results = list(sink.windows.values())
    devices = {r.device_id for r in results}
    assert devices == {c.device_id for c in chunks} and len(devices) == 2
    for device in devices:
        mine = [r for r in results if r.device_id == device]
        scored = [r.log_risk for r in mine if r.scored]
        assert metrics.value("hfrisk_device_windows_total", device=device, outcome="scored") == len(scored)
        assert metrics.value("hfrisk_device_windows_total", device=device, outcome="low_quality") == \
            len(mine) - len(scored)
        by_hand = [int(np.sum(monitor.bins.edges <= s)) for s in scored]
        assert [metrics.value("hfrisk_device_score_bins_total", device=device, bin=bin_label(i))
                for i in range(monitor.bins.n_bins)] == [by_hand.count(i) for i in range(monitor.bins.n_bins)]


def test_dead_letter_headers_round_trip():
    letter = DeadLetter.for_message(b"x" * 100, key=b"bed-1", reason="bad_message", detail="no magic", topic=TOPIC,
                                    partition=3, offset=42, timestamp_ms=1234, max_message_bytes=16 * 1024 + 10)
    assert letter.truncated and letter.value == b"x" * 10 and letter.original_size == 100
    back = DeadLetter.from_record(letter.key, letter.value, letter.headers())
    assert back == letter
    window = DeadLetter.for_window(patient_id="bed-1", window_id="17-3", sequences=[5, 6], reason="missing_leads",
                                   detail="no limb leads", topic=TOPIC, partition=1, offset=9)
    assert DeadLetter.from_record(window.key, window.value, window.headers()) == window
    with pytest.raises(ValueError):
        DeadLetter.from_record(b"k", b"v", [("other", b"1")])


def test_a_batch_stuck_on_triton_is_abandoned_on_stop_without_acknowledging_or_saving_anything(preprocessor, chunks):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    acks: list[int] = []
    store = MemoryStore()
    scorer, holding = triton_down_scorer()
    worker = make_worker(preprocessor, store=store, scorer=scorer)

    async def go():
        first = records_of(messages[:14], acks)
        await worker.handle(first)  # 7 s of each bed, no window yet: done, saved and acknowledged
        stuck = asyncio.ensure_future(worker.handle(records_of(messages[14:], acks, first_offset=14)))
        await asyncio.wait_for(holding.wait(), timeout=30.0)
        assert not stuck.done() and scorer.outages == 1
        assert await worker.drain(grace_s=60.0) is False  # still within the grace period
        assert await worker.drain(grace_s=0.0) is True
        with pytest.raises(BatchAborted):
            await stuck
        assert await worker.checkpoint() == 0  # nothing may be saved or acknowledged any more
        with pytest.raises(BatchAborted):
            await worker.handle(records_of(messages[:1], acks))

    asyncio.run(go())
    assert acks == list(range(14))
    saved = {pid: PatientBuffer.from_bytes(state).next_sequence for pid, state in store.saved.items()}
    assert saved == {c.patient_id: 7 for c in chunks}  # as of the first batch, not the abandoned one


# -- one batch at a time ------------------------------------------------------------------------


class CountingPreprocessor:
    """The real preprocessor, noting each call; ``second`` is set when a second batch's windows
    reach preprocessing."""

    def __init__(self, inner: Preprocessor):
        self.inner = inner
        self.calls = 0
        self.second = threading.Event()

    def parts(self, ecgs):
        self.calls += bool(ecgs)
        if self.calls >= 2:
            self.second.set()
        return self.inner.parts(ecgs)


class GatedSink(MemorySink):
    """Its first window write (in the worker's write thread) waits up to ``wait_s`` for ``gate``;
    ``opened`` says whether the gate opened during that write."""

    def __init__(self, gate: threading.Event, wait_s: float):
        super().__init__()
        self.gate, self.wait_s = gate, wait_s
        self.opened: bool | None = None

    def write_window_result(self, result):
        if self.opened is None:
            self.opened = self.gate.wait(self.wait_s)
        return super().write_window_result(result)


def handle_concurrently(worker: StreamWorker, records: list, size: int) -> None:
    """Batch after batch handed over at once, as if by several callers: the worker still takes
    them one at a time."""

    async def go():
        await asyncio.gather(*(worker.handle(records[i : i + size]) for i in range(0, len(records), size)))
        await worker.checkpoint()

    asyncio.run(go())


def test_the_next_batch_waits_until_the_last_one_is_written(preprocessor, chunks, expected):
    # Batches of 5 s per bed: from the second on, each completes one window per bed.
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    counting = CountingPreprocessor(preprocessor)
    # One batch after the other: the first write cannot see the next batch reach preprocessing.
    sink = GatedSink(counting.second, wait_s=0.3)
    worker = make_worker(counting, sink=sink, checkpoint_s=3600.0)
    acks: list[int] = []
    handle_concurrently(worker, records_of(messages, acks), size=10)

    assert sink.opened is False
    assert set(sink.windows) == set(expected) and len(sink.order) == len(expected)
    assert acks == list(range(len(messages)))


class UnevenScorer(FakeScorer):
    """Every other call is slow: a batch handled concurrently with the next would finish after it."""

    started = 0

    async def infer(self, x):
        self.started += 1
        await asyncio.sleep(0.04 if self.started % 2 else 0.0)
        return await super().infer(x)


class WrittenOnlyStore(MemoryStore):
    """Notes every save of a buffer holding a chunk whose window ``sink`` has not written yet: a
    restart from that state would skip the window for good."""

    def __init__(self, sink: MemorySink, offline: list[Window]):
        super().__init__()
        self.sink, self.offline = sink, offline
        self.violations: list[str] = []

    def save_many(self, states):
        for pid, state in states.items():
            held = PatientBuffer.from_bytes(state).next_sequence
            for w in self.offline:
                if w.patient_id == pid and max(w.sequences) < held and (pid, w.window_id) not in self.sink.windows:
                    self.violations.append(f"{pid} {w.window_id} saved before it was written")
        super().save_many(states)


def test_batches_write_in_order_and_checkpoints_never_save_unwritten_chunks(preprocessor):
    chunks = good_chunks(beds=3, records=12, salt="order")
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    offline = offline_windows(chunks)
    sink = MemorySink()
    store = WrittenOnlyStore(sink, offline)
    worker = make_worker(preprocessor, sink=sink, store=store, scorer=UnevenScorer(), checkpoint_s=0.03)

    async def go():
        batches = [worker.handle(records_of(messages)[i : i + 15]) for i in range(0, len(messages), 15)]
        ticking = True

        async def ticker():  # the checkpoint timer, firing while batches run
            while ticking:
                await worker.tick()
                await asyncio.sleep(0.005)

        timer = asyncio.ensure_future(ticker())
        await asyncio.gather(*batches)  # 5 s per bed: every batch completes windows
        ticking = False
        await timer
        await worker.checkpoint()

    asyncio.run(go())
    assert sink.order == [(w.patient_id, w.window_id) for w in offline]  # the order of the feed
    assert not store.violations
    assert store.saves >= 2  # besides the final one, a checkpoint came due between batches


# -- submit: a batch scored while the last one is written -----------------------------------------


def test_a_submitted_batch_is_scored_while_the_last_one_is_still_being_written(preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    counting = CountingPreprocessor(preprocessor)
    # The first write (batch 2's tail) waits for batch 3 to reach preprocessing: only an overlap opens it.
    sink = GatedSink(counting.second, wait_s=10.0)
    acks: list[int] = []
    worker = make_worker(counting, sink=sink, checkpoint_s=3600.0)
    records = records_of(messages, acks)

    async def go():
        for i in range(0, len(records), 10):
            await worker.submit(records[i : i + 10])
        await worker.checkpoint()

    asyncio.run(go())
    assert sink.opened is True
    assert set(sink.windows) == set(expected) and len(sink.order) == len(expected)
    assert acks == list(range(len(messages)))


def test_submitted_batches_write_in_order_and_checkpoints_never_save_unwritten_chunks(preprocessor):
    chunks = good_chunks(beds=3, records=30, salt="order-submit")  # a window per bed per batch of 15
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    offline = offline_windows(chunks)
    sink = MemorySink()

    class SlowWrites(MemorySink):
        def write_window_result(self, result):
            threading.Event().wait(0.05)  # a tail still running when the next batch and the timer come
            return sink.write_window_result(result)

    store = WrittenOnlyStore(sink, offline)
    worker = make_worker(preprocessor, sink=SlowWrites(), store=store, scorer=UnevenScorer(), checkpoint_s=0.03)

    async def go():
        ticking = True

        async def ticker():
            while ticking:
                await worker.tick()
                await asyncio.sleep(0.005)

        timer = asyncio.ensure_future(ticker())
        for i in range(0, len(messages), 15):
            await worker.submit(records_of(messages)[i : i + 15])
        ticking = False
        await timer
        await worker.checkpoint()

    asyncio.run(go())
    assert sink.order == [(w.patient_id, w.window_id) for w in offline]
    assert not store.violations
    assert store.saves >= 2


def test_a_tail_stuck_on_redis_is_abandoned_on_stop_without_acknowledging(preprocessor, chunks):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    release = threading.Event()

    class HangingSink(MemorySink):
        def write_window_result(self, result):
            release.wait(30.0)  # Redis not answering
            return super().write_window_result(result)

    acks: list[int] = []
    store = MemoryStore()
    worker = make_worker(preprocessor, sink=HangingSink(), store=store, checkpoint_s=3600.0)

    async def go():
        first = records_of(messages[:14], acks)
        await worker.handle(first)  # no window yet: written, and acknowledged by the next checkpoint
        await worker.checkpoint()
        await worker.submit(records_of(messages[14:], acks, first_offset=14))  # its tail hangs
        await worker.tick(force=True)  # the timer does not wait for the tail
        assert await worker.drain(grace_s=60.0) is False
        assert await worker.drain(grace_s=0.0) is True
        assert await worker.checkpoint() == 0
        with pytest.raises(BatchAborted):
            await worker.submit(records_of(messages[:1], acks))

    try:
        asyncio.run(go())
    finally:
        release.set()
    assert acks == list(range(14))


@pytest.mark.parametrize("failing", ["model call", "tail's write"])
def test_a_failed_batch_stops_the_worker_without_saving_or_acknowledging_anything_more(preprocessor, chunks, failing):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]

    class BuggyScorer(FakeScorer):
        async def infer(self, x):
            if self.calls:
                raise RuntimeError("a bug in the second model call")
            return await super().infer(x)

    class BrokenSink(MemorySink):
        def write_window_result(self, result):
            raise RuntimeError("a bug in the sink")

    in_tail = failing == "tail's write"
    acks: list[int] = []
    store, sink = MemoryStore(), BrokenSink() if in_tail else MemorySink()
    worker = make_worker(preprocessor, sink=sink, store=store, scorer=FakeScorer() if in_tail else BuggyScorer(),
                         checkpoint_s=3600.0)
    records = records_of(messages, acks)
    call = worker.submit if in_tail else worker.handle  # a tail's failure reaches the next submit

    async def go():
        with pytest.raises(BatchFailed) as failed:
            for i in range(0, len(records), 10):
                await call(records[i : i + 10])
        assert ("a bug in the sink" if in_tail else "second model call") in str(failed.value.__cause__)
        with pytest.raises(BatchFailed):
            await worker.tick(force=True)  # an idle worker learns of the failure from its timer
        with pytest.raises(BatchFailed):
            await call(records[:1])
        assert await worker.checkpoint() == 0

    asyncio.run(go())
    assert acks == [] and store.saves == 0
    assert len(sink.order) == (0 if in_tail else 2)  # the batch before a failed model call was written


def test_worker_settings_come_from_the_settings_and_their_environment(monkeypatch, preprocessor):
    from pydantic import ValidationError

    from hfrisk.core.config import Settings

    monkeypatch.setenv("HFRISK_STREAM__CHECKPOINT_INTERVAL_S", "0.75")
    monkeypatch.setenv("HFRISK_STREAM__RETRY_MAX_S", "5")
    settings = Settings()
    worker = StreamWorker.from_settings(settings, card=CARD, preprocessor=preprocessor, scorer=FakeScorer(),
                                        publisher=MemoryPublisher())
    assert worker.options.checkpoint_interval_s == 0.75
    assert worker.options.backoff == Backoff(first_s=0.2, max_s=5.0)
    assert worker.options.max_message_bytes == settings.kafka.max_message_bytes
    assert worker.options.idle_patient_s == 600.0
    monkeypatch.setenv("HFRISK_STREAM__IDLE_PATIENT_S", "0.5")  # not longer than a checkpoint: refused
    with pytest.raises(ValidationError, match="idle_patient_s"):
        Settings()
    with pytest.raises(ValueError, match="idle_patient_s"):
        WorkerOptions(checkpoint_interval_s=5.0, idle_patient_s=5.0)
    monkeypatch.setenv("HFRISK_STREAM__IDLE_PATIENT_S", "0")
    assert Settings().stream.idle_patient_s == 0.0
    monkeypatch.setenv("HFRISK_STREAM__RETRY_MAX_S", "0")
    with pytest.raises(ValidationError, match="retry_max_s"):
        Settings()


def test_a_missing_or_unreadable_served_card_is_an_error_unless_the_builtin_card_is_asked_for(tmp_path):
    from hfrisk.core.config import Settings
    from hfrisk.model.contract.card import CARD_FILENAME
    from hfrisk.stream.worker.command import ModelCardMissing, load_worker_card

    settings = Settings(paths={"model_repository": tmp_path / "repository"})
    with pytest.raises(ModelCardMissing, match="--builtin-card"):
        load_worker_card(None, settings)
    assert load_worker_card(None, settings, builtin_card=True) == CARD
    with pytest.raises(ModelCardMissing, match="no model card"):
        load_worker_card(tmp_path / "nowhere.json", settings, builtin_card=True)  # a named card must exist

    served = tmp_path / "repository" / settings.paths.model_name / CARD_FILENAME
    served.parent.mkdir(parents=True)
    served.write_text("{not json")
    for builtin in (False, True):  # a served card that cannot be read is never replaced
        with pytest.raises(ModelCardMissing, match="unusable"):
            load_worker_card(None, settings, builtin_card=builtin)
    served.write_text(CARD.to_json())
    assert load_worker_card(None, settings) == CARD


def test_worker_options_override_their_settings_and_only_when_given(monkeypatch):
    from hfrisk.core.config import Settings
    from hfrisk.stream.worker.command import _override

    monkeypatch.setenv("HFRISK_STREAM__PREP_WORKERS", "3")
    monkeypatch.setenv("HFRISK_STREAM__APP_ID", "from-env")
    settings = _override(Settings(), prep_workers=0, app_id=None, noop_model=True)
    assert (settings.stream.prep_workers, settings.stream.app_id, settings.stream.noop_model) == (0, "from-env", True)
    assert settings.stream.checkpoint_interval_s == 5.0  # neither given nor set: the default
    assert _override(Settings(), idle_patient_s=30.0).stream.idle_patient_s == 30.0


def test_noop_prep_gives_a_record_for_every_window_without_a_preprocessing_pool(chunks, expected):
    """``--noop-prep`` (benchmarks only): every window fit, the model gets zeros of the card's shape,
    and records, Redis writes, publishing and checkpoints run as usual; no process is started."""
    import multiprocessing

    from hfrisk.stream.scoring.batch import NoopPreprocessor

    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    sink, store, scorer, publisher, acks = MemorySink(), MemoryStore(), FakeScorer(), MemoryPublisher(), []
    children = set(multiprocessing.active_children())
    worker = make_worker(NoopPreprocessor(CARD), sink=sink, store=store, scorer=scorer, publisher=publisher)
    run_batches(worker, records_of(messages, acks), size=len(messages))

    assert set(multiprocessing.active_children()) == children
    assert set(sink.windows) == set(expected)  # every window, fit or not under the real front end
    assert scorer.calls == [len(expected)]
    zero = float(reference_risk(np.zeros((1, len(CARD.input.leads), CARD.input.length_samples), np.float32))[0, 0])
    for result in sink.windows.values():
        assert result.scored and result.log_risk == zero and result.quality_score == 1.0
    assert len(publisher.of("scores")) == len(expected) and not publisher.of("dead_letter")
    assert store.saves and sorted(acks) == list(range(len(messages)))


def test_the_worker_command_with_noop_prep_starts_no_pool(monkeypatch):
    import faust

    import hfrisk.stream.scoring.batch as batch
    import hfrisk.stream.worker.command as command
    from hfrisk.core.config import get_settings
    from hfrisk.stream.scoring.batch import NoopPreprocessor, NoopScorer

    def no_pool(*args, **kwargs):
        raise AssertionError("--noop-prep started a preprocessing pool")

    built = {}
    from_settings = StreamWorker.from_settings.__func__

    def keep(cls, *args, **kwargs):
        built["worker"] = from_settings(cls, *args, **kwargs)
        return built["worker"]

    class NoFaust:
        def __init__(self, *args, **kwargs):
            pass

        def execute_from_commandline(self):
            return None

    monkeypatch.setattr(batch, "Preprocessor", no_pool)
    monkeypatch.setattr(StreamWorker, "from_settings", classmethod(keep))
    monkeypatch.setattr(faust, "Worker", NoFaust)
    monkeypatch.setattr(command, "exit_after_teardown", lambda timeout_s: None)
    monkeypatch.setenv("HFRISK_STREAM__NOOP_PREP", "true")
    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", "server")  # nothing to preprocess there either
    get_settings.cache_clear()
    try:
        command.worker_command(noop_model=True, builtin_card=True, create_topics=False, metrics_port=0)
    finally:
        get_settings.cache_clear()
    worker = built["worker"]
    assert isinstance(worker.preprocessor, NoopPreprocessor) and isinstance(worker.scorer, NoopScorer)


class HeldStore(MemoryStore):
    """Its saves wait (in the worker's save thread) until ``release`` is set, or fail with ``error``."""

    def __init__(self, error: Exception | None = None):
        super().__init__()
        self.release = threading.Event()
        self.started = threading.Event()
        self.error = error

    def save_many(self, states):
        self.started.set()
        if not self.release.wait(10):
            raise TimeoutError("the test never released the save")
        if self.error is not None:
            raise self.error
        super().save_many(states)


def test_a_checkpoint_saves_beside_the_next_batches_and_acknowledges_only_once_saved(preprocessor, chunks):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    acks: list[int] = []
    store, sink = HeldStore(), MemorySink()
    worker = make_worker(preprocessor, sink=sink, store=store, checkpoint_s=3600.0)
    records = records_of(messages, acks)
    half = len(records) // 2

    async def go():
        await worker.handle(records[:half])
        worker.options.checkpoint_interval_s = 0.0  # due: the next batch starts with one
        await worker.handle(records[half:])  # returns while the save is held
        assert store.started.is_set() and store.saves == 0
        assert acks == [] and worker.pending == len(records)
        revoked = asyncio.ensure_future(worker.revoke({(TOPIC, 0)}))
        await asyncio.sleep(0.2)
        assert not revoked.done(), "a revocation waits for the save in flight"
        store.release.set()
        await revoked

    asyncio.run(go())
    # The first half was saved and acknowledged; the second half's buffers and messages belonged
    # to the revoked partition and are the next owner's.
    assert acks == list(range(half)) and store.saves == 1
    assert {pid for pid, _ in sink.windows} <= set(store.saved)


def test_a_checkpoint_that_cannot_be_saved_stops_the_worker_without_acknowledging(preprocessor, chunks):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    acks: list[int] = []
    store = HeldStore(error=RuntimeError("a bug in saving"))
    store.release.set()
    worker = make_worker(preprocessor, store=store, checkpoint_s=3600.0)
    records = records_of(messages, acks)

    async def go():
        await worker.handle(records[:4])
        worker.options.checkpoint_interval_s = 0.0
        await worker.handle(records[4:8])
        with pytest.raises(BatchFailed) as failed:
            for _ in range(50):  # until the save task has failed
                await asyncio.sleep(0.01)
                await worker.handle(records[8:9])
        assert "a bug in saving" in str(failed.value.__cause__)
        assert await worker.checkpoint() == 0

    asyncio.run(go())
    assert acks == [] and store.saves == 0


class Clock:
    """The worker's clock for idle patients, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_patient_idle_past_the_limit_leaves_memory_once_saved_and_its_next_chunk_restores_it(
        preprocessor, chunks, expected):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    records = records_of(messages)
    patients = sorted({c.patient_id for c in chunks})
    quiet, talking = patients
    cut = 23  # mid-window for both beds
    early, late = records[:cut], records[cut:]
    late_of = {pid: [r for r, c in zip(late, chunks[cut:]) if c.patient_id == pid] for pid in patients}
    sink, store, metrics, clock = MemorySink(), MemoryStore(), StreamMetrics(), Clock()
    worker = make_worker(preprocessor, sink=sink, store=store, metrics=metrics, checkpoint_s=100.0,
                         idle_patient_s=600.0, clock=clock)

    async def go():
        await worker.handle(early)  # no checkpoint yet: both buffers hold unsaved chunks
        clock.now += 700  # both idle past the limit, but neither buffer is saved
        await worker.checkpoint()
        assert set(worker.assembler.buffers) == {quiet, talking}  # saved now, kept until the next one
        saved = store.saved[quiet]
        await worker.handle(late_of[talking][:3])
        clock.now += 10
        await worker.checkpoint()
        # The quiet patient's buffer is dropped: its last state is the one saved; the other stays.
        assert set(worker.assembler.buffers) == {talking}
        assert store.saved[quiet] == saved
        assert metrics.value("hfrisk_patients_active") == 1
        # Its next chunk restores it from the store; its windows go on as if it had never left.
        await worker.handle(late_of[quiet])
        await worker.handle(late_of[talking][3:])
        await worker.checkpoint()

    asyncio.run(go())
    assert set(worker.assembler.buffers) == {quiet, talking}
    assert set(sink.windows) == set(expected) and len(sink.order) == len(expected)
    for key, risk in expected.items():
        assert (sink.windows[key].log_risk is None) == (risk is None)
        if risk is not None:
            assert sink.windows[key].log_risk == pytest.approx(risk, abs=1e-6)


def test_without_an_idle_limit_every_patient_stays_in_memory(preprocessor, chunks):
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    clock = Clock()
    worker = make_worker(preprocessor, idle_patient_s=0.0, clock=clock)

    async def go():
        await worker.handle(records_of(messages)[:10])
        for _ in range(2):
            clock.now += 10 ** 6
            await worker.checkpoint()

    asyncio.run(go())
    assert len(worker.assembler.buffers) == 2
