"""Learning-rate schedules that `Classifier` can build once it knows the run's total steps.

Every scheduler config is a `_partial_` taking `(optimizer, total_steps=...)`. `OneCycleLR` takes
that natively; these adapters give the other schedules the same signature.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """Keep the optimizer's learning rate for the whole run."""
    return LambdaLR(optimizer, lambda step: 1.0)


def cosine(optimizer: Optimizer, total_steps: int, eta_min: float = 0.0) -> LRScheduler:
    """Anneal from the optimizer's learning rate to `eta_min` over the whole run."""
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)
