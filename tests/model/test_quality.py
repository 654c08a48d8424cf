"""The signal-quality index: clean real records pass, corrupted copies are flagged for the right reason."""

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import wfdb

from hfrisk.model.contract.card import QualitySpec, WindowSpec, default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.filters import resample
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.frontend.quality import BLOCKING_REASONS, LeadFlags, QualityReason, assess, assess_batch, flag_leads

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"
CARD = default_card()
LEADS = CARD.input.leads


@lru_cache(maxsize=None)
def ptbxl(ecg_id: int, fs: int = 500) -> ECG:
    folder, suffix = ("records500", "hr") if fs == 500 else ("records100", "lr")
    rec = wfdb.rdrecord(str(DATA / f"ptbxl/{folder}/00000/{ecg_id:05d}_{suffix}"))
    return ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name))


def corrupt(ecg: ECG, fn) -> ECG:
    samples = ecg.samples.astype(np.float64).copy()
    fn(samples, np.arange(ecg.n_samples) / ecg.fs_hz)
    return replace(ecg, samples=samples.astype(np.float32))


def lead(name: str) -> int:
    return LEADS.index(name)  # PTB-XL stores leads in the card's order


@pytest.mark.parametrize("ecg_id", range(1, 25))
def test_clean_ptbxl_records_are_fit(ecg_id):
    for fs in (500, 100):
        q = prepare(ptbxl(ecg_id, fs), CARD).quality
        assert q.fit_to_score and q.reasons == () and q.score >= CARD.quality.min_score, q
        assert q.usable_leads == LEADS
        assert q.template_correlation >= CARD.quality.min_template_correlation


def test_flat_lead_is_masked_and_reported():
    def flatten(x, t):
        x[lead("V3")] = 0.004 * np.sin(2 * np.pi * 50 * t)  # a disconnected lead: a hum, no ECG
    item = prepare(corrupt(ptbxl(1), flatten), CARD)
    q = item.quality
    assert q.reasons == ("flat_line",) and q.flat_leads == ("V3",)
    assert not item.lead_mask[lead("V3")] and (item.x[lead("V3")] == 0).all()
    assert q.fit_to_score and q.score < prepare(ptbxl(1), CARD).quality.score  # one lead lost of 12


def test_saturated_lead_is_masked_and_reported():
    def clip(x, t):
        # Baseline drift pushes V2 into the rails of a +-2.5 mV front end.
        x[lead("V2")] = np.clip(x[lead("V2")] + 3.0 * np.sin(2 * np.pi * 0.15 * t), -2.5, 2.5)
    item = prepare(corrupt(ptbxl(2), clip), CARD)
    assert "saturation" in item.quality.reasons and item.quality.saturated_leads == ("V2",)
    assert not item.lead_mask[lead("V2")] and (item.x[lead("V2")] == 0).all()


def test_r_peaks_clipped_by_a_small_adc_range_count_as_saturation():
    def clip(x, t):
        x[lead("V2")] = np.clip(x[lead("V2")], -0.5, 0.5)  # V2 of record 4 swings ~ -2.5..+1 mV
    q = prepare(corrupt(ptbxl(4), clip), CARD).quality
    assert q.saturated_leads == ("V2",)


def test_lead_off_spikes_are_reported():
    def spikes(x, t):
        x[lead("aVL"), 1200:1260] += 40.0   # electrode pops: tens of mV steps
        x[lead("aVL"), 3000:3020] -= 35.0
    item = prepare(corrupt(ptbxl(3), spikes), CARD)
    assert "lead_off" in item.quality.reasons and item.quality.lead_off_leads == ("aVL",)
    assert not item.lead_mask[lead("aVL")] and item.quality.fit_to_score


def test_strong_noise_makes_the_window_noisy_and_unfit():
    rng = np.random.default_rng(7)

    def noise(x, t):
        x += rng.normal(0.0, 0.6, size=x.shape)  # muscle noise at the scale of the QRS
    q = prepare(corrupt(ptbxl(5), noise), CARD).quality
    assert "noisy" in q.reasons and not q.fit_to_score
    assert q.template_correlation < CARD.quality.min_template_correlation


def test_moderate_noise_is_tolerated():
    rng = np.random.default_rng(7)

    def noise(x, t):
        x += rng.normal(0.0, 0.03, size=x.shape)
    q = prepare(corrupt(ptbxl(5), noise), CARD).quality
    assert q.fit_to_score and q.reasons == ()


@pytest.mark.parametrize("ecg_id", [1, 2, 3, 5, 8])
def test_one_very_noisy_lead_does_not_refuse_the_window(ecg_id):
    """Muscle noise at the scale of the QRS in V2 only: the other eleven leads carry the median
    beat, the window is scored (#13: a bad lead must not cost the whole ECG)."""
    rng = np.random.default_rng(ecg_id)

    def noise(x, t):
        x[lead("V2")] += rng.normal(0.0, 0.6, size=x.shape[1])
    q = prepare(corrupt(ptbxl(ecg_id), noise), CARD).quality
    assert q.fit_to_score and "noisy" not in q.reasons, q


def _motion_and_muscle(rng, n, fs):
    """Muscle noise (white, 1 mV) plus electrode motion (1-10 Hz random swings, ~1 mV): the noise
    that makes a single lead unreadable while its neighbours are clean."""
    from scipy.signal import butter, sosfiltfilt
    motion = sosfiltfilt(butter(2, [1.0, 10.0], btype="band", fs=fs, output="sos"), rng.normal(0.0, 1.0, n))
    return rng.normal(0.0, 1.0, n) + motion / motion.std()


@pytest.mark.parametrize("ecg_id", [1, 3])
def test_two_noisy_leads_are_masked_and_the_window_scored(ecg_id):
    """1 mV of noise in V1 and V2 used to refuse the whole window as noisy (#13): now those two
    leads are masked, named in the report, and the other ten carry the median beat."""
    rng = np.random.default_rng(ecg_id)
    clean = prepare(ptbxl(ecg_id), CARD)

    def noise(x, t):
        for name in ("V1", "V2"):
            x[lead(name)] += _motion_and_muscle(rng, x.shape[1], 500.0)
    item = prepare(corrupt(ptbxl(ecg_id), noise), CARD)
    q = item.quality
    assert q.fit_to_score and q.reasons == ("noisy_lead",), q
    assert q.noisy_leads == ("V1", "V2") and "V1" not in q.usable_leads and len(q.usable_leads) == 10
    assert not item.lead_mask[[lead("V1"), lead("V2")]].any() and (item.x[[lead("V1"), lead("V2")]] == 0).all()
    assert q.template_correlation >= CARD.quality.min_template_correlation
    # The leads kept give nearly the clean median beat.
    kept = item.lead_mask
    assert np.corrcoef(item.median_beat_mv[kept].ravel(), clean.median_beat_mv[kept].ravel())[0, 1] > 0.95


def test_a_noisy_required_lead_refuses_with_too_few_leads():
    """Lead I is required: masked for noise, the window is refused and says why."""
    rng = np.random.default_rng(3)

    def noise(x, t):
        for name in ("I", "V2"):
            x[lead(name)] += _motion_and_muscle(rng, x.shape[1], 500.0)
    q = prepare(corrupt(ptbxl(3), noise), CARD).quality
    assert not q.fit_to_score and "too_few_leads" in q.reasons and "I" in q.noisy_leads, q


def test_noise_in_every_lead_is_not_masked_away():
    """Noise everywhere is the recording, not an electrode: at most max_noisy_leads are masked and
    the window stays refused as noisy."""
    rng = np.random.default_rng(5)

    def noise(x, t):
        for i in range(x.shape[0]):
            x[i] += _motion_and_muscle(rng, x.shape[1], 500.0)
    q = prepare(corrupt(ptbxl(5), noise), CARD).quality
    assert not q.fit_to_score and "noisy" in q.reasons, q
    assert len(q.noisy_leads) <= CARD.quality.max_noisy_leads


def test_signal_dropout_is_a_flat_line():
    def dropout(x, t):
        x[:, t >= 3.0] = 0.0  # 3 s of ECG then the cable comes out
    item = prepare(corrupt(ptbxl(6), dropout), CARD)
    q = item.quality
    assert q.flat_leads == LEADS and not q.fit_to_score
    assert set(q.reasons) == {"flat_line", "too_few_leads", "too_few_beats"}
    assert (item.x == 0).all()


def test_a_lead_dropping_out_for_two_seconds_is_flat():
    def dropout(x, t):
        x[lead("V5"), (t >= 4.0) & (t < 6.2)] = 0.0
    q = prepare(corrupt(ptbxl(6), dropout), CARD).quality
    assert q.flat_leads == ("V5",) and q.fit_to_score


def test_heavy_baseline_wander_is_reported_but_filtered_out():
    def wander(x, t):
        x += 4.0 * np.sin(2 * np.pi * 0.2 * t)[None, :]  # breathing, 4 mV
    clean, drifting = prepare(ptbxl(7), CARD), prepare(corrupt(ptbxl(7), wander), CARD)
    assert drifting.quality.reasons == ("baseline_wander",)
    assert drifting.quality.baseline_wander_leads == LEADS
    assert drifting.quality.fit_to_score
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(clean.x[:, 4:604], drifting.x[:, 4:604])]
    assert min(corr) > 0.95


def test_flat_recording_is_still_a_model_input():
    ecg = corrupt(ptbxl(1), lambda x, t: x.__imul__(0.0))
    item = prepare(ecg, CARD)
    assert (item.x == 0).all() and not item.lead_mask.any() and item.n_beats_used == 0
    assert item.heart_rate_bpm is None and item.quality.score == 0.0
    assert set(item.quality.reasons) == {"flat_line", "too_few_leads", "too_few_beats"}
    assert not item.quality.fit_to_score


def test_limb_electrode_off_loses_required_leads():
    def lose(x, t):
        for name in ("I", "II", "III", "aVR", "aVL", "aVF"):
            x[lead(name)] = 0.0
    q = prepare(corrupt(ptbxl(8), lose), CARD).quality
    assert "too_few_leads" in q.reasons and not q.fit_to_score  # 6 leads, but not I and II
    assert q.n_beats_used >= CARD.quality.min_beats  # the precordial leads still carry the rhythm


def test_too_many_beats_for_the_window():
    # Record 20 (140 bpm) played back 2.3 times faster: ~320 bpm, beyond the card's 50 beats per 10 s.
    ecg = ptbxl(20)
    fast = resample(np.tile(ecg.samples, 3), 2.3 * ecg.fs_hz, ecg.fs_hz)[:, : ecg.n_samples]
    item = prepare(replace(ecg, samples=fast), CARD)
    assert item.heart_rate_bpm > 300
    assert item.quality.reasons == ("too_many_beats",) and not item.quality.fit_to_score


def _assess(beat_correlation, *, n_used=10, heart_rate_bpm=72.0, flat=(), absent=()):
    """assess() for a window with ``n_used`` beats and the named leads flat or absent."""
    present = np.array([name not in absent for name in LEADS])
    flat_mask = np.array([name in flat for name in LEADS])
    none = np.zeros(len(LEADS), bool)
    return assess(
        leads=LEADS, present=present,
        flags=LeadFlags(flat=flat_mask, lead_off=none, saturated=none, baseline_wander=none),
        beat_correlation=np.asarray(beat_correlation, float), lead_correlation=np.ones(len(LEADS)),
        n_beats_detected=n_used + 2, n_beats_used=n_used, heart_rate_bpm=heart_rate_bpm,
        spec=QualitySpec(), window=WindowSpec(),
    )


def test_score_and_reasons_from_assess():
    good = _assess(np.full(10, 0.9))
    assert good.fit_to_score and good.score == pytest.approx(0.9) and good.reasons == ()
    assert good.to_dict()["lead_correlation"]["II"] == 1.0
    # 50 beats per 10-s window is a rate: 300 bpm.
    assert _assess(np.full(10, 0.9), n_used=40, heart_rate_bpm=310.0).reasons == ("too_many_beats",)
    assert _assess(np.full(3, 0.9), n_used=3).reasons == ("too_few_beats",)
    one = _assess(np.zeros(1), n_used=1, heart_rate_bpm=None)
    assert one.reasons == ("too_few_beats",) and one.score == 0.0  # one beat is not called noisy
    # 4 usable of 9 present: too few leads (and 0.62 * 4/9 is below min_score).
    low = _assess(np.full(10, 0.62), absent=("V4", "V5", "V6"), flat=("aVL", "aVF", "V1", "V2", "V3"))
    assert low.reasons == ("flat_line", "too_few_leads") and low.score == pytest.approx(0.62 * 4 / 9, abs=1e-4)
    # 8 usable of 12: enough leads, but 0.62 * 8/12 < min_score.
    fair = _assess(np.full(10, 0.62), flat=("V2", "V3", "V4", "V5"))
    assert fair.reasons == ("flat_line", "low_score") and not fair.fit_to_score
    assert {QualityReason(r) for r in fair.reasons} & BLOCKING_REASONS == {QualityReason.LOW_SCORE}
    # Beats that disagree with the template (ectopics) are left out of the median and of the
    # consistency, as long as they are not the majority: bigeminy (half and half) is scored.
    bigeminy = _assess(np.r_[np.full(5, 0.9), np.full(5, 0.2)])
    assert bigeminy.fit_to_score and bigeminy.template_correlation == pytest.approx(0.9)
    assert _assess(np.r_[np.full(4, 0.9), np.full(6, 0.2)]).reasons == ("noisy",)
    # Fewer than two beats agree: the consistency is that of all beats.
    noisy = _assess(np.r_[0.9, np.full(9, 0.5)])
    assert noisy.reasons == ("noisy",) and noisy.template_correlation == pytest.approx(0.54)


def test_flag_leads_on_raw_arrays():
    fs = 500.0
    t = np.arange(5000) / fs
    ecg_like = np.sin(2 * np.pi * 1.2 * t) ** 31  # narrow 1-mV peaks at 72 bpm
    raw = np.vstack([
        ecg_like,                                   # fine
        np.zeros_like(t),                           # flat
        np.clip(3 * ecg_like, -1, 0.2),             # clipped on top
        ecg_like + 20 * (t > 5),                    # a 20-mV step: lead off
        ecg_like + 2 * np.sin(2 * np.pi * 0.1 * t), # 4 mV peak-to-peak wander
        np.zeros_like(t),                           # absent
    ])
    present = np.array([True, True, True, True, True, False])
    f = flag_leads(raw, fs, present, QualitySpec())
    assert f.flat.tolist() == [False, True, False, False, False, False]
    assert f.saturated.tolist() == [False, False, True, False, False, False]
    assert f.lead_off.tolist() == [False, False, False, True, False, False]
    assert f.baseline_wander.tolist() == [False, False, False, False, True, False]
    assert f.unusable.tolist() == [False, True, True, True, False, False]


def _per_window(present, flags, beat_correlation, lead_correlation, detected, used, rates, spec, window):
    out = []
    for row in range(len(beat_correlation)):
        noisy = flags.noisy[row] if flags.noisy is not None and flags.noisy[row].any() else None
        own = LeadFlags(flat=flags.flat[row], lead_off=flags.lead_off[row], saturated=flags.saturated[row],
                        baseline_wander=flags.baseline_wander[row], noisy=noisy)
        out.append(assess(leads=LEADS, present=present[row], flags=own, beat_correlation=beat_correlation[row],
                          lead_correlation=lead_correlation[row], n_beats_detected=detected[row],
                          n_beats_used=used[row], heart_rate_bpm=rates[row], spec=spec, window=window))
    return out


@pytest.mark.parametrize("with_noisy", [False, True])
def test_a_batch_is_assessed_as_each_window_alone(with_noisy):
    """assess_batch against assess window by window, field for field (the stream stores
    ``to_dict()``): every combination of flags, absent leads, no or few beats, disagreeing beats,
    rates above the card's, correlations that round either way."""
    rng = np.random.default_rng(7 + with_noisy)
    b, l = 300, len(LEADS)
    present = rng.random((b, l)) < 0.9
    present[:5] = True
    mk = lambda share: rng.random((b, l)) < share  # noqa: E731
    flags = LeadFlags(flat=mk(0.05), lead_off=mk(0.05), saturated=mk(0.03), baseline_wander=mk(0.05),
                      noisy=mk(0.05) if with_noisy else None)
    flags.flat[:5] = flags.lead_off[:5] = flags.saturated[:5] = flags.baseline_wander[:5] = False
    counts = rng.integers(0, 25, b)
    counts[:3] = (0, 1, 2)
    beat_correlation = [rng.uniform(-0.2, 1.0, n) ** rng.choice([1, 8]) for n in counts]
    lead_correlation = rng.uniform(-1, 1, (b, l)).round(5)
    detected = [int(n) + int(rng.integers(0, 3)) for n in counts]
    rates = [None if n < 2 else float(rng.uniform(30, 320)) for n in counts]
    spec, window = QualitySpec(), WindowSpec()
    got = assess_batch(leads=LEADS, present=present, flags=flags, beat_correlation=beat_correlation,
                       lead_correlation=lead_correlation, n_beats_detected=detected, n_beats_used=list(counts),
                       heart_rate_bpm=rates, spec=spec, window=window)
    expected = _per_window(present, flags, beat_correlation, lead_correlation, detected, counts, rates, spec, window)
    assert [r.to_dict() for r in got] == [r.to_dict() for r in expected]
    assert len({r.reasons for r in got}) > 10  # the batch met many verdicts, not one
