"""Fetch gzip-compressed files from a list of mirrors, verified by the checksum of their content.

The checksum is taken over the *decompressed* bytes, so any mirror that serves the true data is
accepted however it compressed it, and the result is byte-identical whichever mirror served it.
A mirror that fails is reported in one line and the next is tried; a mirror that cannot be reached
at all is not asked again for the remaining files. Output lands by atomic rename after it verified,
so a failure never leaves a partial file behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from mnist_pipeline.utils.atomic import atomic_path

log = logging.getLogger(__name__)

MIRROR_ENV = "MNIST_MIRROR"
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file as mirrors serve it (`name` + ".gz") and the sha256 of its decompressed bytes."""

    name: str
    sha256: str


class MirrorError(Exception):
    """One mirror failed to deliver one file. `retry` marks transient faults."""

    def __init__(self, reason: str, *, retry: bool = False, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry
        self.unreachable = unreachable


class DownloadError(RuntimeError):
    """No mirror delivered a file; the message lists every mirror's failure."""


def mirror_url(location: str) -> str:
    """A mirror as a URL ending in '/': http(s) and file URLs as given, a plain path as file://."""
    if "://" not in location:
        location = Path(location).expanduser().resolve().as_uri()
    return location if location.endswith("/") else location + "/"


def mirror_list(configured: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
    """$MNIST_MIRROR first when set, then the configured public mirrors."""
    env = os.environ if env is None else env
    first = [env[MIRROR_ENV]] if env.get(MIRROR_ENV) else []
    return [mirror_url(m) for m in [*first, *configured]]


class _Counted:
    """A read-only stream that advances a progress bar by the compressed bytes read."""

    def __init__(self, raw: BinaryIO, bar: tqdm) -> None:
        self.raw, self.bar = raw, bar

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bar.update(len(data))
        return data


def fetch(url: str, file: RemoteFile, dest: Path, timeout: float) -> None:
    """Download `url`, gunzip it while hashing, and move it to `dest` only if the hash matches."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(dest) as tmp:
            size = response.headers.get("Content-Length")
            bar = tqdm(
                total=int(size) if size else None,
                unit="B",
                unit_scale=True,
                desc=file.name,
                disable=None,
                leave=False,
                file=sys.stderr,
            )
            digest = hashlib.sha256()
            with bar, gzip.GzipFile(fileobj=_Counted(response, bar)) as gz, open(tmp, "wb") as out:
                while chunk := gz.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != file.sha256:
                raise MirrorError(
                    f"checksum mismatch (sha256 {digest.hexdigest()[:12]}…, "
                    f"expected {file.sha256[:12]}…)"
                )
    except urllib.error.HTTPError as e:
        raise MirrorError(f"HTTP {e.code} {e.reason}", retry=e.code >= 500) from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise MirrorError(f"timed out after {timeout:g} s", retry=True) from e
        if isinstance(e.reason, FileNotFoundError):
            raise MirrorError(f"not found ({e.reason.filename})") from e
        raise MirrorError(f"unreachable ({e.reason})", unreachable=True) from e
    except TimeoutError as e:
        raise MirrorError(f"timed out after {timeout:g} s", retry=True) from e
    except EOFError as e:
        raise MirrorError("truncated gzip (the stream ended early)", retry=True) from e
    except (gzip.BadGzipFile, zlib.error) as e:
        raise MirrorError(f"not a valid gzip file ({e})") from e
    except (ConnectionError, http.client.IncompleteRead) as e:
        raise MirrorError(f"connection lost mid-transfer ({e!r})", retry=True) from e
    except http.client.HTTPException as e:
        raise MirrorError(f"bad HTTP response ({e!r})") from e
    except ssl.SSLError as e:  # an OSError too, but the mirror's side
        raise MirrorError(f"TLS error ({e})", retry=True) from e
    except OSError as e:  # what is left is the local disk: another mirror would not help
        raise DownloadError(
            f"writing {dest} failed ({e.strerror or e}); nothing was left half-written. "
            "Free some disk space (or check permissions) and run again."
        ) from e


def is_verified(path: Path, sha256: str) -> bool:
    if not path.is_file():
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def fetch_with_retries(
    url: str, file: RemoteFile, dest: Path, timeout: float, attempts: int
) -> None:
    """`fetch`, retried with a short backoff when the failure looks transient."""
    if attempts < 1:
        raise ValueError(f"data.attempts={attempts} must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fetch(url, file, dest, timeout)
        except MirrorError as e:
            if not e.retry or attempt == attempts:
                raise
            log.info("%s: %s; retrying (%d/%d)", url, e, attempt + 1, attempts)
            time.sleep(0.5 * attempt)


def download_all(
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    dest_dir: Path,
    *,
    timeout: float = 30.0,
    attempts: int = 2,
) -> list[Path]:
    """Fetch every file into `dest_dir` (as `name`, decompressed), trying mirrors in order.

    A file already there with the right checksum is kept as it is, so a rerun fetches only what
    is missing or damaged, and a failed rerun leaves good files untouched.
    """
    unreachable: dict[str, str] = {}
    paths = []
    for file in files:
        if is_verified(dest_dir / file.name, file.sha256):
            log.info("%s already here (verified)", file.name)
            paths.append(dest_dir / file.name)
            continue
        failures = []
        for mirror in mirrors:
            if mirror in unreachable:
                failures.append(f"{mirror}: {unreachable[mirror]}")
                continue
            url = f"{mirror}{file.name}.gz"
            try:
                fetch_with_retries(url, file, dest_dir / file.name, timeout, attempts)
            except MirrorError as e:
                log.warning("mirror failed: %s: %s", url, e)
                failures.append(f"{url}: {e}")
                if e.unreachable:
                    unreachable[mirror] = str(e)
                continue
            log.info("%s ← %s (verified)", file.name, url)
            paths.append(dest_dir / file.name)
            break
        else:
            raise DownloadError(
                f"could not download {file.name} from any mirror:\n"
                + "\n".join(f"  - {f}" for f in failures)
                + f"\nSet {MIRROR_ENV} to a mirror holding the MNIST .gz files (an http(s):// or "
                "file:// URL, or a directory), e.g.\n"
                f"  {MIRROR_ENV}=file:///data/mnist dvc repro"
            )
    return paths
