"""Windows reach the preprocessing processes through shared memory, and their model inputs come back
the same way: the same windows, the same model inputs as pickled ones, blocks lent to one part at a
time and unlinked on close, and a part that finds no block goes pickled."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import pickle
import subprocess
import sys
import textwrap
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

from hfrisk.model.contract.ecg import ECG
from hfrisk.stream.scoring import shared_windows
from hfrisk.stream.scoring.batch import Preprocessor, PrepareFailure
from hfrisk.stream.scoring.shared_windows import (
    ArrayRef,
    SharedBlock,
    WindowBlocks,
    block_size_for,
    put_arrays,
    take_arrays,
    windows_bytes,
    windows_from,
)
from tests.stream.test_score_parts import ten_windows
from tests.stream.test_worker_unit import CARD

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX shared memory (Windows frees a block with its last handle)")


def _unlinked(name: str) -> bool:
    try:
        SharedMemory(name).close()
    except FileNotFoundError:
        return True
    return False


@pytest.fixture(scope="module")
def ecgs():
    return ten_windows()


def _fields(ecg: ECG) -> dict:
    return {f.name: getattr(ecg, f.name) for f in dataclasses.fields(ecg) if f.name != "samples"}


def test_windows_read_back_from_a_block_are_the_windows_put_in(ecgs):
    odd = [
        ecgs[0],
        # not contiguous: every other column of a wider array
        ECG(samples=np.arange(12 * 2000, dtype=np.float32).reshape(12, 2000)[:, ::2], fs_hz=100.0,
            lead_names=ecgs[0].lead_names, patient_id="p-strided", metadata={"window_id": "w", "index": 3}),
        # another rate and lead count in the same part
        ECG(samples=np.full((6, 2501), -1.5, np.float32), fs_hz=250.0, lead_names=tuple("ABCDEF"), device_id="d6"),
        ecgs[1],
    ]
    block = SharedBlock(block_size_for(windows_bytes(odd)))
    try:
        back = windows_from(block.name, block.put(odd))
        for original, copy in zip(odd, back, strict=True):
            assert _fields(copy) == _fields(original)
            assert copy.samples.dtype == np.float32 and copy.samples.shape == original.samples.shape
            assert np.array_equal(copy.samples, original.samples)
            assert not copy.samples.flags.writeable
        offsets = [r.offset for r in block.put(odd)]
        assert all(o % 64 == 0 for o in offsets) and offsets == sorted(set(offsets))
    finally:
        block.unlink()


def test_a_block_is_lent_to_one_part_at_a_time_and_reused_once_given_back():
    blocks = WindowBlocks(budget_bytes=4 << 20)
    try:
        a, b = blocks.take(1_900_000), blocks.take(1_900_000)
        assert a is not None and b is not None and a is not b and a.size == b.size == 2 << 20
        assert blocks.take(10) is None and blocks.pickled_parts == 1  # 4 MiB are lent
        blocks.give_back(a)
        assert blocks.take(1_900_000) is a and blocks.created == 2
        blocks.give_back(a)
        # A smaller part takes the larger free block rather than going pickled (the budget is spent).
        assert blocks.take(1_000_000) is a and blocks.pickled_parts == 1
    finally:
        blocks.close()


def test_blocks_come_in_whole_mib_and_a_part_takes_the_smallest_free_one_that_holds_it():
    assert [block_size_for(n) for n in (1, 1 << 20, (1 << 20) + 1, 2_400_000)] == [1 << 20, 1 << 20, 2 << 20, 3 << 20]
    blocks = WindowBlocks(budget_bytes=8 << 20)
    try:
        big, small = blocks.take(3 << 20), blocks.take(1 << 20)
        blocks.give_back(big)
        blocks.give_back(small)
        assert blocks.take(900_000) is small
        assert blocks.take(900_000) is big and blocks.created == 2  # reused, not a new block
        assert blocks.take(2_500_000).size == 3 << 20 and blocks.created == 3
    finally:
        blocks.close()


def test_a_full_dev_shm_means_pickled_parts_not_a_crash(monkeypatch):
    def refuse(size, name=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shared_windows, "SharedBlock", refuse)
    blocks = WindowBlocks(budget_bytes=32 << 20)
    assert blocks.take(1_000_000) is None and blocks.pickled_parts == 1 and blocks.created == 0


class _CountedBlock:
    """A block that takes no /dev/shm (a CI container may have 64 MB): its size is what counts."""

    def __init__(self, size: int, name: str | None = None):
        self.size, self.name = size, f"counted-{size}"

    def unlink(self) -> None:
        pass


def _batches_in_flight(pre: Preprocessor, sizes: list[int]) -> int:
    """Parts that go pickled when batches of ``sizes`` 500-Hz windows go through ``pre`` one after
    another, each with every part in flight at once as the worker submits them (blocks taken as
    ``Preprocessor._submit`` takes them), given back when the batch is done."""
    from hfrisk.stream.scoring.batch import part_bounds

    window = ECG(samples=np.zeros((12, 5000), np.float32), fs_hz=500.0, lead_names=CARD.input.leads)
    for n in sizes:
        taken = []
        for start, end in part_bounds(n, pre.workers, pre.part_windows):
            part = [window] * (end - start)
            taken.append(pre.blocks.take(windows_bytes(part) + len(part) * pre._result_room))
        for block in taken:
            if block is not None:
                pre.blocks.give_back(block)
    return pre.blocks.pickled_parts


# (batch, part size, the budget sized for it in MB, parts pickled with the fixed 32 MB of before:
# 10 of 32 parts of 3 MiB fit in it, 3 of 8 parts of 10 MiB)
@pytest.mark.parametrize("batch_size, part_windows, budget_mb, pickled_in_32_mb",
                         [(32, 8, 32, 0), (256, 8, 96, 22), (256, 32, 80, 5)])
def test_the_default_budget_holds_a_whole_batch_of_500_hz_windows(monkeypatch, batch_size, part_windows, budget_mb,
                                                                  pickled_in_32_mb):
    from hfrisk.core.config import StreamSettings
    from hfrisk.stream.worker.command import worker_preprocessor

    monkeypatch.setattr(shared_windows, "SharedBlock", _CountedBlock)
    sized = worker_preprocessor(StreamSettings(batch_size=batch_size, part_windows=part_windows), CARD)
    fixed = worker_preprocessor(StreamSettings(batch_size=batch_size, part_windows=part_windows, prep_shared_mb=32), CARD)
    try:
        assert sized.blocks.budget_bytes == budget_mb << 20
        assert _batches_in_flight(sized, [batch_size]) == 0
        assert _batches_in_flight(fixed, [batch_size]) == pickled_in_32_mb
    finally:
        sized.close()
        fixed.close()


def test_blocks_of_a_full_part_serve_batches_of_any_size_where_blocks_sized_per_part_fill_the_budget(monkeypatch):
    from hfrisk.core.config import StreamSettings
    from hfrisk.stream.worker.command import worker_preprocessor

    monkeypatch.setattr(shared_windows, "SharedBlock", _CountedBlock)
    # Windows a drained backlog's batches of 256 chunks completed, one after another (a worker's log).
    backlog = [1, 73, 38, 230, 6, 141, 256, 19, 168]
    stream = StreamSettings(batch_size=256, part_windows=32)
    sized = worker_preprocessor(stream, CARD)
    per_part = Preprocessor(CARD, workers=1, part_windows=32, shared_mb=sized.blocks.budget_bytes >> 20)
    try:
        assert sized.blocks.block_bytes == 10 << 20 and per_part.blocks.block_bytes == 0
        assert _batches_in_flight(sized, backlog) == 0
        assert {b.size for b in sized.blocks._blocks} == {10 << 20}
        # The same budget in blocks sized to each part: the small ones cannot serve the large parts.
        assert _batches_in_flight(per_part, backlog) > 0
    finally:
        sized.close()
        per_part.close()


@posix_only
def test_closing_unlinks_every_block_and_a_late_give_back_is_ignored():
    blocks = WindowBlocks(budget_bytes=8 << 20)
    taken = [blocks.take(1 << 20), blocks.take(3 << 20)]
    names = [b.name for b in taken]
    blocks.give_back(taken[0])
    blocks.close()
    blocks.give_back(taken[1])
    assert all(_unlinked(name) for name in names)
    assert blocks.take(1 << 20) is None


def _same_inputs(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, PrepareFailure):
            assert x == y
            continue
        assert np.array_equal(x.x, y.x) and np.array_equal(x.lead_mask, y.lead_mask)
        assert np.array_equal(x.median_beat_mv, y.median_beat_mv) and np.array_equal(x.r_peaks_s, y.r_peaks_s)
        assert x.quality == y.quality and x.heart_rate_bpm == y.heart_rate_bpm


@posix_only
def test_a_pool_prepares_the_same_inputs_from_shared_memory_as_from_pickles(ecgs):
    in_thread = Preprocessor(CARD, workers=0)
    shared = Preprocessor(CARD, workers=1, part_windows=4, shared_mb=3)
    pickled_back = Preprocessor(CARD, workers=1, part_windows=4, shared_mb=32, shared_results=False)
    try:
        expected = asyncio.run(in_thread.prepare(ecgs))
        assert any(not isinstance(e, PrepareFailure) for e in expected)
        # The same blocks again and again, with other windows in them in the second round: the
        # first round's results were copied out before their blocks were lent again.
        rounds = [asyncio.run(shared.prepare(order)) for order in (ecgs, ecgs[::-1], ecgs)]
        _same_inputs(rounds[0], expected)
        _same_inputs(rounds[1], expected[::-1])
        _same_inputs(rounds[2], expected)
        for item in rounds[0][:7]:  # the two parts that went through blocks
            if not isinstance(item, PrepareFailure):
                assert item.x.flags.owndata and item.median_beat_mv.flags.owndata and item.x.flags.writeable
        # 10 windows in parts of 4, 3, 3 with their results: a 2-MiB and a 1-MiB block in use at
        # once, the third part pickled
        assert shared.blocks.created == 2 and shared.blocks.pickled_parts == 3
        names = [b.name for b in shared.blocks._blocks]
        _same_inputs(asyncio.run(pickled_back.prepare(ecgs)), expected)
    finally:
        in_thread.close()
        shared.close()
        pickled_back.close()
    assert all(_unlinked(name) for name in names)


@posix_only
def test_results_go_back_through_the_block_as_references_and_what_does_not_fit_stays_in_the_pickle(ecgs):
    from hfrisk.stream.scoring.batch import _prepare_all, _result_room

    prepared = [p for p in _prepare_all(ecgs[:3], CARD.to_json()) if not isinstance(p, PrepareFailure)]
    room = _result_room(CARD)
    block = SharedBlock(1 << 20)
    try:
        start = 4096
        # Room for two windows' arrays and the third's x: the third keeps its median beat.
        sent = put_arrays(block.name, prepared + [PrepareFailure("r", "d")], ("x", "median_beat_mv"), start,
                          start + 2 * room + prepared[2].x.nbytes)
        assert all(isinstance(s.x, ArrayRef) and isinstance(s.median_beat_mv, ArrayRef) for s in sent[:2])
        assert isinstance(sent[2].x, ArrayRef) and isinstance(sent[2].median_beat_mv, np.ndarray)
        assert sent[3] == PrepareFailure("r", "d")
        assert len(pickle.dumps(sent[0])) < 4_000 < len(pickle.dumps(prepared[0]))
        assert all(s.x.offset % 64 == 0 and start <= s.x.offset for s in sent[:3])
        back = list(sent)
        take_arrays(block, back)
        _same_inputs(back[:3], prepared)
        assert back[3] == sent[3]
    finally:
        block.unlink()


@posix_only
def test_a_worker_process_leaves_no_shared_memory_and_no_tracker_warning_behind(tmp_path):
    # The pool process maps the worker's blocks, which registers them with the resource tracker
    # again: one that is not unlinked by the end is a leak the tracker warns of (and unlinks).
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from tests.stream.test_score_parts import ten_windows
        from tests.stream.test_worker_unit import CARD
        from hfrisk.stream.scoring.batch import Preprocessor
        if __name__ == "__main__":
            pre = Preprocessor(CARD, workers=1)
            out = asyncio.run(pre.prepare(ten_windows()))
            print("names", *[b.name for b in pre.blocks._blocks], "prepared", len(out))
            pre.close()
    """)
    (tmp_path / "run.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "run.py")], capture_output=True, text=True, timeout=120,
                          cwd=os.getcwd())
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    names = words[words.index("names") + 1:words.index("prepared")]
    assert names and words[-1] == "10"
    assert "resource_tracker" not in done.stderr and "leaked" not in done.stderr, done.stderr
    assert all(_unlinked(name) for name in names)

