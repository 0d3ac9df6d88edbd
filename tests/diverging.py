"""A LeNet-5 that diverges on one DDP process only, for the multi-node NaN test.

On global rank 1 its `nan_at`-th training forward gives NaN logits (the last step of the first
epoch, in the test); every other forward, and every process but rank 1, stays finite. The other
process's mean loss for that epoch is then finite: only processes that add up their losses before
checking them all stop together.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import Tensor

from mnist_pipeline.model.networks import ConvNet


class NanOnRank1(ConvNet):
    def __init__(self, nan_at: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        if self.training and dist.is_initialized() and dist.get_rank() == 1:
            self.calls += 1
            if self.calls == self.nan_at:
                return out * float("nan")
        return out
