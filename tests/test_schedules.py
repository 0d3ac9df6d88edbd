"""Learning-rate schedules built from (optimizer, total_steps)."""

import itertools
import math

import pytest
import torch

from mnist_pipeline.model.schedules import constant, cosine, one_cycle

LR = 0.1


def optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)


def lrs(scheduler, steps):
    seen = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        seen.append(scheduler.get_last_lr()[0])
    return seen


def test_constant_keeps_lr():
    assert lrs(constant(optimizer(), total_steps=10), 10) == [LR] * 11


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_anneals_to_eta_min(eta_min):
    seen = lrs(cosine(optimizer(), total_steps=10, eta_min=eta_min), 10)
    assert seen[0] == pytest.approx(LR)
    assert seen[5] == pytest.approx((LR + eta_min) / 2)
    assert seen[10] == pytest.approx(eta_min, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(seen))
    expected = [eta_min + (LR - eta_min) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    assert seen == pytest.approx(expected)


@pytest.mark.parametrize(("total_steps", "pct_start"), [(4, 0.25), (2, 0.5), (10, 0.1), (10, 0.3)])
def test_one_cycle_warms_up_then_anneals_at_any_length(total_steps, pct_start):
    """Tiny runs included: torch's OneCycleLR divided by zero when pct_start x total_steps is 1."""
    seen = lrs(one_cycle(optimizer(), total_steps, pct_start=pct_start), total_steps - 1)
    peak = seen.index(max(seen))
    assert max(seen) == pytest.approx(LR)
    assert all(a <= b for a, b in itertools.pairwise(seen[: peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(seen[peak:]))
    assert seen[-1] < LR / 100
