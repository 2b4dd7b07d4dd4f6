"""Video decoding for `fdx prepare` and `fdx detect`: probing, the papers' frame samplings, forward-only frame
reading, and H.264 writing through ffmpeg (`fdx synth`, `fdx detect --annotate`).

Frames are read strictly forward with `cv2.VideoCapture` (seeking with `CAP_PROP_POS_FRAMES` is unreliable for some
codecs): unwanted frames are grabbed but not converted, wanted ones are kept as uint8 RGB. The frame count a container
reports can be wrong (truncated files keep the header's count), so `read_frames` reports how far the file really went.
"""

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

SAMPLING_MODES = ('even', 'runs', 'all')


class VideoError(Exception):
    """A video that cannot be used; `reason` is short ('zero-length file', 'cannot open', 'no frames decoded', …)."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path = str(path)
        self.reason = reason


class VideoInfo(NamedTuple):
    frame_count: int
    fps: float
    width: int
    height: int


class Frames(NamedTuple):
    """What `read_frames` decoded.

    `frames` maps each wanted index that was decoded to its RGB frame; `wanted` counts the distinct indices asked
    for; `read` counts the frames read from the start of the file (up to the last wanted one). When
    `len(frames) < wanted` the file ended early (truncated: `read` is then its true length) or a frame was corrupt.
    """

    frames: dict[int, np.ndarray]
    wanted: int
    read: int

    @property
    def truncated(self) -> bool:
        return len(self.frames) < self.wanted


def _open(path: str | Path, threads: int = 0) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, 'no such file')
    if path.stat().st_size == 0:
        raise VideoError(path, 'zero-length file')
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads] if threads else [])
    if not capture.isOpened():
        capture.release()
        raise VideoError(path, 'cannot open')
    return capture


def probe(path: str | Path, exact: bool = False) -> VideoInfo:
    """Frame count, fps and size of a video; raises VideoError if it is missing, empty, unreadable or frameless.

    The frame count is the container's unless `exact` (or the container reports none): then every frame is decoded
    and counted, which also gives the true length of a truncated file.
    """
    capture = _open(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        ok, frame = capture.read()
        if not ok:
            raise VideoError(path, 'no frames decoded')
        if exact or count <= 0:
            count = 1
            while capture.grab():
                count += 1
    finally:
        capture.release()
    return VideoInfo(count, fps if np.isfinite(fps) and fps > 0 else 0.0, frame.shape[1], frame.shape[0])


def _spaced(start: int, stop: int, count: int) -> np.ndarray:
    """`count` integers evenly spaced over [start, stop], rounded half up (so spacings >= 1 stay >= their floor)."""
    return np.floor(np.linspace(start, stop, count) + 0.5).astype(np.int64)


def sample_indices(
    frame_count: int, *, mode: str, count: int = 0, run_length: int = 1, max_frames: int = 0
) -> list[int]:
    """Sorted, distinct frame indices of a video of `frame_count` frames.

    even: `count` frames evenly spaced over the video (DeepfakeBench: linspace(0, n - 1, count)); every frame if the
        video has no more than `count`.
    runs: up to `count` runs of `run_length` consecutive frames with evenly spaced starts, never past the end nor
        overlapping (fewer runs when the video is too short, none if shorter than one run); chunk j of `run_length`
        indices is run j.
    all: every frame, evenly subsampled down to `max_frames` when that is > 0 and smaller.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f'sampling mode {mode!r}: expected one of {", ".join(SAMPLING_MODES)}')
    if frame_count <= 0:
        return []
    if mode == 'all':
        if 0 < max_frames < frame_count:
            return _spaced(0, frame_count - 1, max_frames).tolist()
        return list(range(frame_count))
    if count < 1 or run_length < 1:
        raise ValueError(f'sampling needs count >= 1 and run_length >= 1 (got {count}, {run_length})')
    if mode == 'even':
        if frame_count <= count:
            return list(range(frame_count))
        return _spaced(0, frame_count - 1, count).tolist()
    runs = min(count, frame_count // run_length)
    if runs == 0:
        return []
    starts = _spaced(0, frame_count - run_length, runs)
    return (starts[:, None] + np.arange(run_length)).ravel().tolist()


def read_frames(path: str | Path, indices, threads: int = 0) -> Frames:
    """Decode the frames at `indices` (uint8 RGB [H, W, 3]) reading forward from the start; stops after the last.

    A file that ends early gives the frames it reached (see `Frames.truncated`); VideoError only when none of the
    wanted frames was decoded ('no frames decoded' for a file without any, else 'truncated: …'). No indices: nothing
    is opened. `threads`: the decoder's threads (0: OpenCV's choice, one per core); processes that each decode
    their own videos on a core of their own (`fdx prepare --workers`) take 1.
    """
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        return Frames({}, 0, 0)
    if wanted[0] < 0:
        raise ValueError(f'negative frame index {wanted[0]}')
    capture = _open(path, threads)
    reported = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames, read, keep = {}, 0, set(wanted)
    try:
        while read <= wanted[-1] and capture.grab():
            if read in keep:
                ok, bgr = capture.retrieve()
                if ok:
                    frames[read] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            read += 1
    finally:
        capture.release()
    if not frames:
        if read == 0:
            raise VideoError(path, 'no frames decoded')
        if read <= wanted[-1]:
            raise VideoError(path, f'truncated: decoded {read} of {reported} frames, none of the {len(wanted)} wanted')
        raise VideoError(path, f'none of the {len(wanted)} wanted frames decodable')
    return Frames(frames, len(wanted), read)


def require_ffmpeg(purpose: str) -> str:
    """The ffmpeg executable; a FileNotFoundError saying how to install it otherwise."""
    path = shutil.which('ffmpeg')
    if path is None:
        raise FileNotFoundError(
            f'ffmpeg is not installed; {purpose} writes H.264 with it. Install it with '
            '`sudo apt-get install ffmpeg` (`make setup` does this when run as root).'
        )
    return path


def h264_args(crf: int) -> list[str]:
    """ffmpeg output options: libx264 at `crf` on one thread (bytes independent of the core count), yuv420p, every
    frame kept."""
    return [
        '-an',
        '-c:v',
        'libx264',
        '-threads',
        '1',
        '-crf',
        str(crf),
        '-pix_fmt',
        'yuv420p',
        '-fps_mode',
        'passthrough',
    ]


def rawvideo_input_args(width: int, height: int, fps: float) -> list[str]:
    """ffmpeg options reading uint8 RGB frames of `width`x`height` from stdin."""
    return ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{width}x{height}', '-r', f'{fps:g}', '-i', '-']


class H264Writer:
    """Streams uint8 RGB frames [H, W, 3] into an H.264 file through one ffmpeg process (`with` closes it; an
    ffmpeg failure is a VideoError naming the file). Odd sizes are padded by one pixel (yuv420p needs even ones)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, crf: int = 18):
        self.path = Path(path)
        self.size = (width, height)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        command = [require_ffmpeg('fdx detect --annotate'), '-y', '-loglevel', 'error']
        command += rawvideo_input_args(width + width % 2, height + height % 2, fps or 25.0)
        command += [*h264_args(crf), str(self.path)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        width, height = self.size
        if frame.shape[:2] != (height, width):
            raise ValueError(f'{self.path}: frame of shape {frame.shape[:2]}, expected {(height, width)}')
        padded = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode='edge')
        self._process.stdin.write(np.ascontiguousarray(padded, np.uint8).tobytes())

    def close(self) -> None:
        self._process.stdin.close()
        error = self._process.stderr.read().decode(errors='replace')
        if self._process.wait():
            raise VideoError(self.path, f'ffmpeg failed: {error[-300:]}')

    def __enter__(self) -> 'H264Writer':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
