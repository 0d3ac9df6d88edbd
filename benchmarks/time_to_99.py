"""Time to 99%: does a recipe reach 99.0% test accuracy, and in how many seconds of training?

Runs the train stage's own code (`train()`: the Lightning Trainer, the data module, MLflow
tracking into a throwaway store) and `evaluate()` on the test set, once to warm up (CUDA context,
cuDNN, allocator), then once per seed. Prints each seed's `fit_seconds` (Lightning's fit loop, as
the run logs it) and test accuracy, and whether every seed met both targets. Needs data/processed
(`make repro`).

    python benchmarks/time_to_99.py                                  # trainer=gpu experiment=fast
    python benchmarks/time_to_99.py trainer=gpu experiment=fast data.batch_size=1024 --seeds 5
    python benchmarks/time_to_99.py trainer=cpu experiment=fast      # the same recipe on a CPU
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import mlflow
import torch

from mnist_pipeline.config.params import compose
from mnist_pipeline.evaluate import evaluate
from mnist_pipeline.train import train
from mnist_pipeline.utils.paths import PROCESSED_DIR, Outputs


def one_run(overrides: list[str], seed: int, folder: Path) -> tuple[float, float]:
    """(fit seconds, test accuracy) of one training through the stage's code."""
    store = f"sqlite:///{folder / 'mlflow.db'}"
    quiet = ["trainer.enable_progress_bar=false", f"tracking.uri={store}"]
    cfg = compose([*overrides, *quiet, f"seed={seed}"])
    out = Outputs.under(folder / f"seed-{seed}")
    train(cfg, out, PROCESSED_DIR)
    acc = evaluate(cfg, out, PROCESSED_DIR)
    run_id = json.loads(out.run_file.read_text())["run_id"]
    mlflow.set_tracking_uri(store)
    return mlflow.get_run(run_id).data.metrics["fit_seconds"], acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", default=["trainer=gpu", "experiment=fast"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--target-acc", type=float, default=0.99)
    parser.add_argument("--target-seconds", type=float, default=0.7)
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{' '.join(args.overrides)} on {device}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="time-to-99-") as tmp:
        seconds, acc = one_run(args.overrides, 0, Path(tmp))
        print(f"  warm-up      fit {seconds:6.2f} s   test acc {acc:.4f}", flush=True)
        met = 0
        for seed in range(1, args.seeds + 1):
            seconds, acc = one_run(args.overrides, seed, Path(tmp))
            ok = acc >= args.target_acc and seconds <= args.target_seconds
            met += ok
            verdict = "met" if ok else "MISSED"
            print(
                f"  seed {seed}       fit {seconds:6.2f} s   test acc {acc:.4f}   {verdict}",
                flush=True,
            )
    print(
        f"{met} of {args.seeds} seeds reached {args.target_acc:.1%} in at most "
        f"{args.target_seconds} s of training"
    )


if __name__ == "__main__":
    main()
