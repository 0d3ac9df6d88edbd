"""How much does the project's Lightning path cost over a minimal plain-PyTorch loop?

One process trains the same model on the same data with the same batches, optimizer and schedule
two ways (three with `--tracking`), alternating whole runs (A B A B ...) so machine drift hits both,
and prints seconds per epoch, their ratio, images/s, peak RSS and test accuracy after every epoch.
Results also go to a JSON file. Needs data/processed (`dvc repro preprocess`).

    python benchmarks/train_speed.py                        # CPU, the default config (lenet5)
    python benchmarks/train_speed.py --tracking             # + Lightning with MLflow logging
    python benchmarks/train_speed.py trainer=gpu model=cnn  # any Hydra override
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from mnist_pipeline import dataset
from mnist_pipeline.config import compose
from mnist_pipeline.evaluation import predict
from mnist_pipeline.tensors import TensorBatches, load_split
from mnist_pipeline.train import build

DATA = Path("data/processed")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Clock:
    """Epoch times (train + validation), wall and CPU, and test accuracy after each epoch (not
    timed). On a shared machine, CPU seconds drift less than wall seconds when neighbours are busy.
    """

    def __init__(self, device: torch.device, test: tuple[Tensor, Tensor]) -> None:
        self.device, self.test = device, test
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.accuracy: list[float] = []

    def start(self) -> None:
        sync(self.device)
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def stop(self, model: nn.Module) -> None:
        sync(self.device)
        self.seconds.append(time.perf_counter() - self.t0)
        self.cpu_seconds.append(time.process_time() - self.c0)
        images, labels = self.test
        was_training = model.training
        logits = predict(model, images.to(self.device), 1000)
        model.train(was_training)
        self.accuracy.append((logits.argmax(1).cpu() == labels).float().mean().item())


class LightningClock(pl.Callback):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.clock.start()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.clock.stop(module.model)


def plain_loop(cfg: DictConfig, clock: Clock) -> None:
    """What the Lightning path does, written out: seeded build, batches, schedule, validation."""
    pl.seed_everything(cfg.seed, verbose=False)
    device = clock.device
    model = instantiate(cfg.model).to(device)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    stats = dataset.load_stats(DATA)
    train = TensorBatches(
        *(t.to(device) for t in load_split(DATA, "train", stats)),
        cfg.data.batch_size,
        shuffle=True,
        seed=cfg.seed,
    )
    val = TensorBatches(
        *(t.to(device) for t in load_split(DATA, "val", stats)), cfg.data.eval_batch_size
    )
    epochs = cfg.trainer.max_epochs
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=epochs * len(train))
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    for _ in range(epochs):
        clock.start()
        model.train()
        for x, y in train:
            with autocast:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.inference_mode(), autocast:
            for x, y in val:
                F.cross_entropy(model(x), y)
        clock.stop(model)


def lightning_path(cfg: DictConfig, clock: Clock, tracked: bool) -> None:
    """The project's own training path (`mnist_pipeline.train.build`), optionally tracked."""
    callbacks: list[pl.Callback] = [LightningClock(clock)]
    with tempfile.TemporaryDirectory() as store, contextlib.ExitStack() as stack:
        if tracked:
            import mlflow

            from mnist_pipeline.callbacks import EpochMetrics

            mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
            mlflow.set_experiment("benchmark")
            stack.enter_context(mlflow.start_run())
            callbacks.insert(0, EpochMetrics())
        fit = build(cfg, DATA, callbacks)
        fit.trainer.fit(fit.module, datamodule=fit.datamodule)


def seconds_to(target: float, clock: Clock) -> float | None:
    """Training seconds until the test accuracy first reached `target`."""
    elapsed = 0.0
    for seconds, accuracy in zip(clock.seconds, clock.accuracy, strict=True):
        elapsed += seconds
        if accuracy >= target:
            return elapsed
    return None


def paired_ratio(runs: list[Clock], baseline: list[Clock], field: str) -> float | None:
    """Median over epoch i of round r against the baseline's epoch i of round r (drift cancels
    in pairs), first epochs left out."""
    pairs = [
        mine / base
        for run, plain in zip(runs, baseline, strict=True)
        for mine, base in zip(getattr(run, field)[1:], getattr(plain, field)[1:], strict=True)
    ]
    return statistics.median(pairs) if pairs else None


def rounds(
    arms: dict[str, Callable[[Clock], None]], n: int, make_clock: Callable[[], Clock]
) -> Iterator[tuple[str, Clock]]:
    for _ in range(n):
        for name, run in arms.items():
            clock = make_clock()
            run(clock)
            yield name, clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer=gpu")
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs of whole runs")
    parser.add_argument("--tracking", action="store_true", help="also time Lightning + MLflow")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/...)")
    args = parser.parse_intermixed_args()

    cfg = compose(args.overrides)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    test = load_split(DATA, "test", dataset.load_stats(DATA))
    arms: dict[str, Callable[[Clock], None]] = {
        "plain": lambda clock: plain_loop(cfg, clock),
        "lightning": lambda clock: lightning_path(cfg, clock, tracked=False),
    }
    if args.tracking:
        arms["lightning+mlflow"] = lambda clock: lightning_path(cfg, clock, tracked=True)

    results: dict[str, list[Clock]] = {name: [] for name in arms}
    for name, clock in rounds(arms, args.rounds, lambda: Clock(device, test)):
        results[name].append(clock)
        print(
            f"{name:18s} s/epoch {[round(s, 2) for s in clock.seconds]} "
            f"test acc {[round(a, 4) for a in clock.accuracy]}",
            flush=True,
        )

    n_train = dataset.load_stats(DATA)["counts"]["train"]
    summary = {}
    for name, clocks in results.items():
        # the first epoch of a run pays for warm-up (cuDNN autotune, allocator): report the rest
        steady = [s for c in clocks for s in c.seconds[1:]] or [
            s for c in clocks for s in c.seconds
        ]
        per_epoch = statistics.median(steady)
        summary[name] = {
            "seconds_per_epoch": per_epoch,
            "images_per_second": n_train / per_epoch,
            "test_acc": clocks[-1].accuracy[-1],
            "seconds_to_99": [seconds_to(0.99, c) for c in clocks],
        }
    for name in summary:
        summary[name]["ratio_to_plain"] = paired_ratio(results[name], results["plain"], "seconds")
        summary[name]["cpu_ratio_to_plain"] = paired_ratio(
            results[name], results["plain"], "cpu_seconds"
        )
    report = {
        "config": args.overrides,
        "model": cfg.model._target_,
        "batch_size": cfg.data.batch_size,
        "epochs": cfg.trainer.max_epochs,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "arms": summary,
    }
    out = args.out or Path("benchmarks/results") / f"train_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    def ratio(value: float | None) -> str:  # None with one epoch: it is left out as warm-up
        return "n/a" if value is None else f"{value:.3f}"

    print(
        f"\n{'arm':18s} {'s/epoch':>8s} {'ratio':>6s} {'cpu ratio':>9s} {'img/s':>8s} "
        f"{'test acc':>8s}  s to 99%"
    )
    for name, row in summary.items():
        print(
            f"{name:18s} {row['seconds_per_epoch']:8.3f} {ratio(row['ratio_to_plain']):>6s} "
            f"{ratio(row['cpu_ratio_to_plain']):>9s} {row['images_per_second']:8.0f} "
            f"{row['test_acc']:8.4f}  {row['seconds_to_99']}"
        )
    print(
        f"peak RSS {report['peak_rss_mb']:.0f} MB, device {report['device']}, "
        f"{report['threads']} threads; wrote {out}"
    )


if __name__ == "__main__":
    main()
