"""`python -m mnist_pipeline.predict`: image files and folders in, one answer per file out (text or
JSON), the network's own probabilities; bad files and a missing model named in one line each."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_pipeline import predict
from mnist_pipeline.model import model_file
from mnist_pipeline.model.doubt import Detector, Doubt
from mnist_pipeline.model.networks import ConvNet
from mnist_pipeline.serving import loader
from mnist_pipeline.serving.images import load
from test_images import encoded, page
from workspace import clean_env

NORM = {"mean": 0.13, "std": 0.31}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work folder with an untrained network in models/model.pt and a few image files."""
    torch.manual_seed(0)
    spec = {"_target_": "mnist_pipeline.model.networks.ConvNet"}
    model_file.save(tmp_path / "models" / "model.pt", ConvNet().eval(), spec, NORM)
    digits = tmp_path / "digits"
    digits.mkdir()
    (digits / "a.png").write_bytes(encoded(page()))
    (digits / "b.jpg").write_bytes(encoded(page(ink="white", paper="black"), "JPEG"))
    (digits / "c.webp").write_bytes(encoded(page(size=(90, 400), box=(10, 100, 60, 200)), "WEBP"))
    (digits / "notes.txt").write_text("not an image, and not in an image's name")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def run(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """predict's main in this process: (exit status, stdout)."""
    out = io.StringIO()
    try:
        predict.main(**vars(predict.arguments().parse_args(args)), out=out)
        return 0, out.getvalue()
    except SystemExit as e:
        return (0 if e.code is None else 1), out.getvalue()


def network_probabilities(folder: Path, files: list[Path]) -> np.ndarray:
    network = model_file.load_served(folder / "models" / "model.pt")
    pixels = torch.from_numpy(np.stack([load(f.read_bytes(), str(f)) for f in files]))
    with torch.inference_mode():
        return torch.softmax(network(pixels), dim=1).numpy()


def test_json_gives_each_file_the_networks_digit_and_probabilities(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out = run(monkeypatch, "digits", "--json", "--top", "3", "--model", "models/model.pt")
    assert status == 0
    answers = json.loads(out)
    files = [Path("digits/a.png"), Path("digits/b.jpg"), Path("digits/c.webp")]
    assert [a["file"] for a in answers] == [str(f) for f in files]  # sorted, .txt left out
    probabilities = network_probabilities(folder, files)
    for answer, p in zip(answers, probabilities, strict=True):
        assert answer["digit"] == int(p.argmax())
        assert answer["probability"] == pytest.approx(p.max(), abs=1e-4)
        ranked = [t["digit"] for t in answer["top"]]
        assert len(ranked) == 3 and ranked == list(np.argsort(-p, kind="stable")[:3])


def test_bad_files_are_named_one_line_each_and_the_rest_predicted(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (folder / "digits" / "empty.png").write_bytes(b"")
    (folder / "digits" / "text.png").write_text("hello")
    (folder / "digits" / "blank.png").write_bytes(encoded(page(ink="white")))
    status, out = run(monkeypatch, "digits/a.png", "missing.png", "digits", "--top", "2")
    errors = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    lines = out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("digits/a.png: ")  # a.png named twice
    assert "  next: " in lines[0]
    assert [e for e in errors if e.startswith("error: ")] == [
        "error: missing.png: no such file",
        "error: digits/blank.png: blank image: no ink, at most 0 grey levels from the paper "
        "(at least 24 needed)",
        "error: digits/empty.png: the file is empty (0 bytes)",
        "error: digits/text.png: not an image (5 bytes in none of PNG, JPEG, BMP, GIF, WEBP, TIFF)",
    ]


def test_without_a_champion_models_model_pt_is_used_saying_so(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    status, out = run(monkeypatch, "digits/a.png", "--json")
    assert status == 0 and json.loads(out)[0]["file"] == "digits/a.png"
    assert "using models/model.pt instead" in caplog.text
    assert not (folder / "mlflow.db").exists()  # no empty store made by looking for a champion


@pytest.mark.slow
def test_no_model_is_one_line_and_exit_status_1(folder: Path) -> None:
    """Through the real entry point: no traceback."""
    (folder / "models" / "model.pt").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.predict", "digits"],
        cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "No model yet" in line and "models/model.pt" in line
    assert "make repro" in line and result.stdout == ""


def test_run_under_the_project_folder_it_finds_the_projects_model(
    folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """From a subfolder, as git and DVC do: the nearest folder up holding dvc.yaml."""
    (folder / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(folder / "digits")
    status, out = run(monkeypatch, "a.png", "--json")
    assert status == 0 and json.loads(out)[0]["file"] == "a.png"
    assert f"using {folder.resolve() / 'models' / 'model.pt'} instead" in caplog.text
    assert f"no tracking store {folder.resolve() / 'mlflow.db'}" in caplog.text


def test_run_outside_any_project_it_says_where_it_looked(
    folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "a.png").write_bytes((folder / "digits" / "a.png").read_bytes())
    monkeypatch.chdir(elsewhere)
    with pytest.raises(loader.ModelError) as info:
        run(monkeypatch, "a.png")
    message = str(info.value)
    assert f"no tracking store {elsewhere.resolve() / 'mlflow.db'}" in message
    assert "no models/model.pt" in message and "--model" in message
    assert "MLFLOW_TRACKING_URI" in message and ".." not in message.replace("../", "")


def test_a_model_given_that_does_not_exist_is_named_without_pipeline_advice(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(model_file.CheckpointError) as info:
        run(monkeypatch, "digits/a.png", "--model", "/nonexistent/model.pt")
    assert str(info.value) == (
        "/nonexistent/model.pt cannot be read as a model file (no such file)."
    )


def test_a_file_over_the_byte_limit_is_refused_without_reading_it_whole(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with open(folder / "digits" / "huge.png", "wb") as f:
        f.truncate(2 * 1024**3)  # 2 GB, sparse: nothing written to disk
    status, out = run(monkeypatch, "digits/huge.png", "digits/a.png")
    assert status == 1 and out.startswith("digits/a.png: ")
    assert (
        "error: digits/huge.png: more than 20,971,520 bytes, too large" in capsys.readouterr().err
    )


def test_a_doubtful_answer_says_not_sure_and_keeps_the_digit(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule that doubts every answer: its own words in text; in JSON, `not_sure` beside the
    digit and probability, which stay."""
    model, norm, _ = model_file.read(folder / "models" / "model.pt")
    spec = {"_target_": "mnist_pipeline.model.networks.ConvNet"}
    model_file.save(
        folder / "doubtful.pt", model, spec, norm, Doubt(max_score=-1e9, detector=Detector())
    )
    status, out = run(monkeypatch, "digits/a.png", "--model", "doubtful.pt")
    assert status == 0 and re.fullmatch(
        r"digits/a\.png: not sure  likeliest: \d 0\.\d{3}, \d 0\.\d{3}\n", out
    )
    status, out = run(monkeypatch, "digits/a.png", "--json", "--model", "doubtful.pt")
    (answer,) = json.loads(out)
    sure = json.loads(run(monkeypatch, "digits/a.png", "--json", "--model", "models/model.pt")[1])
    assert answer["not_sure"] is True and sure[0]["not_sure"] is False
    assert (answer["digit"], answer["probability"]) == (sure[0]["digit"], sure[0]["probability"])
