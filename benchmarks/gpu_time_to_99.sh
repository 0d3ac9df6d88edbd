#!/usr/bin/env bash
# Time to 99% on a GPU, in one go (a few minutes on an H200): the speed recipe through the train
# stage's own code, warm, five seeds, with and without cuDNN autotuning; then a whole `dvc exp run`
# (its stages' start-up, CUDA's included, tracking and evaluate).
#
#   MNIST_MIRROR=file:///path/to/mnist bash benchmarks/gpu_time_to_99.sh
#
# Needs the project's environment (`make install`; on a machine without a network, install the
# same pins from a wheel folder first) and an NVIDIA GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
dvc repro preprocess >/dev/null  # data/processed, from MNIST_MIRROR

python benchmarks/time_to_99.py trainer=gpu experiment=fast --seeds 5
python benchmarks/time_to_99.py trainer=gpu experiment=fast trainer.benchmark=false --seeds 5

timed_exp() {  # one `dvc exp run` of the recipe: $1 a label, $2 a seed
  local start end
  start=$(date +%s.%N)
  dvc exp run -S trainer=gpu -S experiment=fast -S seed="$2" >/dev/null
  end=$(date +%s.%N)
  python - "$1" "$start" "$end" <<'PY'
import json, sys
import mlflow
run = json.load(open("models/mlflow_run.json"))
fit = mlflow.get_run(run["run_id"]).data.metrics["fit_seconds"]
acc = json.load(open("reports/metrics.json"))["test"]["acc"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"dvc exp run -S trainer=gpu -S experiment=fast, {sys.argv[1]}: {wall:.1f} s wall, "
      f"fit {fit:.2f} s, test acc {acc:.4f}")
PY
}
timed_exp "every stage a new process (imports, CUDA start-up)" 11
