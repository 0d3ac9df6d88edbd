"""Private by default: no usage telemetry from MLflow unless the user turns it on (docs:
Privacy). DVC's analytics are off in .dvc/config."""

from __future__ import annotations

import os
import sys


def keep_private() -> None:
    """No usage telemetry from MLflow unless the user asks for it (docs: Privacy).

    MLflow reads MLFLOW_DISABLE_TELEMETRY when `import mlflow` builds its telemetry client. A
    command calls this before any work, after its imports: the client that `import mlflow` made,
    not yet started (it starts with the first event), is dropped by building it again under the
    new setting.
    """
    if "MLFLOW_DISABLE_TELEMETRY" in os.environ:  # the user's choice
        return
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if "mlflow.telemetry" in sys.modules:
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()
