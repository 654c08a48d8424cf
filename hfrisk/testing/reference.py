"""The offline reference a stream run is checked against, window by window.

:class:`Reference` holds a few beds' chunks (real PTB-XL records through the replay feed) and what
the stream must make of them: :func:`offline_scores` cuts the chunks into windows with a fresh
``WindowAssembler`` and scores them with ``prepare`` + ONNX Runtime on the ONNX file Triton serves;
:func:`script_alerts` picks alert thresholds between the observed scores so that alerts rise and clear.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hfrisk.core.config import StreamSettings
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.stream.alerts.policy import AlertPolicy, AlertState
from hfrisk.stream.ingest.replay import feed
from hfrisk.stream.messages import EcgChunk
from hfrisk.stream.windowing import Window, WindowAssembler

__all__ = ["RECORDS", "HOP_S", "Reference", "offline_scores", "script_alerts", "simulate_alerts", "window_sequences"]

RECORDS = Path(__file__).resolve().parents[2] / "tests" / "data" / "ecg" / "ptbxl" / "records500"
HOP_S = 5.0


def offline_scores(chunks, card, session, hop_s: float = HOP_S) -> tuple[dict, dict]:
    """(patient, window id) -> Window, and -> offline log-risk (None: not fit to score)."""
    assembler = WindowAssembler.from_settings(card, StreamSettings(hop_s=hop_s, reorder_s=5.0))
    windows = {(o.patient_id, o.window_id): o for c in chunks for o in assembler.feed(c) if isinstance(o, Window)}
    scores: dict[tuple[str, str], float | None] = {}
    # Many beds loop the same few recordings, so windows repeat sample for sample: score each
    # distinct signal once (a 192-bed load run has about a tenth as many distinct windows as windows).
    by_signal: dict[tuple, float | None] = {}
    for key, window in windows.items():
        ecg = window.ecg
        signal = (ecg.fs_hz, ecg.lead_names, ecg.units, ecg.samples.dtype.str, ecg.samples.shape,
                  hashlib.sha256(np.ascontiguousarray(ecg.samples).tobytes()).digest())
        if signal not in by_signal:
            item = prepare(ecg, card)
            if item.quality.fit_to_score:
                (risk,) = session.run(["log_risk"], {card.input.name: item.x[None].astype(np.float32)})
                by_signal[signal] = float(risk[0, 0])
            else:
                by_signal[signal] = None
        scores[key] = by_signal[signal]
    return windows, scores


def simulate_alerts(sequences, policy: AlertPolicy) -> list[tuple[str, str, str]]:
    events = []
    for pid, seq in sequences.items():
        state = AlertState()
        for window, risk in seq:
            state, event = policy.observe(state, patient_id=pid, window_id=window.window_id,
                                          window_start_us=window.start_us, log_risk=risk,
                                          fit_to_score=risk is not None)
            if event:
                events.append((event.kind.value, pid, window.window_id))
    return events


def script_alerts(sequences) -> tuple[AlertPolicy, list]:
    """Thresholds between observed scores (>= 1e-3 from any) so that some bed raises then clears."""
    risks = sorted({r for seq in sequences.values() for _, r in seq if r is not None})
    cuts = [(a + b) / 2 for a, b in zip(risks, risks[1:]) if b - a >= 2e-3]
    for min_windows in (2, 1):
        for threshold in reversed(cuts):
            for clear in reversed([c for c in cuts if c <= threshold]):
                policy = AlertPolicy(threshold=threshold, clear_threshold=clear, min_windows=min_windows)
                events = simulate_alerts(sequences, policy)
                kinds = Counter(kind for kind, _, _ in events)
                if kinds["raised"] and kinds["cleared"] and len({pid for _, pid, _ in events}) < len(sequences):
                    return policy, events
    raise AssertionError(f"no thresholds make an alert rise and clear on scores {risks}")


def window_sequences(windows: dict, expected: dict) -> dict[str, list]:
    """Patient -> [(window, offline log-risk)] in time order (what the alert policy sees)."""
    sequences = defaultdict(list)
    for key in sorted(windows, key=lambda k: (k[0], windows[k].start_us)):
        sequences[key[0]].append((windows[key], expected[key]))
    return dict(sequences)


@dataclass
class Reference:
    """The chunks of a few beds and what the stream must make of them, computed offline."""

    card: ModelCard
    chunks: list[EcgChunk]
    windows: dict[tuple[str, str], Window]
    expected: dict[tuple[str, str], float | None]
    policy: AlertPolicy
    expected_events: list[tuple[str, str, str]]

    @property
    def patients(self) -> list[str]:
        return sorted({c.patient_id for c in self.chunks})

    @classmethod
    def build(cls, card, session, *, beds: int, records: int | None = None, duration_s: float | None = None,
              start_us: int | None = None, salt: str | None = None, stagger_s: float | None = None) -> Reference:
        """``records`` recordings shared out among the beds, or (``duration_s``) that much signal per
        bed, the recordings looped: what a load run needs. ``stagger_s``: the beds' starts spread
        over that many seconds (``replay.feed``; default one chunk)."""
        start_us = time.time_ns() // 1000 - 3_600_000_000 if start_us is None else start_us
        chunks = [c for _, c in feed([RECORDS], beds=beds, max_records=records, duration_s=duration_s,
                                     loop=duration_s is not None, start_us=start_us, salt=salt,
                                     stagger_s=stagger_s)]
        windows, expected = offline_scores(chunks, card, session)
        policy, events = script_alerts(window_sequences(windows, expected))
        return cls(card, chunks, windows, expected, policy, events)

    def chunks_between(self, first_s: float, end_s: float | None = None) -> list[EcgChunk]:
        """The chunks whose sequence (second of the bed's feed) is in ``[first_s, end_s)``."""
        return [c for c in self.chunks if c.sequence >= first_s and (end_s is None or c.sequence < end_s)]

    def windows_before(self, end_s: float) -> set[tuple[str, str]]:
        """The windows completed by the chunks before second ``end_s`` of every bed."""
        return {k for k, w in self.windows.items() if max(w.sequences) < end_s}
