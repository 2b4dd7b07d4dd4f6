"""Tests for fdx.input.pipeline and fdx.input.synthetic: process/worker invariance, epochs, exact resume, eval padding."""

import itertools
import json

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from fdx.input import pipeline
from fdx.input.synthetic import SyntheticSource, synthetic_flip


class _IndexSource:
    """Record `i` is its own index plus a payload derived from it."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {'index': np.int64(i), 'x': np.full(3, i, np.float32)}


def _take(dataset: grain.IterDataset, n: int | None = None, workers: int = 0) -> list[dict]:
    """The first `n` batches (all if None) read through `make_loader`."""
    it = pipeline.make_loader(dataset, workers=workers)
    batches = list(itertools.islice(it, n))
    it.close()
    return batches


def _assert_batches_equal(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _global_batches(make, process_count: int, n: int | None = None) -> list[dict]:
    """Concatenates the local batches of all processes step by step; `make(process_index, process_count)`."""
    local = [_take(make(i, process_count), n) for i in range(process_count)]
    assert len({len(batches) for batches in local}) == 1
    return [{k: np.concatenate([b[k] for b in step]) for k in step[0]} for step in zip(*local)]


def _train(source, process_index=0, process_count=1, *, batch=8, seed=0, transform=None, num_epochs=None):
    return pipeline.train_dataset(
        source,
        global_batch_size=batch,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        transform=transform,
        num_epochs=num_epochs,
    )


def _eval(source, process_index=0, process_count=1, *, batch=8, transform=None):
    return pipeline.eval_dataset(
        source, global_batch_size=batch, process_index=process_index, process_count=process_count, transform=transform
    )


# --------------------------------------------------------------------------- #
# Training stream
# --------------------------------------------------------------------------- #


def test_global_batches_and_augmentation_independent_of_process_count():
    source = SyntheticSource(50, 4, 3, num_videos=10)

    def make(i, p):
        return _train(source, i, p, transform=synthetic_flip, num_epochs=2)

    reference = _global_batches(make, 1)
    assert len(reference) == 2 * pipeline.steps_per_epoch(50, 8) == 12
    assert reference[0]['image'].shape == (8, 4, 4, 3)
    for process_count in (2, 4):
        _assert_batches_equal(_global_batches(make, process_count), reference)
    plain = _global_batches(lambda i, p: _train(source, i, p, num_epochs=2), 1)
    flipped = [not np.array_equal(a, b) for x, y in zip(reference, plain) for a, b in zip(x['image'], y['image'])]
    assert 0 < sum(flipped) < len(flipped)


def test_epochs_are_distinct_permutations():
    batches = _take(_train(_IndexSource(48), num_epochs=3))
    assert len(batches) == 18
    epochs = np.concatenate([b['index'] for b in batches]).reshape(3, 48)
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(48))
    assert len({tuple(order) for order in epochs}) == 3
    assert not np.array_equal(epochs[0], np.arange(48))


def test_remainder_dropped_per_epoch():
    batches = _take(_train(_IndexSource(50), num_epochs=2))
    epochs = np.concatenate([b['index'] for b in batches]).reshape(2, 48)
    for order in epochs:
        assert len(set(order)) == 48


def test_seeds_give_different_orders():
    first, second = (np.concatenate([b['index'] for b in _take(_train(_IndexSource(64), seed=s), 4)]) for s in (0, 1))
    assert not np.array_equal(first, second)
    repeat = np.concatenate([b['index'] for b in _take(_train(_IndexSource(64), seed=0), 4)])
    np.testing.assert_array_equal(first, repeat)


def test_infinite_stream_keeps_reshuffling():
    batches = _take(_train(_IndexSource(16), batch=4), 4 * 5)
    epochs = np.concatenate([b['index'] for b in batches]).reshape(5, 16)
    assert all(sorted(order) == list(range(16)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 5


def test_workers_give_identical_batches():
    source = SyntheticSource(40, 8, 2, num_videos=8)
    train = _train(source, 1, 2, transform=synthetic_flip)
    _assert_batches_equal(_take(train, 6, workers=2), _take(train, 6, workers=0))
    evaluation = _eval(source, 0, 2, batch=16, transform=synthetic_flip)
    _assert_batches_equal(_take(evaluation, workers=2), _take(evaluation, workers=0))


@pytest.mark.parametrize('workers', [0, 2])
def test_resume_is_exact(workers):
    dataset = _train(SyntheticSource(30, 4, 2), transform=synthetic_flip)
    reference = _take(dataset, 7 + 5, workers=workers)
    it = pipeline.make_loader(dataset, workers=workers)
    _assert_batches_equal([next(it) for _ in range(7)], reference[:7])
    state = json.loads(json.dumps(it.get_state()))
    it.close()
    resumed = pipeline.make_loader(dataset, workers=workers)
    resumed.set_state(state)
    _assert_batches_equal([next(resumed) for _ in range(5)], reference[7:])
    resumed.close()


@pytest.mark.parametrize('workers', [0, 2])
def test_orbax_round_trip(tmp_path, workers):
    dataset = _train(SyntheticSource(30, 4, 2), transform=synthetic_flip)
    reference = _take(dataset, 4 + 3)
    it = pipeline.make_loader(dataset, workers=workers)
    for _ in range(4):
        next(it)
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    with ocp.CheckpointManager(tmp_path / 'ckpt', options=options) as manager:
        manager.save(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
        it.close()
        resumed = pipeline.make_loader(dataset, workers=workers)
        restored = manager.restore(4, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    assert restored['data'] is resumed
    _assert_batches_equal([next(resumed) for _ in range(3)], reference[4:])
    resumed.close()


# --------------------------------------------------------------------------- #
# Evaluation stream
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize('process_count', [1, 2, 4])
def test_eval_covers_every_record_once(process_count):
    source = SyntheticSource(21, 4, 2, num_videos=7)
    batches = _global_batches(lambda i, p: _eval(source, i, p), process_count)
    assert len(batches) == 3
    for b in batches:
        assert b['valid'].dtype == np.bool_ and b['index'].dtype == np.int64 and len(b['index']) == 8
    valid = np.concatenate([b['valid'] for b in batches])
    index = np.concatenate([b['index'] for b in batches])
    np.testing.assert_array_equal(valid, np.arange(24) < 21)
    np.testing.assert_array_equal(index, np.where(valid, np.arange(24), 0))
    images = np.concatenate([b['image'] for b in batches])
    np.testing.assert_array_equal(images, np.stack([source[i]['image'] for i in index]))
    labels = np.concatenate([b['label'] for b in batches])
    np.testing.assert_array_equal(labels, [source[i]['label'] for i in index])


def test_eval_batches_independent_of_process_count():
    source = SyntheticSource(13, 4, 2)

    def make(i, p):
        return _eval(source, i, p, transform=synthetic_flip)

    _assert_batches_equal(_global_batches(make, 4), _global_batches(make, 1))


# --------------------------------------------------------------------------- #
# Argument checks
# --------------------------------------------------------------------------- #


def test_batch_not_divisible_by_processes_raises():
    with pytest.raises(ValueError, match=r'\b10\b.*\b4\b'):
        _train(_IndexSource(40), 0, 4, batch=10)
    with pytest.raises(ValueError, match=r'\b6\b.*\b4\b'):
        _eval(_IndexSource(40), 0, 4, batch=6)


def test_steps_per_epoch():
    assert pipeline.steps_per_epoch(50, 8) == 6
    with pytest.raises(ValueError, match=r'\b5\b.*\b8\b'):
        pipeline.steps_per_epoch(5, 8)
    with pytest.raises(ValueError, match=r'\b5\b.*\b8\b'):
        _train(_IndexSource(5), batch=8)


# --------------------------------------------------------------------------- #
# Synthetic source
# --------------------------------------------------------------------------- #


def test_synthetic_source_deterministic():
    a, b = SyntheticSource(10, 6, 3, seed=1), SyntheticSource(10, 6, 3, seed=1)
    other = SyntheticSource(10, 6, 3, seed=2)
    for i in range(10):
        _assert_batches_equal([a[i]], [b[i]])
        assert a[i]['label'] == other[i]['label']
        assert not np.array_equal(a[i]['image'], other[i]['image'])
    record = a[3]
    assert record['image'].shape == (6, 6, 3) and record['image'].dtype == np.float32
    assert record['label'].dtype == np.int32 and record['video_index'].dtype == np.int32
    assert -1 <= record['image'].min() and record['image'].max() <= 1
    assert SyntheticSource(4, 5, 2, frames=3)[0]['image'].shape == (3, 5, 5, 3)
    with pytest.raises(IndexError):
        a[10]


def test_synthetic_videos_share_labels():
    source = SyntheticSource(20, 4, 2, num_videos=6)
    video = np.array([source[i]['video_index'] for i in range(20)])
    label = np.array([source[i]['label'] for i in range(20)])
    assert np.all(np.diff(video) >= 0) and set(video) == set(range(6))
    for v in range(6):
        assert len(set(label[video == v])) == 1
    assert set(label) == {0, 1}
    assert len({int(SyntheticSource(5, 4, 2)[i]['video_index']) for i in range(5)}) == 5


def test_synthetic_classes_separable_by_mean_colour():
    source = SyntheticSource(60, 16, 4)
    means = np.stack([source[i]['image'].mean(axis=(0, 1)) for i in range(60)])
    labels = np.array([source[i]['label'] for i in range(60)])
    centroids = np.stack([means[labels == c].mean(0) for c in range(4)])
    predicted = np.argmin(((means[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(predicted, labels)


def test_synthetic_flip():
    record = SyntheticSource(1, 6, 2)[0]
    outcomes = []
    for seed in range(8):
        out = synthetic_flip(record, np.random.default_rng(seed))
        _assert_batches_equal([out], [synthetic_flip(record, np.random.default_rng(seed))])
        flipped = not np.array_equal(out['image'], record['image'])
        if flipped:
            np.testing.assert_array_equal(out['image'], record['image'][:, ::-1])
        outcomes.append(flipped)
    assert 0 < sum(outcomes) < 8
