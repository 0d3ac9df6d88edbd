"""`dvc push` / `dvc pull` with what to do when the remote fails (`make push`, `make pull`).

    python -m mnist_pipeline.remote push [dvc push arguments]
    python -m mnist_pipeline.remote pull [dvc pull arguments]

DVC's own output passes through unchanged; when it fails, one paragraph follows saying what to do
for the failures a team meets (keys refused, store unreachable, an object nobody pushed, a local
file in the way). DVC never deletes a workspace file on these failures; the paragraph says so.
"""

from __future__ import annotations

import subprocess
import sys

# (what DVC says, what to do): the first match wins.
ADVICE = [
    (
        ("Forbidden", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"),
        "the remote refused the keys: set them with `dvc remote modify --local storage "
        "access_key_id ...` and `secret_access_key ...` (or AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY), check they may read and write the bucket, then run it again.",
    ),
    (
        ("Could not connect to the endpoint URL", "Name or service not known", "timed out"),
        "the remote cannot be reached: check its address (`dvc remote list`, "
        "`dvc config --local remote.storage.endpointurl`) and that it is up, then run it again.",
    ),
    (
        ("Missing cache files", "do not exist neither locally nor on remote"),
        "the remote lacks the objects named above: whoever committed that dvc.lock has to "
        "`dvc push` (or make them again with `dvc repro`); then `dvc pull` completes. Everything "
        "else was pulled.",
    ),
    (
        ("unsaved files",),
        "a file of yours is where a pulled output goes: move it away, or `dvc pull --force` to "
        "replace it.",
    ),
]


def advice(output: str) -> str:
    """What to do, for DVC's output of a failed push or pull."""
    for needles, todo in ADVICE:
        if any(needle in output for needle in needles):
            return todo
    return "see DVC's message above; `dvc remote list` shows where the remote points."


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("push", "pull"):
        print("usage: python -m mnist_pipeline.remote push|pull [dvc arguments]", file=sys.stderr)
        return 2
    result = subprocess.run(["dvc", *argv], stderr=subprocess.PIPE, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        print(
            f"error: dvc {argv[0]} failed, and lost nothing in the workspace: "
            f"{advice(result.stderr)}",
            file=sys.stderr,
        )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
