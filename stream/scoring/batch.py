"""Micro-batches of windows across patients: preprocessing off the event loop, one model call.

The worker collects the windows that one batch of chunk messages completed (many patients at
once) and hands them to :func:`score_windows`:

1. :class:`Preprocessor` runs the batched front end
   (:func:`hfrisk.model.frontend.preprocessing.prepare_windows`, the one pipeline shared with
   training and screening) on each slice of the batch in a **process pool**. It costs about a
   millisecond of NumPy work per window and holds the GIL for part of it; in a thread it would
   still stall the event loop (Kafka heartbeats, Triton calls, Redis writes) and could not use a
   second core. A pool of ``workers`` processes (``spawn``ed: forking a process that already runs
   gRPC and asyncio threads is unsafe) does both; a batch is cut into parts of at most
   ``part_windows`` windows (at least one per process) that the processes work through. With
   ``workers=0`` it runs in one thread of this process instead (tests, tiny machines).
2. As soon as a part is prepared, its windows that are fit to score are stacked and sent to the
   model in one call (:class:`AsyncTritonScorer`: ``RiskClient.infer`` splits by ``max_batch``
   and sends the pieces concurrently), while the pool prepares the next parts: preprocessing and
   inference of one micro-batch overlap instead of following one another
   (docs/bench/stream-tuning.md, "Parts"). Windows that are not fit are returned without
   outputs: they are stored as low-quality results and never reach Triton.
3. A Triton that is down, restarting or not serving the model is waited for: the call is retried
   with exponential backoff for as long as it takes, so nothing is acknowledged and nothing valid
   is dead-lettered. Only a request Triton *rejects* (``INVALID_ARGUMENT``) is split up to find
   the window at fault, which is then dead-lettered.

Example::

    pre = Preprocessor(card, workers=1)
    scorer = AsyncTritonScorer(RiskClient.from_settings(card=card))
    scored = await score_windows([w.ecg for w in windows], pre, scorer)
    scored[0].prepared.quality.fit_to_score, scored[0].outputs["log_risk"]
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, TypeVar

import numpy as np

from hfrisk.core.allocator import keep_freed_memory
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.frontend.arrays import one_blas_thread
from hfrisk.model.frontend.preprocessing import ModelInput, prepare, prepare_windows
from hfrisk.serving.client import InferenceError, ModelNotReady, RiskClient, ServerNotReady
from hfrisk.core.retries import Backoff, retrying
from hfrisk.stream.messages.dead_letter import INFERENCE_REJECTED, INTERNAL_ERROR
from hfrisk.stream.scoring.shared_windows import (
    SharedBlock,
    WindowBlocks,
    WindowRef,
    arrays_bytes,
    block_size_for,
    put_arrays,
    take_arrays,
    windows_bytes,
    windows_from,
)

__all__ = [
    "PrepareFailure",
    "or_failure",
    "WindowScore",
    "Preprocessor",
    "part_bounds",
    "shared_memory_for_batch",
    "NoopPreprocessor",
    "AsyncScorer",
    "AsyncTritonScorer",
    "NoopScorer",
    "InferenceRejected",
    "score_parts",
    "score_windows",
]

log = get_logger(__name__)

T = TypeVar("T")

# Statuses that mean "this request is wrong", not "the server is not there": retrying cannot help.
REJECTED_STATUSES = frozenset({"StatusCode.INVALID_ARGUMENT"})


@dataclass(frozen=True)
class PrepareFailure:
    """Why ``prepare`` refused a window: a dead-letter reason code and the message.

    (``ECGInputError`` itself does not survive pickling back from a pool process.)
    """

    reason: str
    detail: str


@dataclass(frozen=True)
class WindowScore:
    """One window after the batch: prepared (or refused), with the model's outputs if scored."""

    prepared: ModelInput | None
    outputs: dict[str, np.ndarray] | None = None
    failure: PrepareFailure | None = None

    @property
    def scored(self) -> bool:
        return self.outputs is not None


# -- preprocessing ------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _card(card_json: str) -> ModelCard:
    return ModelCard.model_validate_json(card_json)


def _prepare_all(ecgs: Sequence[ECG], card_json: str) -> list[ModelInput | PrepareFailure]:
    """Runs in a pool process: the windows through the batched front end at once; refusals come
    back as values, never raised."""
    card = _card(card_json)
    try:
        done = prepare_windows([(ecg, 0.0) for ecg in ecgs], card)
    except Exception:  # a bug in preprocessing must not take the batch down: find the window at fault
        return [_prepare_one(ecg, card) for ecg in ecgs]
    return [PrepareFailure(d.reason.value, d.detail) if isinstance(d, ECGInputError) else d for d in done]


# A model input's arrays that go back through the block rather than the pipe (~58 kB a window).
_SHARED_RESULT_ARRAYS = ("x", "median_beat_mv")


def _result_room(card: ModelCard) -> int:
    """The room one window's :data:`_SHARED_RESULT_ARRAYS` take in a block (float32, the card's shapes)."""
    spec = card.input
    return arrays_bytes([spec.shape[1:], (len(spec.leads), spec.beat_samples)])


def _prepare_shared(block: str, refs: Sequence[WindowRef], card_json: str,
                    results: tuple[int, int] = (0, 0)) -> list[ModelInput | PrepareFailure]:
    """:func:`_prepare_all` on windows the worker put in shared-memory block ``block``; the model
    inputs' large arrays go back in that block between ``results`` ``(start, end)``."""
    prepared = _prepare_all(windows_from(block, refs), card_json)
    start, end = results
    return put_arrays(block, prepared, _SHARED_RESULT_ARRAYS, start, end) if end > start else prepared


def or_failure(step: Callable[[], T]) -> T | PrepareFailure:
    """``step()``, or the :class:`PrepareFailure` the worker records for what it raised: an input
    error's own reason, anything else as an internal error (it must not take the batch down)."""
    try:
        return step()
    except ECGInputError as err:
        return PrepareFailure(err.reason.value, err.detail)
    except Exception as exc:
        return PrepareFailure(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")


def _prepare_one(ecg: ECG, card: ModelCard) -> ModelInput | PrepareFailure:
    return or_failure(lambda: prepare(ecg, card))


def _init_pool_process(keep_freed_mb: int = 0) -> None:
    _ignore_stop_signals()
    one_blas_thread()
    # Spawned, so the worker's own allocator setting does not reach it: each part's arrays are
    # freed before the next part and would otherwise be faulted in again (hfrisk/core/allocator.py).
    keep_freed_memory(keep_freed_mb)


def _ignore_stop_signals() -> None:
    # A stop signal goes to the worker's whole process group; the pool must outlive it until the
    # worker has finished or abandoned its batch (it exits when the worker closes it or dies).
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _warm(card_json: str) -> bool:
    # Imports preprocessing (SciPy, NeuroKit2: seconds) and fills caches before the first batch.
    _prepare_all([ECG(samples=np.zeros((12, 5000), np.float32), fs_hz=500.0, lead_names=_card(card_json).input.leads)],
                 card_json)
    return True


def part_bounds(n: int, workers: int, part_windows: int) -> list[tuple[int, int]]:
    """``[start, end)`` of the parts :meth:`Preprocessor.parts` cuts ``n`` windows into: as even
    as can be, at most ``part_windows`` each, at least one per process, none empty."""
    if n <= 0:
        return []
    parts = max(min(workers, n), -(-n // part_windows), 1)
    base, extra = divmod(n, parts)
    bounds, start = [], 0
    for k in range(parts):
        end = start + base + (k < extra)
        bounds.append((start, end))
        start = end
    return bounds


# The rate a batch's shared memory is sized for when no budget is set: 12-lead monitors and carts
# stream at 500 Hz. A feed at 1,000 Hz fits about half the windows; the rest go pickled, which is
# logged once with the setting to raise.
SIZING_FS_HZ = 500.0
# The least budget, in MB (the fixed default before it was sized by the batch): a batch of 32 at
# 1,000 Hz still fits.
MIN_SHARED_MB = 32


def shared_memory_for_batch(card: ModelCard, batch_windows: int, workers: int, part_windows: int,
                            fs_hz: float = SIZING_FS_HZ) -> tuple[int, int]:
    """``(budget in MB, block size in bytes)`` that hold a batch of ``batch_windows`` windows of
    ``fs_hz`` signal and their results: a block the size of a full part for each part
    :func:`part_bounds` cuts the batch into, and at least :data:`MIN_SHARED_MB`."""
    window = arrays_bytes([(len(card.input.leads), round(card.window.window_s * fs_hz))])
    block = block_size_for(min(part_windows, batch_windows) * (window + _result_room(card)))
    parts = len(part_bounds(batch_windows, max(workers, 1), part_windows))
    return max(MIN_SHARED_MB, -(-(parts * block) >> 20)), block


class Preprocessor:
    """``prepare`` for batches of windows, in ``workers`` processes (0: one thread here), in parts
    of at most ``part_windows`` windows (at least one part per process). The processes get the
    windows through up to ``shared_mb`` MB of shared memory (0: pickled;
    :mod:`hfrisk.stream.scoring.shared_windows`), in blocks of at least ``block_bytes``, and,
    unless ``shared_results`` is off, send the model inputs' arrays back the same way; they keep
    up to ``keep_freed_mb`` MB of what they free for the next part (0: the C library's defaults;
    :mod:`hfrisk.core.allocator`)."""

    def __init__(self, card: ModelCard, workers: int = 1, *, part_windows: int = 8, shared_mb: int = 32,
                 block_bytes: int = 0, keep_freed_mb: int = 0, shared_results: bool = True):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if part_windows < 1:
            raise ValueError(f"part_windows must be >= 1, got {part_windows}")
        if shared_mb < 0:
            raise ValueError(f"shared_mb must be >= 0, got {shared_mb}")
        self.card = card
        self.workers = workers
        self.part_windows = part_windows
        self._card_json = card.to_json()
        self._executor: Executor = (
            ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_pool_process,
                initargs=(keep_freed_mb,),
            )
            if workers > 0
            else ThreadPoolExecutor(1, thread_name_prefix="hfrisk-prepare")
        )
        self.blocks = WindowBlocks(shared_mb << 20, block_bytes) if workers > 0 and shared_mb > 0 else None
        self._result_room = _result_room(card) if shared_results else 0

    def warm_up(self) -> None:
        """Block until every pool process has imported the pipeline (call before serving)."""
        futures = [self._executor.submit(_warm, self._card_json) for _ in range(max(1, self.workers))]
        for future in futures:
            future.result()

    def parts(self, ecgs: Sequence[ECG]) -> list[tuple[int, Awaitable[list[ModelInput | PrepareFailure]]]]:
        """The windows in parts, each already submitted to the pool: ``(offset of its first
        window, its prepared windows to await)``, in order. A refused window gives a
        :class:`PrepareFailure`."""
        loop = asyncio.get_running_loop()
        return [
            (start, asyncio.wrap_future(self._submit(ecgs[start:end]), loop=loop))
            for start, end in part_bounds(len(ecgs), self.workers, self.part_windows)
        ]

    def _submit(self, ecgs: Sequence[ECG]) -> Future:
        windows = windows_bytes(ecgs)
        room = len(ecgs) * self._result_room
        block = self.blocks.take(windows + room) if self.blocks is not None else None
        if block is None:
            return self._executor.submit(_prepare_all, list(ecgs), self._card_json)
        try:
            future = self._executor.submit(_prepare_shared, block.name, block.put(ecgs), self._card_json,
                                           (windows, windows + room))
        except BaseException:
            self.blocks.give_back(block)
            raise
        # Lent until the pool process is done with it (or the part was cancelled before it ran)
        # and its results are copied out. Callbacks run in the order they were added, so this one
        # has replaced the results' references by their arrays before the event loop sees them.
        future.add_done_callback(lambda done, b=block: self._collect(done, b))
        return future

    def _collect(self, done: Future, block: SharedBlock) -> None:
        try:
            if not done.cancelled() and done.exception() is None:
                take_arrays(block, done.result())
        finally:
            self.blocks.give_back(block)

    async def prepare(self, ecgs: Sequence[ECG]) -> list[ModelInput | PrepareFailure]:
        """``prepare`` every window, in order; a refused window gives a :class:`PrepareFailure`."""
        results = await asyncio.gather(*(pending for _, pending in self.parts(ecgs)))
        return [item for part in results for item in part]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.blocks is not None:
            self.blocks.close()


class NoopPreprocessor:
    """A stand-in front end that costs nothing: every window fit to score, model input all zeros.

    For measuring the worker's own plumbing (``hfrisk worker --noop-prep``, with ``--noop-model``
    in ``bench/bench_stream.py``). No pool is started; every window gets the same
    :class:`ModelInput`: ``x`` zeros of the card's ``(len(leads), length_samples)``, every lead
    usable, quality 1, no beats. The rest of the worker (records, Redis writes, alerts,
    checkpoints) runs as usual. Never use it for patients: nothing about the signal is checked.
    """

    workers = 0

    def __init__(self, card: ModelCard):
        from hfrisk.model.frontend.quality import QualityReport

        self.card = card
        leads = tuple(card.input.leads)
        x = np.zeros((len(leads), card.input.length_samples), np.float32)
        beat = np.zeros((len(leads), card.input.beat_samples), np.float32)
        no_beats = np.zeros(0, np.float64)
        for array in (x, beat, no_beats):
            array.flags.writeable = False  # one instance shared by every window
        quality = QualityReport(
            score=1.0, fit_to_score=True, reasons=(), usable_leads=leads, flat_leads=(), lead_off_leads=(),
            saturated_leads=(), baseline_wander_leads=(), noisy_leads=(), lead_correlation=dict.fromkeys(leads, 1.0),
            template_correlation=1.0, n_beats_detected=0, n_beats_used=0,
        )
        self.prepared = ModelInput(
            x=x, lead_mask=np.ones(len(leads), bool), quality=quality, r_peaks_s=no_beats,
            detected_r_peaks_s=no_beats, n_beats_detected=0, n_beats_used=0, heart_rate_bpm=None,
            fs_hz=card.input.fs_hz, derived_leads=(), leads=leads, median_beat_mv=beat, window_start_s=0.0,
            duration_s=card.window.window_s,
        )

    def warm_up(self) -> None:
        return None

    async def prepare(self, ecgs: Sequence[ECG]) -> list[ModelInput | PrepareFailure]:
        return [self.prepared] * len(ecgs)

    def parts(self, ecgs: Sequence[ECG]) -> list[tuple[int, Awaitable[list[ModelInput | PrepareFailure]]]]:
        return [(0, self.prepare(ecgs))] if ecgs else []

    def close(self) -> None:
        return None


# -- the model ----------------------------------------------------------------------------------


class InferenceRejected(RuntimeError):
    """The model server refused the request itself (bad tensor): retrying will not help."""


class AsyncScorer(Protocol):
    """What :func:`score_windows` needs of a model: a batch in, the card's outputs out."""

    model_version: str

    async def infer(self, x: np.ndarray) -> dict[str, np.ndarray]: ...

    async def close(self) -> None: ...


class AsyncTritonScorer:
    """The model on Triton through :class:`RiskClient`, waiting out outages.

    ``RiskClient`` retries a few times by itself; past that, an unavailable server, a model not
    (yet) loaded or a timeout is retried here with ``backoff`` until it answers, so a Triton
    restart only delays the stream. ``on_latency`` gets the seconds of each successful call.
    """

    def __init__(
        self,
        client: RiskClient,
        *,
        backoff: Backoff | None = None,
        on_latency: Callable[[float], None] | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
    ):
        self.client = client
        self.backoff = backoff or Backoff()
        self.on_latency = on_latency
        self.model_version = client.model_version or ""
        # The served model whose newest version the results record.
        self.version_of = getattr(client, "model_name", "")
        self._version_asked = False
        self.outages = 0
        self._sleep = sleep

    async def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return await self._until_answered(lambda: self.client.infer(x), len(x))

    async def _until_answered(self, call: Callable[[], Awaitable[dict[str, np.ndarray]]],
                              windows: int) -> dict[str, np.ndarray]:
        """``call()`` retried through outages; a request Triton rejects raises :class:`InferenceRejected`."""
        failures = 0

        def on_retry(exc: BaseException, attempt: int, delay_s: float) -> None:
            nonlocal failures
            failures = attempt
            if attempt == 1:
                self.outages += 1
            log.warning("triton unavailable; holding the batch and retrying", windows=windows, attempt=attempt,
                        delay_s=round(delay_s, 2), error=str(exc))

        async def once() -> dict[str, np.ndarray]:
            started = time.perf_counter()
            try:
                outputs = await call()
            except InferenceError as exc:
                if exc.status in REJECTED_STATUSES:
                    raise InferenceRejected(str(exc)) from exc
                raise  # timeouts, internal errors of a restarting backend: retried
            if self.on_latency is not None:
                self.on_latency(time.perf_counter() - started)
            return outputs

        outputs = await retrying(
            retry_on=(ServerNotReady, ModelNotReady, InferenceError), backoff=self.backoff, on_retry=on_retry,
            sleep=self._sleep,
        )(once)
        if failures:
            log.info("triton is back", attempts=failures + 1)
        if not self.model_version and not self._version_asked:
            self._version_asked = True
            self.model_version = await self._served_version()
        return outputs

    async def _served_version(self) -> str:
        """The newest version Triton serves (what the results record as ``model_version``)."""
        import tritonclient.grpc.aio as grpcclient

        probe = None
        try:
            probe = grpcclient.InferenceServerClient(self.client.url)
            meta = await probe.get_model_metadata(self.version_of, as_json=True)
            versions = sorted(meta.get("versions", []), key=lambda v: int(v) if str(v).isdigit() else -1)
            return str(versions[-1]) if versions else ""
        except Exception as exc:  # cosmetic: never hold up scoring for it
            log.warning("could not read the served model version", error=str(exc))
            return ""
        finally:
            if probe is not None:
                await probe.close()

    async def close(self) -> None:
        await self.client.close()


class NoopScorer:
    """A stand-in model that costs nothing: log-risk 0 and uniform attention for every window.

    For measuring the pipeline without the model (``hfrisk worker --noop-model``). Never use it
    for patients: its scores mean nothing.
    """

    model_version = "noop"

    def __init__(self, card: ModelCard, *, on_latency: Callable[[float], None] | None = None):
        self.card = card
        self.on_latency = on_latency

    async def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        n = len(x)
        out = {}
        for spec in self.card.outputs:
            shape = (n, *spec.shape[1:])
            out[spec.name] = (
                np.zeros(shape, np.float32) if spec.name == "log_risk" else np.full(shape, 1.0 / shape[-1], np.float32)
            )
        if self.on_latency is not None:
            self.on_latency(0.0)
        return out

    async def close(self) -> None:
        return None


# -- one batch ----------------------------------------------------------------------------------


def _rows(outputs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {name: value[i : i + 1] for name, value in outputs.items()}


async def _infer_rows(scorer: AsyncScorer, x: np.ndarray) -> list[dict[str, np.ndarray] | PrepareFailure]:
    """One call for the whole batch; if Triton rejects it, one call per window to find the bad one."""
    try:
        outputs = await scorer.infer(x)
        return [_rows(outputs, i) for i in range(len(x))]
    except InferenceRejected as exc:
        if len(x) == 1:
            return [PrepareFailure(INFERENCE_REJECTED, str(exc))]
        log.warning("triton rejected a batch; scoring its windows one by one", windows=len(x), error=str(exc))
    rows: list[dict[str, np.ndarray] | PrepareFailure] = []
    for i in range(len(x)):
        rows.extend(await _infer_rows(scorer, x[i : i + 1]))
    return rows


async def score_parts(
    ecgs: Sequence[ECG],
    preprocessor: Preprocessor | None,
    scorer: AsyncScorer,
    *,
    on_batch: Callable[[int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> AsyncIterator[tuple[int, list[WindowScore]]]:
    """Prepare every window and score the fit ones; yields ``(offset, scores)`` per part of
    :meth:`Preprocessor.parts`, in input order, each as soon as it and the parts before it are
    scored, so that the caller can write one part while later parts are still being prepared
    and scored. Use it in ``contextlib.aclosing``: closing it early cancels the parts still
    running.

    Each part goes to the model (one call) as soon as it is prepared, while the pool works on the
    next parts. ``on_batch`` gets the number of windows of each model call (not called for a part
    with none fit); ``timings``, if given, receives ``prepare``, the seconds until the last part was
    prepared, and ``infer``, the seconds from then until the last part was scored (the part of
    inference not hidden behind preprocessing): the two add up to the wall time of the scoring.
    A scorer that prepares windows itself (``prepares_windows``: :class:`~hfrisk.stream.scoring.
    on_server.ServerSideScorer`, the front end on the model's server) gets the raw windows
    instead, in one part, and ``preprocessor`` is not used (it may be None).
    """
    if getattr(scorer, "prepares_windows", False):
        yield 0, await scorer.score_raw(ecgs, on_batch=on_batch, timings=timings)
        return
    started = time.perf_counter()
    last_prepared = last_scored = started

    async def score_part(pending: Awaitable[list[ModelInput | PrepareFailure]]) -> list[WindowScore]:
        nonlocal last_prepared, last_scored
        prepared = await pending
        last_prepared = max(last_prepared, time.perf_counter())
        part = [WindowScore(None, failure=p) if isinstance(p, PrepareFailure) else WindowScore(p) for p in prepared]
        fit = [i for i, r in enumerate(part) if r.prepared is not None and r.prepared.quality.fit_to_score]
        if fit:
            x = np.ascontiguousarray(np.stack([part[i].prepared.x for i in fit]), dtype=np.float32)
            if on_batch is not None:
                on_batch(len(fit))
            rows = await _infer_rows(scorer, x)
            for i, row in zip(fit, rows):
                if isinstance(row, PrepareFailure):
                    part[i] = WindowScore(part[i].prepared, failure=row)
                else:
                    part[i] = WindowScore(part[i].prepared, outputs=row)
        last_scored = max(last_scored, time.perf_counter())
        return part

    tasks = [(offset, asyncio.ensure_future(score_part(pending))) for offset, pending in preprocessor.parts(ecgs)]
    try:
        for offset, task in tasks:
            yield offset, await task
    finally:
        # A part that failed, or a caller that stopped early, ends the batch: the other parts'
        # model calls are not waited for.
        for _, task in tasks:
            task.cancel()
    if timings is not None:
        timings["prepare"] = round(last_prepared - started, 6)
        timings["infer"] = round(last_scored - last_prepared, 6)


async def score_windows(
    ecgs: Sequence[ECG],
    preprocessor: Preprocessor | None,
    scorer: AsyncScorer,
    *,
    on_batch: Callable[[int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> list[WindowScore]:
    """Every window's :class:`WindowScore`, in input order: :func:`score_parts` all at once."""
    results: list[WindowScore] = []
    async with contextlib.aclosing(score_parts(ecgs, preprocessor, scorer, on_batch=on_batch,
                                               timings=timings)) as parts:
        async for _, part in parts:
            results.extend(part)
    return results
