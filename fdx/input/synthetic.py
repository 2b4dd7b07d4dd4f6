"""Deterministic synthetic records for tests and smoke runs: a class colour plus noise, computed on the fly."""

from dataclasses import dataclass

import numpy as np

from fdx.input.pipeline import Record
from fdx.input.registry import View, register_view


class SyntheticSource:
    """`num_records` records grouped into `num_videos` contiguous videos (default: one video per record).

    Record `i` has `image` float32 [H, W, 3] (or [frames, H, W, 3] when `frames > 0`) in [-1, 1], `label` int32 and
    `video_index` int32. A video's label is `video_index % num_classes`; its images are the class's colour (classes
    spread around the colour wheel) plus Gaussian noise drawn from `(seed, i)`, so a tiny model separates them fast.
    """

    def __init__(
        self,
        num_records: int,
        image_size: int,
        num_classes: int,
        *,
        frames: int = 0,
        seed: int = 0,
        num_videos: int | None = None,
    ):
        self.num_records = num_records
        self.num_videos = num_records if num_videos is None else num_videos
        if not 1 <= self.num_videos <= num_records:
            raise ValueError(f'num_videos must be in [1, {num_records}], got {self.num_videos}')
        self.shape = ((frames,) if frames > 0 else ()) + (image_size, image_size, 3)
        self.num_classes = num_classes
        self.seed = seed
        hue = np.arange(num_classes)[:, None] / num_classes + np.arange(3) / 3
        self.colours = (0.5 * np.cos(2 * np.pi * hue)).astype(np.float32)

    def __len__(self) -> int:
        return self.num_records

    def split_index(self):
        """The `SplitIndex` of the records (frame_index = position in the video, class_id = label)."""
        from fdx.input.records import SplitIndex

        video_index = np.arange(self.num_records) * self.num_videos // self.num_records
        frame_index = np.arange(self.num_records) - np.searchsorted(video_index, video_index)
        label = video_index % self.num_classes
        return SplitIndex(video_index, frame_index, label, label)

    def __getitem__(self, index: int) -> Record:
        if not 0 <= index < self.num_records:
            raise IndexError(f'record {index} is outside [0, {self.num_records})')
        video_index = index * self.num_videos // self.num_records
        label = video_index % self.num_classes
        noise = np.random.default_rng([self.seed, index]).standard_normal(self.shape, dtype=np.float32)
        image = np.clip(self.colours[label] + 0.3 * noise, -1.0, 1.0)
        return {'image': image, 'label': np.int32(label), 'video_index': np.int32(video_index)}


@register_view('synthetic')
@dataclass(frozen=True)
class SyntheticView(View):
    """Synthetic records as they are, `image` flipped horizontally with probability `flip` (train split)."""

    flip: float = 0.5

    def for_eval(self) -> 'SyntheticView':
        return SyntheticView(flip=0.0)

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        if self.flip and rng.random() < self.flip:
            return {**record, 'image': record['image'][..., ::-1, :]}
        return record


synthetic_flip = SyntheticView(flip=0.5)
