"""Credentials in URIs never reach logs, params, reports or messages."""

from __future__ import annotations

import logging
import socket

import pytest
from omegaconf import OmegaConf

from mnist_pipeline.tracking.store import TrackingError, connect
from mnist_pipeline.utils.redact import RedactingFilter, redact, without_credentials

TOKEN = "s3cr3t-t0ken"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"https://alice:{TOKEN}@mlflow.example.com/api", "https://***@mlflow.example.com/api"),
        (f"see http://{TOKEN}@host:5000 now", "see http://***@host:5000 now"),
        (f"postgresql://u:{TOKEN}@db/mlflow", "postgresql://***@db/mlflow"),
        (
            f"#0 : tracking.uri=http\\://u\\:{TOKEN}@h\\:5000",
            "#0 : tracking.uri=http\\://***@h\\:5000",
        ),
        ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_redact_hides_the_userinfo_and_nothing_else(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_link_drops_the_credentials() -> None:
    assert without_credentials(f"https://a:{TOKEN}@host/#/x") == "https://host/#/x"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test_redact"):
        logger.warning("store %s refused", f"https://a:{TOKEN}@host")
    assert TOKEN not in caplog.text and "https://***@host refused" in caplog.text


def test_an_unreachable_server_is_named_without_its_credentials() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError) as info:
        connect(
            OmegaConf.create({"uri": f"http://alice:{TOKEN}@127.0.0.1:{port}", "experiment": "m"})
        )
    assert TOKEN not in str(info.value)
    assert f"http://***@127.0.0.1:{port} is not answering" in str(info.value)
