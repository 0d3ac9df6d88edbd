"""How much does the project's Lightning path cost over a minimal plain-PyTorch loop?

One process trains the same model on the same data with the same batches, optimizer and schedule
two ways (three with `--tracking`), and prints seconds per epoch, their ratio, images/s, peak RSS
and test accuracy after every epoch. Results also go to a JSON file. Needs data/processed
(`dvc repro preprocess`).

The two run in lockstep: each Lightning epoch is followed at once by one epoch of the plain loop,
and the ratio is the median over those pairs. The epochs of a pair run seconds apart, so a busy
neighbour on a shared machine slows both; alternating whole runs let a burst of load land on one.

    python benchmarks/train_speed.py                        # CPU, the default config (lenet5)
    python benchmarks/train_speed.py --tracking             # + Lightning with MLflow logging
    python benchmarks/train_speed.py trainer=gpu model=cnn  # any Hydra override
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from mnist_pipeline.config.params import compose
from mnist_pipeline.data import splits
from mnist_pipeline.data.tensors import TensorBatches, load_split, normaliser
from mnist_pipeline.report.metrics import predict
from mnist_pipeline.training.build import build
from mnist_pipeline.utils.atomic import write_json

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


def random_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_random_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class PlainLoop:
    """What the Lightning path does, written out: seeded build, batches, schedule, validation.
    One epoch per `epoch()` call, so that its epochs can interleave with Lightning's; it keeps a
    random stream of its own (dropout, augmentation), as if it ran alone."""

    def __init__(self, cfg: DictConfig, device: torch.device) -> None:
        pl.seed_everything(cfg.seed, verbose=False)
        self.model, self.device = instantiate(cfg.model).to(device), device
        self.optimizer = instantiate(cfg.optimizer)(self.model.parameters())
        prepare = normaliser(splits.load_stats(DATA))
        self.train = TensorBatches(
            *(t.to(device) for t in load_split(DATA, "train")),
            cfg.data.batch_size,
            shuffle=True,
            seed=cfg.seed,
            prepare=prepare,
        )
        self.val = TensorBatches(
            *(t.to(device) for t in load_split(DATA, "val")),
            cfg.data.eval_batch_size,
            prepare=prepare,
        )
        total_steps = cfg.trainer.max_epochs * len(self.train)
        self.scheduler = instantiate(cfg.scheduler)(self.optimizer, total_steps=total_steps)
        bf16 = str(cfg.trainer.precision).startswith("bf16")
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        self.random = random_state(device)

    def epoch(self) -> None:
        outside = random_state(self.device)
        set_random_state(self.device, self.random)
        try:
            self._train_and_validate()
        finally:
            self.random = random_state(self.device)
            set_random_state(self.device, outside)

    def _train_and_validate(self) -> None:
        model, optimizer = self.model, self.optimizer
        model.train()
        for x, y in self.train:
            with self.autocast:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            self.scheduler.step()
        model.eval()
        with torch.inference_mode(), self.autocast:
            for x, y in self.val:
                F.cross_entropy(model(x), y)


class Lockstep(pl.Callback):
    """Times each Lightning epoch (training and validation), then runs one plain epoch on its own
    clock. Listed last, so the epoch's other callbacks (MLflow logging) count as Lightning's."""

    def __init__(self, lightning: Clock, plain: Clock, loop: PlainLoop) -> None:
        self.lightning, self.plain, self.loop = lightning, plain, loop

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.lightning.start()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.lightning.stop(module.model)
        self.plain.start()
        self.loop.epoch()
        self.plain.stop(self.loop.model)


def lockstep(cfg: DictConfig, lightning: Clock, plain: Clock, tracked: bool) -> None:
    """The project's own training path (`mnist_pipeline.training.build`), optionally tracked, with a
    plain loop taking an epoch after each of its epochs."""
    loop = PlainLoop(cfg, plain.device)  # seeded like `build`: both start from the same weights
    callbacks: list[pl.Callback] = [Lockstep(lightning, plain, loop)]
    with tempfile.TemporaryDirectory() as store, contextlib.ExitStack() as stack:
        if tracked:
            import mlflow

            from mnist_pipeline.tracking.epochs import EpochMetrics

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
    """Median over epoch i of run r against its plain partner's epoch i (drift cancels in
    pairs), first epochs left out."""
    pairs = [
        mine / base
        for run, plain in zip(runs, baseline, strict=True)
        for mine, base in zip(getattr(run, field)[1:], getattr(plain, field)[1:], strict=True)
    ]
    return statistics.median(pairs) if pairs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer=gpu")
    parser.add_argument("--rounds", type=int, default=2, help="lockstep runs per Lightning arm")
    parser.add_argument("--tracking", action="store_true", help="also time Lightning + MLflow")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/...)")
    args = parser.parse_intermixed_args()

    cfg = compose(args.overrides)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    images, labels = load_split(DATA, "test")
    test = normaliser(splits.load_stats(DATA))(images), labels
    arms = ["lightning", "lightning+mlflow"] if args.tracking else ["lightning"]
    results: dict[str, list[Clock]] = {name: [] for name in ["plain", *arms]}
    partners = {name: [] for name in arms} | {"plain": results["plain"]}  # each arm's plain runs
    for _ in range(args.rounds):
        for name in arms:
            mine, plain = Clock(device, test), Clock(device, test)
            lockstep(cfg, mine, plain, tracked=name == "lightning+mlflow")
            results[name].append(mine)
            results["plain"].append(plain)
            partners[name].append(plain)
            for label, clock in ((name, mine), ("plain", plain)):
                print(
                    f"{label:18s} s/epoch {[round(s, 2) for s in clock.seconds]} "
                    f"test acc {[round(a, 4) for a in clock.accuracy]}",
                    flush=True,
                )

    n_train = splits.load_stats(DATA)["counts"]["train"]
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
        summary[name]["ratio_to_plain"] = paired_ratio(results[name], partners[name], "seconds")
        summary[name]["cpu_ratio_to_plain"] = paired_ratio(
            results[name], partners[name], "cpu_seconds"
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
    write_json(out, report)

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
