"""Test-set metrics against hand-computed values, batched prediction, the confusion plot."""

import json
import math

import numpy as np
import pytest
import torch

from mnist_pipeline.model.networks import MLP
from mnist_pipeline.report.figures import confusion as plot_confusion
from mnist_pipeline.report.metrics import confusion_matrix, predict, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_known_example():
    labels = torch.tensor([0, 1, 2, 2, 0])
    predicted = torch.tensor([0, 2, 2, 1, 0])
    cm = confusion_matrix(labels, predicted, num_classes=3)
    assert cm.tolist() == [[2, 0, 0], [0, 0, 1], [0, 1, 1]]


def test_confusion_matrix_default_is_ten_classes():
    cm = confusion_matrix(torch.tensor([9, 3]), torch.tensor([3, 3]))
    assert cm.shape == (10, 10)
    assert cm[9, 3] == 1 and cm[3, 3] == 1 and cm.sum() == 2


# labels 0 0 1 1 2, predicted 0 1 1 1 1: class 2 is never predicted.
# class 0: tp 1 of 1 predicted, 2 true; class 1: tp 2 of 4 predicted, 2 true
LABELS = torch.tensor([0, 0, 1, 1, 2])
PREDICTED = [0, 1, 1, 1, 1]
HIGH = 2.0


def one_hot_logits(predicted):
    logits = torch.zeros(len(predicted), 10)
    logits[torch.arange(len(predicted)), torch.tensor(predicted)] = HIGH
    return logits


@pytest.fixture
def result():
    return report(one_hot_logits(PREDICTED), LABELS)


def test_report_accuracy_and_loss(result):
    assert result["acc"] == pytest.approx(3 / 5)
    right = -math.log(math.exp(HIGH) / (math.exp(HIGH) + 9))
    wrong = math.log(math.exp(HIGH) + 9)
    assert result["loss"] == pytest.approx((3 * right + 2 * wrong) / 5, rel=1e-6)


def test_report_per_class(result):
    per_class = result["per_class"]
    assert sorted(per_class, key=int) == [str(c) for c in range(10)]
    assert per_class["0"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert per_class["1"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2}
    )
    assert per_class["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per_class["7"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 10)


def test_report_has_no_nan_and_is_plain_json(result):
    text = json.dumps(result, allow_nan=False)  # raises on NaN/inf
    assert json.loads(text)["predictions"] == PREDICTED
    assert result["confusion"][0][:3] == [1, 1, 0]
    assert result["confusion"][2][:3] == [0, 1, 0]
    assert isinstance(result["acc"], float)
    assert isinstance(result["per_class"]["0"]["support"], int)


def test_predict_batches_match_one_pass():
    torch.manual_seed(0)
    model = MLP(hidden=(32,), dropout=0.5)
    images = torch.randn(23, 1, 28, 28)
    model.train()  # predict must switch dropout off itself
    batched = predict(model, images, batch_size=5)
    with torch.no_grad():
        whole = model.eval()(images)
    assert batched.shape == (23, 10)
    torch.testing.assert_close(batched, whole)
    torch.testing.assert_close(predict(model, images, batch_size=100), whole)


def test_plot_confusion_writes_png(tmp_path):
    cm = [[5, 1, 0], [0, 7, 2], [1, 0, 9]]
    path = tmp_path / "plots" / "confusion.png"
    plot_confusion(cm, path, "test accuracy 84.00%")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]


def test_plot_confusion_replaces_atomically(tmp_path, monkeypatch):
    import matplotlib.figure

    path = tmp_path / "confusion.png"
    path.write_bytes(b"old plot")
    cm = [[3, 0], [1, 2]]
    plot_confusion(cm, path, "t")
    first = path.read_bytes()
    assert first[:8] == PNG_MAGIC

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_MAGIC + b"half a plot")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_confusion(cm, path, "t")
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


def test_training_curves_and_mistakes_write_pngs(tmp_path):
    from mnist_pipeline.report.figures import mistakes, training_curves

    history = [
        {"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "val_acc": 0.9}
        for e in range(3)
    ]
    training_curves(history, tmp_path / "training.png")
    assert (tmp_path / "training.png").read_bytes()[:8] == PNG_MAGIC

    images = np.zeros((5, 28, 28), dtype=np.uint8)
    mistakes(
        images,
        [1, 2, 3, 4, 5],
        [1, 7, 3, 9, 5],
        [0.9, 0.8, 0.7, 0.99, 0.5],
        tmp_path / "mistakes.png",
    )
    assert (tmp_path / "mistakes.png").read_bytes()[:8] == PNG_MAGIC


def test_report_confidence_is_the_top_softmax_probability():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    result = report(logits, torch.tensor([0, 1]))
    assert result["confidence"][0] == pytest.approx(torch.tensor([2.0, 0.0]).softmax(0)[0].item())
    assert result["confidence"][1] == pytest.approx(0.5)
