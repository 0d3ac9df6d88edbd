"""`python -m mnist_pipeline.config [OVERRIDE ...]` (`make params`): params.yaml from conf/."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mnist_pipeline.config.params import CONF_DIR, PARAMS_FILE, compose, to_yaml
from mnist_pipeline.utils.atomic import write_text


def main(argv: Sequence[str] | None = None) -> None:
    """Write params.yaml from conf/ (plus optional Hydra overrides)."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    write_text(PARAMS_FILE, to_yaml(compose(overrides)))
    print(f"wrote {PARAMS_FILE} from {CONF_DIR}/config.yaml {' '.join(overrides)}".rstrip())


if __name__ == "__main__":
    main()
