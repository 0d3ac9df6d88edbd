"""params.yaml as the stages read it: unchanged while they run, and not hand-edited under an
experiment that would drop the edits.

Two `dvc exp run` in one workspace: the second rewrites params.yaml before it fails on DVC's lock,
while the first is still training with the old values; dvc.lock would then record params the
outputs were not made with. A stage keeps the bytes it read and refuses to finish when the file
changed under it (`ParamsSnapshot`).

`dvc exp run` composes params.yaml from conf/ (DVC's Hydra integration), so a hand edit of
params.yaml committed in the baseline would silently vanish from the experiment: the check stage
refuses that, naming the keys (`dropped_hand_edits`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config.checks import ConfigError
from mnist_pipeline.config.params import CONF_DIR, PARAMS_FILE, compose, flatten, to_yaml

PARALLEL = (
    "Run experiments in parallel with `dvc exp run --queue -S ...` then `dvc queue start -j N` "
    "(each in its own copy of the repository), never two `dvc exp run` in one workspace"
)


class ParamsChanged(ConfigError):
    """params.yaml is not what this stage read when it started."""


@dataclass(frozen=True)
class ParamsSnapshot:
    path: Path
    content: bytes
    config: DictConfig

    @classmethod
    def read(cls, path: str | Path = PARAMS_FILE) -> ParamsSnapshot:
        """The config, parsed from the very bytes kept for `check`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: run stages from the repository root (where dvc.yaml is)"
            )
        content = path.read_bytes()
        return cls(path, content, OmegaConf.create(content.decode()))  # type: ignore[arg-type]

    def check(self, what: str = "this stage's outputs") -> None:
        """Fail if the file changed since `read`: what the stage made is not what it says."""
        try:
            now = self.path.read_bytes()
        except OSError:
            now = None
        if now != self.content:
            raise ParamsChanged(
                f"{self.path} changed while this stage ran: {what} would be recorded under "
                "params it did not use, so the stage stops here. Another `dvc exp run` (or an "
                f"edit) rewrote it. {PARALLEL}; run this experiment again once the other ends."
            )


def git_show(rev: str, path: str) -> str | None:
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def conf_at(rev: str, folder: Path) -> Path | None:
    """conf/ as committed at `rev`, written under `folder`."""
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev, "--", f"{CONF_DIR}/"],
        capture_output=True,
        text=True,
    )
    names = listed.stdout.split() if listed.returncode == 0 else []
    for name in names:
        text = git_show(rev, name)
        if text is None:
            return None
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / CONF_DIR if names else None


def dropped_hand_edits(rev: str, params: dict) -> list[str]:
    """The keys where params.yaml at `rev` differs from conf/'s composition at `rev`, and where
    `params` (the experiment's) went back to conf/'s value: edits this experiment drops. A key
    the experiment sets itself (`-S optimizer.lr=...`) is the user's choice, not a loss."""
    committed = git_show(rev, str(PARAMS_FILE))
    if committed is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        conf = conf_at(rev, Path(tmp))
        if conf is None:
            return []
        composed = flatten(yaml.safe_load(to_yaml(compose(conf_dir=conf))))
    edited, now = flatten(yaml.safe_load(committed) or {}), flatten(params)
    absent = "(absent)"
    return [
        f"{key} is {edited.get(key, absent)!r} there, conf/ gives {composed.get(key, absent)!r}"
        for key in sorted(edited.keys() | composed.keys())
        if edited.get(key, absent) != composed.get(key, absent) == now.get(key, absent)
    ]


def check_baseline() -> None:
    """Under `dvc exp run` (DVC sets DVC_EXP_NAME), refuse a baseline whose params.yaml held
    edits that conf/ does not and the experiment does not set: composed from conf/, it would
    drop them. Hand edits made and not committed are gone before any stage runs: not caught."""
    if not os.environ.get("DVC_EXP_NAME"):
        return
    rev = os.environ.get("DVC_EXP_BASELINE_REV") or "HEAD"
    edits = dropped_hand_edits(rev, yaml.safe_load(PARAMS_FILE.read_text()) or {})
    if edits:
        raise ConfigError(
            f"params.yaml in the experiment's baseline ({rev[:12]}) was edited by hand: "
            f"{'; '.join(edits)}. `dvc exp run` composes params.yaml from conf/ and your `-S` "
            "overrides, so this experiment would silently drop those edits. Pass them as `-S "
            "key=value`, or put them in conf/, run `make params` and commit "
            "(`git checkout params.yaml` brings the edited file back)."
        )
