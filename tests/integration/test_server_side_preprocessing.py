"""Preprocessing on the model's server (``HFRISK_STREAM__PREPROCESS_ON=server``) against preprocessing
in the worker, on a real tritonserver serving ``hfrisk`` and ``hfrisk_raw`` from one repository.

The two paths are the worker's own code: ``score_windows`` with the worker's ``Preprocessor`` (numpy
front end, then model inputs to ``hfrisk``) and with ``ServerSideScorer`` (raw windows to
``hfrisk_raw``: the same front end on torch, then the same ONNX file). They must agree on every window
of the real records in tests/data and on windows made to be refused:

* refusals: the same windows, the same reason codes and messages (the worker's share and the
  server's are the very functions ``prepare_windows`` calls);
* verdicts: the same quality reasons, fitness, usable leads, beat counts and heart rate;
* log-risk and attention to **1e-4**: the torch and numpy runs of the front end differ by float32
  rounding only (model inputs within 2e-3 at worst, tests/model/test_batch_frontend.py; measured
  ~1e-5 on log-risk, docs/serving.md), and 1e-4 is what the stream pipeline holds Triton's scores
  to against offline scoring.

A short replay through ``StreamWorker`` in each mode, into real Redis, leaves the same results; and
``hfrisk worker`` itself, started with ``HFRISK_STREAM__PREPROCESS_ON=server`` and fed through Kafka,
writes the scores offline scoring gives.
The served network is the bundled one (triton_models/hfrisk, read through its card) when present,
else the seeded untrained export. No Triton here: skipped locally, failed in CI.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import uuid
from pathlib import Path

import numpy as np
import pytest

from hfrisk.core.retries import Backoff
from hfrisk.model.contract.card import CARD_FILENAME, ModelCard, default_card, load_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.serving.client import InferenceError, RawRiskClient, RiskClient
from hfrisk.serving.model_repository import write_model_repository
from hfrisk.serving.raw_windows import preparation_of, raw_model_name
from hfrisk.stack.triton_server import TritonServer
from hfrisk.stream.alerts.policy import AlertPolicy
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import encode_chunk
from hfrisk.stream.scoring.batch import AsyncTritonScorer, Preprocessor, score_windows
from hfrisk.stream.scoring.on_server import ServerSideScorer
from hfrisk.stream.sinks.reads import SinkReader
from hfrisk.stream.sinks.redis_sink import RedisSink
from hfrisk.stream.windowing import WindowAssembler
from hfrisk.stream.worker.metrics import StreamMetrics
from hfrisk.stream.worker.pipeline import StreamWorker, WorkerOptions
from hfrisk.testing import RECORDS, offline_scores, redis_view, start_worker, stream_topics, wait_until, window_records, worker_env
from tests.integration.service_required import serve
from tests.stream.test_worker_unit import MAX_BYTES, MemoryPublisher, MemoryStore, good_chunks, no_sleep, records_of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "ecg"
BUNDLED = ROOT / "triton_models" / "hfrisk"
TOL = 1e-4


def _records() -> list[Path]:
    ptbxl = sorted((DATA / "ptbxl" / "records500").rglob("*_hr.hea")) + sorted((DATA / "ptbxl" / "records100").rglob("*_lr.hea"))[:6]
    others = sorted((DATA / "cinc2021").glob("*.hea")) + sorted((DATA / "ludb").glob("*.hea"))
    others += [DATA / "wfdb-samples" / "100.hea", DATA / "wfdb-samples" / "s0010_re.hea"]
    return [p.with_suffix("") for p in ptbxl + others if p.exists()]


def _made_to_fail(card: ModelCard) -> dict[str, ECG]:
    """Windows each path must refuse (or find unfit) for a stated reason."""
    leads = card.input.leads
    rng = np.random.default_rng(0)
    good = read_ecg(DATA / "ptbxl" / "records500" / "00000" / "00001_hr")
    return {
        "flat": ECG(samples=np.zeros((12, 5000)), fs_hz=500.0, lead_names=leads),
        "noise": ECG(samples=rng.normal(size=(12, 5000)), fs_hz=500.0, lead_names=leads),
        "too_short": good.slice_s(0.0, 3.0),
        "low_rate": ECG(samples=good.samples[:, ::20], fs_hz=25.0, lead_names=good.lead_names),
        "chest_only": ECG(samples=good.samples[6:], fs_hz=500.0, lead_names=good.lead_names[6:]),
        "unknown_lead": ECG(samples=good.samples[:2], fs_hz=500.0, lead_names=("I", "Q7")),
    }


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    """``(server, card)``: tritonserver with ``hfrisk`` and ``hfrisk_raw`` (one ORT / torch thread)."""
    if (BUNDLED / "1" / "model.onnx").is_file() and (BUNDLED / CARD_FILENAME).is_file():
        onnx_path, card = BUNDLED / "1" / "model.onnx", load_card(BUNDLED / CARD_FILENAME)
    else:
        exported_model_dir = request.getfixturevalue("exported_model_dir")
        onnx_path = exported_model_dir / "model.onnx"
        card_path = exported_model_dir / CARD_FILENAME
        card = load_card(card_path) if card_path.is_file() else default_card()
    repository = tmp_path_factory.mktemp("raw_repository")
    write_model_repository(onnx_path, card, repository, intra_op_threads=1)
    work_dir = tmp_path_factory.mktemp("raw_triton_work")
    for server in serve("tritonserver", lambda: TritonServer(
            repository, "hfrisk", work_dir=work_dir, ready_timeout_s=180,
            extra_args=[f"--load-model={raw_model_name('hfrisk')}"])):
        server.onnx_path = onnx_path
        yield server, card


def _both_ways(server, card, ecgs):
    async def go():
        worker_side = AsyncTritonScorer(RiskClient(server.grpc_url, card=card), backoff=Backoff(0.05, 0.2))
        server_side = ServerSideScorer(RawRiskClient(server.grpc_url, card=card), card, backoff=Backoff(0.05, 0.2))
        pre = Preprocessor(card, workers=0)
        try:
            return (await score_windows(ecgs, pre, worker_side), await score_windows(ecgs, None, server_side),
                    worker_side.model_version, server_side.model_version)
        finally:
            pre.close()
            await worker_side.close()
            await server_side.close()

    return asyncio.run(go())


def _same_quality(a, b, what: str) -> None:
    da, db = a.to_dict(), b.to_dict()
    for key in da:
        if isinstance(da[key], float):
            assert db[key] == pytest.approx(da[key], abs=2e-4), (what, key)
        elif isinstance(da[key], dict):
            assert da[key].keys() == db[key].keys(), (what, key)
            for lead in da[key]:
                assert db[key][lead] == pytest.approx(da[key][lead], abs=2e-4), (what, key, lead)
        else:
            assert da[key] == db[key], (what, key)


def test_both_paths_give_the_same_scores_verdicts_and_refusals(served):
    server, card = served
    paths = _records()
    assert len(paths) >= 30
    failing = _made_to_fail(card)
    names = [p.name for p in paths] + list(failing)
    ecgs = [read_ecg(p) for p in paths] + list(failing.values())
    on_worker, on_server, version_w, version_s = _both_ways(server, card, ecgs)

    assert version_s == version_w != ""
    worst = 0.0
    for name, a, b in zip(names, on_worker, on_server):
        assert (a.failure is None) == (b.failure is None), name
        if a.failure is not None:
            assert (b.failure.reason, b.failure.detail) == (a.failure.reason, a.failure.detail), name
            continue
        _same_quality(a.prepared.quality, b.prepared.quality, name)
        assert (b.prepared.n_beats_detected, b.prepared.n_beats_used) == (a.prepared.n_beats_detected,
                                                                          a.prepared.n_beats_used), name
        np.testing.assert_array_equal(b.prepared.lead_mask, a.prepared.lead_mask, err_msg=name)
        if a.prepared.heart_rate_bpm is None:
            assert b.prepared.heart_rate_bpm is None, name
        else:
            assert b.prepared.heart_rate_bpm == pytest.approx(a.prepared.heart_rate_bpm, rel=1e-6), name
        assert a.scored == b.scored, name
        if a.scored:
            for output, value in a.outputs.items():
                np.testing.assert_allclose(b.outputs[output], value, atol=TOL, err_msg=f"{name} {output}")
            worst = max(worst, abs(float(b.outputs["log_risk"][0, 0]) - float(a.outputs["log_risk"][0, 0])))

    scored = sum(s.scored for s in on_worker)
    refused = {n: s.failure.reason for n, s in zip(names, on_worker) if s.failure is not None}
    unfit = {n for n, s in zip(names, on_worker) if s.failure is None and not s.scored}
    assert scored >= 25, scored
    assert refused == {"too_short": "too_short", "low_rate": "low_sampling_rate", "unknown_lead": "unknown_lead"}
    assert {"flat", "noise", "chest_only"} <= unfit
    print(f"\n{scored} windows scored both ways, max |log-risk difference| {worst:.2e}")


def test_the_raw_model_refuses_on_its_own_what_a_worker_would(served):
    """Called directly (no worker in front), the server applies the card's rules itself."""
    server, card = served
    good = read_ecg(DATA / "ptbxl" / "records500" / "00000" / "00002_hr")
    samples = np.stack([good.samples[:, :5000], good.samples[:, :5000]]).astype(np.float32)
    present = np.ones((2, 12), bool)
    present[1] = False

    async def go():
        async with RawRiskClient(server.grpc_url, card=card) as client:
            out = await client.infer_raw(samples[:, :, ::25], present, np.full(2, 20.0))  # 20 Hz
            both = await client.infer_raw(samples, present, np.full(2, 500.0))
            with pytest.raises(InferenceError) as bad:
                await client.infer_raw(samples[:, :6], present[:, :6], np.full(2, 500.0))
            return out, both, bad.value

    low, both, bad = asyncio.run(go())
    assert [preparation_of(low, i)[0] for i in range(2)] == ["low_sampling_rate", "missing_leads"]
    assert math.isnan(float(low["log_risk"][0, 0]))
    assert preparation_of(both, 1)[0] == "missing_leads"
    assert preparation_of(both, 0).quality.fit_to_score and np.isfinite(both["log_risk"][0, 0])
    assert bad.status == "StatusCode.INVALID_ARGUMENT"


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


async def _regions(server) -> dict:
    import tritonclient.grpc.aio as grpcclient

    probe = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        return (await probe.get_system_shared_memory_status(as_json=True)).get("regions") or {}
    finally:
        await probe.close()


def test_through_shared_memory_triton_answers_exactly_as_through_the_request(served):
    """HFRISK_TRITON__SHARED_MEMORY=system: raw windows and model inputs through /dev/shm regions,
    several requests at once each in its own region, bit for bit the answers of the request path."""
    server, card = served
    ecgs = [read_ecg(p) for p in _records()[:20]]
    from hfrisk.model.frontend.preprocessing import prepare_windows
    from hfrisk.stream.scoring.on_server import conform_window

    conformed = [conform_window(e, card) for e in ecgs]
    samples = np.stack([c.samples for c in conformed]).astype(np.float32)
    present = np.stack([c.mask for c in conformed])
    fs_hz = np.array([c.fs_hz for c in conformed], np.float32)
    inputs = np.stack([p.x for p in prepare_windows([(e, 0.0) for e in ecgs], card)]).astype(np.float32)

    async def go():
        wire_raw = RawRiskClient(server.grpc_url, card=card, max_batch=8)
        shm_raw = RawRiskClient(server.grpc_url, card=card, max_batch=8, shared_memory="system")
        wire, shm = RiskClient(server.grpc_url, card=card, max_batch=8), RiskClient(server.grpc_url, card=card, max_batch=8,
                                                                                     shared_memory="system")
        await shm_raw.wait_ready(30)
        got = {
            "raw": (await wire_raw.infer_raw(samples, present, fs_hz), await shm_raw.infer_raw(samples, present, fs_hz)),
            "inputs": (await wire.infer(inputs), await shm.infer(inputs)),
        }
        parts = [slice(i, i + 5) for i in range(0, 20, 5)]
        together = await asyncio.gather(*(shm_raw.infer_raw(samples[s], present[s], fs_hz[s]) for s in parts))
        registered = await _regions(server)
        mine = {r.name for r in shm_raw._regions.regions} | {r.name for r in shm._regions.regions}
        for client in (wire_raw, shm_raw, wire, shm):
            await client.close()
        return got, together, registered, mine, await _regions(server)

    got, together, registered, mine, after = asyncio.run(go())
    for what, (a, b) in got.items():
        assert _equal(a, b), what
    for s, part in zip([slice(i, i + 5) for i in range(0, 20, 5)], together):
        assert _equal(part, {k: v[s] for k, v in got["raw"][0].items()})
    assert sum(np.isfinite(got["raw"][1]["log_risk"][:, 0])) >= 15
    assert len(mine) >= 3 and mine <= set(registered)  # three requests of 8 at once: three regions
    assert not mine & set(after)  # close unregisters them
    assert not any((Path("/dev/shm") / name).exists() for name in mine)


def test_regions_of_a_killed_client_are_unregistered_by_the_next_one(served, tmp_path):
    """A worker killed mid-stream leaves its registrations on Triton (the resource tracker unlinks
    its files); the next client's first registration removes them."""
    import subprocess
    import sys
    import time

    server, card = served
    card_path = card.save(tmp_path / "card.json")
    code = (
        "import asyncio, os, signal, numpy as np\n"
        "from hfrisk.model.contract.card import load_card\n"
        "from hfrisk.serving.client import RawRiskClient\n"
        f"client = RawRiskClient({server.grpc_url!r}, card=load_card({str(card_path)!r}), shared_memory='system')\n"
        "asyncio.run(client.infer_raw(np.zeros((4, 12, 5000), np.float32), np.ones((4, 12), bool), np.full(4, 500.0)))\n"
        "print(os.getpid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == -9, run.stderr
    pid = run.stdout.strip()
    left = [name for name in asyncio.run(_regions(server)) if name.startswith(f"hfrisk_{pid}_")]
    assert left, "the killed client's region is still registered"
    deadline = time.monotonic() + 10
    while any((Path("/dev/shm") / name).exists() for name in left) and time.monotonic() < deadline:
        time.sleep(0.1)  # the resource tracker unlinks them once it sees its process gone

    async def next_client():
        async with RawRiskClient(server.grpc_url, card=card, shared_memory="system") as client:
            await client.wait_ready(30)
            return await _regions(server)

    assert not set(left) & set(asyncio.run(next_client()))


def _worker(card, mode: str, server, redis_client, prefix: str, policy: AlertPolicy) -> StreamWorker:
    if mode == "worker":
        pre, scorer = Preprocessor(card, workers=0), AsyncTritonScorer(RiskClient(server.grpc_url, card=card))
    else:
        pre, scorer = None, ServerSideScorer(RawRiskClient(server.grpc_url, card=card), card)
    return StreamWorker(
        card=card, assembler=WindowAssembler(window_s=card.window.window_s, hop_s=5.0, reorder_s=5.0),
        preprocessor=pre, scorer=scorer, sink=RedisSink(redis_client, prefix, policy=policy), store=MemoryStore(),
        publisher=MemoryPublisher(), metrics=StreamMetrics(),
        options=WorkerOptions(checkpoint_interval_s=0.0, backoff=Backoff(0.0, 0.0), max_message_bytes=MAX_BYTES),
        sleep=no_sleep,
    )


VOLATILE = {"scored_at_us", "scored_at", "written_at_us"}  # when, not what


def _close(a, b, where: str = "") -> None:
    """Equal, numbers to TOL, ignoring when each was scored."""
    if dataclasses.is_dataclass(a):
        a, b = dataclasses.asdict(a), dataclasses.asdict(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            if key not in VOLATILE:
                _close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert b == pytest.approx(a, abs=TOL, nan_ok=True), where
    elif isinstance(a, (str, bytes)) and a != b:
        try:
            _close(json.loads(a), json.loads(b), where)
        except (ValueError, TypeError):
            assert a == b, where
    else:
        assert a == b, where


def test_a_replay_leaves_the_same_results_in_redis_either_way(served, redis_server):
    server, card = served
    chunks = good_chunks(beds=2, records=8)  # 40 s a bed: 7 windows each
    messages = [(c.key, encode_chunk(c, max_bytes=MAX_BYTES)) for c in chunks]
    patients = sorted({c.patient_id for c in chunks})
    client = redis_server.client()
    uid = uuid.uuid4().hex[:8]
    prefixes = {mode: f"test-preprocess-{mode}-{uid}" for mode in ("worker", "server")}
    # Flag low enough that some windows raise alerts: their events must match too.
    policy = AlertPolicy(threshold=-2.5, clear_threshold=-3.0, min_windows=2)
    reports = {}
    for mode, prefix in prefixes.items():
        worker = _worker(card, mode, server, client, prefix, policy)

        async def go(worker=worker):
            out = [await worker.handle(records_of(messages)[i : i + 16]) for i in range(0, len(messages), 16)]
            await worker.checkpoint()
            await worker.scorer.close()
            if worker.preprocessor is not None:
                worker.preprocessor.close()
            return out

        reports[mode] = asyncio.run(go())

    for mode in prefixes:
        assert sum(r.windows["dead_letter"] for r in reports[mode]) == 0, mode
    readers = {mode: SinkReader(client, prefix) for mode, prefix in prefixes.items()}
    records = {mode: sorted(window_records(client, prefix, patients), key=lambda r: (r["patient_id"], r["window_id"]))
               for mode, prefix in prefixes.items()}
    assert len(records["worker"]) >= 10
    _close(records["worker"], records["server"], "window records")
    for pid in patients:
        _close(readers["worker"].read_patient(pid), readers["server"].read_patient(pid), pid)
    events = {mode: [(e.kind.value, e.patient_id, e.window_id) for e in readers[mode].alert_events(1000)]
              for mode in prefixes}
    assert events["worker"] == events["server"]


def test_hfrisk_worker_in_server_mode_writes_what_offline_scoring_gives(served, kafka_broker, redis_server, tmp_path):
    """The command's own wiring: the setting, no pool, ServerSideScorer, through Kafka into Redis."""
    import time

    import onnxruntime as ort
    from kafka import KafkaProducer

    server, card = served
    start_us = time.time_ns() // 1000 - 3_600_000_000
    chunks = [c for _, c in feed([RECORDS], beds=2, max_records=8, start_us=start_us, salt="server-mode")]
    session = ort.InferenceSession(str(server.onnx_path), providers=["CPUExecutionProvider"])
    _, expected = offline_scores(chunks, card, session)
    uid = uuid.uuid4().hex[:8]
    kafka = stream_topics(kafka_broker.bootstrap_servers, f"server-preprocessing.{uid}", 2)
    prefix = f"test-server-mode-{uid}"
    env = worker_env(kafka=kafka, redis_url=redis_server.url, prefix=prefix, triton_grpc_url=server.grpc_url,
                     model_repository=server.model_repository, state_dir=tmp_path / "state",
                     policy=AlertPolicy(threshold=10.0, clear_threshold=9.0, min_windows=2), max_message_bytes=MAX_BYTES)
    # Raw windows through shared memory, as on a GPU host that runs the workers beside Triton.
    worker, _ = start_worker("server-mode", env | {"HFRISK_STREAM__PREPROCESS_ON": "server",
                                                   "HFRISK_TRITON__SHARED_MEMORY": "system"}, tmp_path, prefix)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", max_request_size=MAX_BYTES)
    try:
        for chunk in chunks:
            producer.send(kafka.ecg_topic, key=chunk.key, value=encode_chunk(chunk, max_bytes=MAX_BYTES))
        producer.flush(timeout=60)
        client = redis_server.client()
        patients = sorted({c.patient_id for c in chunks})
        wait_until("every window in Redis", lambda: set(expected) <= redis_view(client, prefix, patients)[1],
                   timeout_s=90, workers=[worker])
        members, _ = redis_view(client, prefix, patients)
        log = worker.log_path.read_text(errors="replace")
        registered = [name for name in asyncio.run(_regions(server)) if name.startswith(f"hfrisk_{worker.pid}_")]
    finally:
        producer.close()
        worker.stop()
    assert "preprocess_on=server" in log and "prep_workers=0" in log and "triton_shared_memory=system" in log
    assert registered, "the worker's raw windows went through its shared-memory regions"
    assert not set(registered) & set(asyncio.run(_regions(server)))  # unregistered on its way out
    assert sum(risk is not None for risk in expected.values()) >= 10
    for key, risk in expected.items():
        ((where, value),) = members[key]
        assert (where == "quality") == (risk is None), key
        if risk is not None:
            assert value == pytest.approx(risk, abs=TOL), key


def test_after_triton_restarts_the_client_registers_its_regions_again(served):
    """Last in this module: it restarts the module's Triton. A restarted Triton has forgotten every
    region; the client's next request is refused (NOT_FOUND), registers again and is answered, and
    the batch never sees the refusal."""
    from hfrisk.stream.scoring.on_server import conform_window

    server, card = served
    samples = np.stack([conform_window(read_ecg(p), card).samples for p in _records()[:6]]).astype(np.float32)
    present, fs_hz = np.ones((6, 12), bool), np.full(6, 500.0, np.float32)

    async def go():
        # One event loop for the client's whole life (its gRPC channel belongs to the loop).
        async with RawRiskClient(server.grpc_url, card=card, shared_memory="system", backoff_s=0.2) as client:
            first = await client.infer_raw(samples, present, fs_hz)
            regions = {r.name for r in client._regions.regions}
            await asyncio.to_thread(server.restart)
            await client.wait_ready(60)
            forgotten = not regions & set(await _regions(server))
            second = await client.infer_raw(samples, present, fs_hz)
            return first, second, regions, forgotten, set(await _regions(server))

    first, second, regions, forgotten, registered = asyncio.run(go())
    assert forgotten
    assert _equal(first, second)
    assert regions <= registered
