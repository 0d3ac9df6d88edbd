"""One configuration, two readers: Hydra composes `conf/`, DVC reads `params.yaml`.

`params.yaml` is the composition of `conf/` with no overrides, written by `python -m
mnist_pipeline.config` (`make params`) exactly as `dvc exp run` writes it (DVC's Hydra integration
composes, resolves and dumps with `OmegaConf.to_yaml`). Stages read `params.yaml` only, never
`conf/`: a stage that composed `conf/` itself would ignore `dvc exp run -S` (iterative/dvc#10186),
and plain `dvc repro` never looks at `conf/` (iterative/dvc#10750).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PARAMS_FILE = Path("params.yaml")
CONF_DIR = Path("conf")


def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    """The resolved run configuration that DVC tracks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run stages from the repository root (where dvc.yaml is)"
        )
    return OmegaConf.load(path)  # type: ignore[return-value]


@contextmanager
def hydra_context(conf_dir: str | Path) -> Iterator[None]:
    """Hydra's compose API over `conf_dir`; inside a running Hydra app, that app's own."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # an ad-hoc run: the app already searches conf/
        yield
        return
    with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
        yield


def compose(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """Compose `conf/config.yaml` with Hydra overrides and resolve interpolations, as DVC does."""
    from hydra import compose as hydra_compose

    with hydra_context(conf_dir):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → {"optimizer.lr": 0.001, ...}: the shape MLflow params want."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
