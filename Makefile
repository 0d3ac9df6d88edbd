# Every target runs inside .venv, created on first use from the pinned pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 5000
# Where `make server` listens: 127.0.0.1 unless given on the command line (`make server HOST=0.0.0.0`);
# a HOST in the environment (zsh sets one) is not taken.
HOST   := 127.0.0.1
BIN    := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
# Private by default (docs/troubleshooting.md, Privacy): no DVC analytics, no MLflow usage
# telemetry, unless the environment says otherwise (MLFLOW_DISABLE_TELEMETRY=false, DVC_NO_ANALYTICS= ).
MLFLOW_DISABLE_TELEMETRY ?= true
DVC_NO_ANALYTICS ?= 1
export MLFLOW_DISABLE_TELEMETRY DVC_NO_ANALYTICS

.DEFAULT_GOAL := help
.PHONY: help install params repro test test-slow lint docs docs-build ui serve demo server push pull bench bench-loop faults clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml scripts/install-venv
	PYTHON=$(PYTHON) scripts/install-venv $(VENV)
	touch $@

install: $(VENV)/.installed ## Create .venv and install the pinned dependencies

params: install ## Regenerate params.yaml from conf/ (run after editing conf/)
	python -m mnist_pipeline.config

repro: install ## Run the pipeline: download, preprocess, train, evaluate (only what changed)
	dvc repro

# Tests run on every core (pytest-xdist, one worker per core; --dist loadfile keeps a file's
# shared fixtures in one worker). `make test` leaves out the slow ones (whole pipelines, real
# servers and browsers); CI runs both targets. The slow ones spend part of their time waiting
# on servers and child processes, so they get one worker more than there are cores.
SLOW_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: install ## Run the test suite, less the slow tests (a few minutes)
	python -m pytest -n auto --dist loadfile -m "not slow"

test-slow: install ## Run the slow tests: pipelines, servers, the browser (CI runs them)
	python -m pytest -n $(SLOW_WORKERS) --dist loadfile -m slow

lint: install ## Check style with ruff
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks

# The documentation site (mkdocs.yml, docs/). Material's notice about its successor is left out.
DOCS_PORT ?= 8001
docs: install ## The documentation as a site on 127.0.0.1:8001 (DOCS_PORT=), rebuilt as you edit
	NO_MKDOCS_2_WARNING=1 mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: install ## Build the site into site/, failing on a broken link or a page left out (CI)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

bench: install ## Experiment turnaround, and make repro on a fresh clone (make repro first; MNIST_MIRROR)
	python benchmarks/turnaround.py
	python benchmarks/fresh_setup.py

bench-loop: install ## Lightning path vs a plain PyTorch loop, CPU (needs data/processed: make repro)
	python benchmarks/train_speed.py --tracking --rounds 3

faults: install ## Real pipeline on real MNIST through injected faults (set MNIST_MIRROR)
	python tests/faults/run.py

ui: install ## MLflow UI on 127.0.0.1 (PORT=5000) over the project's tracking store
	@echo "The runs of experiment mnist: http://127.0.0.1:$(PORT)/#/experiments/1?workflowType=machine_learning"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false mlflow ui --workers 1 \
		--backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

serve: install ## The registry's champion over REST on 127.0.0.1 (PORT=5000): POST images or pixels
	@echo "POST to http://127.0.0.1:$(PORT)/invocations (docs/model.md)"
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db} exec mlflow models serve \
		-m models:/mnist-classifier@champion --env-manager local --host 127.0.0.1 --port $(PORT)

# The demo's port is 8000 unless PORT is given (`make demo PORT=8001`): the 5000 above is `ui`'s.
DEMO_PORT = $(if $(filter file,$(origin PORT)),8000,$(PORT))
demo: install ## Draw a digit, see what the network sees: 127.0.0.1:8000 (PORT=, HOST=)
	python -m mnist_pipeline.demo --host '$(HOST)' --port '$(DEMO_PORT)'

# `make server`: one tracking server for a team. Runs and registered models in PostgreSQL, artifacts
# in S3 (or any S3-compatible store: MLFLOW_S3_ENDPOINT_URL), proxied by the server, so clients need
# only its URL. Secrets stay off the command line: PGPASSWORD or ~/.pgpass for the database,
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws for the bucket. The URIs reach mlflow through
# its environment variables, not its arguments, so `ps` does not show them.
BACKEND_STORE_URI     ?= postgresql://mlflow@127.0.0.1:5432/mlflow
ARTIFACTS_DESTINATION ?= s3://mlflow-artifacts
WORKERS               ?= 4
server: install ## Tracking server for a team: runs in PostgreSQL, artifacts in S3 (HOST=, PORT=)
	@echo "MLflow tracking server: MLFLOW_TRACKING_URI=http://$(HOST):$(PORT)"
	@MLFLOW_BACKEND_STORE_URI='$(BACKEND_STORE_URI)' MLFLOW_ARTIFACTS_DESTINATION='$(ARTIFACTS_DESTINATION)' \
		MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec mlflow server --host '$(HOST)' --port '$(PORT)' \
		--workers '$(WORKERS)'

push: install ## dvc push to the team's remote, saying what to do if it fails
	python -m mnist_pipeline.remote push

pull: install ## dvc pull from the team's remote, saying what to do if it fails
	python -m mnist_pipeline.remote pull

clean: ## Remove pipeline outputs and caches (keeps .venv and mlflow.db)
	rm -rf data/raw data/processed models/model.pt reports/*.png .checkpoints outputs multirun \
		.pytest_cache .ruff_cache site
