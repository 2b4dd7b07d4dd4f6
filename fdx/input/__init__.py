"""Data: sources (prepared TFDS records, synthetic arrays), per-split transforms, and the grain pipelines.

`config.data.name` selects the source; `build_source(config.data, split)` returns a random-access source and
`build_transform(config.data, split)` the per-record transform (decode, augment, normalise) for that split.
"""

import zlib
from typing import Any, Callable

import numpy as np


def build_source(data_config, split: str):
    """A random-access source (`len`, `[i] -> dict`) of one split."""
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
    raise ValueError(f'config.data.name: unknown dataset {data_config.name!r}; available: synthetic')


def build_transform(data_config, split: str) -> Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None:
    """The per-record transform of a split (training augmentation only on `train`)."""
    if data_config.name == 'synthetic':
        from fdx.input.synthetic import synthetic_flip

        return synthetic_flip if split == 'train' and data_config.flip else None
    raise ValueError(f'config.data.name: unknown dataset {data_config.name!r}; available: synthetic')
