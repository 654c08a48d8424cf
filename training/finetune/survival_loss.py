"""Cox negative partial log-likelihood (Breslow risk sets, mean over events) for fine-tuning.

Sign convention (shared by all of ``hfrisk.training``): a score is a log-hazard, HIGHER = RISKIER.
Written out rather than taken from torchsurv, whose 0.2.0 differs from the paper's loss in three
ways (docs/training/finetuning.md); the tests check it against torchsurv's Breslow path, lifelines
and a brute-force sum.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["cox_loss"]


def cox_loss(
    log_risk: torch.Tensor,
    event: torch.Tensor,
    time: torch.Tensor,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    r"""Cox negative partial log-likelihood with Breslow's handling of tied times.

    .. math::

        L(\eta) = -\frac{1}{D} \sum_{i:\,\delta_i = 1}
            \Big( \eta_i - \log \sum_{j:\,T_j \ge T_i} e^{\eta_j} \Big),
        \qquad D = \sum_i \delta_i

    where :math:`\eta_i` is the log-risk (log relative hazard, higher = riskier), :math:`\delta_i` the
    event indicator and :math:`T_i` the event or censoring time. Under Breslow's rule every subject
    whose time is :math:`\ge T_i` is at risk for the event at :math:`T_i`, including other subjects
    with an event, or a censoring, at that same time. ``reduction="sum"`` drops the :math:`1/D`.

    A batch without events has no likelihood term; it returns a zero that is still connected to
    ``log_risk`` (zero gradient), so training loops need no special case and no host sync happens.

    Args:
        log_risk: shape ``(n,)`` or ``(n, 1)``, floating point; gradients flow through it.
        event: shape ``(n,)``, bool or 0/1.
        time: shape ``(n,)``, any real dtype; only the order of times matters.
        reduction: ``"mean"`` (over events, the paper's normalisation) or ``"sum"``.

    Returns:
        A scalar tensor with the dtype and device of ``log_risk``.

    Example:
        >>> import torch
        >>> log_risk = torch.tensor([0.5, -0.3, 1.2, 0.1], requires_grad=True)
        >>> event = torch.tensor([1, 0, 1, 0])
        >>> time = torch.tensor([2.0, 2.0, 1.0, 3.0])
        >>> loss = cox_loss(log_risk, event, time)
        >>> round(loss.item(), 4)
        0.7352
        >>> loss.backward()
        >>> no_events = cox_loss(log_risk, torch.zeros(4), time)  # zero, and still differentiable
        >>> no_events.item() == 0.0, no_events.grad_fn is not None
        (True, True)
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if log_risk.dim() == 2 and log_risk.shape[1] == 1:
        log_risk = log_risk.squeeze(1)
    if log_risk.dim() != 1:
        raise ValueError(f"log_risk must have shape (n,) or (n, 1), got {tuple(log_risk.shape)}")
    if not log_risk.is_floating_point():
        raise TypeError(f"log_risk must be floating point, got {log_risk.dtype}")
    n = log_risk.shape[0]
    event = torch.as_tensor(event, device=log_risk.device).reshape(-1)
    time = torch.as_tensor(time, device=log_risk.device).reshape(-1)
    if event.shape[0] != n or time.shape[0] != n:
        raise ValueError(
            f"log_risk, event and time must have the same length, got {n}, {event.shape[0]}, {time.shape[0]}"
        )

    time_sorted, order = torch.sort(time)
    eta = log_risk[order]
    is_event = event[order].to(log_risk.dtype)

    # log of sum_{k >= m} exp(eta_k): the suffix of the time-sorted batch starting at position m.
    log_suffix = torch.logcumsumexp(eta.flip(0), dim=0).flip(0)
    # The risk set of a subject starts at the FIRST position holding its time, so everyone tied with it
    # (events and censorings alike) is inside, whatever order the sort left the ties in.
    first_at_time = torch.searchsorted(time_sorted, time_sorted, right=False)
    log_denominator = log_suffix[first_at_time]

    # Multiplying by the indicator (rather than boolean indexing) keeps a zero-event batch on the graph.
    log_likelihood = ((eta - log_denominator) * is_event).sum()
    if reduction == "sum":
        return -log_likelihood
    return -log_likelihood / is_event.sum().clamp(min=1.0)
