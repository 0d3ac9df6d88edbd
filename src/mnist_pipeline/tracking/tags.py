"""Run tags: a resolved config read back as the Hydra choices and overrides that made it.

So a run of `dvc exp run -S model=cnn -S optimizer.lr=0.01` is tagged `model=cnn` and
`overrides=optimizer.lr=0.01`, though DVC hands the stage nothing but params.yaml.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config.params import CONF_DIR, flatten, hydra_context
from mnist_pipeline.tracking.lineage import git_state
from mnist_pipeline.utils.atomic import write_json
from mnist_pipeline.utils.redact import redact


def _choices(conf_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The default option of each config group, and every option each group has. Groups off by
    default (`experiment: null`) are recipes that set other groups: a run is told by those."""
    defaults = OmegaConf.load(conf_dir / "config.yaml").defaults
    chosen = {
        k: v
        for entry in defaults
        if isinstance(entry, DictConfig)
        for k, v in entry.items()
        if v is not None
    }
    options = {g: sorted(p.stem for p in (conf_dir / g).glob("*.yaml")) for g in chosen}
    return chosen, options


def _conf_key(conf_dir: Path) -> str:
    """Hydra's version and every file of conf/: what a composition of group choices depends on."""
    import hydra

    digest = hashlib.sha256(hydra.__version__.encode())
    for path in sorted(conf_dir.rglob("*.yaml")):
        digest.update(f"{path.relative_to(conf_dir)}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def _kept(conf_key: str, choices: tuple[str, ...], compose: Callable[[], dict]) -> dict:
    """conf/ composed with these group choices, kept on disk under conf/'s key: a run's tags
    take up to a dozen Hydra compositions, and conf/ seldom changes between experiments.
    Only group choices are kept, never a value of the run's own (a token in `tracking.uri=`)."""
    name = hashlib.sha256(f"{conf_key} {choices}".encode()).hexdigest()[:32]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    kept = cache / "mnist-pipeline" / "compositions" / f"{name}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(kept.read_text())
    composed = compose()
    with contextlib.suppress(OSError):  # a read-only home: composed again next time
        kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json(kept, composed)
    return composed


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

    For each group, the option closest to the config is its choice (the default when the group
    is exactly the default's, with no other option composed: each composition costs Hydra a
    noticeable part of a second, and a run waits for its tags); what still differs from the
    composition of those choices are the overrides, less any an interpolation already explains.
    """
    from hydra import compose as hydra_compose

    conf_dir = Path(conf_dir).resolve()
    values = OmegaConf.to_container(cfg, resolve=True)
    defaults, options = _choices(conf_dir)
    conf_key = _conf_key(conf_dir)  # once: conf/ is read, not every composition

    @functools.cache
    def composed_once(overrides: tuple[str, ...]) -> dict:
        def compose() -> dict:
            return OmegaConf.to_container(hydra_compose("config", list(overrides)), resolve=True)

        choices = all(
            o.partition("=")[2] in options.get(o.partition("=")[0], ()) for o in overrides
        )
        return _kept(conf_key, overrides, compose) if choices else compose()

    def composed(overrides: list[str]) -> dict:
        return composed_once(tuple(overrides))

    def closest(group: str) -> str:
        if values[group] == composed([])[group]:
            return defaults[group]
        return min(
            options[group],
            key=lambda n: len(_differences(values[group], composed([f"{group}={n}"])[group])),
        )

    with hydra_context(conf_dir):
        chosen = {group: closest(group) for group in options}
        picked = [f"{g}={o}" for g, o in chosen.items() if o != defaults[g]]
        changed = _differences(values, composed(picked))
        for override in list(changed):
            rest = [o for o in changed if o != override]
            if not _differences(values, composed(picked + rest)):
                changed = rest
    return {**chosen, "overrides": picked + changed}


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """What the MLflow UI can filter and group runs by: variant, overrides, commit, DVC experiment.

    Runs of one `dvc exp run --queue` grid share `dvc.baseline` (the commit they branch from);
    `varied` lists the keys a run sets away from conf/'s defaults, for filtering.
    """
    described = describe(cfg)
    changed = described["overrides"]
    tags = {
        "model": described["model"],
        "overrides": redact(" ".join(changed)) or "(defaults)",  # tracking.uri may hold a token
        "varied": ",".join(sorted(o.split("=")[0] for o in changed)) or "(defaults)",
        **git_state(),
    }
    for env, tag in (("DVC_EXP_NAME", "dvc.experiment"), ("DVC_EXP_BASELINE_REV", "dvc.baseline")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags
