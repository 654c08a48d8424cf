"""The array library the batched front end runs on, and the few operations the array API lacks.

The front end is written once against the Python array API (through ``array_api_compat``): numpy on
a CPU, CuPy or torch on a GPU, chosen by :class:`ArrayBackend` (``HFRISK_FRONTEND__ARRAY_BACKEND``,
``HFRISK_FRONTEND__DEVICE``). What the standard does not define is written here from operations it
does: masked quantiles (sort), sliding maxima (a sparse table of shifted maxima), gathers along the
time axis (``take_along_axis``). FFTs go to ``scipy.fft`` on numpy (float32 transforms, 6x faster
than ``numpy.fft``, which computes in float64) and to the library's own ``fft`` elsewhere.

>>> import numpy as np
>>> xp = ArrayBackend().namespace()
>>> masked_quantile(xp, xp.asarray([[3.0, 1.0, 2.0, 9.0]]), xp.asarray([[True, True, True, False]]), 0.5)
array([2.])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import array_api_compat
import numpy as np
import scipy.fft

__all__ = [
    "ArrayBackend",
    "to_numpy",
    "device_of",
    "rfft",
    "irfft",
    "masked_quantile",
    "sliding_max",
    "compact",
    "gather_time",
    "segments",
    "sum_of_squares",
    "one_blas_thread",
]

BackendName = Literal["numpy", "torch", "cupy"]


@dataclass(frozen=True)
class ArrayBackend:
    """Which array library (and device) the front end computes on."""

    name: BackendName = "numpy"
    device: str | None = None  # torch: "cuda", "cuda:1", "cpu"; CuPy: the current device

    def namespace(self) -> Any:
        return _namespace(self.name)

    def asarray(self, x: np.ndarray) -> Any:
        xp = self.namespace()
        if self.name == "torch":
            return xp.asarray(x, device=self.device or "cpu")
        return xp.asarray(x)


@lru_cache(maxsize=None)
def _namespace(name: str) -> Any:
    if name == "numpy":
        return array_api_compat.array_namespace(np.zeros(0))
    if name == "torch":
        # The namespace itself: one found from an array made here would be a CPU array made
        # without a device (tests/model/test_frontend_devices.py counts those).
        import array_api_compat.torch as torch_namespace

        return torch_namespace
    if name == "cupy":
        import cupy

        return array_api_compat.array_namespace(cupy.zeros(0))
    raise ValueError(f"unknown array backend {name!r}: numpy, torch or cupy")


def device_of(x: Any) -> Any:
    """The device ``x`` is on, for the arrays made beside it: an array made without one is on the
    library's default device (torch: the CPU), and a GPU array meeting it stops the batch
    (tests/model/test_frontend_devices.py)."""
    return array_api_compat.device(x)


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy copy (a view for numpy input)."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def rfft(xp: Any, x: Any, n: int) -> Any:
    if array_api_compat.is_numpy_namespace(xp):
        return scipy.fft.rfft(x, n=n, axis=-1)
    return xp.fft.rfft(x, n=n, axis=-1)


def irfft(xp: Any, x: Any, n: int) -> Any:
    if array_api_compat.is_numpy_namespace(xp):
        return scipy.fft.irfft(x, n=n, axis=-1)
    return xp.fft.irfft(x, n=n, axis=-1)


def masked_quantile(xp: Any, values: Any, valid: Any, q: float) -> Any:
    """Per row of ``values`` (..., K), the ``q`` quantile of the ``valid`` entries with numpy's
    default (linear) interpolation; NaN for a row without one."""
    big = xp.asarray(xp.finfo(values.dtype).max, dtype=values.dtype)
    ordered = xp.sort(xp.where(valid, values, big), axis=-1)
    n = xp.sum(xp.astype(valid, xp.int64), axis=-1)
    pos = q * xp.astype(xp.clip(n - 1, min=0), values.dtype)
    lo = xp.astype(xp.floor(pos), xp.int64)
    hi = xp.clip(lo + 1, max=values.shape[-1] - 1)
    hi = xp.where(lo + 1 <= n - 1, hi, lo)
    v_lo = xp.take_along_axis(ordered, lo[..., None], axis=-1)[..., 0]
    v_hi = xp.take_along_axis(ordered, hi[..., None], axis=-1)[..., 0]
    frac = pos - xp.astype(lo, values.dtype)
    out = v_lo + frac * (v_hi - v_lo)
    return xp.where(n > 0, out, xp.asarray(float("nan"), dtype=values.dtype))


def _shift_max(xp: Any, x: Any, shift: int, fill: Any) -> Any:
    """``max(x[i], x[i + shift])`` along the last axis, ``fill`` past the end."""
    pad = xp.full(x.shape[:-1] + (shift,), fill, dtype=x.dtype, device=device_of(x))
    return xp.maximum(x, xp.concat((x[..., shift:], pad), axis=-1))


def sliding_max(xp: Any, x: Any, before: int, after: int) -> Any:
    """``max(x[i - before : i + after + 1])`` along the last axis (clipped at the edges).

    A sparse table: the maximum over ``p`` (a power of two) samples from every start, built with
    log2(p) shifted maxima, then two overlapping such spans cover the window.
    """
    width = before + after + 1
    low = xp.asarray(-xp.inf, dtype=x.dtype) if xp.isdtype(x.dtype, "real floating") else xp.min(x)
    n = x.shape[-1]
    padded = xp.concat(
        (xp.full(x.shape[:-1] + (before,), low, dtype=x.dtype, device=device_of(x)), x,
         xp.full(x.shape[:-1] + (after,), low, dtype=x.dtype, device=device_of(x))),
        axis=-1,
    )
    table, span = padded, 1
    while span * 2 <= width:
        table = _shift_max(xp, table, span, low)
        span *= 2
    # table[j] = max(padded[j : j + span]); the window of i is padded[i : i + width]
    return xp.maximum(table[..., :n], table[..., width - span : width - span + n])


def compact(xp: Any, flags: Any, positions: Any | None = None) -> tuple[Any, Any]:
    """Per row of boolean ``flags`` (B, n), the indices (or ``positions`` at them) where it is
    set, left-aligned in ``(B, K)`` with K the largest count in the batch, and which are real.
    Empty rows give K = 0.

    The j-th set flag of row b is the (trues before row b + j)-th of the whole batch: one
    cumulative sum and a binary search, not a sort of every row."""
    b, n = flags.shape
    counts = xp.sum(xp.astype(flags, xp.int64), axis=-1)
    k = int(xp.max(counts)) if b else 0
    if k == 0:
        empty = xp.zeros((b, 0), dtype=xp.int64, device=device_of(flags))
        return empty, xp.zeros((b, 0), dtype=xp.bool, device=device_of(flags))
    running = xp.cumulative_sum(xp.reshape(xp.astype(flags, xp.int64), (-1,)))
    before = xp.cumulative_sum(counts) - counts  # (B,)
    slots = xp.arange(1, k + 1, dtype=xp.int64, device=device_of(flags))
    targets = xp.reshape(before[:, None] + slots[None, :], (-1,))
    found = xp.reshape(xp.searchsorted(running, targets), (b, k))
    valid = slots[None, :] <= counts[:, None]
    local = found - xp.arange(b, dtype=xp.int64, device=device_of(flags))[:, None] * n
    ordered = xp.where(valid, local, xp.asarray(0, dtype=xp.int64))
    if positions is not None:
        ordered = xp.take_along_axis(positions, ordered, axis=-1)
    return ordered, valid


def gather_time(xp: Any, x: Any, idx: Any) -> Any:
    """``x[..., idx]`` per batch row: ``x`` (B, ..., n), ``idx`` (B, m) int → (B, ..., m)."""
    shape = (idx.shape[0],) + (1,) * (x.ndim - 2) + (idx.shape[-1],)
    idx = xp.reshape(idx, shape)
    idx = xp.broadcast_to(idx, x.shape[:-1] + (shape[-1],))
    return xp.take_along_axis(x, idx, axis=-1)


def segments(xp: Any, x: Any, starts: Any, length: int, rows: Any | None = None) -> Any:
    """``x[r, :, s : s + length]`` for each start ``s`` of ``starts[i]``, ``r`` the i-th of
    ``rows`` (default: every row in order): (B, L, n) and (R, K) → (R, L, K, length); starts must
    leave room for ``length`` samples.

    A strided window view indexed by start copies whole contiguous segments (10x faster than a
    gather of every sample index); the view is each library's own (numpy and CuPy
    ``sliding_window_view``, torch ``unfold``), the one thing here outside the array API."""
    l = x.shape[1]
    b = starts.shape[0]
    if starts.shape[-1] == 0:
        return xp.zeros((b, l, 0, length), dtype=x.dtype, device=device_of(x))
    if array_api_compat.is_torch_array(x):
        view = x.unfold(-1, length, 1)
    elif array_api_compat.is_cupy_array(x):
        from cupy.lib.stride_tricks import sliding_window_view

        view = sliding_window_view(x, length, axis=-1)
    else:
        view = np.lib.stride_tricks.sliding_window_view(x, length, axis=-1)
    which = xp.reshape(xp.arange(b, device=device_of(x)) if rows is None else rows, (b, 1, 1))
    leads = xp.reshape(xp.arange(l, device=device_of(x)), (1, l, 1))
    return view[which, leads, starts[:, None, :]]


def sum_of_squares(xp: Any, x: Any) -> Any:
    """``sum(x * x, axis=-1)`` without the squared copy where the library can (numpy's einsum)."""
    if array_api_compat.is_numpy_array(x):
        return np.einsum("...t,...t->...", x, x)
    return xp.sum(x * x, axis=-1)


def one_blas_thread(backend: ArrayBackend | None = None) -> None:
    """Limit this process's BLAS to one thread (for processes that only preprocess: the pools
    of the stream worker and of screening). The front end's matrix products are small; OpenBLAS's
    extra threads gain nothing on them and spin on the cores the other processes need (the
    batched front end used 2x the CPU time of its wall time on the 2-core machine without this).

    With the front end on torch (``backend``, default: ``HFRISK_FRONTEND__ARRAY_BACKEND``), torch's
    own CPU threads too: a pool has a process a core, and a pool of two on torch's CPU, each with a
    thread a core, spent 9.0-14.9 ms of CPU a recording against 5.8 with one (screening 400
    recordings, ``bench.bench_screening_gpu --device cpu --network onnx``, 2026-12-07). On a GPU the
    host's share of the work is small, but sixteen processes of sixteen threads would still contend
    for sixteen cores. And a forked pool process whose parent had computed with torch's threads
    waited for good on those threads, which a fork does not copy: on one thread it never uses them
    (tests/screening/test_screening_devices.py)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    if backend is None:
        from hfrisk.core.config import get_settings

        backend = ArrayBackend(get_settings().frontend.array_backend)
    if backend.name == "torch":
        import torch

        torch.set_num_threads(1)
