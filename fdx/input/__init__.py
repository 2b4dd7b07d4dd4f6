"""Data: datasets (synthetic arrays, records prepared by `fdx prepare`), views registered by name, grain pipelines.

`config.data`, made by `data_config(...)`:

    name            synthetic | ffpp | celebdf | dfdm (prepared datasets are found under `dir`)
    dir, builder_config
    target          label (real/fake) | class_id (attribution); delivered to the model as `label`
    class_names     the method's classes (two names: binary)
    sampling        all | balanced | real_only: the items an epoch of the train split visits (every view)
    classes         () = every class; else the `class_id` names kept in every split, e.g. ('real', 'Deepfakes'):
                    one FF++ manipulation against the reals (the long-distance paper's Tables III-IV)
    seed            seed of `balanced` and of `val_from_train`
    val_from_train  > 0: split `val` is this fraction of each class's train videos (they leave `train`), for datasets
                    released without a validation split (DFDM); an error on a dataset that has one
    train_view      the view of the train split: a registered name (`fdx.input.registry`) or `package.module:Class`
    eval_view       the view of every other split; '' = train_view without its training augmentation
    <view name>     the fields of that view (one sub-dict per view used, validated)
    workers, prefetch   grain loader processes (0: a background thread) and batches read ahead

Synthetic datasets add `image_size`, `frames`, `records` (split → count) and `frames_per_video`.
`build_source(config.data, split)` gives the split's items (as its view reads them: records, clips, runs) and
`build_transform(config.data, split)` its view.
"""

import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

PREPARED = ('ffpp', 'celebdf', 'dfdm')
SAMPLINGS = ('all', 'balanced', 'real_only')
COMMON_FIELDS = dict(
    name='dfdm',
    dir='data',
    builder_config='',
    target='label',
    class_names=('real', 'fake'),
    sampling='all',
    classes=(),
    seed=0,
    val_from_train=0.0,
    train_view='frame',
    eval_view='',
    workers=0,
    prefetch=2,
)
SYNTHETIC_FIELDS = dict(image_size=32, frames=0, records={'train': 64, 'test': 32}, frames_per_video=1)


def data_config(**fields: Any):
    """`config.data` with every field and its default; a view's sub-dict (`frame={'size': 64}`) holds its fields.

    Every view the config uses (train_view, eval_view) gets a sub-dict with all its fields.
    """
    import ml_collections

    from fdx.input import registry

    allowed = {**COMMON_FIELDS, **(SYNTHETIC_FIELDS if fields.get('name') == 'synthetic' else {})}
    used = {fields.get('train_view', COMMON_FIELDS['train_view']), fields.get('eval_view') or ''} - {''}
    views = {k: v for k, v in fields.items() if k not in allowed}
    unknown = sorted(k for k in views if not isinstance(views[k], dict))
    if unknown:
        raise ValueError(
            f'config.data: unknown fields {unknown}; fields are {", ".join(allowed)} plus one sub-dict per view'
        )
    out = {**allowed, **{k: v for k, v in fields.items() if k in allowed}}
    for name in sorted(used | set(views)):
        given = views.get(name, {})
        registry.check_fields(name, given)
        out[name] = {**registry.view_fields(registry.view_class(name)), **given}
    return ml_collections.ConfigDict(out)


def view_name(data_config, split: str) -> str:
    return data_config.train_view if split == 'train' else (data_config.get('eval_view') or data_config.train_view)


def build_view(data_config, split: str):
    """The view of `split` (training augmentation only on `train`)."""
    from fdx.input import registry

    name = view_name(data_config, split)
    fields = data_config.get(name)
    fields = {} if fields is None else (fields.to_dict() if hasattr(fields, 'to_dict') else dict(fields))
    return registry.build_view(name, fields, train=split == 'train')


class Target:
    """A view whose examples' `label` is the configured training target (`label` or `class_id`)."""

    def __init__(self, view: Callable, target: str):
        self.view, self.target = view, target
        self.examples_per_item = getattr(view, 'examples_per_item', 1)

    def __call__(self, item: dict[str, Any], rng: np.random.Generator):
        out = self.view(item, rng)
        for example in out if isinstance(out, list) else [out]:
            if self.target not in example:
                raise ValueError(f'config.data.target: view {type(self.view).__name__} gives no {self.target!r}')
            example['label'] = example[self.target]
        return out


def build_transform(data_config, split: str) -> Target:
    """The view of `split` delivering the configured target as `label`."""
    return Target(build_view(data_config, split), data_config.target)


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


PREPROCESSING_FILE = 'preprocessing.json'  # in a workdir: how its training data was cut from videos
FACE_DETECTOR = {'name': 'dlib_hog', 'upsample': 0, 'landmarks': 'dlib_68'}  # what `fdx prepare` detects with


def preprocessing(data_config) -> dict[str, Any]:
    """How a video becomes the eval view's input under `data_config`, as JSON: the prepared dataset's extraction
    options (`fdx.input.prepare.Options`: frame sampling, crop size, the face window's scale, image format, faces),
    its qualities and the face detector; `faces: None` for synthetic data or records without `fdx prepare`'s
    manifest. `fdx train` writes it into the workdir (`PREPROCESSING_FILE`), so `fdx detect` and `fdx export` do
    not need the dataset."""
    import json

    if data_config.name == 'synthetic':
        return {'dataset': 'synthetic', 'faces': None}
    directory = prepared_directory(data_config)
    manifest_path = directory / 'manifest.json'
    if not manifest_path.is_file():  # built by `tfds build`: the options are not on record
        return {'dataset': data_config.name, 'builder_config': directory.parent.name, 'faces': None}
    manifest = json.loads(manifest_path.read_text())
    return {
        'dataset': manifest['dataset'],
        'builder_config': manifest['config'],
        'faces': {'detector': FACE_DETECTOR, **manifest['options']},
        'qualities': list(manifest['scan_options'].get('qualities') or ()),
    }


def _builder(data_config):
    import tensorflow_datasets as tfds

    return tfds.builder_from_directory(str(prepared_directory(data_config)))


def split_names(data_config) -> tuple[str, ...]:
    """The splits a dataset was released (or made) with, `val` included when `val_from_train` makes it."""
    if data_config.name == 'synthetic':
        names = tuple(data_config.records)
    else:
        names = tuple(_builder(data_config).info.splits)
    return names + (('val',) if data_config.get('val_from_train') and 'val' not in names else ())


def dataset_class_names(data_config) -> tuple[str, ...]:
    """The names of the dataset's `class_id` values (its manipulations or generation models)."""
    if data_config.name == 'synthetic':
        return tuple(data_config.class_names)
    return tuple(_builder(data_config).info.features['class_id'].names)


def _read(data_config, split: str, view):
    """(records, SplitIndex) of a released split."""
    if data_config.name == 'synthetic':
        from fdx.input.synthetic import SyntheticSource

        if split not in data_config.records:
            raise ValueError(f'config.data.records has no split {split!r} (has {", ".join(data_config.records)})')
        source = SyntheticSource(
            data_config.records[split],
            data_config.image_size,
            len(data_config.class_names),
            frames=data_config.frames,
            seed=_split_seed(split),
            num_videos=max(1, data_config.records[split] // data_config.frames_per_video),
        )
        return source, source.split_index()
    if data_config.name not in PREPARED:
        raise ValueError(
            f'config.data.name: unknown dataset {data_config.name!r}; available: synthetic, {", ".join(PREPARED)}'
        )
    from fdx.input.tfds_builders import load_index

    builder = _builder(data_config)
    directory = prepared_directory(data_config)
    if split not in builder.info.splits:
        hint = '; set config.data.val_from_train (e.g. 0.1) to hold out train videos' if split == 'val' else ''
        raise ValueError(f'{directory}: no split {split!r} (has {", ".join(builder.info.splits)}){hint}')
    qualities = {k[len('image_') :] for k in builder.info.features if k.startswith('image_')}
    missing = [q for q in view.qualities() if q not in qualities]
    if missing:
        raise ValueError(
            f'config.data.{view.view_name}: quality {", ".join(missing)} not prepared in {directory} '
            f'(has {", ".join(sorted(qualities))})'
        )
    return builder.as_data_source(split=split), load_index(builder, split)


def _split_seed(split: str) -> int:
    return zlib.crc32(split.encode())


def held_out_videos(index, fraction: float, seed: int) -> np.ndarray:
    """Per record: whether its video is among `val_from_train`'s held-out videos — `round(fraction · n)` of the n
    videos of each class (at least one of a class with two or more), drawn with `seed` per class."""
    if not 0 < fraction < 1:
        raise ValueError(f'config.data.val_from_train: must be in (0, 1), got {fraction}')
    held = []
    sources = index.source_videos()  # a video's face tracks stay together
    for class_id in np.unique(index.class_id):
        videos = np.unique(sources[index.class_id == class_id])
        count = min(max(round(fraction * len(videos)), 1), len(videos) - 1) if len(videos) > 1 else 0
        held.append(np.random.default_rng([seed, int(class_id)]).permutation(videos)[:count])
    return np.isin(sources, np.concatenate(held))


def _records(data_config, split: str, view):
    """(records, SplitIndex) of `split` restricted to `classes`."""
    from fdx.input.views import Subset

    records, index = _held_out(data_config, split, view)
    classes = tuple(data_config.get('classes') or ())
    if not classes:
        return records, index
    names = dataset_class_names(data_config)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ValueError(f'config.data.classes: unknown {unknown}; the dataset has classes {", ".join(names)}')
    rows = np.flatnonzero(np.isin(index.class_id, [names.index(c) for c in classes]))
    return Subset(records, rows), index.take(rows)


def _held_out(data_config, split: str, view):
    """(records, SplitIndex) of `split`, `val` and `train` split by `val_from_train` when it is set."""
    from fdx.input.views import Subset

    fraction = data_config.get('val_from_train', 0.0)
    if not fraction or split not in ('train', 'val'):
        return _read(data_config, split, view)
    released = data_config.records if data_config.name == 'synthetic' else _builder(data_config).info.splits
    if 'val' in released:
        raise ValueError(f'config.data.val_from_train: {data_config.name} has its own val split; set it to 0')
    records, index = _read(data_config, 'train', view)
    held = held_out_videos(index, fraction, data_config.seed)
    rows = np.flatnonzero(held if split == 'val' else ~held)
    return Subset(records, rows), index.take(rows)


def build_source(data_config, split: str):
    """A random-access source (`len`, `[i] -> item`) of the items of `split` as its view reads them; on `train`,
    `data.sampling` picks the items of an epoch."""
    view = build_view(data_config, split)
    records, index = _records(data_config, split, view)
    items = view.source(records, index)
    sampling = data_config.sampling if split == 'train' else 'all'
    if sampling not in SAMPLINGS:
        raise ValueError(f'config.data.sampling: unknown {sampling!r}; choose from {", ".join(SAMPLINGS)}')
    if sampling == 'all':
        return items
    from fdx.input import views

    labels = index.label if items is records else getattr(items, 'labels', None)
    if labels is None:
        raise ValueError(
            f"config.data.sampling={sampling!r}: the items of view {view.view_name!r} carry no labels; use 'all'"
        )
    picks = views.balanced(labels, data_config.seed) if sampling == 'balanced' else views.real_only(labels)
    if not len(picks):
        raise ValueError(f'config.data.sampling={sampling!r}: no item of split {split!r} qualifies')
    return views.Subset(items, picks, labels)
