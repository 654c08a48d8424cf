r"""Learning-rate schedule of pretraining: linear warm-up, then cosine decay, stepped per iteration.

For iteration :math:`s` of :math:`S` with :math:`W = \lfloor f S \rfloor` warm-up iterations
(:math:`f = 0.2` in the paper) the learning rate is the base rate times

.. math::

    \lambda(s) = \begin{cases} s / W & s < W \\
                 \tfrac12 \left(1 + \cos\left(\pi \frac{s - W}{S - W}\right)\right) & W \le s \le S
                 \end{cases}

so it starts at 0, peaks at the base rate after 20 % of the iterations and returns to 0 at the end.

>>> opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
>>> sched = warmup_cosine_schedule(opt, total_steps=100)
>>> [round(WarmupCosine(100)(s), 3) for s in (0, 10, 20, 60, 100)]
[0.0, 0.5, 1.0, 0.5, 0.0]
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosine", "warmup_cosine_schedule"]


class WarmupCosine:
    """The factor :math:`\\lambda(s)` above, as a picklable callable.

    A class rather than a closure: ``LambdaLR.state_dict()`` stores callable objects' attributes, so
    a checkpoint records the schedule it was trained with.
    """

    def __init__(self, total_steps: int, warmup_fraction: float = 0.2, min_factor: float = 0.0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_fraction * total_steps)
        self.min_factor = float(min_factor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.2, min_factor: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` over :class:`WarmupCosine`; call ``.step()`` after every optimiser step."""
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_fraction, min_factor))
