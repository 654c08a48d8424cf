"""Preprocessing on the model's server: the worker sends raw windows, Triton returns scores and verdicts.

``HFRISK_STREAM__PREPROCESS_ON=server`` (docs/serving.md). The worker's share of the front end is
what needs the window's lead *names*, cheap and per window: the card's window (rate limits,
duration) and its lead order (aliases, derived limb leads, the presence mask), which is
:func:`~hfrisk.model.frontend.preprocessing.window_and_leads`, the first step of ``prepare_windows``. A window they refuse is a :class:`PrepareFailure` with
the same reason as in worker mode, and never leaves the worker. The rest (filters, R peaks, beats,
quality gate, network) runs in ``<model>_raw`` (:mod:`hfrisk.serving.raw_windows`), one request per
rate and length, all sent at once; each window comes back with its verdict
(:class:`~hfrisk.serving.raw_windows.ServedPreparation`, or the server's refusal) and, if it was
fit, the network's outputs.

Outages are waited out and rejections narrowed down to the window at fault exactly as
:class:`~hfrisk.stream.scoring.batch.AsyncTritonScorer` does for model inputs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import numpy as np

from hfrisk.core.logs import get_logger
from hfrisk.core.retries import Backoff
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.leads import ConformedECG
from hfrisk.model.frontend.preprocessing import window_and_leads
from hfrisk.serving.client import RawRiskClient
from hfrisk.serving.raw_windows import declaration_problems, preparation_of
from hfrisk.stream.messages.dead_letter import INFERENCE_REJECTED
from hfrisk.stream.scoring.batch import AsyncTritonScorer, InferenceRejected, PrepareFailure, WindowScore, or_failure

__all__ = ["ServerSideScorer", "conform_window"]

log = get_logger(__name__)


def conform_window(ecg: ECG, card: ModelCard) -> ConformedECG | PrepareFailure:
    """The worker's share: the card's window and lead order, or the refusal ``prepare`` would give."""
    return or_failure(lambda: window_and_leads(ecg, card))


class ServerSideScorer(AsyncTritonScorer):
    """Raw windows to ``<model>_raw`` on Triton, waiting out outages; results as ``score_windows``'."""

    prepares_windows = True

    def __init__(
        self,
        client: RawRiskClient,
        card: ModelCard,
        *,
        base_model: str = "hfrisk",
        backoff: Backoff | None = None,
        on_latency: Callable[[float], None] | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
        check_declaration: bool = True,
    ):
        super().__init__(client, backoff=backoff, on_latency=on_latency, sleep=sleep)
        self.card = card
        self.version_of = base_model  # results record the network's version, as in worker mode
        # Once, after the first answer: the raw model must declare this worker's card and base model.
        self._declaration_checked = not check_declaration

    async def _check_declaration(self) -> None:
        """Stop on a raw model that serves another card or base model than this worker's."""
        import tritonclient.grpc.aio as grpcclient

        probe = grpcclient.InferenceServerClient(self.client.url)
        try:
            config = (await probe.get_model_config(self.client.model_name, as_json=True)).get("config", {})
        except Exception as exc:  # cosmetic failure of the probe: the answers themselves were fine
            log.warning("could not read the raw model's config", error=str(exc))
            return
        finally:
            await probe.close()
        problems = declaration_problems(config.get("parameters", {}), self.card, self.version_of)
        if problems:
            raise RuntimeError(f"{self.client.model_name} on {self.client.url} does not serve this worker's model: "
                               + "; ".join(problems))

    async def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        raise TypeError("ServerSideScorer scores raw windows (score_raw), not model inputs")

    async def score_raw(
        self,
        ecgs: Sequence[ECG],
        *,
        on_batch: Callable[[int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[WindowScore]:
        started = time.perf_counter()
        conformed = [conform_window(ecg, self.card) for ecg in ecgs]
        results: list[WindowScore | None] = [
            WindowScore(None, failure=c) if isinstance(c, PrepareFailure) else None for c in conformed
        ]
        groups: dict[tuple[float, int], list[int]] = {}
        for i, c in enumerate(conformed):
            if isinstance(c, ConformedECG):
                groups.setdefault((float(c.fs_hz), c.samples.shape[-1]), []).append(i)
        if timings is not None:
            timings["prepare"] = round(time.perf_counter() - started, 6)
        if not groups:
            return results  # type: ignore[return-value]
        if on_batch is not None:
            on_batch(sum(len(rows) for rows in groups.values()))
        started = time.perf_counter()
        answers = await asyncio.gather(*(self._score_group([conformed[i] for i in rows]) for rows in groups.values()))
        if timings is not None:
            timings["infer"] = round(time.perf_counter() - started, 6)
        for rows, answer in zip(groups.values(), answers):
            for i, score in zip(rows, answer):
                results[i] = score
        return results  # type: ignore[return-value]

    async def _score_group(self, windows: list[ConformedECG]) -> list[WindowScore]:
        """Windows of one rate and length: one call; if Triton rejects it, one call per window."""
        samples = np.stack([w.samples for w in windows]).astype(np.float32, copy=False)
        present = np.stack([w.mask for w in windows])
        fs_hz = np.full(len(windows), windows[0].fs_hz, np.float32)
        try:
            outputs = await self._until_answered(lambda: self.client.infer_raw(samples, present, fs_hz), len(windows))
        except InferenceRejected as exc:
            if len(windows) == 1:
                return [WindowScore(None, failure=PrepareFailure(INFERENCE_REJECTED, str(exc)))]
            log.warning("triton rejected a batch of raw windows; scoring them one by one", windows=len(windows),
                        error=str(exc))
            return [s for w in windows for s in await self._score_group([w])]
        if not self._declaration_checked:
            self._declaration_checked = True
            await self._check_declaration()
        network = [o.name for o in self.card.outputs]
        scores = []
        for row in range(len(windows)):
            prepared = preparation_of(outputs, row)
            if isinstance(prepared, tuple):
                scores.append(WindowScore(None, failure=PrepareFailure(*prepared)))
            elif prepared.quality.fit_to_score:
                scores.append(WindowScore(prepared, outputs={n: outputs[n][row : row + 1] for n in network}))
            else:
                scores.append(WindowScore(prepared))
        return scores
