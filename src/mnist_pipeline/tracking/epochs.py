"""Lightning callbacks."""

from __future__ import annotations

import contextlib
import logging
import time

import mlflow
import pytorch_lightning as pl

log = logging.getLogger(__name__)


class EpochMetrics(pl.Callback):
    """Keep every epoch's metrics (`history`) and log them to the active MLflow run, one batched
    call per epoch, stepped by epoch.

    Lightning's own `MLFlowLogger` steps metrics by optimizer step and needs a store URI of its
    own; this keeps one run, opened by the project, with curves indexed by epoch.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.unlogged: list[int] = []  # epochs whose metrics the tracking store did not take
        self.logged: set[int] | None = None  # epochs the run held when this process started

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_started = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """`fit_seconds`: Lightning's loop alone, the data and the run already set up. Runs
        compare on it in the MLflow UI; benchmarks/turnaround.py subtracts it from a whole
        `dvc exp run` to find what is not training."""
        seconds = round(time.perf_counter() - self.fit_started, 3)
        if not trainer.is_global_zero:
            return
        log.info("fit took %.1f s (epochs done: %d)", seconds, trainer.current_epoch)
        if mlflow.active_run() is not None:
            with contextlib.suppress(Exception):  # a store gone away is reported at the end
                mlflow.log_metric("fit_seconds", seconds)

    def log_missed(self) -> None:
        """Hand MLflow the epochs it could not take before (after a resume, say)."""
        missed, self.unlogged = self.unlogged, []
        for row in self.history:
            if row["epoch"] in missed:
                self._log({k: v for k, v in row.items() if k != "epoch"}, row["epoch"])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        # Read on every process: the first read syncs the metrics logged with `sync_dist`, a
        # collective that would leave rank 0 waiting for the others if it read them alone.
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        if not trainer.is_global_zero:
            return
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        if trainer.current_epoch not in self.logged_before_resume():
            self._log(metrics, trainer.current_epoch)

    def logged_before_resume(self) -> set[int]:
        """Epochs the run already holds: a kill between an epoch's logging and its checkpoint
        makes the resumed training redo that epoch, which must not be logged twice."""
        if self.logged is None:
            self.logged = set()
            run = mlflow.active_run()
            if run is not None and self.history[:-1]:  # resumed: ask the store once
                with contextlib.suppress(Exception):
                    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_acc")
                    self.logged = {m.step for m in history}
        return self.logged

    def _log(self, metrics: dict[str, float], epoch: int) -> None:
        try:
            mlflow.log_metrics(metrics, step=epoch)
        except Exception as e:  # the store went away: keep training, say so at the end
            log.warning("epoch %d metrics not logged to MLflow: %s", epoch, e)
            self.unlogged.append(epoch)

    def state_dict(self) -> dict:  # saved in checkpoints, so a resumed run keeps its curves
        return {"history": self.history, "unlogged": self.unlogged}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history, self.unlogged = state_dict["history"], state_dict["unlogged"]
