"""A team's servers, real and on 127.0.0.1, for the team tests: PostgreSQL (Debian's package) and
an S3-compatible store (moto's server mode), each in its own process, gone when the block ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

# What the S3 stand-in accepts; a real store's keys go in the same variables (or ~/.aws).
S3_KEYS = {"AWS_ACCESS_KEY_ID": "team-key-id", "AWS_SECRET_ACCESS_KEY": "team-s3-secret-Qx7Lw2"}


@dataclass(frozen=True)
class S3:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{what} did not start (exit code {proc.poll()})")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    """The whole process group, so no child outlives the test."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError:
        return True  # an HTTP error is an answer
    except OSError:
        return False
    return True


@contextlib.contextmanager
def s3_server(bucket: str = "team-bucket", refusing: bool = False) -> Iterator[S3]:
    """moto's S3 server as a process of its own, with `bucket` made; `refusing`: one that checks
    keys against its own (empty) user list, so it answers every request with 403 Forbidden."""
    import boto3  # what a team would use to make its bucket; slow to import

    port = free_port()
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    proc = subprocess.Popen(
        [moto or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        env=os.environ | ({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if refusing else {}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _wait_for(lambda: _answers(endpoint), proc, "moto_server")
        if not refusing:
            keys = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
            s3.create_bucket(Bucket=bucket)
        yield S3(endpoint, bucket)
    finally:
        _stop(proc)


def _pg_bin(tool: str) -> str:
    """Debian keeps PostgreSQL's programs off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[4]))
    path = str(found[-1]) if found else shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} not found: install PostgreSQL (.ci/debian-packages)")
    return path


@contextlib.contextmanager
def postgres_server(user: str, password: str, database: str = "mlflow") -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 that asks for a password (scram-sha-256), with
    `database` owned by `user`; yields its URI without the password (libpq reads PGPASSWORD).

    PostgreSQL refuses to run as root, so under root it runs as `postgres`, in a folder of /tmp
    that user can reach (pytest's are private). No fsync: a test's data need not survive a crash.
    """
    import psycopg  # the driver SQLAlchemy 2.1 picks for postgresql://, as MLflow's server does

    as_user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="team-pg-"))
    try:
        (folder / "pw").write_text(password)
        if as_user:
            shutil.chown(folder, as_user)
            shutil.chown(folder / "pw", as_user)
        quiet = {"user": as_user, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(folder / "data"), "-U", user, "-E", "UTF8",
             "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}", "--no-sync", "--no-instructions"],
            check=True, **quiet,
        )  # fmt: skip
        port = free_port()
        proc = subprocess.Popen(
            [_pg_bin("postgres"), "-D", str(folder / "data"), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            user=as_user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            login = {"host": "127.0.0.1", "port": port, "user": user, "password": password}

            def accepts() -> bool:
                try:
                    psycopg.connect(dbname="postgres", connect_timeout=1, **login).close()
                except psycopg.OperationalError:
                    return False
                return True

            _wait_for(accepts, proc, "postgres")
            # CREATE DATABASE runs outside a transaction
            with psycopg.connect(dbname="postgres", autocommit=True, **login) as admin:
                admin.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
            yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
