"""The prepared record: one face crop of one frame, with every quality of that frame and its metadata.

`fdx prepare` writes these (TFDS, array_record); the views in `fdx.input.views` read them. Crops of all qualities of a
frame (FF++ raw/c23/c40, DFDM crf0/crf10/crf23) and its manipulation mask share one crop window, so HQ/LQ pairs and
masks align pixel for pixel by construction.

Keys of a record (as `tfds.data_source` returns it):
    image_<quality>  bytes    encoded crop (PNG or JPEG) in RGB order once decoded by `decode_image`
    mask             bytes    encoded single-channel PNG of the mask crop; b'' when the video has no mask
    landmarks        float32  [68, 2] dlib 68-point landmarks (x, y) in crop pixel coordinates
    box              float32  [4] crop window (x0, y0, x1, y1) in original frame pixels
    label            int64    0 real, 1 fake
    class_id         int64    attribution class (index into the builder's class names; real = 0 where present)
    video_id         bytes    unique video name, e.g. b'Deepfakes/000_003', b'original/000',
                              b'Dfaker/id01_id02_0003_Dfaker'
    video_index      int64    dense number of the video (of its face track with `--faces all`) within the dataset,
                              the grouping key for clips and video metrics
    frame_index      int64    frame number in the decoded video
    face_index       int64    face track within the video (0 unless `fdx prepare --faces all`): a video's tracks
                              have consecutive video_index values, so video_index - face_index names the video
    source_id        bytes    the video a fake was made from, shared with it by its real (e.g. b'000'); see layouts
"""

import os
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np
from isal import isal_zlib

NUM_LANDMARKS = 68


def image_key(quality: str) -> str:
    return f'image_{quality}'


def decode_image(data: bytes) -> np.ndarray:
    """Encoded PNG/JPEG bytes → uint8 RGB [H, W, 3]; raises ValueError on undecodable bytes."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)  # libjpeg-turbo writes RGB directly
    if image is None:
        raise ValueError(f'undecodable image ({len(data)} bytes)')
    return image


def decode_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Encoded mask → float32 [H, W] in [0, 1]; zeros of `shape` when there is no mask (b'')."""
    if not data:
        return np.zeros(shape, np.float32)
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f'undecodable mask ({len(data)} bytes)')
    return mask.astype(np.float32) / 255.0


def encode_image(rgb: np.ndarray, fmt: str = 'png', quality: int = 95) -> bytes:
    """uint8 RGB [H, W, 3] (or grayscale [H, W]) → PNG (`encode_png`) or JPEG bytes."""
    if fmt == 'png':
        return encode_png(rgb)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, data = cv2.imencode(f'.{fmt}', bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f'cannot encode a {rgb.shape} image as {fmt}')
    return data.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: np.ndarray) -> bytes:
    """uint8 RGB [H, W, 3] or grayscale [H, W] → 8-bit PNG bytes: every row 'Up'-filtered (PNG spec, filter type 2:
    each byte minus the one above it), the rows deflated by ISA-L at level 1. Lossless like any PNG; on face crops
    ~5× faster than `cv2.imencode`'s fastest setting (libpng, zlib level 1), its files smaller and decoded as fast
    (README, performance)."""
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f'PNG crops are uint8 [H, W] or [H, W, 3], got {image.dtype} {list(image.shape)}')
    height, width = image.shape[:2]
    rows = image.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack('>IIBBBBB', width, height, 8, 2 if image.ndim == 3 else 0, 0, 0, 0)
    return b''.join(
        (
            b'\x89PNG\r\n\x1a\n',
            _png_chunk(b'IHDR', header),
            _png_chunk(b'IDAT', isal_zlib.compress(filtered.tobytes(), 1)),
            _png_chunk(b'IEND', b''),
        )
    )


@dataclass
class SplitIndex:
    """Per-split metadata written by prepare: one row per record, in record order (all int64 [N]). `face_index` is
    the face track within its video (zeros for datasets prepared with one face per frame, or before it existed)."""

    video_index: np.ndarray
    frame_index: np.ndarray
    label: np.ndarray
    class_id: np.ndarray
    face_index: np.ndarray | None = None

    def __post_init__(self):
        if self.face_index is None:
            self.face_index = np.zeros_like(np.asarray(self.video_index))
        for f in fields(self):
            setattr(self, f.name, np.asarray(getattr(self, f.name), np.int64))
        shapes = {f.name: getattr(self, f.name).shape for f in fields(self)}
        if len(set(shapes.values())) != 1 or len(self.label.shape) != 1:
            raise ValueError(f'SplitIndex arrays must be 1-D of equal length, got shapes {shapes}')

    def __len__(self) -> int:
        return len(self.label)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> 'SplitIndex':
        rows = [[r.get(f.name, 0) if f.name == 'face_index' else r[f.name] for f in fields(cls)] for r in records]
        return cls(*np.array(rows, np.int64).reshape(-1, len(fields(cls))).T)

    def save(self, path: str | os.PathLike) -> None:
        """Writes an .npz (numpy appends the suffix when `path` lacks it)."""
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'SplitIndex':
        with np.load(path) as data:
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def take(self, rows: np.ndarray) -> 'SplitIndex':
        """The index of the records at `rows` (in that order)."""
        return SplitIndex(*(getattr(self, f.name)[rows] for f in fields(self)))

    def source_videos(self) -> np.ndarray:
        """Per record, a number shared by every face track of its video (`video_index - face_index`)."""
        return self.video_index - self.face_index

    def videos(self) -> dict[int, np.ndarray]:
        """video_index -> its record indices sorted by frame_index, in increasing video_index."""
        order = np.lexsort((self.frame_index, self.video_index))
        videos, starts = np.unique(self.video_index[order], return_index=True)
        return {int(v): indices for v, indices in zip(videos, np.split(order, starts[1:]))}
