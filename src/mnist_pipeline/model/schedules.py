"""Learning-rate schedules that `Classifier` can build once it knows the run's total steps.

Every scheduler config is a `_partial_` taking `(optimizer, total_steps=...)`; these adapters give
each schedule that signature. Each takes its peak or starting rate from the optimizer itself, so
no config value is derived from another: a hand edit of `optimizer.lr` in params.yaml reaches the
schedule too (an interpolation like `max_lr: ${optimizer.lr}` is resolved when params.yaml is
composed, and would keep the old rate).
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """Keep the optimizer's learning rate for the whole run."""
    return LambdaLR(optimizer, lambda step: 1.0)


def cosine(optimizer: Optimizer, total_steps: int, eta_min: float = 0.0) -> LRScheduler:
    """Anneal from the optimizer's learning rate to `eta_min` over the whole run."""
    return CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=eta_min)


def one_cycle(
    optimizer: Optimizer, total_steps: int, max_lr: float | None = None, pct_start: float = 0.3
) -> LRScheduler:
    """One-cycle policy (Smith 2018): warm up to `max_lr`, then anneal to near zero. With
    `max_lr` null the peak is the optimizer's own learning rate (`optimizer.lr`)."""
    peak = optimizer.param_groups[0]["lr"] if max_lr is None else max_lr
    if pct_start * total_steps == 1:  # torch divides by zero on a warm-up of exactly one step
        pct_start -= 1e-9  # a warm-up that ends where it starts: start at the peak
    return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=pct_start)
