"""A command runs the code of the workspace it runs in: what DVC hashed into dvc.lock."""

from __future__ import annotations

from pathlib import Path


class WrongCheckout(RuntimeError):
    """The code Python imported is not the code of the workspace the command runs in."""


PACKAGE = Path(__file__).resolve().parents[1]  # the mnist_pipeline imported


def check_workspace_code(cwd: Path | None = None) -> None:
    """Refuse to run another checkout's code from inside a checkout.

    A venv's editable install points at one checkout's src/. DVC runs a queued or `--temp`
    experiment in a copy of the workspace (and a second clone may share the venv), and hashes that
    copy's code into dvc.lock: the stage must run that code, which dvc.yaml's `PYTHONPATH=src`
    makes Python import first. Outside a checkout (an installed package) there is nothing to check.
    """
    root = cwd or Path.cwd()
    here = root / "src" / "mnist_pipeline"
    if not (root / "dvc.yaml").is_file() or not (here / "__init__.py").is_file():
        return
    if here.resolve() != PACKAGE:
        raise WrongCheckout(
            f"this command runs in {root}, whose code is {here}, but Python imported "
            f"mnist_pipeline from {PACKAGE} (another checkout, where the venv's editable install "
            "points), so what ran would not be what DVC records. Run it as dvc.yaml does, "
            "`PYTHONPATH=src python -m mnist_pipeline.<command>`, or `pip install -e .` here."
        )
