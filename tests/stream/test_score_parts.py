"""A micro-batch's windows are prepared in parts, and each part goes to the model as soon as it is
prepared: preprocessing and inference overlap, results stay in input order and equal to the
whole batch prepared at once, and one failing part fails the batch without waiting for the rest."""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import pytest

from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.scoring.batch import Preprocessor, part_bounds, score_windows
from hfrisk.stream.windowing import Window, WindowAssembler
from tests.stream.test_worker_unit import CARD, RECORDS, START_US, FakeScorer, reference_risk


def ten_windows() -> list:
    """The first ten 10-s windows of four replayed PTB-XL beds, as the worker's assembler cuts them."""
    chunks = [chunk for _, chunk in feed([RECORDS], beds=4, max_records=12, start_us=START_US, salt="parts")]
    assembler = WindowAssembler(window_s=CARD.window.window_s, hop_s=5.0, reorder_s=5.0)
    windows = [o.ecg for c in chunks for o in assembler.feed(c) if isinstance(o, Window)]
    assert len(windows) >= 10
    return windows[:10]


@pytest.fixture(scope="module")
def ecgs():
    return ten_windows()


@pytest.mark.parametrize(
    ("workers", "part_windows", "n", "sizes"),
    [
        (0, 3, 7, [3, 2, 2]),  # at most part_windows, as even as can be
        (0, 8, 7, [7]),
        (2, 8, 3, [2, 1]),  # at least one part per process
        (2, 8, 20, [7, 7, 6]),  # rather than 8, 8, 4
        (3, 8, 2, [1, 1]),  # never an empty part
        (2, 8, 0, []),
    ],
)
def test_a_batch_is_cut_into_even_parts_of_at_most_part_windows_and_at_least_one_per_process(
    workers, part_windows, n, sizes
):
    bounds = part_bounds(n, workers, part_windows)
    assert [end - start for start, end in bounds] == sizes
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:])) and (not bounds or bounds[-1][1] == n)


class TimedScorer(FakeScorer):
    """Notes when each model call started."""

    def __init__(self):
        super().__init__()
        self.started_at: list[float] = []

    async def infer(self, x):
        self.started_at.append(time.perf_counter())
        return await super().infer(x)


def test_each_part_is_scored_as_soon_as_it_is_prepared_and_results_keep_their_order(ecgs):
    whole = Preprocessor(CARD, workers=0, part_windows=len(ecgs))
    in_parts = Preprocessor(CARD, workers=0, part_windows=3)
    try:
        at_once = asyncio.run(whole.prepare(ecgs))
        scorer, timings, batches = TimedScorer(), {}, []

        async def go():
            started = time.perf_counter()
            return started, await score_windows(ecgs, in_parts, scorer, on_batch=batches.append, timings=timings)

        started, scored = asyncio.run(go())
    finally:
        whole.close()
        in_parts.close()

    fit = [p.quality.fit_to_score for p in at_once]
    assert sum(fit) >= 6
    # Four parts (3, 3, 3, 1), one model call each that has a window fit to score.
    assert len(scorer.calls) == len(batches) == sum(any(fit[i : i + 3]) for i in range(0, len(ecgs), 3))
    assert sum(scorer.calls) == sum(fit)
    # The first part was on the model while the last ones were still being prepared.
    assert scorer.started_at[0] < started + timings["prepare"]
    assert timings["infer"] >= 0
    for one, reference, is_fit in zip(scored, at_once, fit):
        np.testing.assert_array_equal(one.prepared.x, reference.x)
        assert one.scored == is_fit
        if is_fit:
            np.testing.assert_allclose(one.outputs["log_risk"], reference_risk(reference.x[None]))


class FailingScorer(FakeScorer):
    """The first call fails after the second has started; the second would take long."""

    def __init__(self):
        super().__init__()
        self.second_started = asyncio.Event()
        self.second_cancelled = False

    async def infer(self, x):
        self.calls.append(len(x))
        if len(self.calls) == 1:
            await self.second_started.wait()
            raise RuntimeError("model broke")
        self.second_started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.second_cancelled = True
            raise
        return await super().infer(x)


def test_a_failing_part_fails_the_batch_at_once_and_cancels_the_other_model_calls(ecgs):
    pre = Preprocessor(CARD, workers=0, part_windows=5)
    scorer = FailingScorer()

    async def go():
        with pytest.raises(RuntimeError, match="model broke"):
            await asyncio.wait_for(score_windows(ecgs, pre, scorer), timeout=20)
        await asyncio.sleep(0)  # let the cancellation reach the other call

    try:
        asyncio.run(go())
    finally:
        pre.close()
    assert len(scorer.calls) == 2 and scorer.second_cancelled


def _pool_minor_faults(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[7])  # field 10, minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc: Linux only")
def test_the_spawned_pool_keeps_what_each_part_frees(ecgs):
    # Spawned, the pool does not inherit the worker's allocator setting; it is handed over. Kept,
    # the parts after the first reuse the memory the first freed instead of faulting it in again.
    def faults_per_batch(keep_freed_mb: int) -> list[int]:
        pre = Preprocessor(CARD, workers=1, part_windows=8, keep_freed_mb=keep_freed_mb)
        try:
            pre.warm_up()
            (pid,) = pre._executor._processes  # the one pool process
            counts = []
            for _ in range(4):
                before = _pool_minor_faults(pid)
                asyncio.run(pre.prepare(ecgs))
                counts.append(_pool_minor_faults(pid) - before)
            return counts
        finally:
            pre.close()

    default, kept = faults_per_batch(0), faults_per_batch(256)
    assert min(default[1:]) > 1000  # every part's arrays faulted in again
    assert max(kept[1:]) < 0.2 * min(default[1:])


def test_the_worker_builds_its_pool_from_the_stream_settings():
    from hfrisk.core.config import StreamSettings
    from hfrisk.stream.scoring.batch import part_bounds
    from hfrisk.stream.worker.command import worker_preprocessor

    stream = StreamSettings(prep_workers=0, part_windows=32, prep_shared_mb=0, keep_freed_mb=0)
    pre = worker_preprocessor(stream, CARD)
    try:
        assert (pre.workers, pre.part_windows, pre.blocks) == (0, 32, None)
        assert part_bounds(58, pre.workers, pre.part_windows) == [(0, 29), (29, 58)]
    finally:
        pre.close()
    default = StreamSettings()
    assert (default.part_windows, default.prep_shared_mb) == (8, None)
