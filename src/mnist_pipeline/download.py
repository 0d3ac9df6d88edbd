"""DVC stage `download`: fetch the four MNIST files into data/raw/, verified."""

from __future__ import annotations

from mnist_pipeline.config.checks import ConfigError, check_download
from mnist_pipeline.config.params import load_params
from mnist_pipeline.data.mirrors import DownloadError, RemoteFile, download_all, mirror_list
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.utils.paths import RAW_DIR


def main() -> None:
    cfg = load_params()
    check_download(cfg)
    data = cfg.data
    files = [RemoteFile(f.name, f.sha256) for f in data.files.values()]
    download_all(
        files, mirror_list(data.mirrors), RAW_DIR, timeout=data.timeout_s, attempts=data.attempts
    )


if __name__ == "__main__":
    run_stage(main, DownloadError, ConfigError)
