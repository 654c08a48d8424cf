"""Bad input at scale, through one running ``hfrisk worker`` on real Kafka, Redis and Triton.

More than 10,000 fuzzed mutations of real chunk messages (tests/stream/malformed.py, fixed seed)
and one message of every named class of bad input are produced to the chunk topic interleaved
with the good 1-s chunks of three PTB-XL beds, most of them keyed like those beds (so they sit on
the beds' partitions, between their chunks). Then:

* the worker never exits;
* the dead-letter topic holds exactly one record per bad message (matched on the original
  partition and offset), with the reason the decoder gives it offline and its original bytes
  (the first ``value_limit`` bytes and ``truncated`` for the oversized one), nothing else;
* every window of the good beds is in Redis exactly once with the offline ONNX Runtime score.

Mutations that happen to decode to a valid chunk of their own patient are left out of the run
(they are good messages; tests/stream/test_malformed.py checks that they are valid).
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field

import onnxruntime as ort
import pytest
from kafka import KafkaProducer

from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.messages.dead_letter import INTERNAL_ERROR, DeadLetter, value_limit
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import encode_chunk
from tests.stream.malformed import draw_messages, mutated_messages, named_corpus, refusal, template_messages

from hfrisk.testing import (
    RECORDS,
    consume_all,
    offline_scores,
    redis_view,
    served_card,
    start_worker,
    stream_topics,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEDS = 3
BED_SECONDS = 30  # 5 windows per bed at a 5-s hop
PARTITIONS = 3
FUZZED = 10_800  # drawn; ~6% decode valid and are left out, the rest must be >= 10,000
MIN_FUZZED_BAD = 10_000
MAX_BYTES = 64 * 1024  # the worker's limit: an 8-s chunk (96 kB) is oversized
SEED = 20261124
# The fuzzed patients' messages never reach a window, so a fixed acquisition time is fine, and it
# makes the corpus (and the counts per reason) the same on every run.
TEMPLATE_START_US = 1_700_000_000_000_000


@dataclass
class Outcome:
    # (partition, offset) -> (name, key, value, reason)
    bad: dict[tuple[int, int], tuple[str, bytes | None, bytes, str]]
    fuzzed_bad: int
    expected: dict[tuple[str, str], float | None]
    letters: list[DeadLetter] = field(default_factory=list)
    members: dict = field(default_factory=dict)
    window_keys: set = field(default_factory=set)
    metrics_text: str = ""
    worker_alive: bool = False
    log: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def outcome(kafka_broker, redis_server, triton_server, exported_model_dir, tmp_path_factory) -> Outcome:
    tmp = tmp_path_factory.mktemp("bad_input_at_scale")
    card = served_card(triton_server.model_repository)
    start_us = time.time_ns() // 1000 - 3_600_000_000
    uid = uuid.uuid4().hex[:8]
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"badinput.{uid}", PARTITIONS)
    prefix = f"test-badinput-{uid}"
    env = worker_env(kafka=kafka, redis_url=redis_server.url, prefix=prefix, triton_grpc_url=triton_server.grpc_url,
                     model_repository=triton_server.model_repository, state_dir=tmp / "state",
                     policy=AlertPolicy(threshold=1e9, clear_threshold=1e8, min_windows=2), max_message_bytes=MAX_BYTES)
    # Bigger batches than the pipeline test: ten thousand dead letters in 16s would be 650 round trips.
    env |= {"HFRISK_STREAM__BATCH_SIZE": "256", "HFRISK_STREAM__BATCH_TIMEOUT_S": "0.2"}
    clock = time.monotonic()
    worker, metrics_port = start_worker("worker-badinput", env, tmp, f"test-badinput-{uid}")
    try:
        # Built while the worker starts (it imports the model stack: ~10 s).
        good = [c for _, c in feed([RECORDS], beds=BEDS, duration_s=BED_SECONDS, loop=True, start_us=start_us)]
        session = ort.InferenceSession(str(exported_model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        _, expected = offline_scores(good, card, session)
        bed_keys = sorted({c.key for c in good})
        templates = template_messages(RECORDS, max_bytes=MAX_BYTES, start_us=TEMPLATE_START_US)
        t0 = time.monotonic()
        fuzzed = draw_messages(mutated_messages(templates, [*bed_keys, None]), FUZZED, seed_value=SEED)
        seconds = {"draw_fuzzed": time.monotonic() - t0}
        int16 = next(v for k, v in templates if len(v) < 2000)
        float32 = next(v for k, v in templates if 2000 < len(v) < 4000)
        long_chunk = next(c for _, c in feed([RECORDS], beds=1, chunk_s=8.0, max_records=1, start_us=TEMPLATE_START_US,
                                             salt="malformed"))
        named = named_corpus(int16, float32, encode_chunk(long_chunk, max_bytes=10 * MAX_BYTES))
        bad_items: list[tuple[str, bytes | None, bytes, str]] = [(m.name, m.key, m.value, m.reason) for m in named]
        for i, (key, value) in enumerate(fuzzed):
            reason = refusal(key, value, max_bytes=MAX_BYTES, window=card.window)
            if reason is not None:
                bad_items.append((f"fuzzed_{i}", key, value, reason))
        fuzzed_bad = len(bad_items) - len(named)

        t0 = time.monotonic()
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", max_request_size=4 << 20,
                                 linger_ms=20, batch_size=1 << 20)
        try:
            # Bad messages spread evenly between the good chunks, so every window has some among its chunks.
            per_good = len(bad_items) // len(good) + 1
            pending = []
            for i, chunk in enumerate(good):
                producer.send(kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk, max_bytes=MAX_BYTES))
                for item in bad_items[i * per_good:(i + 1) * per_good]:
                    pending.append((item, producer.send(kafka.ecg_topic, key=item[1], value=item[2])))
            producer.flush()
            bad = {}
            for item, future in pending:
                meta = future.get(timeout=60)
                bad[(meta.partition, meta.offset)] = item
        finally:
            producer.close()
        seconds["produce"] = time.monotonic() - t0
        assert len(bad) == len(bad_items)

        beds = [c.patient_id for c in good[:BEDS]]
        result = Outcome(bad=bad, fuzzed_bad=fuzzed_bad, expected=expected, seconds=seconds)
        t0 = time.monotonic()
        wait_until("every good window in Redis", lambda: set(expected) <= redis_view(redis_server.client(), prefix,
                   beds)[1], timeout_s=180, workers=[worker])
        records = consume_all(kafka.bootstrap_servers, kafka.dead_letter_topic, len(bad), timeout_s=120)
        seconds["drain"] = time.monotonic() - t0
        result.letters = [DeadLetter.from_record(r.key, r.value, r.headers) for r in records]
        result.members, result.window_keys = redis_view(redis_server.client(), prefix, beds)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            result.metrics_text = response.read().decode()
        result.worker_alive = worker.running()
        seconds["total"] = time.monotonic() - clock
    finally:
        worker.stop()
        log = worker.log_path.read_text(errors="replace")
    result.log = log
    print(f"\nbad input at scale: {len(result.bad)} bad messages ({result.fuzzed_bad} fuzzed), "
          f"{len(expected)} windows; reasons {dict(Counter(item[3] for item in result.bad.values()))}; "
          f"seconds {({k: round(v, 1) for k, v in seconds.items()})}")
    return result


def test_at_least_ten_thousand_fuzzed_bad_messages_went_through(outcome):
    assert outcome.fuzzed_bad >= MIN_FUZZED_BAD
    reasons = Counter(item[3] for item in outcome.bad.values())
    assert {"bad_message", "key_mismatch", "non_finite", "unknown_lead", "bad_sampling_rate", "oversized"} <= set(
        reasons), reasons


def test_the_worker_never_exits(outcome):
    assert outcome.worker_alive, outcome.log[-3000:]
    assert "Traceback" not in outcome.log, outcome.log[-3000:]


def test_every_bad_message_has_exactly_one_dead_letter_with_its_reason_and_bytes(outcome):
    assert all(letter.kind == "chunk" for letter in outcome.letters), "a good window was dead-lettered"
    assert INTERNAL_ERROR not in {letter.reason for letter in outcome.letters}
    by_origin = Counter((letter.partition, letter.offset) for letter in outcome.letters)
    assert not [o for o, n in by_origin.items() if n > 1], "a message was dead-lettered twice"
    assert set(by_origin) == set(outcome.bad), "dead letters and bad messages differ"
    limit = value_limit(MAX_BYTES)
    for letter in outcome.letters:
        name, key, value, reason = outcome.bad[(letter.partition, letter.offset)]
        assert letter.reason == reason, (name, letter.detail)
        assert letter.detail, name
        assert letter.key == key, name
        assert letter.original_size == len(value), name
        assert letter.truncated == (len(value) > limit), name
        assert letter.value == value[:limit], name


def test_every_good_window_is_scored_exactly_once(outcome):
    assert len(outcome.expected) == BEDS * ((BED_SECONDS - 10) // 5 + 1)
    assert set(outcome.members) == set(outcome.expected)
    assert outcome.window_keys == set(outcome.expected)
    for key, risk in outcome.expected.items():
        (where, stored), = outcome.members[key]
        assert where == ("trend" if risk is not None else "quality"), key
        if risk is not None:
            assert stored == pytest.approx(risk, abs=1e-4), key


def test_dead_letter_metrics_count_every_reason(outcome):
    text = outcome.metrics_text
    for reason, n in Counter(item[3] for item in outcome.bad.values()).items():
        line = f'hfrisk_dead_letters_total{{reason="{reason}"}} '
        (value,) = [float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line)]
        assert value == n, reason
