# Every target runs inside .venv, created on first use from the pinned pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# Private by default (README, Privacy): no DVC analytics, no MLflow usage telemetry, unless the
# environment says otherwise (MLFLOW_DISABLE_TELEMETRY=false, DVC_NO_ANALYTICS= ).
MLFLOW_DISABLE_TELEMETRY ?= true
DVC_NO_ANALYTICS ?= 1
export MLFLOW_DISABLE_TELEMETRY DVC_NO_ANALYTICS

.DEFAULT_GOAL := help
.PHONY: help install params repro test lint ui bench faults clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install the pinned dependencies

params: install ## Regenerate params.yaml from conf/ (run after editing conf/)
	python -m mnist_pipeline.config

repro: install ## Run the pipeline: download, preprocess, train, evaluate (only what changed)
	dvc repro

test: install ## Run the test suite
	python -m pytest

lint: install ## Check style with ruff
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks

bench: install ## Lightning path vs a plain PyTorch loop, CPU (needs data/processed: make repro)
	python benchmarks/train_speed.py --tracking --rounds 3

faults: install ## Real pipeline on real MNIST through injected faults (set MNIST_MIRROR)
	python tests/faults/run.py

ui: install ## MLflow UI on 127.0.0.1 (PORT=5000) over the project's tracking store
	@echo "The runs of experiment mnist: http://127.0.0.1:$(PORT)/#/experiments/1?workflowType=machine_learning"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1 \
		--backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

clean: ## Remove pipeline outputs and caches (keeps .venv and mlflow.db)
	rm -rf data/raw data/processed models/model.pt reports/*.png .checkpoints outputs multirun \
		.pytest_cache .ruff_cache
