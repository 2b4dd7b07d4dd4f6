"""Views: per-item transforms `view(item, rng) -> dict of arrays` turning prepared records into each paper's inputs.

A view decodes the crops it needs, applies one draw of `Augment` to every image, mask, map and landmark set of the
item (all frames of a clip, both images of an HQ/LQ pair), resizes and normalises. Randomness comes only from the
`rng` argument, which `fdx.input.pipeline` seeds per stream position, so runs stay deterministic and resumable.

Items that are not single records come from source wrappers over the record source and its `SplitIndex`:
`ClipSource` (one item per video) and `ResidualSource` (one item per run of consecutive frames). Both give
`{'frames': sequence of records}`, which only their views understand (the pipeline cannot batch it untransformed).

Pixel convention: landmark (x, y) = (0, 0) is the centre of the top-left pixel, as in dlib and `cv2` drawing.
"""

import functools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from fdx.input.pipeline import Record, Source
from fdx.input.records import NUM_LANDMARKS, SplitIndex, decode_image, decode_mask, image_key
from fdx.input.registry import View, register_view

# (mean, std) per channel of RGB in [0, 1].
NORMALISATION = {
    'xception': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # FF++/timm Xception: inputs in [-1, 1]
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # DMA-STA paper (ResNet-50)
    'dma_sta_code': ((0.643, 0.466, 0.387), (0.259, 0.220, 0.203)),  # DMA-STA official code (reference notes)
}

# DMA-STA code: Resize 256 -> CenterCrop 224 keeps the central 224/256 of the crop.
CENTRE_CROP = 224 / 256

# Left/right pairs of the dlib 68-point layout, swapped when an image is mirrored so that every index keeps its
# meaning (what dlib would return on the mirrored image).
FLIP_PAIRS = (
    *zip(range(8), range(16, 8, -1)),  # jaw
    *zip(range(17, 22), range(26, 21, -1)),  # brows
    (31, 35), (32, 34),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lips
    (60, 64), (61, 63), (65, 67),  # inner lips
)  # fmt: skip
FLIP_68 = np.arange(NUM_LANDMARKS)
FLIP_68[np.array(FLIP_PAIRS).T.ravel()] = np.array(FLIP_PAIRS)[:, ::-1].T.ravel()

# AUNet (Sec. 4.1) fits ellipses to "landmarks specific to each action unit, defined similarly to EAC-Net and
# JAA-Net" but does not list them: the groups below are our choice. Each AU is a tuple of landmark groups (dlib 68,
# 0-based; one ellipse per group, left and right sides as separate groups like EAC-Net's paired patches), and every
# AU is closed under FLIP_68, so mirroring a face mirrors its maps.
AU_REGIONS: dict[str, tuple[tuple[int, ...], ...]] = {
    'AU1': ((19, 20, 21), (22, 23, 24)),  # inner brow raiser: inner brows
    'AU2': ((17, 18, 19), (24, 25, 26)),  # outer brow raiser: outer brows
    'AU4': ((20, 21, 22, 23, 27),),  # brow lowerer: glabella between the brows
    'AU6': ((1, 2, 31, 40, 41), (14, 15, 35, 46, 47)),  # cheek raiser: cheeks under the eyes
    'AU7': ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)),  # lid tightener: eyes
    'AU9': ((27, 28, 29, 30, 39, 42),),  # nose wrinkler: nose root and bridge
    'AU10': ((31, 32, 33, 34, 35, 50, 51, 52),),  # upper lip raiser: nose base to upper lip
    'AU12': ((48, 49, 59, 60), (53, 54, 55, 64)),  # lip corner puller: lip corners
    'AU14': ((3, 4, 48), (12, 13, 54)),  # dimpler: lateral to the lip corners
    'AU15': ((5, 6, 48, 58, 59), (10, 11, 54, 55, 56)),  # lip corner depressor: below the lip corners
    'AU17': ((6, 7, 8, 9, 10, 56, 57, 58),),  # chin raiser: chin below the lower lip
    'AU20': ((4, 12, 48, 51, 54, 57),),  # lip stretcher: lower face across the mouth
    'AU23': (tuple(range(48, 60)),),  # lip tightener: outer lip contour
    'AU24': ((50, 51, 52, 56, 57, 58, 61, 62, 63, 65, 66, 67),),  # lip pressor: lip centres
    'AU25': (tuple(range(60, 68)),),  # lips part: inner lip contour
}

# Every landmark of a group becomes a ring of 8 points at this fraction of the face size (largest extent of the
# landmarks) before `cv2.fitEllipse`, so 1-point, 3-point and collinear groups (brows) still fit a covering ellipse.
AU_MARGIN = 0.05

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_RING = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], axis=1)


def normalise(rgb: np.ndarray, name: str) -> np.ndarray:
    """uint8 RGB [..., 3] -> float32 (rgb / 255 - mean) / std with the (mean, std) of `NORMALISATION[name]`.

    uint8 images go through a per-channel lookup table (`cv2.LUT`) made by the same float32 operations, so the result
    is bit-identical to the arithmetic and ~4x faster (0.40 against 1.66 ms at 299 x 299 here); other inputs take
    the arithmetic."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim < 2 or rgb.shape[-1] != 3 or rgb.size == 0:
        mean, std = (np.asarray(v, np.float32) for v in normalisation_stats(name))
        return (rgb.astype(np.float32) * (1 / 255) - mean) / std
    rows = np.ascontiguousarray(rgb).reshape(-1, rgb.shape[-2], 3)
    return cv2.LUT(rows, _normalisation_table(name)).reshape(rgb.shape)


@functools.cache
def _normalisation_table(name: str) -> np.ndarray:
    """`normalise` of every uint8 value per channel: float32 [1, 256, 3], read-only."""
    table = normalise(np.arange(256, dtype=np.float32)[:, None].repeat(3, 1), name)[None]
    table.flags.writeable = False
    return table


def denormalise(x: np.ndarray, name: str) -> np.ndarray:
    """The inverse of `normalise`: float [..., 3] -> uint8 RGB (clipped)."""
    mean, std = (np.asarray(v, np.float32) for v in normalisation_stats(name))
    return np.clip(np.rint((np.asarray(x, np.float32) * std + mean) * 255), 0, 255).astype(np.uint8)


def normalisation_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the normalisation `name`; an error naming the valid ones otherwise."""
    if name not in NORMALISATION:
        raise ValueError(f'unknown normalisation {name!r}; available: {", ".join(NORMALISATION)}')
    return NORMALISATION[name]


# --------------------------------------------------------------------------- #
# Augmentation
# --------------------------------------------------------------------------- #


def _pixel_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Relative (x0, y0, x1, y1) -> integer pixel bounds, at least one pixel wide."""
    x0, x1 = (min(max(round(v * width), 0), width) for v in box[0::2])
    y0, y1 = (min(max(round(v * height), 0), height) for v in box[1::2])
    return min(x0, width - 1), min(y0, height - 1), max(x1, x0 + 1), max(y1, y0 + 1)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of `Augment`: a crop window relative to the crop, a mirror flag and colour factors."""

    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0

    def warp(self, array: np.ndarray, size: int) -> np.ndarray:
        """Geometric part on an image or map [H, W(, C)]: crop the box, resize to size x size, mirror."""
        height, width = array.shape[:2]
        x0, y0, x1, y1 = _pixel_box(self.box, width, height)
        shrink = x1 - x0 > size or y1 - y0 > size
        out = cv2.resize(
            array[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        return cv2.flip(out, 1) if self.flip else out  # 27x faster than numpy's reversed-stride copy of uint8 RGB

    def landmarks(self, landmarks: np.ndarray, crop_size: tuple[int, int], size: int) -> np.ndarray:
        """The same warp on [68, 2] (x, y) landmarks of a (width, height) crop; a mirror also swaps left/right."""
        x0, y0, x1, y1 = _pixel_box(self.box, *crop_size)
        scale = np.array([size / (x1 - x0), size / (y1 - y0)])
        out = (np.asarray(landmarks, np.float64) - (x0, y0) + 0.5) * scale - 0.5
        if self.flip:
            out[:, 0] = size - 1 - out[:, 0]
            out = out[FLIP_68]
        return out.astype(np.float32)

    def colour(self, rgb: np.ndarray) -> np.ndarray:
        """Photometric part on uint8 RGB: brightness, contrast (about the mean grey), saturation, in that order."""
        if self.brightness == self.contrast == self.saturation == 1.0:
            return rgb
        x = rgb.astype(np.float32) * self.brightness
        mean = float((x @ _LUMA).mean())
        x = (x - mean) * self.contrast + mean
        grey = (x @ _LUMA)[..., None]
        x = grey + (x - grey) * self.saturation
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    def apply(self, image: np.ndarray, size: int) -> np.ndarray:
        """Both parts on a uint8 RGB crop -> uint8 [size, size, 3]."""
        return self.colour(self.warp(image, size))


IDENTITY = AugmentParams()


@dataclass(frozen=True)
class Augment:
    """Training augmentation, drawn once per item by `sample` and applied alike to all its images and maps.

    The papers use horizontal flips only; the random square crop (`crop_scale`: range of its area as a fraction of
    the crop) and colour jitter (factors uniform in [1 - jitter, 1 + jitter]) are off by default.
    `resize_then_center_crop` reproduces the DMA-STA code's Resize 256 -> CenterCrop 224 (random crops then lie
    inside that centre); evaluate such a model with `Augment(flip=0.0, resize_then_center_crop=True)`.
    """

    flip: float = 0.5
    crop_scale: tuple[float, float] | None = None
    jitter: float = 0.0
    resize_then_center_crop: bool = False

    def __post_init__(self):
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f'flip probability must be in [0, 1], got {self.flip}')
        if self.crop_scale is not None and not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f'crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}')
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f'jitter must be in [0, 1), got {self.jitter}')

    def deterministic(self) -> 'Augment':
        """This augmentation without its random parts (evaluation): only `resize_then_center_crop` remains."""
        return Augment(flip=0.0, resize_then_center_crop=self.resize_then_center_crop)

    def sample(self, rng: np.random.Generator) -> AugmentParams:
        flip = bool(rng.random() < self.flip)
        side = CENTRE_CROP if self.resize_then_center_crop else 1.0
        x0 = y0 = (1.0 - side) / 2
        if self.crop_scale is not None:
            crop = side * float(np.sqrt(rng.uniform(*self.crop_scale)))
            x0, y0 = x0 + float(rng.uniform(0.0, side - crop)), y0 + float(rng.uniform(0.0, side - crop))
            side = crop
        factors = rng.uniform(1.0 - self.jitter, 1.0 + self.jitter, 3) if self.jitter else np.ones(3)
        return AugmentParams((x0, y0, x0 + side, y0 + side), flip, *map(float, factors))


def augment_params(augment: Augment | None, rng: np.random.Generator) -> AugmentParams:
    """One draw of `augment` (the identity without one)."""
    return IDENTITY if augment is None else augment.sample(rng)


# --------------------------------------------------------------------------- #
# Split index and sampling helpers
# --------------------------------------------------------------------------- #


def real_only(labels: np.ndarray) -> np.ndarray:
    """Indices of the real items (label 0), for methods that blend their own fakes (SBI, AUNet)."""
    return np.flatnonzero(np.asarray(labels) == 0)


def balanced(labels: np.ndarray, seed: int) -> np.ndarray:
    """Every item index plus repeats of the smaller label's items until every label has the same count.

    `labels` holds one label per item (record, video or run). The anti-compression paper upsamples reals to balance
    the fakes (Sec. 4.2). Extra picks cycle through a seeded permutation of each smaller label's items, so their
    repeat counts differ by at most one. Sorted.
    """
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        raise ValueError(f'cannot balance a split whose items all have label {values}')
    rng = np.random.default_rng(seed)
    extra = [
        np.resize(rng.permutation(np.flatnonzero(labels == value)), counts.max() - count)
        for value, count in zip(values, counts)
    ]
    return np.sort(np.concatenate([np.arange(len(labels)), *extra]))


def video_eval_indices(index: SplitIndex) -> np.ndarray:
    """All record indices ordered by (video_index, frame_index): every sampled frame, for video-level metrics."""
    return np.lexsort((index.frame_index, index.video_index))


class Subset:
    """The items of `source` at `indices` (repeats allowed), as a source; the items' `labels` (given, or the
    source's) follow."""

    def __init__(self, source: Source, indices: Sequence[int] | np.ndarray, labels: np.ndarray | None = None):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        if self.indices.ndim != 1 or np.any((self.indices < 0) | (self.indices >= len(source))):
            raise ValueError(f'indices must be 1-D and within [0, {len(source)})')
        labels = getattr(source, 'labels', None) if labels is None else labels
        if labels is not None:
            self.labels = np.asarray(labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Record:
        return self.source[int(self.indices[i])]


def _check_index(source: Source, index: SplitIndex) -> None:
    if len(source) != len(index):
        raise ValueError(f'the source has {len(source)} records but its index {len(index)}')


class VideoFrames(Sequence):
    """The records of one video, in frame order, read from the source only when indexed."""

    def __init__(self, source: Source, indices: np.ndarray):
        self.source = source
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> Record:
        return self.source[int(self.indices[j])]


class ClipSource:
    """One item per video (in increasing video_index): `{'frames': VideoFrames}` of all its prepared frames.

    Which frames form the clip is decided by `ClipView`, so that any random start comes from the view's `rng`.
    `labels` holds each video's label (for `data.sampling`).
    """

    def __init__(self, source: Source, index: SplitIndex):
        _check_index(source, index)
        self.source = source
        self.videos = list(index.videos().values())
        self.labels = np.array([index.label[v[0]] for v in self.videos], np.int64)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> Record:
        return {'frames': VideoFrames(self.source, self.videos[i])}


class ResidualSource:
    """One item per record followed by `next_frames` records of the same video with frame_index + 1, + 2, ...

    The long-distance attention paper's temporal branch takes the frame and its next n frames (n = 3, Sec. VI-C),
    so only truly consecutive decoded frames qualify. Item: `{'frames': [record, next_1, ..., next_n]}`.
    `runs[i]` holds item i's record indices, `labels[i]` its label. Videos without such a run give no item; their
    count is reported on stderr (`skipped_videos`), and data without any run is refused with the prepare command.
    """

    def __init__(self, source: Source, index: SplitIndex, next_frames: int = 3):
        _check_index(source, index)
        if next_frames < 1:
            raise ValueError(f'next_frames must be positive, got {next_frames}')
        self.source = source
        runs, longest, self.skipped_videos = [np.zeros((0, next_frames + 1), np.int64)], 0, []
        for video, indices in index.videos().items():
            steps = np.diff(index.frame_index[indices]) == 1
            breaks = np.flatnonzero(np.concatenate([[True], ~steps, [True]]))
            longest = max(longest, int(np.diff(breaks).max()))
            starts = np.zeros(0, np.int64)
            if len(indices) > next_frames:
                starts = np.flatnonzero(np.lib.stride_tricks.sliding_window_view(steps, next_frames).all(axis=1))
            runs.append(indices[starts[:, None] + np.arange(next_frames + 1)])
            if not len(starts):
                self.skipped_videos.append(video)
        self.runs = np.concatenate(runs)
        if not len(self.runs):
            raise ValueError(
                f'the prepared frames form runs of at most {longest} consecutive frames, the view needs '
                f'{next_frames + 1} (a frame and its next {next_frames}): prepare runs of frames with `fdx prepare '
                f'... --sampling runs --run-length {next_frames + 1}` (or longer), or lower next_frames'
            )
        if self.skipped_videos:
            print(
                f'residual view: {len(self.skipped_videos)} of {len(index.videos())} videos have no run of '
                f'{next_frames + 1} consecutive prepared frames and give no item (videos {self.skipped_videos[:8]}'
                f'{" …" if len(self.skipped_videos) > 8 else ""})',
                file=sys.stderr,
            )
        self.labels = index.label[self.runs[:, 0]]

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> Record:
        return {'frames': [self.source[int(k)] for k in self.runs[i]]}


CLIP_MODES = ('periodic', 'consecutive')


def clip_positions(num_frames: int, frames: int, mode: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions (into a video's sorted prepared frames) of a clip of `frames` frames.

    'periodic': every (num_frames / frames)-th frame from the first (DMA-STA's 10 periodic frames, Sec. 4.1).
    'consecutive': a run of consecutive prepared frames starting uniformly at random when `rng` is given (the
    DMA-STA code), else centred. A video with fewer than `frames` frames gives all of them, then repeats its last.
    """
    if mode not in CLIP_MODES:
        raise ValueError(f'clip mode must be one of {CLIP_MODES}, got {mode!r}')
    if num_frames < frames:
        return np.minimum(np.arange(frames), num_frames - 1)
    if mode == 'periodic':
        return np.arange(frames) * num_frames // frames
    slack = num_frames - frames
    start = int(rng.integers(slack + 1)) if rng is not None else slack // 2
    return start + np.arange(frames)


# --------------------------------------------------------------------------- #
# Landmark maps
# --------------------------------------------------------------------------- #


def au_maps(
    landmarks: np.ndarray,
    size: int,
    *,
    sigma: float = 3.0,
    regions: Mapping[str, tuple[tuple[int, ...], ...]] = AU_REGIONS,
) -> np.ndarray:
    """AUNet's ground-truth attention maps Y_Att (Sec. 4.1): float32 [size, size, len(regions)] in [0, 1].

    Per AU, the ellipses `cv2.fitEllipse` fits to each landmark group (every point ringed by `AU_MARGIN`) are
    filled, the map is Gaussian-smoothed with `sigma` pixels at this resolution (none when 0), and scaled to peak 1.
    """
    margin = max(AU_MARGIN * float(np.ptp(landmarks, axis=0).max()), 1.0)
    maps = np.zeros((len(regions), size, size), np.float32)  # channels first: each is a contiguous image for cv2
    for channel, groups in zip(maps, regions.values()):
        for group in groups:
            ring = (landmarks[list(group), None] + margin * _RING).reshape(-1, 2).astype(np.float32)
            cv2.ellipse(channel, cv2.fitEllipse(ring), 1.0, thickness=-1)
        if sigma > 0:
            cv2.GaussianBlur(channel, (0, 0), sigma, dst=channel)
        peak = channel.max()
        if peak > 0:  # an AU cropped out of view stays all zeros
            channel /= peak
    return np.ascontiguousarray(maps.transpose(1, 2, 0))


def face_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """AUNet's facial mask M_f: the filled convex hull of the landmarks, float32 [size, size] in {0, 1}."""
    hull = cv2.convexHull(np.asarray(landmarks, np.float32))
    mask = np.zeros((size, size), np.float32)
    cv2.fillConvexPoly(mask, np.rint(hull * 16).astype(np.int32), 1.0, shift=4)
    return mask


# --------------------------------------------------------------------------- #
# Views
# --------------------------------------------------------------------------- #


def record_meta(record: Record) -> dict[str, np.ndarray]:
    """The labels and indices every view passes on (`META_SPEC`)."""
    return {
        'label': np.int32(record['label']),
        'class_id': np.int32(record['class_id']),
        'video_index': np.int64(record['video_index']),
        'frame_index': np.int64(record['frame_index']),
        'face_index': np.int64(record.get('face_index', 0)),
    }


# Shapes and dtypes of `_meta`, for `View.spec`.
META_SPEC = {
    'label': ((), 'int32'),
    'class_id': ((), 'int32'),
    'video_index': ((), 'int64'),
    'frame_index': ((), 'int64'),
    'face_index': ((), 'int64'),
}


@register_view('frame')
@dataclass(frozen=True)
class FrameView(View):
    """One frame: `image` float32 [S, S, 3] plus label, class_id, video_index, frame_index."""

    quality: str = 'c23'
    size: int = 299
    normalisation: str = 'xception'
    augment: Augment | None = None

    def __post_init__(self):
        normalisation_stats(self.normalisation)

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {'image': ((self.size, self.size, 3), 'float32'), **META_SPEC}

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        params = augment_params(self.augment, rng)
        image = params.apply(decode_image(record[image_key(self.quality)]), self.size)
        return {'image': normalise(image, self.normalisation), **record_meta(record)}


@register_view('clip')
@dataclass(frozen=True)
class ClipView(View):
    """A `ClipSource` item -> `image` float32 [T, S, S, 3] (one augmentation draw for all frames), `frame_index`
    int64 [T], label, class_id, video_index. Defaults follow DMA-STA: 10 periodic frames at 224, ImageNet statistics.

    `random_start` (train split) and `test_random_start` (evaluation) start a consecutive clip at a random frame;
    `flip_per_frame` draws the mirror flag of each frame independently (the DMA-STA code's torchvision transforms),
    the other augmentation parameters staying shared.
    """

    quality: str = 'crf10'
    size: int = 224
    normalisation: str = 'imagenet'
    augment: Augment | None = None
    frames: int = 10
    mode: str = 'periodic'
    random_start: bool = False
    test_random_start: bool = False
    flip_per_frame: bool = False

    def __post_init__(self):
        normalisation_stats(self.normalisation)
        if self.frames < 1 or self.mode not in CLIP_MODES:
            raise ValueError(f'need frames >= 1 and a mode in {CLIP_MODES}, got {self.frames} and {self.mode!r}')

    def source(self, records, index):
        return ClipSource(records, index)

    def for_eval(self) -> 'ClipView':
        return replace(super().for_eval(), random_start=self.test_random_start)

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {
            'image': ((self.frames, self.size, self.size, 3), 'float32'),
            **META_SPEC,
            'frame_index': ((self.frames,), 'int64'),
        }

    def __call__(self, item: Record, rng: np.random.Generator) -> Record:
        video = item['frames']
        positions = clip_positions(len(video), self.frames, self.mode, rng if self.random_start else None)
        params = augment_params(self.augment, rng)
        if self.flip_per_frame and self.augment is not None:
            frame_params = [replace(params, flip=bool(rng.random() < self.augment.flip)) for _ in positions]
        else:
            frame_params = [params] * len(positions)
        records = {int(p): video[int(p)] for p in np.unique(positions)}
        decoded = {p: decode_image(r[image_key(self.quality)]) for p, r in records.items()}
        meta = {k: v for k, v in record_meta(records[int(positions[0])]).items() if k != 'frame_index'}
        return {
            'image': normalise(
                np.stack([p.apply(decoded[int(q)], self.size) for p, q in zip(frame_params, positions)]),
                self.normalisation,
            ),
            'frame_index': np.array([records[int(p)]['frame_index'] for p in positions], np.int64),
            **meta,
        }


@register_view('residual')
@dataclass(frozen=True)
class ResidualView(View):
    """A `ResidualSource` item -> the long-distance attention paper's inputs (Sec. IV-C, IV-D, V-A).

    `image` [398, 398, 3] (backbone) and `image_small` [224, 224, 3] (ViT attention) of the first frame, normalised;
    `residuals` [n, 224, 224, 3] with r_t = I_{t+1} - I_t (Sec. IV-D) on the 224 frames as RGB in [0, 1], so values
    lie in [-1, 1] with no further normalisation (the paper gives none; the mean cancels and the range matches the
    [-1, 1] of xception inputs). `mix_qualities` (train split only): each item's quality is drawn uniformly from
    `quality` and these (Table VI's training on HQ and LQ together: `quality='c23', mix_qualities=('c40',)`).
    Crops prepared smaller than `backbone_size` are refused (they would be upsampled) unless `allow_upsampling`.
    """

    quality: str = 'c23'
    backbone_size: int = 398
    attention_size: int = 224
    normalisation: str = 'xception'
    augment: Augment | None = None
    next_frames: int = 3
    mix_qualities: tuple[str, ...] = ()
    allow_upsampling: bool = False

    def __post_init__(self):
        normalisation_stats(self.normalisation)

    def qualities(self) -> tuple[str, ...]:
        return (self.quality, *self.mix_qualities)

    def for_eval(self) -> 'ResidualView':
        return replace(super().for_eval(), mix_qualities=())

    def source(self, records, index):
        first = records[0] if len(records) else {}
        if image_key(self.quality) in first and not self.allow_upsampling:  # prepared records (not synthetic ones)
            crop = decode_image(first[image_key(self.quality)]).shape[0]
            needed = max(self.backbone_size, self.attention_size)
            if crop < needed:
                raise ValueError(
                    f'config.data.residual: the prepared crops are {crop} px but the model reads {needed} px, so '
                    f'every crop would be upsampled; prepare with `fdx prepare ... --crop-size {needed}` (or '
                    'larger) or set config.data.residual.allow_upsampling=True'
                )
        return ResidualSource(records, index, self.next_frames)

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        small = (self.attention_size, self.attention_size, 3)
        return {
            'image': ((self.backbone_size, self.backbone_size, 3), 'float32'),
            'image_small': (small, 'float32'),
            'residuals': ((self.next_frames, *small), 'float32'),
            **META_SPEC,
        }

    def __call__(self, item: Record, rng: np.random.Generator) -> Record:
        params = augment_params(self.augment, rng)
        quality = self.quality
        if self.mix_qualities:
            quality = self.qualities()[int(rng.integers(len(self.qualities())))]
        crops = [decode_image(r[image_key(quality)]) for r in item['frames']]
        small = np.stack([params.apply(crop, self.attention_size) for crop in crops])
        return {
            'image': normalise(params.apply(crops[0], self.backbone_size), self.normalisation),
            'image_small': normalise(small[0], self.normalisation),
            'residuals': np.diff(small.astype(np.float32) * (1 / 255), axis=0),
            **record_meta(item['frames'][0]),
        }


@register_view('pair')
@dataclass(frozen=True)
class PairView(View):
    """HQ/LQ crops of one frame and its manipulation mask (anti-compression metric learning, Sec. 3-4).

    `image_hq`, `image_lq` [S, S, 3]; `mask` [S, S] binarised at `mask_threshold` (0.1, Sec. 4.2; zeros for reals
    and frames without a mask); `mask_<m>` [m, m] for each of `mask_sizes`: the binary mask area-resized, then
    binarised again (a cell is 1 where more than `mask_threshold` of it is manipulated). 19 x 19 is the attention
    map of Xception at 299. The same augmentation draw warps both images and the mask.
    """

    hq: str = 'c23'
    lq: str = 'c40'
    size: int = 299
    normalisation: str = 'xception'
    augment: Augment | None = None
    mask_sizes: tuple[int, ...] = (19,)
    mask_threshold: float = 0.1
    display_key = 'image_lq'

    def __post_init__(self):
        normalisation_stats(self.normalisation)

    def qualities(self) -> tuple[str, ...]:
        return (self.hq, self.lq)

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        image = ((self.size, self.size, 3), 'float32')
        return {'image_hq': image, 'image_lq': image, **mask_spec(self.size, self.mask_sizes), **META_SPEC}

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        params = augment_params(self.augment, rng)
        hq = decode_image(record[image_key(self.hq)])
        lq = decode_image(record[image_key(self.lq)])
        return {
            'image_hq': normalise(params.apply(hq, self.size), self.normalisation),
            'image_lq': normalise(params.apply(lq, self.size), self.normalisation),
            **binary_masks(record, hq.shape[:2], params, self.size, self.mask_sizes, self.mask_threshold),
            **record_meta(record),
        }


def binary_masks(
    record: Record,
    crop_shape: tuple[int, int],
    params: AugmentParams,
    size: int,
    sizes: Sequence[int],
    threshold: float,
) -> dict[str, np.ndarray]:
    """`mask` [size, size]: the record's manipulation mask warped as the images and binarised at `threshold` (zeros
    for reals and frames without a mask); `mask_<m>` [m, m] for each of `sizes`: that mask area-resized and binarised
    again (a cell is 1 where more than `threshold` of it is manipulated); `mask_known` 1 for reals and frames with a
    mask, 0 for fakes without one (their zeros are not a ground truth)."""
    mask = (params.warp(decode_mask(record['mask'], crop_shape), size) > threshold).astype(np.float32)
    resized = {
        f'mask_{m}': (cv2.resize(mask, (m, m), interpolation=cv2.INTER_AREA) > threshold).astype(np.float32)
        for m in sizes
    }
    known = np.float32(bool(record['mask']) or int(record['label']) == 0)
    return {'mask': mask, **resized, 'mask_known': known}


def mask_spec(size: int, sizes: Sequence[int]) -> dict[str, tuple[tuple[int, ...], str]]:
    """`View.spec` entries of `binary_masks`."""
    masks = {'mask': ((size, size), 'float32'), **{f'mask_{m}': ((m, m), 'float32') for m in sizes}}
    return {**masks, 'mask_known': ((), 'float32')}


@register_view('masked_frame')
@dataclass(frozen=True)
class MaskedFrameView(View):
    """One crop at one quality, `image` [S, S, 3], with its binary masks as the `pair` view gives them (`binary_masks`):
    the anti-compression LQ branch's test input, and any method's pixel-level ground truth."""

    quality: str = 'c40'
    size: int = 299
    normalisation: str = 'xception'
    augment: Augment | None = None
    mask_sizes: tuple[int, ...] = (19,)
    mask_threshold: float = 0.1

    def __post_init__(self):
        normalisation_stats(self.normalisation)

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        return {'image': ((self.size, self.size, 3), 'float32'), **mask_spec(self.size, self.mask_sizes), **META_SPEC}

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        params = augment_params(self.augment, rng)
        crop = decode_image(record[image_key(self.quality)])
        masks = binary_masks(record, crop.shape[:2], params, self.size, self.mask_sizes, self.mask_threshold)
        return {'image': normalise(params.apply(crop, self.size), self.normalisation), **masks, **record_meta(record)}


@register_view('au')
@dataclass(frozen=True)
class AUView(View):
    """AUNet's inputs (Sec. 3.2-3.3, 4.1): `image` [S, S, 3]; `au_maps` [S, S, 15] (`au_maps`, σ = 3 at S = 224);
    `face_mask` [S, S] (convex hull M_f); `landmarks` float32 [68, 2] in output pixels; all after one augmentation.
    """

    quality: str = 'c23'
    size: int = 224
    normalisation: str = 'xception'
    augment: Augment | None = None
    sigma: float = 3.0
    au_regions: Mapping[str, tuple[tuple[int, ...], ...]] = field(default_factory=lambda: AU_REGIONS)

    def __post_init__(self):
        normalisation_stats(self.normalisation)

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        params = augment_params(self.augment, rng)
        crop = decode_image(record[image_key(self.quality)])
        landmarks = params.landmarks(record['landmarks'], (crop.shape[1], crop.shape[0]), self.size)
        return {
            'image': normalise(params.apply(crop, self.size), self.normalisation),
            'au_maps': au_maps(landmarks, self.size, sigma=self.sigma, regions=self.au_regions),
            'face_mask': face_mask(landmarks, self.size),
            'landmarks': landmarks,
            **record_meta(record),
        }
