"""The Lightning module: any `nn.Module` classifier trained with cross-entropy.

A LeNet-5 step is short, so every step here does only what a hand-written loop would (the
figures are in docs/results.md, "Speed"):
- The optimization is written out (Lightning's manual optimization). Automatic optimization wraps
  each step in a closure, divides the loss by the accumulation factor and keeps a detached copy of
  it: Python and extra GPU kernels on every step.
- Metrics are per epoch. The training loss is summed on the device and handed to `self.log` once,
  on the epoch's last batch: each `self.log` call costs Lightning bookkeeping comparable to a
  LeNet-5 convolution, and no step should pay for a host sync.

Under DDP the sums are added up over all processes (`strategy.reduce`) before they are divided:
every process then sees the same mean training loss, so all of them stop together on a NaN (one
stopping alone would leave the others waiting in the next gradient sync), and the validation
metrics count each example once (the validation shards split the set without padding). The
means logged are then equal on every process: `sync_dist` only averages equal values, and keeps
Lightning from warning that an epoch metric was not synced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


class Classifier(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.optimizer_factory, self.scheduler_factory = model, optimizer, scheduler
        self.automatic_optimization = False

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def on_train_epoch_start(self) -> None:
        self.loss_sum, self.seen = torch.zeros((), device=self.device), 0

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        if self.scheduler_factory is not None:
            self.lr_schedulers().step()
        self.loss_sum.add_(loss.detach(), alpha=len(y))
        self.seen += len(y)
        if batch_idx == self.trainer.num_training_batches - 1:
            total, seen = self.all_processes(self.loss_sum, self.seen)
            mean = total / seen
            if not torch.isfinite(mean):  # one host sync an epoch, not one a step
                lr = self.trainer.optimizers[0].param_groups[0]["lr"]
                raise FloatingPointError(
                    f"the training loss became {mean.item()} in epoch {self.current_epoch}: the "
                    f"model diverged. Lower optimizer.lr (the rate was {lr:.3g} when it did)."
                )
            self.log("train_loss", mean, on_step=False, on_epoch=True, sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self.val_loss_sum = torch.zeros((), device=self.device)
        self.val_correct = torch.zeros((), device=self.device)
        self.val_seen = 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_loss_sum += F.cross_entropy(logits, y, reduction="sum")
        self.val_correct += (logits.argmax(1) == y).sum()
        self.val_seen += len(y)

    def on_validation_epoch_end(self) -> None:
        loss_sum, correct, seen = self.all_processes(
            self.val_loss_sum, self.val_correct, self.val_seen
        )
        self.log_dict({"val_loss": loss_sum / seen, "val_acc": correct / seen}, sync_dist=True)

    def all_processes(self, *sums: Tensor | int) -> Tensor:
        """The sums added up over every DDP process (as they are, in a single process)."""
        device, kind = self.device, torch.float32
        stacked = torch.stack([torch.as_tensor(s, dtype=kind, device=device) for s in sums])
        return self.trainer.strategy.reduce(stacked, reduce_op="sum")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": scheduler}  # stepped by training_step
