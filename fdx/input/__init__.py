"""Data: sources (prepared TFDS records, synthetic arrays), per-split views, and the grain pipelines.

`config.data.name` selects the dataset: `synthetic`, or one prepared by `fdx prepare` (`ffpp`, `celebdf`, `dfdm`)
found under `config.data.dir`. `build_source(config.data, split)` returns a random-access source of the items of a
split and `build_transform(config.data, split)` the view turning an item into arrays (augmenting on `train` only):

    data.view       frame | clip | residual | pair | au            (fdx.input.views)
    data.quality    the prepared quality to read (pair: data.hq / data.lq)
    data.target     label (real/fake) | class_id (attribution); delivered to the model as `label`
    data.sampling   all | balanced | real_only                     (train split, single-record views)
"""

import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

PREPARED = ('ffpp', 'celebdf', 'dfdm')
VIEWS = ('frame', 'clip', 'residual', 'pair', 'au')


def prepared_directory(data_config) -> Path:
    """`<dir>/<name>/<builder config>/<version>` of a prepared dataset (the config may be omitted when unique)."""
    root = Path(data_config.dir) / data_config.name
    finished = {p.parent.parent.name: p.parent for p in sorted(root.glob('*/*/dataset_info.json'))}  # latest version
    name = data_config.get('builder_config') or (next(iter(finished)) if len(finished) == 1 else None)
    if name not in finished:
        raise ValueError(
            f'config.data: prepared builder configs in {root}: {sorted(finished) or "none"}; run `fdx '
            f'prepare {data_config.name}` or set config.data.builder_config to one of them'
        )
    return finished[name]


def _prepared(data_config, split: str):
    import tensorflow_datasets as tfds

    from fdx.input.tfds_builders import load_index

    directory = prepared_directory(data_config)
    builder = tfds.builder_from_directory(str(directory))
    if split not in builder.info.splits:
        raise ValueError(f'{directory}: no split {split!r} (has {", ".join(builder.info.splits)})')
    qualities = {k[len('image_') :] for k in builder.info.features if k.startswith('image_')}
    wanted = (data_config.hq, data_config.lq) if data_config.view == 'pair' else (data_config.quality,)
    missing = [q for q in wanted if q not in qualities]
    if missing:
        raise ValueError(
            f'config.data: quality {", ".join(missing)} not prepared in {directory} '
            f'(has {", ".join(sorted(qualities))})'
        )
    return builder.as_data_source(split=split), load_index(builder, split)


def build_source(data_config, split: str):
    """A random-access source (`len`, `[i] -> dict`) of the items of one split."""
    if data_config.name == 'synthetic':
        from fdx.input.synthetic import SyntheticSource

        if split not in data_config.records:
            raise ValueError(f'config.data.records has no split {split!r} (has {", ".join(data_config.records)})')
        return SyntheticSource(
            data_config.records[split],
            data_config.image_size,
            len(data_config.class_names),
            frames=data_config.frames,
            seed=zlib.crc32(split.encode()),
            num_videos=max(1, data_config.records[split] // data_config.frames_per_video),
        )
    if data_config.name not in PREPARED:
        raise ValueError(
            f'config.data.name: unknown dataset {data_config.name!r}; available: synthetic, {", ".join(PREPARED)}'
        )
    from fdx.input import views

    source, index = _prepared(data_config, split)
    if data_config.view == 'clip':
        return views.ClipSource(source, index)
    if data_config.view == 'residual':
        return views.ResidualSource(source, index, data_config.next_frames)
    sampling = data_config.sampling if split == 'train' else 'all'
    if sampling == 'balanced':
        return views.Subset(source, views.balanced(index, data_config.seed))
    if sampling == 'real_only':
        return views.Subset(source, views.real_only(index))
    if sampling != 'all':
        raise ValueError(f'config.data.sampling: unknown {sampling!r}; choose from all, balanced, real_only')
    return source


class Target:
    """A view whose `label` output is the configured training target (`label` or `class_id`)."""

    def __init__(self, view: Callable, target: str):
        self.view, self.target = view, target

    def __call__(self, item: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        out = self.view(item, rng)
        out['label'] = out[self.target]
        return out


def build_transform(data_config, split: str) -> Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None:
    """The view of a split (training augmentation only on `train`)."""
    if data_config.name == 'synthetic':
        from fdx.input.synthetic import synthetic_flip

        return synthetic_flip if split == 'train' and data_config.flip else None
    from fdx.input import views

    train = split == 'train'
    augment = views.Augment(
        flip=data_config.flip if train else 0.0, resize_then_center_crop=data_config.resize_then_center_crop
    )
    common = dict(normalisation=data_config.normalisation, augment=augment)
    if data_config.view == 'frame':
        view = views.FrameView(data_config.quality, data_config.size, **common)
    elif data_config.view == 'clip':
        view = views.ClipView(
            data_config.quality,
            data_config.size,
            frames=data_config.frames,
            mode=data_config.clip_mode,
            random_start=train and data_config.random_start,
            **common,
        )
    elif data_config.view == 'residual':
        view = views.ResidualView(data_config.quality, data_config.size, data_config.attention_size, **common)
    elif data_config.view == 'pair':
        view = views.PairView(
            data_config.hq,
            data_config.lq,
            data_config.size,
            mask_sizes=tuple(data_config.mask_sizes),
            mask_threshold=data_config.mask_threshold,
            **common,
        )
    elif data_config.view == 'au':
        view = views.AUView(data_config.quality, data_config.size, sigma=data_config.sigma, **common)
    else:
        raise ValueError(f'config.data.view: unknown {data_config.view!r}; choose from {", ".join(VIEWS)}')
    return Target(view, data_config.target)


def prepared_data_config(**overrides: Any):
    """`config.data` for a prepared dataset with every field and its default; experiment configs override fields."""
    import ml_collections

    fields = dict(
        name='dfdm',
        dir='data',
        builder_config='',
        view='frame',
        quality='c23',
        hq='c23',
        lq='c40',
        target='label',
        class_names=('real', 'fake'),
        sampling='all',
        seed=0,
        size=224,
        attention_size=224,
        normalisation='imagenet',
        flip=0.5,
        resize_then_center_crop=False,
        frames=10,
        clip_mode='periodic',
        random_start=False,
        next_frames=3,
        mask_sizes=(19,),
        mask_threshold=0.1,
        sigma=3.0,
        workers=0,
        prefetch=2,
    )
    unknown = set(overrides) - set(fields)
    if unknown:
        raise KeyError(f'prepared_data_config: unknown fields {sorted(unknown)}')
    return ml_collections.ConfigDict({**fields, **overrides})
