"""Normalised tensors and the batch iterator that replaces a DataLoader."""

import math

import pytest
import torch

from mnist_pipeline.data.tensors import TensorBatches, normalise, normaliser

N, BS = 23, 5


def data(n=N):
    """Images whose single pixel equals their label, so pairing can be checked after shuffling."""
    labels = torch.arange(n)
    return labels.float().reshape(n, 1).clone(), labels


def passes(batches, count=1):
    return [list(batches) for _ in range(count)]


def order(one_pass):
    return torch.cat([labels for _, labels in one_pass]).tolist()


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_example_once_per_pass(shuffle):
    images, labels = data()
    batches = TensorBatches(images, labels, BS, shuffle=shuffle, seed=1)
    assert len(batches) == math.ceil(N / BS) == 5
    for one_pass in passes(batches, 3):
        assert len(one_pass) == len(batches)
        assert [len(y) for _, y in one_pass] == [5, 5, 5, 5, 3]
        assert sorted(order(one_pass)) == list(range(N))
        for x, y in one_pass:
            assert torch.equal(x.reshape(-1), y.float())  # images stay with their labels


def test_exact_multiple_has_no_empty_batch():
    images, labels = data(20)
    batches = TensorBatches(images, labels, 5, shuffle=True)
    assert len(batches) == 4
    assert [len(y) for _, y in batches] == [5] * 4


def test_unshuffled_order_is_preserved():
    images, labels = data()
    first, second = passes(TensorBatches(images, labels, BS), 2)
    assert order(first) == order(second) == list(range(N))


def test_shuffle_differs_between_passes():
    images, labels = data(100)
    first, second = passes(TensorBatches(images, labels, 10, shuffle=True, seed=0), 2)
    assert order(first) != order(second)
    assert order(first) != list(range(100))


def test_shuffle_is_reproducible_per_seed():
    images, labels = data(100)
    a = passes(TensorBatches(images, labels, 10, shuffle=True, seed=3), 2)
    b = passes(TensorBatches(images, labels, 10, shuffle=True, seed=3), 2)
    c = passes(TensorBatches(images, labels, 10, shuffle=True, seed=4), 2)
    assert [order(p) for p in a] == [order(p) for p in b]
    assert [order(p) for p in a] != [order(p) for p in c]


def test_normalise():
    images = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    out = normalise(images, mean=0.2, std=0.5)
    assert out.dtype == torch.float32
    assert out.shape == (1, 1, 2, 2)
    torch.testing.assert_close(out, torch.tensor([[[[-0.4, 1.6], [0.0, 0.4]]]]))
    assert images.dtype == torch.uint8 and images[0, 0, 1] == 255


def test_normalise_batch_shape():
    out = normalise(torch.zeros(7, 28, 28, dtype=torch.uint8), 0.1307, 0.3081)
    assert out.shape == (7, 1, 28, 28)
    torch.testing.assert_close(out, torch.full_like(out, -0.1307 / 0.3081))


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_are_normalised_as_sliced_exactly_as_the_whole_set_would_be(shuffle):
    """The images stay uint8 in memory; each batch gets the very floats that normalising the
    whole split up front gave (same training, 172 MB less for MNIST's training split)."""
    images = torch.randint(0, 256, (37, 28, 28), dtype=torch.uint8)
    labels = torch.arange(37)
    stats = {"mean": 0.1307, "std": 0.3081}
    whole = normalise(images, **stats)
    batches = TensorBatches(images, labels, 8, shuffle, seed=2, prepare=normaliser(stats))
    for x, y in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
        assert torch.equal(x, whole[y])
    assert images.dtype == torch.uint8  # nothing converted in place


def test_ddp_shards_are_disjoint_and_equally_long():
    images, labels = torch.zeros(103, 1, 2, 2), torch.arange(103)
    shards = [TensorBatches(images, labels, 10, shuffle=True, seed=3, rank=r, world=4)
              for r in range(4)]  # fmt: skip
    seen = [torch.cat([y for _, y in shard]) for shard in shards]
    assert {len(s) for s in seen} == {25} and {len(s) for s in shards} == {3}
    everything = torch.cat(seen)
    assert len(everything.unique()) == len(everything) == 100  # 103 % 4 left out, none twice


def test_shuffles_go_on_from_a_restored_generator_state():
    """What a resumed training relies on: the generator's state picks up the sequence."""
    images, labels = data(100)
    whole = passes(TensorBatches(images, labels, 10, shuffle=True, seed=3), 3)
    generator = torch.Generator().manual_seed(3)
    first = passes(TensorBatches(images, labels, 10, shuffle=True, generator=generator))
    restored = torch.Generator()
    restored.set_state(generator.get_state())
    rest = passes(TensorBatches(images, labels, 10, shuffle=True, generator=restored), 2)
    assert [order(p) for p in first + rest] == [order(p) for p in whole]


@pytest.mark.parametrize("stage", ["test", "predict"])
def test_the_data_module_refuses_a_stage_it_does_not_serve(stage: str, tmp_path) -> None:
    """Before: a KeyError from deep inside `trainer.test`; now a message naming the stage, before
    any data is read (the folder here holds none)."""
    from mnist_pipeline.data.datamodule import MNISTDataModule

    module = MNISTDataModule(tmp_path, batch_size=8, eval_batch_size=8)
    with pytest.raises(
        ValueError, match=f"serves the stages \\['fit', 'validate'\\], not '{stage}'"
    ):
        module.setup(stage)
