"""One configuration, two readers: Hydra composes `conf/`, DVC reads `params.yaml`.

`params.yaml` is the composition of `conf/` with no overrides, written by `python -m
mnist_pipeline.config` (`make params`) exactly as `dvc exp run` writes it (DVC's Hydra integration
composes, resolves and dumps with `OmegaConf.to_yaml`). Stages read `params.yaml` only, never
`conf/`: a stage that composed `conf/` itself would ignore `dvc exp run -S` (iterative/dvc#10186),
and plain `dvc repro` never looks at `conf/` (iterative/dvc#10750).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PARAMS_FILE = Path("params.yaml")
CONF_DIR = Path("conf")
# Values that must be positive numbers: a typo here would otherwise surface deep inside a run.
POSITIVE = {
    "seed": int,
    "data.batch_size": int,
    "data.eval_batch_size": int,
    "trainer.max_epochs": int,
    "optimizer.lr": float,
}


class ConfigError(ValueError):
    """A config value is of the wrong type or out of range; the message names the key."""


def check_values(cfg: DictConfig) -> None:
    for key, kind in POSITIVE.items():
        value = OmegaConf.select(cfg, key)
        number = isinstance(value, kind | int) and not isinstance(value, bool)
        if not number or not (value >= 0 if key == "seed" else value > 0):
            raise ConfigError(
                f"{key}={value!r} must be a {'non-negative' if key == 'seed' else 'positive'} "
                f"{kind.__name__}"
            )


def load_params(path: str | Path = PARAMS_FILE) -> DictConfig:
    """The resolved run configuration that DVC tracks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run stages from the repository root (where dvc.yaml is)"
        )
    return OmegaConf.load(path)  # type: ignore[return-value]


@contextmanager
def _hydra(conf_dir: str | Path) -> Iterator[None]:
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

    with _hydra(conf_dir):
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


def _choices(conf_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The default option of each config group, and every option each group has."""
    defaults = OmegaConf.load(conf_dir / "config.yaml").defaults
    chosen = {k: v for entry in defaults if isinstance(entry, DictConfig) for k, v in entry.items()}
    options = {g: sorted(p.stem for p in (conf_dir / g).glob("*.yaml")) for g in chosen}
    return chosen, options


def _differences(left: Mapping[str, Any], right: Mapping[str, Any]) -> list[str]:
    """The Hydra overrides that turn `right` into `left`: set a key, add one (`+key=`), or
    delete one (`~key`)."""
    a, b = flatten(left), flatten(right)
    return [
        f"{'' if key in b else '+'}{key}={a[key]}".replace(" ", "") if key in a else f"~{key}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key, object()) != b.get(key, object())
    ]


def describe(cfg: DictConfig, conf_dir: str | Path = CONF_DIR) -> dict[str, Any]:
    """Read a resolved config back as Hydra choices: `{"model": "cnn", "overrides": [...]}`.

    For each group, the option closest to the config is its choice; what still differs from the
    composition of those choices are the overrides, less any an interpolation already explains.
    So a run of `dvc exp run -S model=cnn -S optimizer.lr=0.01` is tagged `model=cnn
    optimizer.lr=0.01`, though DVC hands the stage nothing but params.yaml.
    """
    from hydra import compose as hydra_compose

    conf_dir = Path(conf_dir).resolve()
    values = OmegaConf.to_container(cfg, resolve=True)
    defaults, options = _choices(conf_dir)

    def composed(overrides: list[str]) -> dict:
        return OmegaConf.to_container(hydra_compose("config", overrides), resolve=True)

    with _hydra(conf_dir):
        chosen = {
            group: min(
                names,
                key=lambda n: len(_differences(values[group], composed([f"{group}={n}"])[group])),
            )
            for group, names in options.items()
        }
        picked = [f"{g}={o}" for g, o in chosen.items() if o != defaults[g]]
        changed = _differences(values, composed(picked))
        for override in list(changed):
            rest = [o for o in changed if o != override]
            if not _differences(values, composed(picked + rest)):
                changed = rest
    return {**chosen, "overrides": picked + changed}


def main(argv: Sequence[str] | None = None) -> None:
    """Write params.yaml from conf/ (plus optional Hydra overrides)."""
    from mnist_pipeline.atomic import write_text

    overrides = list(sys.argv[1:] if argv is None else argv)
    write_text(PARAMS_FILE, to_yaml(compose(overrides)))
    print(f"wrote {PARAMS_FILE} from {CONF_DIR}/config.yaml {' '.join(overrides)}".rstrip())


if __name__ == "__main__":
    main()
