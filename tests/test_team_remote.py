"""A team's flow through a DVC remote, for real: two clones of one bare git repo, one runs the
pipeline and pushes, the other pulls and has nothing left to run. Against the remote the repo
ships (a folder beside the clone) and against an S3-compatible server (moto) on 127.0.0.1, set up
with docs/team.md's `dvc remote modify --local` lines; then one experiment by `dvc exp push`/`pull`,
and remotes that refuse, cannot be reached or lack an object.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from pipeline_repo import make_repo, run
from servers import free_port
from synthetic import synthetic_digits
from team_servers import S3, S3_KEYS, s3_server

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Team:
    origin: Path  # the bare git repo
    a: Path  # the clone that ran the pipeline and pushed
    env: dict[str, str]
    s3: S3
    metrics: dict  # `dvc metrics show` in A


def git(root: Path, env: dict[str, str], *args: str) -> str:
    return run(["git", *args], root, env).stdout


def sync(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`make push` / `make pull`: DVC, plus what to do when the remote fails."""
    command = [sys.executable, "-m", "mnist_pipeline.remote", *args]
    return subprocess.run(command, cwd=root, env=env, text=True, capture_output=True)


def use_s3(root: Path, env: dict[str, str], s3: S3, remote: str = "storage") -> None:
    """docs/team.md's recipe: the shipped remote pointed at a bucket, in .dvc/config.local."""
    for key, value in [
        ("url", f"s3://{s3.bucket}/mnist-pipeline"),
        ("endpointurl", s3.endpoint),  # S3-compatible stores only; AWS needs none
        ("access_key_id", S3_KEYS["AWS_ACCESS_KEY_ID"]),
        ("secret_access_key", S3_KEYS["AWS_SECRET_ACCESS_KEY"]),
    ]:
        run(["dvc", "remote", "modify", "--local", remote, key, value], root, env)


def metrics(root: Path, env: dict[str, str]) -> dict:
    """`reports/metrics.json` as `dvc metrics show` gives it."""
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], root, env).stdout)
    return shown[""]["data"]["reports/metrics.json"]["data"]


def files(root: Path) -> dict[str, bytes]:
    """The work tree as a person sees it: every file outside .git and DVC's cache."""
    skip = (".git", ".dvc/cache", ".dvc/tmp")
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not str(p.relative_to(root)).startswith(skip)
    }


def assert_kept(root: Path, before: dict[str, bytes]) -> None:
    """Every file that was there is still there, unchanged (new ones may have come)."""
    after = files(root)
    assert {name: after.get(name) for name in before} == before


def clone(team: Team, name: str) -> Path:
    dest = team.origin.parent / name
    run(["git", "clone", "-q", "-b", "main", str(team.origin), str(dest)], team.origin, team.env)
    return dest


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, http_mirror: str) -> Iterator[Team]:
    """A runs `dvc repro`, then `dvc push` to the shipped remote and to S3, and `git push`."""
    parent = tmp_path_factory.mktemp("team")
    origin = parent / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    a, env = make_repo(parent / "a", http_mirror)
    git(a, env, "branch", "-M", "main")
    git(a, env, "remote", "add", "origin", str(origin))
    git(a, env, "push", "-q", "-u", "origin", "main")
    with s3_server() as s3:
        team = Team(origin, a, env, s3, {})
        for name in ("b-folder", "b-s3"):  # B clones before A has results, as a teammate would
            clone(team, name)
        digit = parent / "seven.png"  # one of A's own digits: DVC data, pushed with the rest
        Image.fromarray(synthetic_digits(1, seed=9)[0][0]).resize((84, 84)).save(digit)
        label = [sys.executable, "-m", "mnist_pipeline.predict", "--label", "7", str(digit)]
        run(label, a, env)
        run(["dvc", "repro"], a, env)
        started = time.monotonic()
        run(["dvc", "push"], a, env)  # the shipped remote: ../mnist-pipeline-storage
        run(["git", "add", "-A"], a, env)
        git(a, env, "commit", "-qm", "results")
        git(a, env, "push", "-q")
        print(f"\nA: dvc push (folder) + git push: {time.monotonic() - started:.1f} s")
        use_s3(a, env, s3)
        started = time.monotonic()
        run(["dvc", "push"], a, env)
        print(f"A: dvc push (S3): {time.monotonic() - started:.1f} s")
        yield Team(origin, a, env, s3, metrics(a, env))


@pytest.fixture(scope="module")
def b_s3(team: Team) -> Path:
    """B, pulled from the bucket."""
    b = team.origin.parent / "b-s3"
    started = time.monotonic()
    git(b, team.env, "pull", "-q")
    use_s3(b, team.env, team.s3)
    run(["dvc", "pull"], b, team.env)
    print(f"\nB: git pull + dvc pull (S3): {time.monotonic() - started:.1f} s")
    return b


def test_the_shipped_remote_is_a_folder_beside_the_clone(team: Team) -> None:
    b = team.origin.parent / "b-folder"
    assert run(["dvc", "remote", "default"], b, team.env).stdout.strip() == "storage"
    url = run(["dvc", "config", "remote.storage.url"], b, team.env).stdout.strip()
    storage = team.origin.parent / "mnist-pipeline-storage"
    assert (b / ".dvc" / url).resolve() == storage  # relative to .dvc/, as DVC reads it
    assert any((storage / "files" / "md5").iterdir())  # where A's `dvc push` went
    assert not (b / ".dvc" / "config.local").exists()  # no credentials, no local setup


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_b_pulls_a_s_results_and_has_nothing_to_reproduce(
    team: Team, where: str, request: pytest.FixtureRequest
) -> None:
    if where == "s3":
        b = request.getfixturevalue("b_s3")
    else:
        b = team.origin.parent / "b-folder"
        started = time.monotonic()
        git(b, team.env, "pull", "-q")
        run(["dvc", "pull"], b, team.env)
        print(f"\nB: git pull + dvc pull (folder): {time.monotonic() - started:.1f} s")
    assert "Data and pipelines are up to date." in run(["dvc", "repro"], b, team.env).stdout
    assert metrics(b, team.env) == team.metrics
    assert team.metrics["test"]["acc"] >= 0.9
    for out in ("models/model.pt", "data/processed/train.npz", "reports/confusion.png"):
        assert (b / out).read_bytes() == (team.a / out).read_bytes(), out
    (mine,) = [p for p in (team.a / "data/yours/7").iterdir() if not p.name.endswith("28x28.png")]
    assert (b / "data/yours/7" / mine.name).read_bytes() == mine.read_bytes()  # A's own digit


def test_an_experiment_travels_by_exp_push_and_exp_pull(team: Team, b_s3: Path) -> None:
    a, env = team.a, team.env
    run(["dvc", "exp", "run", "-n", "lr-002", "-S", "optimizer.lr=0.002"], a, env)
    run(["dvc", "exp", "push", "origin", "lr-002"], a, env)  # git refs and the DVC objects
    run(["dvc", "exp", "pull", "origin", "lr-002"], b_s3, env)
    run(["dvc", "exp", "apply", "lr-002"], b_s3, env)
    assert metrics(b_s3, env) == metrics(a, env) != team.metrics
    model = "models/model.pt"
    assert (b_s3 / model).read_bytes() == (a / model).read_bytes()
    assert "Data and pipelines are up to date." in run(["dvc", "repro"], b_s3, env).stdout


def test_a_remote_that_refuses_changes_nothing(team: Team) -> None:
    """Wrong keys for a bucket: S3's 403 from DVC, A's work untouched."""
    a, env = team.a, team.env
    before = files(a)
    with s3_server(refusing=True) as refusing:
        run(["dvc", "remote", "add", "--local", "-f", "refusing", "s3://team-bucket/x"], a, env)
        use_s3(a, env, refusing, remote="refusing")
        result = sync(a, env | {"AWS_MAX_ATTEMPTS": "1"}, "push", "-r", "refusing")
    run(["dvc", "remote", "remove", "--local", "refusing"], a, env)
    assert result.returncode != 0 and "Forbidden" in result.stderr, result.stderr
    assert "the remote refused the keys: set them with `dvc remote modify" in result.stderr
    assert files(a) == before


def test_an_unreachable_remote_fails_and_loses_nothing(team: Team) -> None:
    b = clone(team, "b-unreachable")
    (b / "conf" / "notes.txt").write_text("work in progress, not committed")
    before = files(b)
    dead = S3(f"http://127.0.0.1:{free_port()}", team.s3.bucket)  # nothing listens there
    use_s3(b, team.env, dead)
    result = sync(b, team.env | {"AWS_MAX_ATTEMPTS": "1"}, "pull")
    assert result.returncode != 0, result.stderr
    assert f'Could not connect to the endpoint URL: "{dead.endpoint}/' in result.stderr
    assert "the remote cannot be reached: check its address" in result.stderr
    assert_kept(b, before)


def test_a_remote_lacking_an_object_names_it_and_a_push_repairs_it(team: Team) -> None:
    """A forgot to push one file: B gets everything else, keeps its own files, and once the object
    is there, `dvc pull` again completes."""
    b = clone(team, "b-lacking")
    storage = team.origin.parent / "storage-lacking"
    shutil.copytree(team.origin.parent / "mnist-pipeline-storage", storage)
    run(["dvc", "remote", "modify", "--local", "storage", "url", str(storage)], b, team.env)
    lock = (b / "dvc.lock").read_text()
    md5 = lock.split("path: models/model.pt\n")[1].split("md5: ")[1].split()[0]
    missing = storage / "files" / "md5" / md5[:2] / md5[2:]
    kept = missing.read_bytes()
    missing.unlink()
    (b / "conf" / "notes.txt").write_text("work in progress, not committed")
    before = files(b)

    result = sync(b, team.env, "pull")
    assert result.returncode != 0
    assert "models/model.pt" in result.stdout + result.stderr and md5 in result.stderr
    assert "the remote lacks the objects named above: whoever committed" in result.stderr
    assert not (b / "models" / "model.pt").exists()
    assert (b / "data" / "processed" / "train.npz").exists()  # the rest came
    assert_kept(b, before)

    missing.write_bytes(kept)  # what A's `dvc push` would do
    run(["dvc", "pull"], b, team.env)
    assert hashlib.md5((b / "models" / "model.pt").read_bytes()).hexdigest() == md5
