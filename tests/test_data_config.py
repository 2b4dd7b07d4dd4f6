"""`config.data`: views by name with validated fields, train/eval views, sampling on every source, val from train."""

import dataclasses

import numpy as np
import pytest

from fdx import input as input_lib
from fdx.input import registry, views


def synthetic(**fields):
    defaults = dict(name='synthetic', image_size=8, records={'train': 48, 'test': 12}, frames_per_video=6)
    return input_lib.data_config(**{**defaults, **fields})


def test_every_used_view_gets_all_its_fields():
    config = input_lib.data_config(
        name='ffpp', train_view='pair', eval_view='frame', pair={'lq': 'c40'}, frame={'quality': 'c40'}
    )
    assert set(config.pair) == set(registry.view_fields(views.PairView))
    assert config.pair.lq == 'c40' and config.pair.mask_sizes == (19,) and config.pair.flip == 0.5
    assert config.frame.quality == 'c40' and 'mask_sizes' not in config.frame


def test_misspelled_or_foreign_view_field_is_named():
    with pytest.raises(ValueError, match=r"config.data.frame: unknown field 'sizee'; view 'frame' has fields quality"):
        input_lib.data_config(train_view='frame', frame={'sizee': 64})
    with pytest.raises(ValueError, match=r"'mask_sizes' \(a field of view masked_frame, pair\)"):
        input_lib.data_config(train_view='frame', frame={'mask_sizes': (19,)})
    config = input_lib.data_config(train_view='frame')
    config.frame['frames'] = 3  # set behind the factory's back, e.g. in a hand-edited config.json
    with pytest.raises(ValueError, match=r"'frames' \(a field of view clip\)"):
        input_lib.build_view(config, 'train')
    with pytest.raises(ValueError, match="unknown view 'framez'; registered: au, clip, frame, masked_frame, pair, residual"):
        input_lib.data_config(train_view='framez')
    with pytest.raises(ValueError, match=r"config.data: unknown fields \['quality'\]"):
        input_lib.data_config(quality='c23')


def test_eval_view_defaults_to_the_train_view_without_augmentation():
    config = input_lib.data_config(
        name='dfdm', train_view='clip', clip={'flip': 1.0, 'random_start': True, 'resize_then_center_crop': True}
    )
    train, test = input_lib.build_view(config, 'train'), input_lib.build_view(config, 'test')
    assert type(train) is type(test) is views.ClipView
    assert train.augment.flip == 1.0 and train.random_start
    assert test.augment == views.Augment(flip=0.0, resize_then_center_crop=True) and not test.random_start
    coded = input_lib.build_view(config.copy_and_resolve_references(), 'test')
    assert coded == test
    other = input_lib.data_config(name='ffpp', train_view='pair', eval_view='frame', frame={'quality': 'c40'})
    assert type(input_lib.build_view(other, 'test')) is views.FrameView
    assert input_lib.build_view(other, 'test').quality == 'c40'


@pytest.mark.parametrize('view', ['synthetic', 'clip', 'residual'])
def test_sampling_on_every_source(view):
    config = synthetic(train_view=view, records={'train': 42, 'test': 12})  # 7 videos: 4 real, 3 fake
    everything = input_lib.build_source(config, 'train')
    labels = getattr(everything, 'labels', None)
    if labels is None:
        labels = [everything[i]['label'] for i in range(len(everything))]
    counts = np.bincount(labels)
    assert counts[0] == counts[1] * 4 // 3
    config.sampling = 'balanced'
    balanced = input_lib.build_source(config, 'train')
    assert np.bincount(balanced.labels).tolist() == [counts.max()] * 2
    config.sampling = 'real_only'
    reals = input_lib.build_source(config, 'train')
    assert len(reals) == counts[0] and set(reals.labels) == {0}
    config.sampling = 'everything'
    with pytest.raises(ValueError, match='config.data.sampling: unknown'):
        input_lib.build_source(config, 'train')
    config.sampling = 'balanced'  # evaluation splits are never resampled
    assert len(input_lib.build_source(config, 'test')) == len(
        input_lib.build_source(synthetic(train_view=view), 'test')
    )


def test_val_from_train_holds_out_whole_videos_per_class():
    config = synthetic(train_view='synthetic', class_names=('a', 'b', 'c'), val_from_train=0.25)
    config.records = {'train': 72, 'test': 12}  # 12 videos of 6 frames, 4 per class
    train, val = input_lib.build_source(config, 'train'), input_lib.build_source(config, 'val')
    train_videos = {int(train[i]['video_index']) for i in range(len(train))}
    val_videos = {int(val[i]['video_index']) for i in range(len(val))}
    assert not train_videos & val_videos and len(train_videos | val_videos) == 12
    assert sorted(v % 3 for v in val_videos) == [0, 1, 2]  # one of each class's 4 videos
    assert len(val) == 18 and 'val' in input_lib.split_names(config)
    config.seed = 1
    assert {int(input_lib.build_source(config, 'val')[i]['video_index']) for i in range(18)} != val_videos
    config.records = {'train': 72, 'val': 6, 'test': 12}
    with pytest.raises(ValueError, match='has its own val split'):
        input_lib.build_source(config, 'val')


@registry.register_view('test_doubled')
@dataclasses.dataclass(frozen=True)
class Doubled(registry.View):
    """A record and its negated copy, labelled fake."""

    examples_per_item = 2

    def __call__(self, record, rng):
        return [record, {**record, 'image': -record['image'], 'label': np.int32(1)}]


def test_a_view_may_give_several_examples_per_record():
    from fdx.input import pipeline

    config = synthetic(train_view='test_doubled')
    transform = input_lib.build_transform(config, 'train')
    source = input_lib.build_source(config, 'train')

    def global_batches(processes):
        batches = []
        for p in range(processes):
            dataset = pipeline.train_dataset(
                source, global_batch_size=8, seed=0, process_index=p, process_count=processes, transform=transform
            )
            batches.append(next(pipeline.make_loader(dataset)))
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

    one, two = global_batches(1), global_batches(2)
    assert one['image'].shape == (8, 8, 8, 3)
    np.testing.assert_array_equal(one['image'][1::2], -one['image'][0::2])  # a record's examples sit side by side
    assert (one['label'][1::2] == 1).all()
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
    assert pipeline.steps_per_epoch(len(source), 8, 2) == 12
    with pytest.raises(ValueError, match='not a multiple of the 2 examples'):
        pipeline.train_dataset(
            source, global_batch_size=7, seed=0, process_index=0, process_count=1, transform=transform
        )
