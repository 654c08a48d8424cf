"""Beats, beat selection and the median beat of a batch of windows, in array-API operations.

Each window's beats are cut around its R peaks (``pre`` samples before, ``length`` in all; beats
that would run past either edge are dropped), compared with the template of the other beats
(leave-one-out correlation over the usable leads), and the agreeing ones form the median beat.
A window's beats are one row of a ``(B, L, K, T)`` array padded to the batch's longest row, with
a ``(B, K)`` validity mask. The rules, and why, are those of :mod:`hfrisk.model.frontend.beats`
(the per-window reference ``tests/model/test_templates.py`` holds this to).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hfrisk.model.frontend.arrays import compact, device_of, segments, sum_of_squares, to_numpy
from hfrisk.model.frontend.quality import MIN_AGREEING_SHARE

__all__ = ["Beats", "Selection", "extract", "select", "median"]

# The beats are compared over this share of their window before and after the QRS when a fast or
# irregular rhythm moves the neighbouring beats inside it (see hfrisk.model.frontend.beats._core).
_CORE_BEFORE = 0.125
_CORE_AFTER = 0.25


@dataclass(frozen=True)
class Beats:
    """``waves`` (B, L, K, T) the beats, ``peaks`` (B, K) their R peaks, ``valid`` (B, K)."""

    waves: Any
    peaks: Any
    valid: Any


@dataclass(frozen=True)
class Selection:
    """``keep`` (B, K): the beats of the median; ``correlation`` (B, K): each beat against the
    template of the others (0 for padding and single beats); ``lead_correlation`` (B, L): per
    lead, the same averaged over the kept beats (0 for unusable leads)."""

    keep: Any
    correlation: Any
    lead_correlation: Any


def extract(xp: Any, signal: Any, peaks: Any, valid: Any, *, pre: int, length: int, rows: Any | None = None) -> Beats:
    """The beats of ``signal`` (B, L, n) around ``peaks`` (R, K), each R peak at ``pre``; the
    i-th row of ``peaks`` belongs to row ``rows[i]`` of ``signal`` (default: the same row)."""
    n = signal.shape[-1]
    starts = peaks - pre
    inside = valid & (starts >= 0) & (starts + length <= n)
    kept, ok = compact(xp, inside, peaks)
    first = xp.where(ok, kept - pre, xp.asarray(0, dtype=kept.dtype))
    return Beats(segments(xp, signal, first, length, rows), kept, ok)


def _moments(xp: Any, x: Any, width: Any) -> tuple[Any, Any]:
    """Per beat and lead of ``x`` (B, L, K, T): its mean over ``width`` samples (the rest of T is
    zero) and its centred energy ``sum (x - mean)²``."""
    total = xp.sum(x, axis=-1)
    mean = total / width
    return mean, sum_of_squares(xp, x) - width * mean * mean


def _leave_one_out(xp: Any, x: Any, keep: Any, width: Any, moments: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """Correlations of each beat of ``x`` (B, L, K, T), centred, with the sum of the other ``keep``
    beats: overall (B, K) and per lead (B, L, K); ``width`` (B, 1, 1) samples count (the core's
    or T). From moments, with <b, S - b> = <b, S> - |b|² and <x - m, S - M> = <x, S> - width m M:
    nothing of size K² and no centred copy of the beats is built. ``moments``: those of ``x``, if
    already known."""
    mean, own = moments if moments is not None else _moments(xp, x, width)
    k = xp.astype(keep, x.dtype)[:, None, :]  # (B, 1, K)
    total = xp.matmul(k[:, :, None, :], x)  # (B, L, 1, T): the kept beats' sum
    big_m = xp.sum(mean * k, axis=-1, keepdims=True)  # (B, L, 1): the sum of their means
    dot = xp.matmul(x, xp.permute_dims(total, (0, 1, 3, 2)))[..., 0] - width * mean * big_m
    total_energy = sum_of_squares(xp, total) - width * big_m * big_m  # (B, L, 1)
    own_kept = own * k
    num = dot - own_kept
    rest = total_energy - 2.0 * dot * k + own_kept
    prod = own * rest
    zero = xp.asarray(0.0, dtype=x.dtype)
    per_lead = xp.where(prod > 0, num / xp.sqrt(xp.where(prod > 0, prod, 1.0)), zero)
    den = xp.sum(own, axis=1) * xp.sum(rest, axis=1)
    overall = xp.where(den > 0, xp.sum(num, axis=1) / xp.sqrt(xp.where(den > 0, den, 1.0)), zero)
    return overall, per_lead


def _core(xp: Any, x: Any, valid: Any) -> tuple[Any, Any]:
    """``x`` (B, L, K, T) zeroed outside each window's QRS-T core (from _CORE_BEFORE to
    _CORE_AFTER of the beat's length around the largest deflection of the average beat), and the
    core's width (B, 1, 1)."""
    t = x.shape[-1]
    v = xp.astype(valid, x.dtype)
    count = xp.clip(xp.sum(v, axis=-1), min=1.0)  # (B,)
    average = xp.matmul(v[:, None, None, :], x)[:, :, 0, :] / count[:, None, None]  # (B, L, T)
    grand = xp.mean(average, axis=-1, keepdims=True)
    qrs = xp.argmax(xp.sum(xp.abs(average - grand), axis=1), axis=-1)  # (B,)
    ticks = xp.arange(t, device=device_of(x))
    lo = xp.clip(qrs - round(_CORE_BEFORE * t), min=0)
    hi = xp.clip(qrs + round(_CORE_AFTER * t), max=t)
    inside = xp.astype((ticks[None, :] >= lo[:, None]) & (ticks[None, :] < hi[:, None]), x.dtype)  # (B, T)
    return x * inside[:, None, None, :], xp.sum(inside, axis=-1)[:, None, None]


def select(xp: Any, beats: Beats, usable: Any, min_correlation: float) -> Selection:
    """Keep the beats whose leave-one-out correlation reaches ``min_correlation``; when fewer than
    two do, all of them (the quality gate reports the low correlation). Compared over the whole
    beat, or over its QRS-T core for windows where fewer than half agree over the whole.

    The waves of unusable leads must be zero (they then weigh nothing)."""
    valid, x = beats.valid, beats.waves
    b, t = x.shape[0], x.shape[-1]
    n = xp.sum(xp.astype(valid, xp.int64), axis=-1)
    scored = (n >= 2) & xp.any(usable, axis=-1)
    width = xp.full((b, 1, 1), float(t), dtype=x.dtype, device=device_of(x))
    moments = _moments(xp, x, width)
    correlation, _ = _leave_one_out(xp, x, valid, width, moments)
    agree = xp.sum(xp.astype((correlation >= min_correlation) & valid, xp.int64), axis=-1)
    retry = scored & (xp.astype(agree, xp.float64) < MIN_AGREEING_SHARE * xp.astype(n, xp.float64))
    core_rows = None
    if bool(xp.any(retry)):
        core_rows = xp.nonzero(retry)[0]
        core_x, core_width = _core(xp, xp.take(x, core_rows, axis=0), xp.take(valid, core_rows, axis=0))
        core_moments = _moments(xp, core_x, core_width)
        core_corr, _ = _leave_one_out(xp, core_x, xp.take(valid, core_rows, axis=0), core_width, core_moments)
        correlation = _put_rows(xp, correlation, core_rows, core_corr)
    keep = valid & (correlation >= min_correlation)
    few = xp.sum(xp.astype(keep, xp.int64), axis=-1) < 2
    keep = xp.where(few[:, None] | ~scored[:, None], valid, keep)
    _, per_lead = _leave_one_out(xp, x, keep, width, moments)
    if core_rows is not None:
        _, core_lead = _leave_one_out(xp, core_x, xp.take(keep, core_rows, axis=0), core_width, core_moments)
        per_lead = _put_rows(xp, per_lead, core_rows, core_lead)
    kf = xp.astype(keep, per_lead.dtype)[:, None, :]
    n_keep = xp.clip(xp.sum(kf, axis=-1), min=1.0)
    lead_correlation = xp.sum(per_lead * kf, axis=-1) / n_keep * xp.astype(usable, per_lead.dtype)
    zero = xp.asarray(0.0, dtype=correlation.dtype)
    correlation = xp.where(scored[:, None] & valid, correlation, zero)
    lead_correlation = xp.where(scored[:, None], lead_correlation, zero)
    return Selection(keep, correlation, lead_correlation)


def _put_rows(xp: Any, full: Any, rows: Any, part: Any) -> Any:
    """``full`` with its ``rows`` (ascending, along the first axis) replaced by ``part``."""
    n = full.shape[0]
    everyone = xp.arange(n, dtype=rows.dtype, device=device_of(rows))
    pos = xp.clip(xp.searchsorted(rows, everyone), max=rows.shape[0] - 1)
    hit = xp.take(rows, pos, axis=0) == everyone
    mask = xp.reshape(hit, (n,) + (1,) * (full.ndim - 1))
    return xp.where(mask, xp.take(part, pos, axis=0), full)


@lru_cache(maxsize=256)
def _network(k: int, wanted: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort of ``k`` wires as compare-exchange pairs (low wire first),
    without the pairs that cannot move a value into the ``wanted`` output wires."""
    pairs = []
    p = 1
    while p < k:
        step = p
        while step >= 1:
            for j in range(step % p, k - step, 2 * step):
                for i in range(min(step, k - j - step)):
                    if (i + j) // (2 * p) == (i + j + step) // (2 * p):
                        pairs.append((i + j, i + j + step))
            step //= 2
        p *= 2
    needed, kept = set(wanted), []
    for low, high in reversed(pairs):
        if low in needed or high in needed:
            kept.append((low, high))
            needed |= {low, high}
    return tuple(reversed(kept))


# The numpy median works through the batch this many bytes of beats at a time (its k wires and a
# spare): the network's passes then stay in the cache instead of streaming every wire of the batch
# through memory once a comparison (2-4 MB measured best on the 2-core machine, 512 kB of L2 a
# core; the whole batch at once was no faster than the array-API code).
_MEDIAN_BLOCK_BYTES = 2 << 20


def median(xp: Any, waves: Any, keep: Any) -> Any:
    """Sample-wise median of the kept beats per lead: (B, L, T); zeros without a kept beat.

    A sorting network over the beat axis (elementwise minima and maxima of whole beats), pruned
    to the comparisons that reach the middle ranks: on a CPU a third faster than a sort along a
    short axis, which numpy runs one (lead, sample) at a time. On numpy it runs a block of windows
    at a time, in place (:func:`_median_numpy`), with the same comparisons in the same order."""
    b, l, k, t = waves.shape
    if k == 0:
        return xp.zeros((b, l, t), dtype=waves.dtype, device=device_of(waves))
    n = xp.sum(xp.astype(keep, xp.int64), axis=-1)
    lo, hi = xp.clip((n - 1) // 2, min=0), n // 2
    wanted = tuple(sorted(set(to_numpy(lo).tolist()) | set(to_numpy(hi).tolist())))
    if isinstance(waves, np.ndarray):
        return _median_numpy(waves, np.asarray(keep), n, lo, hi, wanted)
    big = xp.asarray(xp.finfo(waves.dtype).max, dtype=waves.dtype)
    wires = [xp.where(keep[:, i, None, None], waves[:, :, i, :], big) for i in range(k)]
    for low, high in _network(k, wanted):
        a, c = wires[low], wires[high]
        wires[low], wires[high] = xp.minimum(a, c), xp.maximum(a, c)
    out = xp.zeros((b, l, t), dtype=waves.dtype, device=device_of(waves))
    for rank in wanted:
        weight = (xp.astype((lo == rank) & (n > 0), waves.dtype) + xp.astype((hi == rank) & (n > 0), waves.dtype)) / 2
        out = out + weight[:, None, None] * wires[rank]
    return out


def _median_numpy(waves: np.ndarray, keep: np.ndarray, n: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  wanted: tuple[int, ...]) -> np.ndarray:
    """:func:`median` on numpy, bit for bit: each block of windows copied once beat-major (a wire
    is then a contiguous array, and beats left out are filled in one masked write instead of a
    ``where`` a beat), and the comparisons written into the wires and one spare instead of two
    new arrays each. It was ~0.4 of the ~0.55 ms a window the array-API code took (PTB-XL,
    batches of 256; the where alone about half), ~0.2 now (docs/bench/median-2026-12-08/)."""
    b, l, k, t = waves.shape
    big = np.finfo(waves.dtype).max
    pairs = _network(k, wanted)
    weights = [
        (((lo == rank) & (n > 0)).astype(waves.dtype) + ((hi == rank) & (n > 0)).astype(waves.dtype)) / 2
        for rank in wanted
    ]
    out = np.zeros((b, l, t), dtype=waves.dtype)
    rows = max(1, _MEDIAN_BLOCK_BYTES // (l * t * waves.itemsize * (k + 1)))
    spare_block = np.empty((min(rows, b), l, t), dtype=waves.dtype)
    for first in range(0, b, rows):
        last = min(b, first + rows)
        block = np.moveaxis(waves[first:last], 2, 0).copy()  # (K, rows, L, T)
        block[~keep[first:last].T] = big
        wires = list(block)
        spare = spare_block[: last - first]
        for low, high in pairs:
            a, c = wires[low], wires[high]
            np.minimum(a, c, out=spare)
            np.maximum(a, c, out=c)
            wires[low], spare = spare, a
        # The same sum, in the same order, as the array-API code (out starts at zero there too).
        part = out[first:last]
        for rank, weight in zip(wanted, weights):
            part += weight[first:last, None, None] * wires[rank]
    return out
