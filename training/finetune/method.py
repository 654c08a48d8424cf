"""Fine-tuning as a method of the evaluation protocol: one network per cross-validation run, seeded by the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hfrisk.model.contract.card import ModelCard, default_card
from hfrisk.training.data.cohort import Cohort
from hfrisk.training.finetune.config import FinetuneConfig
from hfrisk.training.finetune.data import FinetuneData
from hfrisk.training.finetune.loop import PARITY_RECORDS, finetune_tensors, predict_log_risk

__all__ = ["finetune_method"]


def finetune_method(
    config: FinetuneConfig | None = None,
    init: str | Path | None = None,
    *,
    card: ModelCard | None = None,
    cache_dir: str | Path | None = None,
    inputs: FinetuneData | None = None,
    cohort: Cohort | None = None,
):
    """Fine-tuning as a :mod:`~hfrisk.training.evaluation.protocol` method (one network per run, seeded by the split).

    Model inputs are looked up by record: in ``inputs`` (made from ``cohort``) when given,
    otherwise preprocessed once for all the records the first split shows (training and test
    fold together: the whole cohort under the paper's splits) and reused by the other runs.
    """
    from hfrisk.training.metrics.results import MethodResult

    config = config or FinetuneConfig()
    card = card or default_card()
    if (inputs is None) != (cohort is None):
        raise ValueError("pass inputs together with the cohort they were made from")
    table: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if inputs is not None:
        table.update({r: (inputs.x[i], inputs.lead_mask[i]) for i, r in enumerate(cohort.records)})

    def ensure(split) -> None:
        missing = [c for c in (split.train, split.test) if any(r not in table for r in c.records)]
        if not missing:
            return
        if inputs is not None:
            raise KeyError("the split has records that the given inputs do not cover")
        union = Cohort(pd.concat([c.table for c in missing]).drop_duplicates("record").sort_values("record"),
                       split.train.time_unit, split.train.records_root, split.train.source)
        data = FinetuneData.from_cohort(union, card, cache_dir)
        table.update({r: (data.x[i], data.lead_mask[i]) for i, r in enumerate(union.records)})

    def data_of(part: Cohort) -> FinetuneData:
        x = torch.stack([table[r][0] for r in part.records])
        lead_mask = torch.stack([table[r][1] for r in part.records])
        return FinetuneData(x, lead_mask, torch.as_tensor(np.array(part.event)), torch.as_tensor(np.array(part.time)))

    def method(split, run_dir: Path) -> MethodResult:
        run_config = config.model_copy(update={"seed": split.seed})
        ensure(split)
        train_all = data_of(split.train)
        fit_rows, val_rows = torch.as_tensor(split.fit_index), torch.as_tensor(split.val_index)

        def rows(data: FinetuneData, index: torch.Tensor) -> FinetuneData:
            return FinetuneData(data.x[index], data.lead_mask[index], data.event[index], data.time[index])

        provenance = {"cohort": split.train.source, "run": split.name, "time_unit": split.train.time_unit,
                      "n_train": len(split.fit_index), "n_train_events": int(train_all.event[fit_rows].sum()),
                      "n_val": len(split.val_index), "n_val_events": int(train_all.event[val_rows].sum()),
                      "parity_records": [str(p.resolve()) for p in split.val.record_paths()[:PARITY_RECORDS]]}
        result = finetune_tensors(run_config, rows(train_all, fit_rows), rows(train_all, val_rows), run_dir, init,
                                  card=card, provenance=provenance)
        device = next(result.net.parameters()).device
        return MethodResult(
            train_risk=predict_log_risk(result.net, train_all.x, config.eval_batch_size, device),
            test_risk=predict_log_risk(result.net, data_of(split.test).x, config.eval_batch_size, device),
            info={**result.summary(), "val_harrell_c": result.best_val_c},
        )

    suffix = ("_frozen" if config.freeze_encoder else "") + ("_ridge_head" if config.head_init == "ridge_cox" else "")
    method.name = f"finetune_{config.encoder}_{'pretrained' if init else 'scratch'}{suffix}"  # type: ignore[attr-defined]
    return method
