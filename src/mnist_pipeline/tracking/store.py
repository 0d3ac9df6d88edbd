"""The MLflow store: which one (`tracking.uri`, $MLFLOW_TRACKING_URI or `mlflow.db`), and a
connection that fails fast, naming the URI, when the store is not usable."""

from __future__ import annotations

import contextlib
import os
import urllib.parse
from pathlib import Path

import mlflow
import sqlalchemy
import sqlalchemy.pool
from mlflow.entities import Experiment
from omegaconf import DictConfig

from mnist_pipeline.utils.errors import chain
from mnist_pipeline.utils.redact import redact

DEFAULT_STORE = "mlflow.db"
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
LOCK_WAIT_S = 20.0  # MLflow's `PRAGMA busy_timeout` for SQLite
UI = "http://127.0.0.1:5000"  # `make ui`, for links to runs in the local store


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or refuses a write; the message names the URI."""


def project_root() -> Path:
    """The repository whose `mlflow.db` is the default store.

    DVC sets DVC_ROOT for every stage; for queued experiments, which run in a temporary copy
    under .dvc/tmp/exps, it points at the original repository, so their runs land beside the rest.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd())


def tracking_uri(configured: str | None = None) -> str:
    """`tracking.uri` if set, else $MLFLOW_TRACKING_URI, else SQLite `mlflow.db` in the repo root.

    The default is spelled out because MLflow's own fallback switches to a `./mlruns` file
    store when one exists, which MLflow 3 then refuses.
    """
    return (
        configured
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_root() / DEFAULT_STORE}"
    )


def connect(tracking: DictConfig) -> None:
    """Point MLflow at the configured store and experiment, creating the experiment if needed.

    A server that does not answer fails here, within seconds, before any training: MLflow's own
    retries (7, with exponential backoff) would take minutes, so they are capped unless set. So
    does a SQLite store that is read-only or locked, or whose experiment keeps its artifacts in
    another place's `mlruns` (the repository was moved or copied).
    """
    uri = tracking_uri(tracking.uri)
    mlflow.set_tracking_uri(uri)
    if redact(uri) != uri:  # MLflow prints "View run at <uri>/..." to stdout, token and all
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
        except Exception as e:  # requests' and MLflow's errors alike: the server is not usable
            reason = redact(str(e).splitlines()[0][:200])
            raise TrackingError(
                f"the MLflow tracking server at {redact(uri)} is not answering "
                f"({type(e).__name__}: {reason}). Start it, or unset MLFLOW_TRACKING_URI to "
                "track into mlflow.db here. Nothing was trained."
            ) from e
    if not uri.startswith("sqlite:///"):
        open_experiment(tracking.experiment, None)
        return
    try:  # artifacts beside the database, wherever the first run happens to execute
        artifacts = sqlite_path(uri).resolve().parent / "mlruns"
        create_sqlite_store(sqlite_path(uri))
        experiment = open_experiment(tracking.experiment, artifacts)
        probe_write(uri)
    except Exception as e:
        reason = sqlite_fault(e)
        if reason is None:
            raise
        raise TrackingError(
            f"the MLflow store {redact(uri)} cannot be written: {reason} Nothing was trained."
        ) from e
    check_artifacts_beside(uri, experiment)


def create_sqlite_store(path: Path) -> None:
    """Make a missing SQLite store in a file of its own, then link it into place unless another
    process made it meanwhile: two first runs at once (two `dvc queue` workers on a fresh clone)
    would otherwise run MLflow's migrations on one file together, and one of them would fail."""
    if path.exists():
        return
    making = path.with_name(f".{path.name}.{os.getpid()}.making")
    try:
        mlflow.MlflowClient(f"sqlite:///{making}").search_experiments(max_results=1)  # migrates
        with contextlib.suppress(FileExistsError):  # another process's store is as good
            os.link(making, path)  # never replaces a store, unlike a rename
    finally:
        making.unlink(missing_ok=True)


def open_experiment(name: str, artifacts: Path | None) -> Experiment:
    """Set the experiment, creating it (with its artifacts in `artifacts`, if given) if needed."""
    if artifacts and mlflow.get_experiment_by_name(name) is None:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # a concurrent run made it
            mlflow.create_experiment(name, artifact_location=artifacts.as_uri())
    experiment = mlflow.set_experiment(name)
    # Model training, not GenAI: the kind the MLflow UI files the experiment under. Also set on
    # an experiment made before or elsewhere; a kind a user chose is kept. A label only: a store
    # that refuses it (no permission to edit the experiment) still gets the run.
    if KIND_TAG not in experiment.tags:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client = mlflow.MlflowClient()
            client.set_experiment_tag(experiment.experiment_id, KIND_TAG, MODEL_TRAINING)
    return experiment


def sqlite_path(uri: str) -> Path:
    """The database file of `sqlite:///path` or `sqlite:///file:path?mode=...&uri=true`."""
    return Path(uri.removeprefix("sqlite:///").split("?")[0].removeprefix("file:"))


def probe_write(uri: str) -> None:
    """A write that changes nothing, rolled back: reading works on a read-only or busy store, so
    without this the first write (`start_run`) would fail, after the config is logged, as five
    chained tracebacks."""
    wait = {"timeout": LOCK_WAIT_S}  # as long as MLflow's own sessions wait for a busy store
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool, connect_args=wait)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.exec_driver_sql("UPDATE experiments SET name = name WHERE 0")
            transaction.rollback()
    finally:
        engine.dispose()


SQLITE_FAULTS = {
    "readonly database": "SQLite says 'attempt to write a readonly database'. Make the file and "
    "its folder writable for this user (`ls -l`, `chmod u+w`), or set MLFLOW_TRACKING_URI to a "
    "store you can write.",
    "database is locked": "SQLite says 'database is locked': another process holds it (another "
    "training, an `mlflow server`/`make ui` busy writing, a `sqlite3` shell with an open "
    "transaction). Let it finish or stop it, then run again.",
    "unable to open database file": "SQLite cannot open it. Check that its folder exists and is "
    "writable for this user, or set MLFLOW_TRACKING_URI to a store you can write.",
}


def sqlite_fault(error: BaseException) -> str | None:
    """What to say for SQLite's refusal anywhere in the chain (MLflow wraps SQLAlchemy's
    OperationalError, which wraps sqlite3's), or None for any other error."""
    for seen in chain(error):
        for key, reason in SQLITE_FAULTS.items():
            if key in str(seen):
                return reason
    return None


def check_artifacts_beside(uri: str, experiment: Experiment) -> None:
    """Refuse an experiment whose artifact folder is this project's `mlruns` of another place.

    MLflow stores an experiment's artifact location as an absolute path (`create_experiment`
    resolves a relative one against the working directory, and runs' artifact URIs are absolute
    too), so after the repository or its `mlflow.db` is moved or copied, models and figures would
    go on landing in the old folder, or fail there, with the runs in this store.
    """
    location, beside = experiment.artifact_location, sqlite_path(uri).resolve().parent / "mlruns"
    if not location.startswith("file:"):
        return
    folder = Path(urllib.parse.unquote(urllib.parse.urlparse(location).path))
    if folder.name != "mlruns" or folder == beside or folder.resolve() == beside.resolve():
        return  # not a folder this project chose, or the right one
    gone = "" if folder.exists() else ", which no longer exists"
    raise TrackingError(
        f"the MLflow experiment {experiment.name!r} in {redact(uri)} keeps its artifacts in "
        f"{folder}{gone}, not beside the store in {beside}: the repository or its mlflow.db was "
        "moved or copied after the experiment was made, and MLflow records that folder as an "
        "absolute path, so this run's model and figures would land there. Move the repository "
        f"back, or track into a new experiment here (`-S tracking.experiment={experiment.name}-2`"
        "), or start a fresh store (move mlflow.db and mlruns/ aside). Nothing was trained."
    )


KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
