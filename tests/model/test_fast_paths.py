"""The speed-ups of preprocessing give what the plain formulas give (docs/bench/preprocessing.md).

Each fast path is held to the straightforward computation it replaced: the cached zero-phase
filter to ``scipy.signal.sosfiltfilt``, the lead-off shortcut to the median deviation of every
lead, the reshaped 2-s stretches to the gathered ones, numpy's blocked median beat to the
array-API sorting network it specialises (torch's CPU runs that one) and to ``np.median``, the
z-score and padding to ``np.std`` and ``np.pad``, the heart rate to ``np.median``.
"""

from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy import signal

from hfrisk.model.contract.card import FilterSpec, default_card
from hfrisk.model.frontend.filters import _chain, _lowpass_chain, filter_leads, lowpass, resample
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.model.frontend import templates
from hfrisk.model.frontend.detection import heart_rate_bpm
from hfrisk.model.frontend.normalise import pad_beat, zscore_leads
from hfrisk.model.frontend.quality import _FLAT_SEGMENT_S, _max_deviation_from_median, _min_segment_std

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"
CARD = default_card()
XP = ArrayBackend().namespace()


def record(ecg_id: int, folder: str = "records500", suffix: str = "hr") -> tuple[np.ndarray, float]:
    rec = wfdb.rdrecord(str(DATA / folder / "00000" / f"{ecg_id:05d}_{suffix}"))
    return rec.p_signal.T.astype(np.float32), float(rec.fs)


@pytest.mark.parametrize(("ecg_id", "folder", "suffix"), [(1, "records500", "hr"), (2, "records100", "lr")])
def test_filter_leads_is_sosfiltfilt_bit_for_bit(ecg_id, folder, suffix):
    raw, fs = record(ecg_id, folder, suffix)
    at_rate = resample(raw, fs, CARD.input.fs_hz)
    got = filter_leads(at_rate, CARD.input.fs_hz, CARD.filters, source_fs_hz=fs)
    sos = _chain(float(CARD.input.fs_hz), CARD.filters, fs / 2.0).sos
    expected = signal.sosfiltfilt(sos, at_rate, axis=-1).astype(np.float32)
    assert got.dtype == np.float32 and got.shape == at_rate.shape
    np.testing.assert_array_equal(got, expected)


def test_lowpass_is_sosfiltfilt_for_one_lead_many_and_a_batch():
    raw, fs = record(1)
    sos = _lowpass_chain(fs, 40.0).sos
    lead = raw[1].astype(np.float64)
    np.testing.assert_array_equal(lowpass(lead, fs, 40.0), signal.sosfiltfilt(sos, lead))
    np.testing.assert_array_equal(lowpass(raw, fs, 40.0), signal.sosfiltfilt(sos, raw, axis=-1))
    batch = np.stack([raw, raw[::-1], -raw])  # (records, leads, samples): every row its own signal
    np.testing.assert_array_equal(lowpass(batch, fs, 40.0), signal.sosfiltfilt(sos, batch, axis=-1))


def test_short_signal_still_gets_scipys_padding_error():
    spec = FilterSpec()
    with pytest.raises(ValueError, match="padlen"):
        filter_leads(np.zeros((12, 20), np.float32), 500.0, spec)


@pytest.mark.parametrize("n", [999, 1000, 1001, 2000, 4999, 5000, 5500, 7250])
def test_min_segment_std_matches_gathered_stretches(n):
    rng = np.random.default_rng(n)
    raw = rng.standard_normal((12, n)) * rng.uniform(0.001, 2.0, (12, 1))
    fs = 500.0
    size = int(round(_FLAT_SEGMENT_S * fs))
    if n <= size:
        expected = raw.std(axis=1)
    else:
        starts = np.r_[np.arange(0, n - size, size), n - size]
        expected = raw[:, starts[:, None] + np.arange(size)].std(axis=2).min(axis=1)
    # Same stretches; a view and a gathered copy may sum in a different order (float noise only).
    np.testing.assert_allclose(_min_segment_std(XP, raw, fs), expected, rtol=1e-12, atol=0)


def test_lead_off_shortcut_matches_median_deviation():
    rng = np.random.default_rng(7)
    raw = rng.standard_normal((12, 5000))
    # Ranges on both sides of the limit and in the band where only the median can decide.
    raw[0, 100] = 40.0  # half the range above the limit: settled without a median
    raw[1, :2500] += 16.0  # a step: range ~20, deviation from the median ~16 > 15
    raw[2, :10] += 24.0  # a short spike: range ~28, deviation ~24 > 15
    raw[3] *= 3.0  # range ~25, deviation ~12 < 15: the median says no
    raw[4] *= 0.01  # tiny
    hi, lo = raw.max(axis=1, keepdims=True), raw.min(axis=1, keepdims=True)
    limit = 15.0
    expected = np.abs(raw - np.median(raw, axis=1, keepdims=True)).max(axis=1) > limit
    got = _max_deviation_from_median(XP, raw, hi[:, 0], lo[:, 0], limit)
    np.testing.assert_array_equal(got, expected)
    assert got[0] and got.any() and not got.all()  # both outcomes occur


@pytest.mark.parametrize(("fs", "n"), [(500, 5000), (360, 3600), (100, 1000), (257, 2570), (500, 4321)])
def test_baseline_span_is_the_range_of_the_moving_average(fs, n):
    """The 1-s moving average's range from block sums (points every 20 ms) is SciPy's
    ``uniform_filter1d`` range over every sample to a few microvolts (the threshold is 3 mV)."""
    from scipy.ndimage import uniform_filter1d

    from hfrisk.model.frontend.quality import _baseline_span

    rng = np.random.default_rng(fs + n)
    t = np.arange(n) / fs
    raw = (rng.normal(size=(3, n)) * 0.3 + np.sin(2 * np.pi * 0.3 * t) * rng.uniform(0.5, 4, (3, 1))).astype(np.float32)
    size, edge = int(round(fs)), int(round(fs)) // 2
    expected = np.ptp(uniform_filter1d(raw.astype(np.float64), size=size, axis=1, mode="nearest")[:, edge:-edge], axis=1)
    got = _baseline_span(XP, raw, float(fs))
    assert np.abs(got - expected).max() < 0.01
    assert (got <= expected + 1e-4).all()  # a subset of the same averages: never a larger range


def _beats(seed: int, b: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Beats shaped as the front end cuts them (12 leads of 600 samples), with every kept-beat
    count a batch meets: none, one, two, odd and even, all; and repeated values (ties)."""
    rng = np.random.default_rng(seed)
    waves = rng.normal(size=(b, 12, k, 600)).astype(np.float32)
    waves[:, :, :, ::7] = np.round(waves[:, :, :, ::7])
    keep = rng.random((b, k)) < 0.7
    for row, count in enumerate((0, 1, 2, 3, 4, k)):
        if row < b:
            keep[row] = np.arange(k) < count
    return waves, keep


@pytest.mark.parametrize(("b", "k", "block_bytes"), [(23, 13, None), (9, 14, 1), (5, 1, None), (40, 22, 3 << 20)])
def test_numpy_median_is_the_sorting_network_bit_for_bit(monkeypatch, b, k, block_bytes):
    """The numpy median (windows a block at a time, in place) against the array-API code it
    replaced on numpy, run on torch's CPU: the same comparisons in the same order, so the same
    bits. Batches of several blocks with a short last one (23 windows of 13 beats are 5 blocks),
    one window a block, one beat, 22 beats."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as torch_xp

    if block_bytes is not None:
        monkeypatch.setattr(templates, "_MEDIAN_BLOCK_BYTES", block_bytes)
    waves, keep = _beats(b + k, b, k)
    got = templates.median(XP, waves, keep)
    general = templates.median(torch_xp, torch.asarray(waves), torch.asarray(keep)).numpy()
    assert got.dtype == np.float32 and got.shape == (b, 12, 600)
    np.testing.assert_array_equal(got, general)
    for row in range(b):
        expected = np.median(waves[row][:, keep[row]], axis=1) if keep[row].any() else np.zeros((12, 600))
        np.testing.assert_allclose(got[row], expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(40, 12, 600), (12, 600), (3, 7)])
def test_zscore_and_padding_are_numpys_std_and_pad_bit_for_bit(shape):
    """The z-score keeps the centred values it squares for ``std``; the padding writes into zeros:
    the bits of ``(x - mean) / std`` with numpy's ``std`` and of ``np.pad``, float32 and float64 in."""
    rng = np.random.default_rng(len(shape))
    beat = (rng.normal(size=shape) * rng.uniform(0.01, 3, shape[:-1] + (1,))).astype(np.float32)
    beat[..., 0, :] = 0.25  # a constant lead: exactly zero out
    keep = rng.random(shape[:-1]) < 0.8
    for x in (beat, beat.astype(np.float64)):
        wide = x.astype(np.float64)
        std = wide.std(axis=-1, keepdims=True)
        ok = keep[..., None] & (std > 1e-6)
        expected = np.divide(wide - wide.mean(axis=-1, keepdims=True), std, out=np.zeros_like(wide), where=ok)
        got = zscore_leads(x, keep)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected.astype(np.float32))
        assert not got[..., 0, :].any()
        for length in (shape[-1], shape[-1] + 1, 608):
            missing = length - shape[-1]
            widths = [(0, 0)] * (got.ndim - 1) + [(missing // 2, missing - missing // 2)]
            padded = pad_beat(got, length)
            assert padded.dtype == np.float32
            np.testing.assert_array_equal(padded, np.pad(got, widths))


def test_heart_rate_is_numpys_median_interval_bit_for_bit():
    """Odd and even counts, repeated intervals, integer sample indices and float ones."""
    rng = np.random.default_rng(11)
    for n in range(2, 40):
        for dtype in (np.int64, np.float64):
            peaks = np.cumsum(rng.integers(150, 600, n)).astype(dtype)
            if n > 4:
                peaks[3] = peaks[2] + (peaks[1] - peaks[0])  # a repeated interval
                peaks = np.sort(peaks)
            if dtype is np.float64:
                peaks = peaks + rng.random(n)
            for fs in (500.0, 100.0, 257.0):
                assert heart_rate_bpm(peaks, fs) == float(60.0 * fs / np.median(np.diff(peaks))), (n, dtype, fs)
    assert heart_rate_bpm(np.array([120]), 500.0) is None and heart_rate_bpm(np.array([], dtype=np.int64), 500.0) is None
