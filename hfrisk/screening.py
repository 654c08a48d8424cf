"""Population screening: score a folder or a list of recordings with the stream's preprocessing.

Every window of every recording gets one row in ``scores.csv``: scored, not fit to score (with the
quality reasons) or refused (with the input error). A recording is read once and cut into windows
of the card's length every ``hop_s`` seconds (default: the window length, so a 10-s PTB-XL record
is one window and a 30-min Holter 180). Rows are appended whole records at a time, so an
interrupted run resumes where it stopped: a record is done when all its windows are written.
``records.csv`` beside it summarises each recording (:func:`summarize_records`), written as its
rows are.

When the model card has a risk scale, every scored window (and each recording, by its median
log-risk) also gets ``risk_percentile`` in the card's reference cohort and ``absolute_risk`` by
``absolute_risk_horizon_days`` (docs/score-scale.md). ``threshold`` is always a log-risk: the CLI
turns the flag rule of the settings (absolute risk, percentile or log-risk) into one through the
card.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import queue
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from hfrisk.core.allocator import keep_freed_memory
from hfrisk.core.config import FrontendSettings, get_settings
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.attention_weights import decode_lead_weights, encode_lead_weights
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.contract.risk_scale import RiskScale
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.arrays import one_blas_thread
from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows
from hfrisk.model.readers.dispatch import read_ecg, record_paths

__all__ = [
    "SyncScorer",
    "score_windows",
    "ScreenRow",
    "screen",
    "prepare_records",
    "default_workers",
    "screening_threads",
    "summarize",
    "write_summary",
    "SCORES_FILENAME",
    "RECORDS_FILENAME",
    "RECORD_COLUMNS",
    "read_scores",
    "read_records",
    "read_table",
    "summarize_records",
    "window_starts",
]

SCORES_FILENAME = "scores.csv"
RECORDS_FILENAME = "records.csv"
# Finished rows are appended to scores.csv about once a second (or once this many records' rows are
# waiting), and whenever the run stops, by an error or an interrupt: a run killed outright re-screens
# at most that much on resume, and one write a second costs nothing per recording.
FLUSH_S = 1.0
FLUSH_RECORDS = 4096
log = get_logger(__name__)


class SyncScorer(Protocol):
    """A blocking model (:class:`~hfrisk.serving.scorers.OnnxScorer`,
    :class:`~hfrisk.serving.scorers.SyncTritonScorer`): a batch in, the card's outputs out.

    A scorer that can run in other processes also has ``replica()``, returning a picklable
    callable that makes an equivalent scorer there (:meth:`OnnxScorer.replica`); :func:`screen`
    then scores in its pool's processes."""

    card: ModelCard

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


ScorerMaker = Callable[[], SyncScorer]


def _replica_maker(scorer: SyncScorer) -> ScorerMaker | None:
    replica = getattr(scorer, "replica", None)
    return replica() if callable(replica) else None


@dataclass
class ScreenRow:
    record: str
    window_start_s: float
    patient_id: str
    status: str  # scored | low_quality | refused
    reason: str
    fs_hz: float = math.nan
    duration_s: float = math.nan
    quality_score: float = math.nan
    n_beats_detected: int = 0
    n_beats_used: int = 0
    heart_rate_bpm: float = math.nan
    missing_leads: str = ""
    log_risk: float = math.nan
    hazard_ratio: float = math.nan
    # From the card's risk scale; NaN without a score or a scale.
    risk_percentile: float = math.nan
    absolute_risk: float = math.nan
    absolute_risk_horizon_days: float = math.nan
    flagged: bool = False
    top_lead: str = ""
    # {lead: weight} in the card's lead order, the one JSON form of
    # hfrisk.model.contract.attention_weights (the summary's map reads it back).
    lead_attention: str = ""
    # How many windows the record has: it is done (on resume) when that many rows are written.
    windows_in_record: int = 1


def _row_for(path: Path, item: ModelInput, patient_id: str) -> ScreenRow:
    q = item.quality
    return ScreenRow(
        record=str(path),
        window_start_s=item.window_start_s,
        patient_id=patient_id,
        status="scored" if q.fit_to_score else "low_quality",
        reason="" if q.fit_to_score else ";".join(q.reasons),
        fs_hz=item.fs_hz,
        duration_s=item.duration_s,
        quality_score=q.score,
        n_beats_detected=item.n_beats_detected,
        n_beats_used=item.n_beats_used,
        heart_rate_bpm=item.heart_rate_bpm if item.heart_rate_bpm is not None else math.nan,
        missing_leads=";".join(lead for lead, ok in zip(item.leads, item.lead_mask) if not ok),
    )


_COLUMNS = list(ScreenRow.__annotations__)


def read_scores(path: str | Path) -> pd.DataFrame:
    """A ``scores.csv``, in today's columns whatever version wrote it. Files from before long
    recordings had one window per record and one ``n_beats`` (the beats used)."""
    frame = _read_csv(path, ScreenRow.__annotations__)
    if "n_beats" in frame.columns and "n_beats_used" not in frame.columns:
        frame = frame.rename(columns={"n_beats": "n_beats_used"})
    defaults = asdict(ScreenRow(record="", window_start_s=0.0, patient_id="", status="", reason=""))
    defaults["n_beats_detected"] = math.nan  # not known for rows written before the split
    for column in _COLUMNS:
        if column not in frame.columns:
            frame[column] = defaults[column]
    return frame[_COLUMNS]


def csv_text(rows: Sequence[ScreenRow]) -> str:
    """``rows`` as lines of ``scores.csv``: the bytes pandas' ``to_csv`` writes for them (an empty
    field for NaN and None, ``repr`` of a float, minimal quoting), at about half its CPU a row and
    without its milliseconds a call. Each pool process renders the rows it scored, so that the
    calling process only appends text: its CPU per recording bounds a host with many cores
    (docs/bench/screening-caller.md)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(
        [[_cell(getattr(row, column)) for column in _COLUMNS] for row in rows])
    return out.getvalue()


def _cell(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _flush(blocks: list[str], path: Path, columns: Sequence[str]) -> None:
    """Append lines of a CSV of ``columns`` to ``path`` (the header first, if new)."""
    if blocks:
        header = "" if path.exists() else ",".join(columns) + "\n"
        with path.open("a", newline="") as f:
            f.write(header + "".join(blocks))


Prepared = list[tuple[ScreenRow, "ModelInput | None"]]


def window_starts(duration_s: float, card: ModelCard, hop_s: float | None = None) -> list[float]:
    """Where the windows of a ``duration_s`` recording start, every ``hop_s`` (default: the card's
    window length, i.e. windows side by side). A tail shorter than a window is one more window when
    it is at least the card's ``min_duration_s``; a recording shorter than that still has one
    window, at 0, which ``prepare`` refuses with the reason."""
    spec = card.window
    hop_s = spec.window_s if hop_s is None else float(hop_s)
    if hop_s <= 0:
        raise ValueError(f"hop_s must be > 0, got {hop_s}")
    # Same half-sample slack as select_window, so every start listed is a window it accepts.
    last = duration_s - spec.min_duration_s + 1e-6
    n = max(1, int(math.floor(last / hop_s)) + 1) if last >= 0 else 1
    return [round(k * hop_s, 6) for k in range(n)]


def prepare_records(paths: Sequence[str | Path], card: ModelCard, hop_s: float | None = None) -> list[Prepared]:
    """Per path: its recording read once and each of its windows preprocessed, as its rows and the
    model inputs of those fit to score (an unreadable recording is one refused row), with every
    window of every recording in one call of the batched front end (windows of one rate and length
    share batches across recordings)."""
    requests: list[tuple[ECG, float]] = []
    owners: list[tuple[int, str]] = []  # per request: which path, which patient
    out: list[Prepared] = [[] for _ in paths]
    for k, path in enumerate(paths):
        try:
            ecg = read_ecg(path)
        except ECGInputError as err:
            out[k].append((ScreenRow(record=str(path), window_start_s=0.0, patient_id="", status="refused",
                                     reason=str(err)), None))
            continue
        for start in window_starts(ecg.duration_s, card, hop_s):
            requests.append((ecg, start))
            owners.append((k, ecg.patient_id))
    for (ecg, start), (k, patient), item in zip(requests, owners, prepare_windows(requests, card)):
        path = paths[k]
        if isinstance(item, ECGInputError):
            out[k].append((ScreenRow(record=str(path), window_start_s=start, patient_id="", status="refused",
                                     reason=str(item)), None))
        else:
            out[k].append((_row_for(path, item, patient), item if item.quality.fit_to_score else None))
    for windows in out:
        for row, _ in windows:
            row.windows_in_record = len(windows)
    return out


def score_windows(pending: Sequence[tuple[ScreenRow, np.ndarray]], scorer: SyncScorer, threshold: float,
                  batch_size: int) -> None:
    """Fills the score columns of each ``(row, model input)`` from ``scorer``, ``batch_size`` at a time."""
    card = scorer.card
    scale = card.risk_scale
    leads = card.input.leads
    for first in range(0, len(pending), batch_size):
        batch = pending[first:first + batch_size]
        outputs = scorer.score(np.stack([x for _, x in batch]))
        # A batch's columns at once: the scale's functions one scalar at a time were most of the
        # ~50 µs of Python a window here (elementwise either way, so the same values).
        log_risk = outputs["log_risk"][:, 0].astype(np.float64).tolist()
        weights = outputs["lead_attention"]
        top = np.argmax(weights, axis=1).tolist()
        if scale is not None:
            percentile = scale.percentile(log_risk).tolist()
            absolute = scale.absolute_risk_at_horizon(log_risk).tolist()
            horizon_days = scale.absolute_risk.horizon_days
        for i, (row, _) in enumerate(batch):
            row.log_risk = log_risk[i]
            row.hazard_ratio = math.exp(row.log_risk)
            if scale is not None:
                row.risk_percentile = percentile[i]
                row.absolute_risk = absolute[i]
                row.absolute_risk_horizon_days = horizon_days
            row.flagged = row.log_risk >= threshold
            row.top_lead = leads[top[i]]
            row.lead_attention = encode_lead_weights(leads, weights[i])


@dataclass(frozen=True)
class _PoolScoring:
    """What a pool process needs to score the windows it prepared."""

    make_scorer: ScorerMaker
    threshold: float
    batch_size: int
    warm_up_batch: int


# Set once per pool process by the initializer, so the card is not pickled with every chunk.
_worker_card: ModelCard | None = None
_worker_hop_s: float | None = None
_worker_scoring: tuple[SyncScorer, _PoolScoring] | None = None

RecordWindows = list[tuple[ScreenRow, "np.ndarray | None"]]


@dataclass(frozen=True)
class _ScoredChunk:
    """A chunk scored in the pool: its ``n`` recordings' lines of ``scores.csv`` and of
    ``records.csv``, the only things that travel back."""

    n: int
    scores: str
    records: str


# What the pool sends back for a chunk: each recording's windows, to score here, or the chunk's text.
ChunkResult = "list[RecordWindows] | _ScoredChunk"


def _init_worker(card: ModelCard, hop_s: float | None = None, keep_freed_mb: int = 0,
                 scoring: _PoolScoring | None = None) -> None:
    global _worker_card, _worker_hop_s, _worker_scoring
    one_blas_thread()
    keep_freed_memory(keep_freed_mb)
    _worker_card, _worker_hop_s = card, hop_s
    _worker_scoring = None
    if scoring is not None:
        # Made here, not inherited: an ONNX Runtime session is not safe to use across a fork.
        scorer = scoring.make_scorer()
        # One batch of a chunk's size before the first chunk: ONNX Runtime plans its buffers on its
        # first run of a shape, and planned between chunks it still took some of the pages the
        # front end had kept for the next (~700 page faults on the second chunk instead of ~0).
        scorer.score(np.zeros((scoring.warm_up_batch, *card.input.shape[1:]), np.float32))
        _worker_scoring = (scorer, scoring)


def _arrays(windows: Prepared) -> RecordWindows:
    # Only the array the network needs travels back: the median beats and peaks stay here.
    return [(row, item.x if item is not None else None) for row, item in windows]


def _prepare_chunk(paths: Sequence[str]) -> ChunkResult:
    assert _worker_card is not None, "pool process not initialised"
    records = [_arrays(windows) for windows in prepare_records(paths, _worker_card, _worker_hop_s)]
    if _worker_scoring is None:
        return records
    scorer, scoring = _worker_scoring
    score_windows([(row, x) for windows in records for row, x in windows if x is not None], scorer,
                  scoring.threshold, scoring.batch_size)
    # Scored here: only the text of the rows and of the recordings' summaries travels back.
    rows = [[row for row, _ in windows] for windows in records]
    return _ScoredChunk(len(rows), csv_text([row for windows in rows for row in windows]),
                        records_text(rows, scoring.threshold, _worker_card.risk_scale))


def pool_start_method(frontend: FrontendSettings | None = None, scorer_on_gpu: bool = False) -> str:
    """How the screening pool starts its processes.

    fork where it can: the children inherit the preprocessing stack already imported here
    (neurokit2 and scipy take seconds to import: a spawned or forkserver pool paid that on every
    run). The parent's gRPC and ONNX Runtime threads are not a hazard: the children never use the
    parent's client or session (a child that scores makes its own), and the pool forks all its
    processes at the first chunk, before this process scores anything.

    spawn when the front end computes on a GPU or the scorer does (``scorer_on_gpu``): a forked
    child cannot use CUDA once its parent has (a scorer on the GPU has, before the pool starts),
    and the children of a process holding a CUDA context are best not forked at all.
    """
    frontend = frontend or get_settings().frontend
    on_gpu = scorer_on_gpu or frontend.array_backend == "cupy" or (
        frontend.array_backend == "torch" and (frontend.device or "cpu") != "cpu")
    if on_gpu or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    return "fork"


def _prepared_in_order(chunks: Iterable[list[str] | None], card: ModelCard, workers: int, chunk_size: int, ahead: int,
                       hop_s: float | None = None, keep_freed_mb: int = 0, scoring: _PoolScoring | None = None,
                       scorer_on_gpu: bool = False) -> Iterator[ChunkResult]:
    """Per chunk of paths, in order, its recordings' windows (``(row, x or None)`` each), or with
    ``scoring`` its :class:`_ScoredChunk`. With ``workers`` >= 1, a pool of that many processes
    reads and preprocesses (and with ``scoring``, scores) up to ``ahead`` recordings ahead of the
    caller, so that it keeps working while the caller scores or writes, and memory stays bounded
    on long lists."""
    if workers < 1:
        # Chunks here too: the front end is batched, and one recording at a time cost ~4.3 ms of
        # preprocessing a recording against ~1.9 for eight (docs/bench/screening-chunks.md). One
        # BLAS thread while it runs, as in the pool: OpenBLAS's threads spin on the front end's
        # small products and took as much CPU again.
        with threadpool_limits(limits=1, user_api="blas"):
            for chunk in chunks:
                if chunk is not None:
                    yield [_arrays(windows) for windows in prepare_records(chunk, card, hop_s)]
        return
    context = multiprocessing.get_context(pool_start_method(scorer_on_gpu=scorer_on_gpu))
    max_in_flight = max(2 * workers, math.ceil(ahead / chunk_size))
    in_flight: deque = deque()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(card, hop_s, keep_freed_mb, scoring)) as pool:
        for chunk in chunks:
            if chunk is not None:
                in_flight.append(pool.submit(_prepare_chunk, chunk))
                if len(in_flight) >= max_in_flight:
                    yield in_flight.popleft().result()
            else:  # the listing is slow: what is finished goes to the caller meanwhile
                while in_flight and in_flight[0].done():
                    yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()


class _Listing:
    """The recordings under ``sources`` not in ``done``, listed in a thread of their own and handed
    out in chunks, in :func:`~hfrisk.model.readers.dispatch.iter_records`' order.

    The pool starts on the first chunks while the rest is being listed. Listing costs this process
    ~10 µs of CPU a recording here, most of it opening each header; listed first, that was time
    every process of the pool waited, on a GPU host's 16 cores as on 2
    (docs/bench/screening-caller.md), and on a network share minutes before the first score.
    ``count`` is how many were listed, final once ``finished`` is set."""

    def __init__(self, sources: Iterable[str | Path], done: set[str]) -> None:
        self.count = 0
        self.finished = threading.Event()
        # A path at a time (a fraction of a µs each way): a slow listing still hands out its first
        # paths at once.
        self._paths: queue.SimpleQueue = queue.SimpleQueue()
        self._taken: list[str] = []  # from the listing thread, not handed out yet
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._list, args=(sources, done), name="screening-listing", daemon=True).start()

    def _list(self, sources: Iterable[str | Path], done: set[str]) -> None:
        put = self._paths.put
        try:
            for path in record_paths(sources):
                if self._stop.is_set():
                    return
                if path not in done:
                    self.count += 1
                    put(path)
        except BaseException as err:  # noqa: BLE001 - raised again where the paths are taken
            put(err)
        finally:
            self.finished.set()
            put(None)

    def stop(self) -> None:
        """No more listing: the run ended, by an error perhaps, before the list did."""
        self._stop.set()

    def _take(self, timeout: float | None = None) -> None:
        """Takes what the listing thread has listed since, waiting up to ``timeout`` for a first path.
        An error of the listing is kept for :meth:`chunks` to raise after the paths listed before it."""
        if self._ended:
            return
        try:
            item = self._paths.get(timeout=timeout)
        except queue.Empty:
            return
        while item is not None:
            if isinstance(item, BaseException):
                self._error = item
                break
            self._taken.append(item)
            try:
                item = self._paths.get_nowait()
            except queue.Empty:
                return
        self._ended = True

    def at_least(self, n: int) -> int:
        """``n``, or how many there are in all if fewer: waits until that is known."""
        while len(self._taken) < n and not self._ended:
            self._take()
        return min(n, len(self._taken))

    def chunks(self, size: int, wait_s: float = 0.1) -> Iterator[list[str] | None]:
        """Chunks of ``size`` paths as they are listed (the last one shorter), and None whenever no
        chunk was listed within ``wait_s``: a slow listing does not keep the caller from the
        results of the chunks it has."""
        while True:
            if len(self._taken) < size:
                self._take(wait_s)
            cut = len(self._taken) - len(self._taken) % size
            if cut:
                chunks = [self._taken[i:i + size] for i in range(0, cut, size)]
                self._taken = self._taken[cut:]
                yield from chunks
            elif self._ended:
                break
            else:
                yield None
        if self._taken:
            yield self._taken
            self._taken = []
        if self._error is not None:
            raise self._error


def default_workers() -> int:
    return os.cpu_count() or 1


def screening_threads(workers: int | None) -> int | None:
    """ONNX Runtime intra-op threads for in-process scoring beside ``workers`` preprocessing
    processes (None: ONNX Runtime's default). The pool keeps the cores busy; more scoring threads
    than the cores it leaves would only contend with it (and spin while waiting)."""
    workers = default_workers() if workers is None else workers
    if workers == 0:
        return None
    return max(1, default_workers() - workers)


def screen(
    sources: Iterable[str | Path] | str | Path,
    scorer: SyncScorer,
    out_dir: str | Path,
    *,
    threshold: float,
    batch_size: int = 32,
    resume: bool = True,
    progress: bool = True,
    workers: int | None = None,
    chunk_size: int = 32,
    hop_s: float | None = None,
    keep_freed_mb: int = 256,
    score_in_pool: bool | None = None,
    read_back: bool = True,
) -> pd.DataFrame | None:
    """Score every window of every recording under ``sources``; returns all window rows (earlier
    runs' included; None with ``read_back=False``, for a caller that reads ``scores.csv`` its own
    way, as ``hfrisk screen`` does with :func:`read_table`) and writes the per-record summary,
    ``records.csv``, beside ``scores.csv``.

    Windows start every ``hop_s`` seconds (default: the card's window length; :func:`window_starts`).
    ``workers`` processes (default: one per CPU; 0: all in this process) read and preprocess the
    recordings, so screening runs at the speed of preprocessing spread over the cores rather than
    of one core (the windows of one recording stay in one process, which reads it once). When the
    scorer can be replicated (``replica()``: ONNX Runtime in process) and the pool has a
    process for every core (or ``score_in_pool`` is true), each of them also scores the windows it
    prepared, on one thread, and this process only writes rows: one busy process per core.
    Otherwise (Triton, a pool smaller than the cores, or ``score_in_pool=False``) this process
    scores the previous batch while the pool prepares the next. A scorer on a GPU replicates onto
    the same GPU, one session per pool process. A scorer or a front end (``HFRISK_FRONTEND__*``)
    on a GPU makes the pool spawn its processes (:func:`pool_start_method`); a front end there
    wants a ``chunk_size`` of hundreds. Rows keep the input order
    and the scores are the same whatever ``workers`` is. ``chunk_size`` recordings are read,
    preprocessed (in one call of the batched front end: 8 cost ~1.9 ms of preprocessing a recording
    here, 4 ~2.35, one at a time ~4.3; docs/bench/screening-chunks.md) and, in the pool, scored
    together: 32 took ~10 % less CPU a recording than 8, its model inputs going to ONNX Runtime in
    one batch instead of four (docs/bench/screening-caller.md). Pool processes
    keep up to ``keep_freed_mb`` of the memory they free for the next chunk (0: the C library's
    defaults), which saved ~0.7 ms of their CPU a recording (:mod:`hfrisk.core.allocator`,
    docs/bench/screening-allocator.md); this process's allocator is left as the caller has it.
    Recordings are listed in a thread while the pool works (:class:`_Listing`), and each
    recording's summary is made where its rows are (:func:`records_text`) and appended to
    ``records.csv`` with them: what is left to this process is one more appended line per row.
    """
    workers = default_workers() if workers is None else workers
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path, records_path = out_dir / SCORES_FILENAME, out_dir / RECORDS_FILENAME
    scale = scorer.card.risk_scale
    if not resume:
        scores_path.unlink(missing_ok=True)
        records_path.unlink(missing_ok=True)
    done = _resume(scores_path, records_path, threshold, scale)
    if done:
        log.info("resuming", already_scored=len(done))
    listing = _Listing(sources if not isinstance(sources, (str, Path)) else [sources], done)
    # A pool costs a second or so to start: not worth it for a handful of recordings.
    workers = listing.at_least(workers * chunk_size) // chunk_size if workers >= 1 else 0
    if score_in_pool is None:
        # A pool smaller than the cores leaves this process cores to score on.
        score_in_pool = workers >= default_workers()
    make_scorer = _replica_maker(scorer) if workers >= 1 and score_in_pool else None
    scoring = (_PoolScoring(make_scorer, threshold, batch_size, warm_up_batch=min(batch_size, chunk_size))
               if make_scorer is not None else None)

    pending: list[tuple[ScreenRow, np.ndarray]] = []
    records: list[list[ScreenRow]] = []  # whole records, in order; some of their windows in pending
    # Text of whole records, every window scored or not to be: what may be written, and their summaries.
    score_lines: list[str] = []
    record_lines: list[str] = []
    unwritten = 0  # records in those lines
    flushed_at = time.monotonic()

    def score_pending() -> None:
        nonlocal records, unwritten
        score_windows(pending, scorer, threshold, batch_size)
        pending.clear()
        if records:
            score_lines.append(csv_text([row for rows in records for row in rows]))
            record_lines.append(records_text(records, threshold, scale))
            unwritten += len(records)
            records = []

    def flush() -> None:
        nonlocal flushed_at, unwritten
        # scores.csv first: a run stopped between the two is mended by _resume from it.
        _flush(score_lines, scores_path, _COLUMNS)
        _flush(record_lines, records_path, RECORD_COLUMNS)
        score_lines.clear()
        record_lines.clear()
        unwritten = 0
        flushed_at = time.monotonic()

    # Two batches ahead: one being scored, one filling.
    prepared = _prepared_in_order(listing.chunks(chunk_size), scorer.card, workers, chunk_size, ahead=2 * batch_size,
                                  hop_s=hop_s, keep_freed_mb=keep_freed_mb, scoring=scoring,
                                  scorer_on_gpu=getattr(scorer, "device", "cpu") != "cpu")
    bar = tqdm(total=listing.count if listing.finished.is_set() else None, desc="screening", unit="ecg",
               disable=not progress)
    try:
        for chunk in prepared:
            if isinstance(chunk, _ScoredChunk):  # scored in the pool, its text written there
                score_lines.append(chunk.scores)
                record_lines.append(chunk.records)
                unwritten += chunk.n
                bar.update(chunk.n)
            else:
                for windows in chunk:
                    records.append([row for row, _ in windows])
                    pending.extend((row, x) for row, x in windows if x is not None)
                    if len(pending) >= batch_size:
                        score_pending()
                bar.update(len(chunk))
            if unwritten >= FLUSH_RECORDS or (score_lines and time.monotonic() - flushed_at >= FLUSH_S):
                flush()
            if bar.total is None and listing.finished.is_set():
                bar.total = listing.count
                bar.refresh()
        score_pending()
    finally:
        # Whole records, each window scored: what is written is done, and nothing done is lost to
        # an error or an interrupt (a record cut short is screened again whole, _resume).
        flush()
        bar.close()
        listing.stop()
    for path, columns in ((scores_path, _COLUMNS), (records_path, RECORD_COLUMNS)):
        if not path.exists():
            _flush([""], path, columns)  # nothing to screen: the header alone
    return read_scores(scores_path) if read_back else None


def read_records(path: str | Path) -> pd.DataFrame:
    """A ``records.csv``: text columns as text, numbers exactly as written (as :func:`read_scores`)."""
    return _read_csv(path, _RECORD_KINDS)


def _read_csv(path: str | Path, kinds: dict[str, str]) -> pd.DataFrame:
    # Text columns stay text: a patient id of digits ("00123") is not a number. Numbers come back
    # exactly as written: pandas' parser is off in the last bit of some log-risks by default.
    # (Arrow's parser is exact and a third of the CPU, but turns a column of whole numbers with
    # gaps, n_beats_detected of files from before it, into an error.)
    return pd.read_csv(path, dtype={column: str for column, kind in kinds.items() if kind == "str"},
                       float_precision="round_trip")


def read_table(path: str | Path, records: bool = False):
    """A ``scores.csv`` of today's columns (or with ``records``, a ``records.csv``) as an Arrow
    table, each column of its field's type (text as text, whole numbers as int64 with gaps as
    nulls, an empty field a null) and every number exactly as written. Arrow's parser runs on
    every core at ~1 µs of CPU a row, against ~6 for pandas' exact one: what ``hfrisk screen``
    reads once the pool's processes are done, and they wait for it
    (docs/bench/screening-caller.md). Files of older columns: :func:`read_scores`."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    kinds = {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "bool": pa.bool_()}
    types = {column: kinds[kind] for column, kind in (_RECORD_KINDS if records else ScreenRow.__annotations__).items()}
    options = arrow_csv.ConvertOptions(column_types=types, strings_can_be_null=True, include_columns=list(types))
    return arrow_csv.read_csv(path, convert_options=options)


def _resume(scores_path: Path, records_path: Path, threshold: float, scale: RiskScale | None) -> set[str]:
    """Records whose every window is in ``scores_path``. That file is rewritten in today's columns
    first, and without the rows of records left unfinished (they are screened again whole), and
    ``records_path`` is made again from what is kept: a run stopped between writing the one and
    the other, or by a version that wrote the summaries only at the end, left them apart."""
    if not scores_path.is_file():
        records_path.unlink(missing_ok=True)
        return set()
    frame = read_scores(scores_path)
    counts = frame.groupby("record")["windows_in_record"].agg(["size", "max"])
    done = counts.index[counts["size"] >= counts["max"]]
    kept = frame[frame["record"].isin(done)]
    if len(kept) < len(frame) or list(pd.read_csv(scores_path, nrows=0).columns) != _COLUMNS:
        kept.to_csv(scores_path, index=False)
    summarize_records(kept, threshold, scale).to_csv(records_path, index=False)
    return set(done.astype(str))


# records.csv's columns and the type of each, as ScreenRow's annotations give scores.csv's.
_RECORD_KINDS = {
    "record": "str", "patient_id": "str", "status": "str", "reason": "str", "windows": "int", "windows_scored": "int",
    "windows_low_quality": "int", "windows_refused": "int", "windows_flagged": "int", "median_log_risk": "float",
    "max_log_risk": "float", "max_log_risk_window_s": "float", "hazard_ratio": "float", "risk_percentile": "float",
    "absolute_risk": "float", "absolute_risk_horizon_days": "float", "flagged": "bool", "quality_score": "float",
    "heart_rate_bpm": "float", "top_lead": "str",
}
RECORD_COLUMNS = list(_RECORD_KINDS)


def summarize_records(frame: pd.DataFrame, threshold: float, risk_scale: RiskScale | None = None) -> pd.DataFrame:
    """One row per recording, in the order of ``frame`` (the window rows of :func:`screen`).

    ``status``: ``scored`` when any window was scored, else ``low_quality`` when any window was
    read, else ``refused``; ``reason``: the reasons of the windows not scored, most frequent first.
    Risk is over the scored windows: ``median_log_risk`` (and its ``hazard_ratio``),
    ``max_log_risk`` and where that window starts. A recording is ``flagged`` when its median
    log-risk is at least ``threshold`` (``windows_flagged`` counts the windows at or above it): one
    noisy window of a long recording does not flag it, and a one-window recording is flagged
    exactly when its window is. ``quality_score`` and ``heart_rate_bpm`` are medians over the
    windows that have them; ``top_lead`` is the lead most often on top of the lead attention.
    ``risk_percentile`` and ``absolute_risk`` are those of the median log-risk under ``risk_scale``
    (NaN without one), so a recording flagged on either is one whose median log-risk is flagged.
    """
    # Whole-column group aggregations: a loop of small pandas operations per recording cost ~3 ms
    # each, almost as much as preprocessing the recording.
    if frame.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    status = frame["status"]
    is_scored = status == "scored"
    risk = frame["log_risk"].astype(float).where(is_scored)
    by = frame["record"]
    group = lambda series: series.groupby(by, sort=False)  # noqa: E731
    out = pd.DataFrame({
        "windows": group(status).size(),
        "windows_scored": group(is_scored).sum(),
        "windows_low_quality": group(status == "low_quality").sum(),
        "windows_refused": group(status == "refused").sum(),
        "windows_flagged": group(risk >= threshold).sum(),
        "median_log_risk": group(risk).median(),
        "max_log_risk": group(risk).max(),
        "quality_score": group(frame["quality_score"].astype(float)).median(),
        "heart_rate_bpm": group(frame["heart_rate_bpm"].astype(float)).median(),
        "patient_id": group(frame["patient_id"].fillna("").astype(str).replace("", np.nan)).first(),
    })
    out.index.name = "record"
    scored = frame[is_scored]
    # The first window with the largest risk; the most frequent top lead, ties to the first in order.
    out["max_log_risk_window_s"] = frame.loc[scored.groupby("record", sort=False)["log_risk"].idxmax(),
                                             ["record", "window_start_s"]].set_index("record")["window_start_s"]
    leads = scored.groupby(["record", "top_lead"], sort=False).size().rename("n").reset_index()
    leads = leads.sort_values(["n", "top_lead"], ascending=[False, True], kind="stable").drop_duplicates("record")
    out["top_lead"] = leads.set_index("record")["top_lead"]
    any_scored = out["windows_scored"] > 0
    out["status"] = np.where(any_scored, "scored", np.where(out["windows_low_quality"] > 0, "low_quality", "refused"))
    out["reason"] = ""
    unscored = frame[~is_scored & frame["record"].isin(out.index[~any_scored])]
    for record, text in unscored.groupby("record", sort=False)["reason"]:  # most frequent first
        text = text.dropna().astype(str)
        out.loc[record, "reason"] = ";".join(pd.Series([r for t in text for r in t.split(";") if r]).value_counts().index)
    out["hazard_ratio"] = np.exp(out["median_log_risk"])
    median = out["median_log_risk"].to_numpy(dtype=float)
    nan = np.full(len(out), np.nan)
    out["risk_percentile"] = nan if risk_scale is None else risk_scale.percentile(median)
    out["absolute_risk"] = nan if risk_scale is None else risk_scale.absolute_risk_at_horizon(median)
    out["absolute_risk_horizon_days"] = (
        nan if risk_scale is None else np.where(np.isnan(median), np.nan, risk_scale.absolute_risk.horizon_days))
    out["flagged"] = any_scored & (out["median_log_risk"] >= threshold)
    out["patient_id"] = out["patient_id"].fillna("")
    out["top_lead"] = out["top_lead"].fillna("")
    for column in ("windows", "windows_scored", "windows_low_quality", "windows_refused", "windows_flagged"):
        out[column] = out[column].astype(int)
    return out.reset_index()[RECORD_COLUMNS]


def records_text(records: Sequence[Sequence[ScreenRow]], threshold: float, risk_scale: RiskScale | None = None) -> str:
    """Lines of ``records.csv`` for ``records`` (each one recording's window rows, all of them):
    the bytes :func:`summarize_records` and pandas' ``to_csv`` write for those rows, made from the
    rows themselves. The pool's processes summarise the recordings they scored this way, so that
    the calling process writes ``records.csv`` as it goes instead of reading every row back at the
    end: per recording, that read cost more of its CPU than anything else it does
    (docs/bench/screening-caller.md)."""
    nan = math.nan
    out, medians = [], []
    for rows in records:
        scored = [row for row in rows if row.status == "scored"]
        risks = [row.log_risk for row in scored]
        median = statistics.median(risks) if risks else nan
        medians.append(median)
        top = max(risks) if risks else nan
        by_lead = Counter(row.top_lead for row in scored)
        # The most frequent top lead; a tie to the first name in order, as summarize_records sorts.
        lead = min(by_lead, key=lambda name: (-by_lead[name], name)) if by_lead else ""
        n_low = sum(row.status == "low_quality" for row in rows)
        if scored:
            status, reason = "scored", ""
        else:
            status = "low_quality" if n_low else "refused"
            reasons = Counter(r for row in rows if row.reason for r in row.reason.split(";") if r)
            reason = ";".join(name for name, _ in sorted(reasons.items(), key=lambda kv: -kv[1]))  # stable
        head = [rows[0].record, next((row.patient_id for row in rows if row.patient_id), ""), status, reason,
                len(rows), len(scored), n_low, sum(row.status == "refused" for row in rows),
                sum(r >= threshold for r in risks), median, top,
                next(row.window_start_s for row in scored if row.log_risk == top) if scored else nan]
        flagged = bool(scored) and median >= threshold
        out.append((head, flagged, [_median_of(row.quality_score for row in rows),
                                    _median_of(row.heart_rate_bpm for row in rows), lead]))
    median = np.array(medians, dtype=float)
    hazard = np.exp(median).tolist()  # numpy's exp, as summarize_records: math.exp differs in the last bit
    if risk_scale is not None:
        percentile = risk_scale.percentile(median).tolist()
        absolute = risk_scale.absolute_risk_at_horizon(median).tolist()
        days = np.where(np.isnan(median), nan, risk_scale.absolute_risk.horizon_days).tolist()
    else:
        percentile = absolute = days = [nan] * len(out)
    lines = io.StringIO()
    csv.writer(lines, lineterminator="\n").writerows(
        [_cell(v) for v in (*head, hazard[k], percentile[k], absolute[k], days[k], flagged, *tail)]
        for k, (head, flagged, tail) in enumerate(out))
    return lines.getvalue()


def _median_of(values: Iterable[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def summarize(frame: pd.DataFrame, top: int = 10) -> Sequence[dict]:
    """The ``top`` highest-risk scored rows, riskiest first: windows of :func:`screen`'s rows, or
    recordings (by median log-risk) of :func:`summarize_records`'."""
    risk = "median_log_risk" if "median_log_risk" in frame.columns else "log_risk"
    scored = frame[frame["status"] == "scored"].sort_values(risk, ascending=False)
    return scored.head(top).to_dict("records")


def write_summary(frame: pd.DataFrame, path: str | Path, top: int = 10, leads: Sequence[str] | None = None) -> Path:
    """A PNG: the distribution of log-risk with the flag threshold's cases marked, and the top-risk
    windows with their lead-attention weights (which leads the model looked at). One window per
    recording, as in PTB-XL, makes these the recordings; a later window is named with its start."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hfrisk.model.contract.card import CANONICAL_LEADS

    leads = list(leads or CANONICAL_LEADS)
    scored = frame[frame["status"] == "scored"]
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    hist, heat = figure.subplots(1, 2, width_ratios=(1, 1.3))
    if len(scored):
        flagged = scored["flagged"].astype(bool)
        hist.hist([scored.loc[~flagged, "log_risk"], scored.loc[flagged, "log_risk"]], stacked=True,
                  bins=min(40, max(5, len(scored) // 3)), color=["#4c72b0", "#c44e52"], label=["not flagged", "flagged"])
        hist.legend()
    counts = frame["status"].value_counts().to_dict()
    hist.set(xlabel="log-risk (Cox log-hazard, higher = riskier)", ylabel="windows",
             title=f"{counts.get('scored', 0)} scored, {int(frame['flagged'].sum())} flagged, "
                   f"{counts.get('low_quality', 0)} low quality, {counts.get('refused', 0)} refused")
    # The top rows alone: sorting every row (and its text) was most of the picture's cost a row.
    head = scored.nlargest(top, "log_risk", keep="first")
    attention = [decode_lead_weights(a) for a in head.get("lead_attention", pd.Series([None] * len(head)))]
    weights = np.array([[by_lead.get(lead, np.nan) for lead in leads] for by_lead in attention], dtype=float)
    image = heat.imshow(weights if len(head) else np.zeros((1, len(leads))), aspect="auto", cmap="magma")
    heat.set_xticks(range(len(leads)), leads)
    starts = head["window_start_s"] if "window_start_s" in head else pd.Series([0.0] * len(head))
    heat.set_yticks(range(len(head)), [f"{Path(r).stem}{f' @{s:g} s' if s else ''}  {v:+.2f}"
                                       for r, s, v in zip(head["record"], starts, head["log_risk"])])
    heat.set_title(f"top {len(head)} by risk: lead attention")
    figure.colorbar(image, ax=heat, label="attention weight")
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path
