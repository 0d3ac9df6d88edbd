"""`python -m mnist_pipeline.demo [--host H] [--port P] [--model FILE]`: what `make demo` runs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mnist_pipeline.demo.server import make_server
from mnist_pipeline.model.model_file import CheckpointError
from mnist_pipeline.runtime.command import run_stage

log = logging.getLogger("mnist_pipeline.demo")


class DemoError(RuntimeError):
    """The demo cannot start: the address is taken or cannot be bound, or the model given is bad."""


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnist_pipeline.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument("--model", type=Path, help="a model file written by train (default: the "
                        "registry's champion, else models/model.pt)")  # fmt: skip
    return parser


def main(host: str, port: int, model: Path | None) -> None:
    try:
        server = make_server(host, port, model)
    except OSError as e:
        raise DemoError(
            f"cannot serve on {host}:{port} ({e.strerror or e}): another program may "
            "hold the port; choose another with `make demo PORT=8001`"
        ) from None
    try:
        server.RequestHandlerClass.demo.model()  # type: ignore[attr-defined]  # open it now
    except CheckpointError as e:
        if model is not None:
            raise
        log.warning("%s The page says so until there is one.", e)
    host, port = server.server_address[:2]
    log.info("the demo: http://%s:%s (Ctrl-C stops it)", host, port)
    print(f"http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop a server
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    run_stage(main, DemoError, CheckpointError, parser=arguments())
