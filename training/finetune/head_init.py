"""Start the risk head from a ridge Cox fit on the encoder's frozen embedding.

With a few dozen events, a randomly started head spends the first epochs learning what a linear
Cox model on the embedding gets in one fit, and the encoder is pulled around while it does. This
module fits that linear model first (ridge Cox on the embedding's principal components, chosen on
the validation part as the frozen-feature floors are) and writes it into the paper's head
unchanged in shape: BatchNorm1d(512) → dropout → Linear(512, 3) → ReLU → BatchNorm1d(3) → Linear(3, 1).

The ridge score ``s = z·a`` (``z`` the embedding standardised by the first BatchNorm) goes into two
hidden units, ``relu(s + b₊)`` and ``relu(-s + b₋)``, with offsets that keep both active over the
training range, and the last layer takes their difference. The head then outputs ``s`` minus its
training mean, and stays strictly increasing in ``s`` for every input: when one unit switches off
the other still carries ``s``, so no region of the input space gets one constant score. That is
what saturated the earlier bundled model, whose three units were all off for 12 % of a population
(docs/score-scale.md). The third unit keeps its random start, with a zero output weight, so
fine-tuning can still use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hfrisk.core.logs import get_logger
from hfrisk.model.network.hfrisk_net import HFRiskNet
from hfrisk.training.finetune.data import FinetuneData
from hfrisk.training.finetune.survival_loss import cox_loss
from hfrisk.training.metrics.results import harrell_c_or_nan

__all__ = ["RidgeHeadFit", "better_validation_c", "embed", "fit_ridge_cox", "fit_ridge_direction", "write_linear_head",
           "init_head_from_ridge_cox"]

log = get_logger(__name__)

# The floors' grid (training/evaluation/floors.py): component counts, and L2 penalties on unit-variance
# components, per event (the Cox loss is a mean over events).
PC_COUNTS: tuple[int, ...] = (4, 8, 16, 32)
RIDGE_PENALTIES: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0)

# Both hidden units stay active this many training SDs beyond the training range of s.
_MARGIN_SD = 3.0


@dataclass
class RidgeHeadFit:
    """The linear Cox score on the standardised embedding and how it was chosen."""

    direction: np.ndarray  # (512,): s = z · direction
    mean: np.ndarray  # (512,) embedding mean on the fit part (the first BatchNorm's running mean)
    var: np.ndarray  # (512,) its variance
    n_components: int
    penalty: float
    val_c: float
    validation_c_by_components: dict[int, float] = field(default_factory=dict)

    def standardise(self, embedding: np.ndarray) -> np.ndarray:
        """``embedding`` as the head's first BatchNorm sees it in eval mode."""
        return _standardise(embedding, self.mean, self.var)

    def score(self, embedding: np.ndarray) -> np.ndarray:
        return self.standardise(embedding) @ self.direction

    def describe(self) -> dict:
        return {"head_init": "ridge_cox", "n_components": self.n_components, "penalty": self.penalty,
                "ridge_val_harrell_c": self.val_c,
                "ridge_val_c_by_components": {str(k): v for k, v in self.validation_c_by_components.items()}}


# torch.nn.BatchNorm1d's default eps: the head's standardisation must be the BatchNorm's own.
_BN_EPS = 1e-5


def _standardise(embedding: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return (embedding - mean) / np.sqrt(var + _BN_EPS)


def better_validation_c(candidate: float, incumbent: float | None) -> bool:
    """Whether a validation C beats the best so far (``None``: nothing yet). A NaN never beats a
    number and a tie keeps the incumbent, so the grid order (simpler models first) breaks ties."""
    if incumbent is None:
        return True
    return bool(np.isfinite(candidate) and (not np.isfinite(incumbent) or candidate > incumbent))


def embed(net: HFRiskNet, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The encoder's embedding ``(n, 512)`` in eval mode, as float64."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            out.append(net.embed(x[start : start + batch_size].to(device)).double().cpu())
    net.train(was_training)
    return torch.cat(out).numpy()


def fit_ridge_cox(x: np.ndarray, event: np.ndarray, time: np.ndarray, penalty: float) -> np.ndarray:
    """Coefficients ``β`` minimising the Cox loss (Breslow, mean over events) ``+ penalty/2 · |β|²``.

    L-BFGS in float64 on the same :func:`cox_loss` fine-tuning uses; the objective is strictly
    convex for ``penalty > 0``. The tests compare it with lifelines' penalised ``CoxPHFitter``.
    """
    features = torch.as_tensor(x, dtype=torch.float64)
    events, times = torch.as_tensor(event), torch.as_tensor(time, dtype=torch.float64)
    beta = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([beta], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = cox_loss(features @ beta, events, times) + 0.5 * penalty * beta.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return beta.detach().numpy()


def fit_ridge_direction(
    train_embedding: np.ndarray,
    train_event: np.ndarray,
    train_time: np.ndarray,
    val_embedding: np.ndarray,
    val_event: np.ndarray,
    val_time: np.ndarray,
    *,
    n_components: Sequence[int] = PC_COUNTS,
    penalties: Sequence[float] = RIDGE_PENALTIES,
) -> RidgeHeadFit:
    """Ridge Cox on the top principal components of the standardised embedding.

    The components are scaled to unit variance so one penalty grid fits every count. The count
    and the penalty are those with the best validation C (ties: fewer components, larger penalty),
    as for the frozen-feature floors; the direction is mapped back to the 512 standardised
    features so the head can hold it.
    """
    mean = train_embedding.mean(axis=0)
    var = train_embedding.var(axis=0)
    z_train, z_val = _standardise(train_embedding, mean, var), _standardise(val_embedding, mean, var)
    # Axes of the standardised fit part; its columns are already centred.
    _, singular, axes = np.linalg.svd(z_train, full_matrices=False)
    pc_sd = singular / np.sqrt(len(z_train))
    best, tried = None, {}
    for k in sorted({min(int(k), len(axes)) for k in n_components}):
        keep = pc_sd[:k] > 1e-9
        project = axes[:k][keep].T / pc_sd[:k][keep]
        pcs_train, pcs_val = z_train @ project, z_val @ project
        best_k = None
        for penalty in sorted(penalties, reverse=True):
            beta = fit_ridge_cox(pcs_train, train_event, train_time, penalty)
            val_c = harrell_c_or_nan(pcs_val @ beta, val_event, val_time)
            if better_validation_c(val_c, None if best_k is None else best_k[0]):
                best_k = (val_c, penalty, project @ beta)
        tried[k] = best_k[0]
        if better_validation_c(best_k[0], None if best is None else best[0]):
            best = (*best_k, k)
    val_c, penalty, direction, k = best
    return RidgeHeadFit(direction, mean, var, k, float(penalty), float(val_c), tried)


def write_linear_head(net: HFRiskNet, fit: RidgeHeadFit, train_embedding: np.ndarray) -> None:
    """Set ``net.risk_head`` so that in eval mode it outputs ``fit.score(e)`` minus its training mean."""
    bn_in, _, hidden, _, bn_hidden, out = net.risk_head
    device = next(net.parameters()).device
    z = fit.standardise(train_embedding)
    score = z @ fit.direction
    s_mean, s_sd = float(score.mean()), float(score.std())
    if not np.isfinite(s_sd) or s_sd < 1e-12:
        raise ValueError("the ridge score is constant on the training part: nothing to start the head from")
    margin = _MARGIN_SD * s_sd
    offset_up = -float(score.min()) + margin
    offset_down = float(score.max()) + margin

    def tensor(values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)

    with torch.no_grad():
        bn_in.running_mean.copy_(tensor(fit.mean))
        bn_in.running_var.copy_(tensor(fit.var))
        bn_in.weight.fill_(1.0)
        bn_in.bias.zero_()
        hidden.weight[0].copy_(tensor(fit.direction))
        hidden.bias[0] = offset_up
        hidden.weight[1].copy_(tensor(-fit.direction))
        hidden.bias[1] = offset_down
        # The third unit keeps its random weights; its statistics are measured on the same inputs.
        third = np.maximum(z @ hidden.weight[2].double().cpu().numpy() + float(hidden.bias[2]), 0.0)
        bn_hidden.running_mean.copy_(tensor([s_mean + offset_up, -s_mean + offset_down, third.mean()]))
        bn_hidden.running_var.copy_(tensor([s_sd**2, s_sd**2, third.var()]))
        bn_hidden.weight.fill_(1.0)
        bn_hidden.bias.zero_()
        # Each unit, standardised, is ±(s - mean)/sqrt(sd² + eps): half of that scale each gives s - mean.
        unit_scale = 0.5 * np.sqrt(s_sd**2 + bn_hidden.eps)
        out.weight.copy_(tensor([[unit_scale, -unit_scale, 0.0]]))
        out.bias.zero_()


def init_head_from_ridge_cox(net: HFRiskNet, fit_part: FinetuneData, val_part: FinetuneData) -> dict:
    """Fit the ridge Cox on ``net``'s embedding of ``fit_part`` (chosen on ``val_part``) and write it
    into the risk head; returns what to record in the run's provenance."""
    train_embedding = embed(net, fit_part.x)
    val_embedding = embed(net, val_part.x)
    fit = fit_ridge_direction(train_embedding, fit_part.event.numpy(), fit_part.time.numpy(),
                              val_embedding, val_part.event.numpy(), val_part.time.numpy())
    write_linear_head(net, fit, train_embedding)
    log.info("finetune.head_from_ridge_cox", n_components=fit.n_components, penalty=fit.penalty,
             val_c=round(fit.val_c, 4) if np.isfinite(fit.val_c) else None)
    return fit.describe()
