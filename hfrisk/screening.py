"""Population screening: score a folder or a list of recordings with the stream's preprocessing.

Every recording gets one row: scored, not fit to score (with the quality reasons) or refused
(with the input error). Rows are appended to ``scores.csv`` batch by batch, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm import tqdm

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.attention_weights import decode_lead_weights, encode_lead_weights
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.frontend.preprocessing import ModelInput, prepare
from hfrisk.model.readers.dispatch import iter_records, read_ecg

__all__ = [
    "SyncScorer",
    "ScreenRow",
    "screen",
    "prepare_record",
    "default_workers",
    "screening_threads",
    "summarize",
    "write_summary",
    "SCORES_FILENAME",
]

SCORES_FILENAME = "scores.csv"
log = get_logger(__name__)


class SyncScorer(Protocol):
    """A blocking model (:class:`~hfrisk.serving.scorers.OnnxScorer`,
    :class:`~hfrisk.serving.scorers.SyncTritonScorer`): a batch in, the card's outputs out."""

    card: ModelCard

    def score(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass
class ScreenRow:
    record: str
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
    flagged: bool = False
    top_lead: str = ""
    # {lead: weight} in the card's lead order, the one JSON form of
    # hfrisk.model.contract.attention_weights (the summary's map reads it back).
    lead_attention: str = ""


def _row_for(path: Path, item: ModelInput, patient_id: str) -> ScreenRow:
    q = item.quality
    return ScreenRow(
        record=str(path),
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


def _done_records(scores_path: Path) -> set[str]:
    if not scores_path.is_file():
        return set()
    return set(pd.read_csv(scores_path, usecols=["record"])["record"].astype(str))


def _flush(rows: list[ScreenRow], scores_path: Path) -> None:
    if rows:
        frame = pd.DataFrame([asdict(r) for r in rows])
        frame.to_csv(scores_path, mode="a", header=not scores_path.exists(), index=False)


Prepared = tuple[ScreenRow, "ModelInput | None"]


def prepare_record(path: Path, card: ModelCard) -> Prepared:
    """Read and preprocess one recording: its row, and the model input when it is fit to score."""
    try:
        ecg = read_ecg(path)
        item = prepare(ecg, card)
    except ECGInputError as err:
        return ScreenRow(record=str(path), patient_id="", status="refused", reason=str(err)), None
    return _row_for(path, item, ecg.patient_id), (item if item.quality.fit_to_score else None)


# Set once per pool process by the initializer, so the card is not pickled with every chunk.
_worker_card: ModelCard | None = None


def _init_worker(card: ModelCard) -> None:
    global _worker_card
    _worker_card = card


def _prepare_chunk(paths: Sequence[Path]) -> list[tuple[ScreenRow, np.ndarray | None]]:
    assert _worker_card is not None, "pool process not initialised"
    # Only the array the network needs travels back: the median beats and peaks stay here.
    return [(row, item.x if item is not None else None) for row, item in
            (prepare_record(path, _worker_card) for path in paths)]


def _prepared_in_order(paths: Sequence[Path], card: ModelCard, workers: int, chunk_size: int,
                       ahead: int) -> Iterator[tuple[ScreenRow, np.ndarray | None]]:
    """``(row, x or None)`` per path, in order. With ``workers`` >= 1, a pool of that many processes
    reads and preprocesses up to ``ahead`` recordings ahead of the caller (so that it keeps working
    while the caller scores, and memory stays bounded on long lists)."""
    if workers < 1:
        for path in paths:
            row, item = prepare_record(path, card)
            yield row, (item.x if item is not None else None)
        return
    # fork: the children inherit the preprocessing stack already imported here (neurokit2 and
    # scipy take seconds to import: a spawned or forkserver pool paid that on every run). The
    # parent's gRPC and ONNX Runtime threads are not a hazard because the children never score:
    # they only read files and run numpy/scipy.
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    chunks = (paths[i:i + chunk_size] for i in range(0, len(paths), chunk_size))
    max_in_flight = max(2 * workers, math.ceil(ahead / chunk_size))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(card,)) as pool:
        in_flight: deque = deque()
        for chunk in chunks:
            in_flight.append(pool.submit(_prepare_chunk, chunk))
            if len(in_flight) >= max_in_flight:
                yield from in_flight.popleft().result()
        while in_flight:
            yield from in_flight.popleft().result()


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
    chunk_size: int = 4,
) -> pd.DataFrame:
    """Score every recording under ``sources``; returns all rows (earlier runs' included).

    ``workers`` processes (default: one per CPU; 0: all in this process) read and preprocess the
    recordings while this process scores the previous batch, so screening runs at the speed of
    preprocessing spread over the cores rather than of one core. Rows keep the input order and
    the scores are the same whatever ``workers`` is.
    """
    workers = default_workers() if workers is None else workers
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path = out_dir / SCORES_FILENAME
    if not resume and scores_path.exists():
        scores_path.unlink()
    done = _done_records(scores_path)
    paths = [p for p in iter_records(sources if not isinstance(sources, (str, Path)) else [sources])
             if str(p) not in done]
    if done:
        log.info("resuming", already_scored=len(done), remaining=len(paths))
    # A pool costs a second or so to start: not worth it for a handful of recordings.
    workers = min(workers, len(paths) // chunk_size)

    card = scorer.card
    pending: list[tuple[ScreenRow, np.ndarray]] = []
    rows: list[ScreenRow] = []

    def score_pending() -> None:
        if not pending:
            return
        outputs = scorer.score(np.stack([x for _, x in pending]))
        for i, (row, _) in enumerate(pending):
            row.log_risk = float(outputs["log_risk"][i, 0])
            row.hazard_ratio = math.exp(row.log_risk)
            row.flagged = row.log_risk >= threshold
            weights = outputs["lead_attention"][i]
            row.top_lead = card.input.leads[int(np.argmax(weights))]
            row.lead_attention = encode_lead_weights(card.input.leads, weights)
        pending.clear()

    # Two batches ahead: one being scored, one filling.
    prepared = _prepared_in_order(paths, card, workers, chunk_size, ahead=2 * batch_size)
    for row, x in tqdm(prepared, total=len(paths), desc="screening", unit="ecg", disable=not progress):
        rows.append(row)
        if x is not None:
            pending.append((row, x))
        if len(pending) >= batch_size:
            score_pending()
            _flush(rows, scores_path)
            rows = []
    score_pending()
    _flush(rows, scores_path)
    return pd.read_csv(scores_path) if scores_path.exists() else pd.DataFrame(columns=list(ScreenRow.__annotations__))


def summarize(frame: pd.DataFrame, top: int = 10) -> Sequence[dict]:
    """The ``top`` highest-risk scored recordings, riskiest first."""
    scored = frame[frame["status"] == "scored"].sort_values("log_risk", ascending=False)
    return scored.head(top).to_dict("records")


def write_summary(frame: pd.DataFrame, path: str | Path, top: int = 10, leads: Sequence[str] | None = None) -> Path:
    """A PNG: the distribution of log-risk with the flag threshold's cases marked, and the top-risk
    recordings with their lead-attention weights (which leads the model looked at)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hfrisk.model.contract.card import CANONICAL_LEADS

    leads = list(leads or CANONICAL_LEADS)
    scored = frame[frame["status"] == "scored"].sort_values("log_risk", ascending=False)
    figure = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(figure)
    hist, heat = figure.subplots(1, 2, width_ratios=(1, 1.3))
    if len(scored):
        flagged = scored["flagged"].astype(bool)
        hist.hist([scored.loc[~flagged, "log_risk"], scored.loc[flagged, "log_risk"]], stacked=True,
                  bins=min(40, max(5, len(scored) // 3)), color=["#4c72b0", "#c44e52"], label=["not flagged", "flagged"])
        hist.legend()
    counts = frame["status"].value_counts().to_dict()
    hist.set(xlabel="log-risk (Cox log-hazard, higher = riskier)", ylabel="recordings",
             title=f"{counts.get('scored', 0)} scored, {int(frame['flagged'].sum())} flagged, "
                   f"{counts.get('low_quality', 0)} low quality, {counts.get('refused', 0)} refused")
    head = scored.head(top)
    attention = [decode_lead_weights(a) for a in head.get("lead_attention", pd.Series([None] * len(head)))]
    weights = np.array([[by_lead.get(lead, np.nan) for lead in leads] for by_lead in attention], dtype=float)
    image = heat.imshow(weights if len(head) else np.zeros((1, len(leads))), aspect="auto", cmap="magma")
    heat.set_xticks(range(len(leads)), leads)
    heat.set_yticks(range(len(head)), [f"{Path(r).stem}  {v:+.2f}" for r, v in zip(head["record"], head["log_risk"])])
    heat.set_title(f"top {len(head)} by risk: lead attention")
    figure.colorbar(image, ax=heat, label="attention weight")
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path
