"""Lightning callbacks."""

from __future__ import annotations

import mlflow
import pytorch_lightning as pl


class MLflowEpochMetrics(pl.Callback):
    """Log every epoch-level metric to the active MLflow run in one batched call, step = epoch.

    Lightning's own `MLFlowLogger` steps metrics by optimizer step and needs a store URI of its
    own; this keeps one run, opened by the project, with curves indexed by epoch.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        mlflow.log_metrics(metrics, step=trainer.current_epoch)
