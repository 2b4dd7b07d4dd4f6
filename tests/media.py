"""Small real test media: an encoded video of a moving face (skimage's astronaut), a faceless video, the face's mask
video, and broken files. Every generator is deterministic and returns the frames it wrote (the ground truth).

Codecs: 'mp4v' in .mp4 (OpenCV 5 cannot write H.264) or 'MJPG' / 'XVID' in .avi.
"""

from pathlib import Path

import cv2
import numpy as np

# Rows and columns of the 512x512 astronaut photo around her face; resized to `size`, dlib's HOG detector finds it.
FACE_REGION = (slice(0, 250), slice(120, 370))
# The face's ellipse in a `size` frame before any shift: centre and semi-axes as fractions of `size`.
FACE_ELLIPSE = ((0.41, 0.50), (0.19, 0.25))


def face_offsets(frames: int, shift: tuple[float, float]) -> np.ndarray:
    """(dx, dy) of the content in each frame: a linear ramp from (0, 0) to `shift`, float64 [frames, 2]."""
    ramp = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return ramp[:, None] * np.asarray(shift, np.float64)


def _translate(image: np.ndarray, offset, border: int) -> np.ndarray:
    matrix = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=border)


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 12, codec: str = 'mp4v') -> Path:
    """Encode uint8 RGB [H, W, 3] (or grayscale [H, W]) frames with OpenCV."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV cannot write {codec} to {path}')
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path)


def face_video(
    path: str | Path,
    *,
    frames: int = 24,
    size: int = 256,
    fps: float = 12,
    seed: int = 0,
    codec: str = 'mp4v',
    shift: tuple[float, float] = (40, 20),
) -> list[np.ndarray]:
    """The astronaut's face moving by `face_offsets(frames, shift)` (reflected borders) with a slight brightness
    flicker drawn from `seed`; returns the RGB frames written."""
    from skimage.data import astronaut

    base = cv2.resize(astronaut()[FACE_REGION], (size, size), interpolation=cv2.INTER_AREA)
    gains = 1 + np.random.default_rng(seed).uniform(-0.05, 0.05, frames)
    written = [
        np.clip(_translate(base, offset, cv2.BORDER_REFLECT).astype(np.float32) * gain, 0, 255).astype(np.uint8)
        for offset, gain in zip(face_offsets(frames, shift), gains)
    ]
    write_video(path, written, fps, codec)
    return written


def two_face_video(
    path: str | Path, *, frames: int = 8, sizes: tuple[int, int] = (256, 208), fps: float = 12, codec: str = 'mp4v'
) -> list[np.ndarray]:
    """Two astronaut faces side by side (left `sizes[0]`, right `sizes[1]` pixels, on grey), the right one drifting
    down a pixel a frame: a multi-face video whose smaller face has (208/256)² ≈ 0.66 of the larger's area; returns the RGB
    frames written."""
    from skimage.data import astronaut

    faces = [cv2.resize(astronaut()[FACE_REGION], (s, s), interpolation=cv2.INTER_AREA) for s in sizes]
    height, width = max(sizes) + 16, sum(sizes) + 48
    written = []
    for i in range(frames):
        frame = np.full((height, width, 3), 128, np.uint8)
        frame[8 : 8 + sizes[0], 8 : 8 + sizes[0]] = faces[0]
        frame[8 + i : 8 + i + sizes[1], width - 8 - sizes[1] : width - 8] = faces[1]
        written.append(frame)
    write_video(path, written, fps, codec)
    return written


def mask_video(
    path: str | Path,
    *,
    frames: int = 24,
    size: int = 256,
    fps: float = 12,
    codec: str = 'MJPG',
    shift: tuple[float, float] = (40, 20),
) -> list[np.ndarray]:
    """The manipulation mask of a `face_video` with the same frames/size/shift: a white ellipse over the face on
    black; returns the uint8 [size, size] masks written."""
    (cx, cy), (ax, ay) = FACE_ELLIPSE
    base = np.zeros((size, size), np.uint8)
    cv2.ellipse(base, (round(cx * size), round(cy * size)), (round(ax * size), round(ay * size)), 0, 0, 360, 255, -1)
    written = [_translate(base, offset, cv2.BORDER_CONSTANT) for offset in face_offsets(frames, shift)]
    write_video(path, written, fps, codec)
    return written


def blank_video(
    path: str | Path, frames: int = 10, size: int = 128, fps: float = 12, codec: str = 'mp4v'
) -> list[np.ndarray]:
    """A faceless video: drifting colour gradients plus smooth noise; returns the RGB frames written."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), size / 16)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    written = []
    for i in range(frames):
        phase = 2 * np.pi * i / max(frames, 1)
        gradient = np.stack([xs, ys, (xs + ys) / 2], -1) * 160 + 40 * np.sin(phase + 6 * xs)[..., None]
        written.append(np.clip(gradient + (noise - noise.mean()) * 2, 0, 255).astype(np.uint8))
    write_video(path, written, fps, codec)
    return written


def corrupt_files(directory: str | Path) -> dict[str, Path]:
    """Broken videos in `directory`.

    empty: 0-byte .mp4; random: 64 KiB of random bytes named .mp4; truncated: the first 40% of a face_video .mp4
    (its index, the 'moov' atom, is at the end, so the file cannot be opened at all); truncated_avi: the first 40% of
    a 24-frame MJPG face_video .avi (it opens, still reports 24 frames, and decodes about 10).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {'empty': directory / 'empty.mp4', 'random': directory / 'random.mp4'}
    files['empty'].write_bytes(b'')
    files['random'].write_bytes(np.random.default_rng(0).bytes(64 * 1024))
    for name, codec, suffix in (('truncated', 'mp4v', '.mp4'), ('truncated_avi', 'MJPG', '.avi')):
        whole = directory / f'whole_{name}{suffix}'
        face_video(whole, frames=24, codec=codec)
        data = whole.read_bytes()
        files[name] = directory / f'{name}{suffix}'
        files[name].write_bytes(data[: int(len(data) * 0.4)])
        whole.unlink()
    return files
