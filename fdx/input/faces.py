"""Face detection, 68-point landmarks and face crops for `fdx prepare`.

Detectors follow the `FaceDetector` protocol (`detect(rgb) -> list[Face]`; `fit(rgb, box) -> Face`, the landmarks of a
given box); `DlibDetector` is dlib's HOG frontal detector with the 68-point shape predictor of face-recognition-models;
`follow` carries a face into a later frame without a search. Boxes and crop windows are (x0, y0, x1, y1)
with exclusive x1/y1 in frame pixels; landmarks are (x, y) pixel positions.
"""

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

INSTALL_HINT = 'pip install -e ".[faces]"'


@dataclass(frozen=True, eq=False)
class Face:
    box: np.ndarray  # float32 [4] x0, y0, x1, y1
    landmarks: np.ndarray  # float32 [68, 2] (x, y) in frame pixels
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]: ...

    def detect_frames(self, frames: Sequence[np.ndarray]) -> list[list[Face]]: ...

    def fit(self, rgb: np.ndarray, box, score: float = float('nan')) -> Face: ...


def _predictor_path() -> Path:
    spec = importlib.util.find_spec('face_recognition_models')
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f'DlibDetector needs the face-recognition-models package: {INSTALL_HINT}')
    path = Path(spec.submodule_search_locations[0]) / 'models' / 'shape_predictor_68_face_landmarks.dat'
    if not path.is_file():
        raise ImportError(f'face-recognition-models has no {path.name} (at {path}): reinstall it with {INSTALL_HINT}')
    return path


class DlibDetector:
    """dlib HOG frontal face detector (upsampling the image `upsample` times) + the 68-point shape predictor.

    detect_size > 0: frames whose longer side exceeds it are searched shrunk to that side (INTER_AREA), the boxes
    mapped back and the landmarks fitted on the full frame; a frame without a face at that size is searched again at
    full size, so shrinking never loses a face the full-size search finds first. HOG's window is 80 px, so faces
    must keep about 80 px at the shrunk size. The dlib objects are built on first use and left out of pickles, so a
    detector can be sent to worker processes.
    """

    def __init__(self, upsample: int = 0, detect_size: int = 0):
        self.upsample = upsample
        self.detect_size = detect_size
        self._models = None

    def __getstate__(self) -> dict:
        return {'upsample': self.upsample, 'detect_size': self.detect_size}

    def __setstate__(self, state: dict):
        self.__init__(**state)

    def load(self):
        """Builds the dlib detector and landmark predictor now (else on first use); returns them."""
        if self._models is None:
            try:
                import dlib
            except ImportError as error:
                raise ImportError(f'DlibDetector needs dlib (the dlib-bin package): {INSTALL_HINT}') from error
            self._models = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(_predictor_path()))
        return self._models

    def boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(box, score) of every frontal face in a uint8 RGB (or grayscale) frame, best first, at full size."""
        detector, _ = self.load()
        rects, scores, _ = detector.run(np.ascontiguousarray(rgb, dtype=np.uint8), self.upsample, 0.0)
        return [
            (np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32), float(s))
            for r, s in zip(rects, scores)
        ]

    def fit(self, rgb: np.ndarray, box, score: float = float('nan')) -> Face:
        """The 68 landmarks of the face in `box` (x0, y0, x1, y1, frame pixels): the shape predictor alone."""
        import dlib

        _, predictor = self.load()
        x0, y0, x1, y1 = (round(float(v)) for v in box)
        shape = predictor(np.ascontiguousarray(rgb, dtype=np.uint8), dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
        return Face(np.asarray(box, np.float32), landmarks, score)

    def search(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(box, score) of every frontal face, best first, searched at `detect_size` (see the class doc)."""
        height, width = rgb.shape[:2]
        if 0 < self.detect_size < max(height, width):
            factor = self.detect_size / max(height, width)
            size = (max(round(width * factor), 1), max(round(height * factor), 1))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            back = np.array([width / size[0], height / size[1]] * 2, np.float32)
            found = [(box * back, score) for box, score in self.boxes(small)]
            if found:
                return found
        return self.boxes(rgb)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every frontal face in a uint8 RGB (or grayscale) frame, in the detector's order (best first)."""
        return [self.fit(rgb, box, score) for box, score in self.search(rgb)]

    def detect_frames(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """`detect` of each frame, searching them all before fitting any landmarks: the shape model (100 MB) then
        stays in cache from one fit to the next (measured ~0.6 ms a frame faster than alternating)."""
        found = [self.search(rgb) for rgb in frames]
        return [[self.fit(rgb, box, score) for box, score in boxes] for rgb, boxes in zip(frames, found)]


def follow(
    detector: FaceDetector, rgb: np.ndarray, face: Face, passes: int = 2, settle: float = 0.02, max_scale: float = 1.5
) -> Face | None:
    """`face` (of an earlier frame) in the frame `rgb`, without searching it: the landmarks are fitted in its box and
    the box is moved and scaled as the points moved (centroid shift, ratio of RMS spreads about the centroid),
    `passes` times. None, so that the caller searches the frame instead (`fdx prepare --detect-every`), when

    - the fit has not settled: the last pass still moved the centroid by more than `settle` × the box side or changed
      the scale by more than `settle` (a face that moved ≲ 15% of its box is caught by the first pass and the second
      moves it < 0.3%; beyond that the shape model slides off and keeps moving by 2–5% a pass: tests),
    - the scale changed by more than `max_scale`×, or the box is more than half outside the frame.
    """
    height, width = rgb.shape[:2]
    side = max(float(face.box[2] - face.box[0]), float(face.box[3] - face.box[1]), 1.0)
    centre = face.landmarks.mean(axis=0)
    spread = max(float(np.sqrt(((face.landmarks - centre) ** 2).sum(axis=1).mean())), 1e-6)
    box, last_centre, last_scale = face.box, centre, 1.0
    for _ in range(passes):
        fitted = detector.fit(rgb, box, face.score)
        moved = fitted.landmarks.mean(axis=0)
        scale = float(np.sqrt(((fitted.landmarks - moved) ** 2).sum(axis=1).mean())) / spread
        if not 1 / max_scale <= scale <= max_scale:
            return None
        box = (np.tile(moved, 2) + scale * (face.box - np.tile(centre, 2))).astype(np.float32)
        if box_iou(box, np.clip(box, 0, [width, height, width, height])) < 0.5:
            return None
        shift, rescale = float(np.abs(moved - last_centre).max()) / side, abs(scale / last_scale - 1)
        last_centre, last_scale = moved, scale
    if passes > 1 and (shift > settle or rescale > settle):
        return None
    return Face(box, fitted.landmarks, face.score)


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box area; None if there is none."""
    return max(faces, key=lambda face: face.area, default=None)


def box_iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    height = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return float(width * height / union) if union > 0 else 0.0


def large_faces(faces: list[Face], min_area_ratio: float = 0.5, min_size: float = 0.0) -> list[Face]:
    """The faces of one frame whose area is at least `min_area_ratio` × the largest's (SBI keeps ≥ half the
    largest for DFDC/FFIW: src/inference/preprocess.py) and whose box sides are ≥ `min_size` pixels, largest first."""
    largest = largest_face(faces)
    if largest is None:
        return []
    kept = [
        face
        for face in faces
        if face.area >= min_area_ratio * largest.area
        and min(face.box[2] - face.box[0], face.box[3] - face.box[1]) >= min_size
    ]
    return sorted(kept, key=lambda face: -face.area)


def track_faces(frames: list[list[Face]], min_iou: float = 0.3) -> list[list[int]]:
    """Face tracks over a video's sampled frames: for each frame, the track number of each of its faces.

    Greedy association in frame order: each face (largest first) joins the unclaimed track whose last box overlaps
    it most, if that IoU ≥ `min_iou`, else starts a new track. Tracks are numbered by first appearance (ties: larger
    face first), so the numbering is deterministic for the detections.
    """
    last_boxes: list[np.ndarray] = []
    assignments = []
    for faces in frames:
        claimed: set[int] = set()
        numbers = []
        for face in faces:
            overlaps = [(box_iou(face.box, box), t) for t, box in enumerate(last_boxes) if t not in claimed]
            best_iou, best = max(overlaps, default=(0.0, -1))
            if best_iou < min_iou:
                best = len(last_boxes)
                last_boxes.append(face.box)
            last_boxes[best] = face.box
            claimed.add(best)
            numbers.append(best)
        assignments.append(numbers)
    return assignments


def crop_window(box, frame_shape: tuple[int, ...], scale: float = 1.3, square: bool = True) -> np.ndarray:
    """The crop window (int [4] x0, y0, x1, y1) of a face box enlarged `scale` times about its centre.

    square: side max(w, h) × scale (FF++/DeepfakeBench), no larger than the frame, shifted (not cut) to lie inside it,
    so a window is always square. Otherwise width and height scale separately and the window is clipped to the frame.
    """
    height, width = frame_shape[:2]
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if square:
        side = min(round(max(x1 - x0, y1 - y0) * scale), width, height)
        left = min(max(round(cx - side / 2), 0), width - side)
        top = min(max(round(cy - side / 2), 0), height - side)
        return np.array([left, top, left + side, top + side], np.int64)
    half_w, half_h = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    window = np.round([cx - half_w, cy - half_h, cx + half_w, cy + half_h]).astype(np.int64)
    return np.clip(window, 0, [width, height, width, height])


def crop(frame: np.ndarray, window, size: int) -> np.ndarray:
    """Cut `window` out of a frame ([H, W, C] image or [H, W] mask) and resize it to size × size.

    Shrinking uses INTER_AREA; growing INTER_CUBIC for images and INTER_LINEAR for masks (no overshoot).
    """
    x0, y0, x1, y1 = (int(v) for v in window)
    if not (0 <= x0 < x1 <= frame.shape[1] and 0 <= y0 < y1 <= frame.shape[0]):
        raise ValueError(f'crop window {(x0, y0, x1, y1)} is empty or outside the {frame.shape[:2]} frame')
    patch = frame[y0:y1, x0:x1]
    if max(x1 - x0, y1 - y0) > size:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR if frame.ndim == 2 else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def landmarks_to_crop(landmarks: np.ndarray, window, size: int) -> np.ndarray:
    """Frame-pixel landmarks → pixel coordinates in the `crop(frame, window, size)` image (float32 [N, 2]).

    Pixel centres map to pixel centres as in cv2.resize: u = (x - x0 + 0.5) × size / w - 0.5.
    """
    x0, y0, x1, y1 = (float(v) for v in window)
    scale = np.array([size / (x1 - x0), size / (y1 - y0)], np.float64)
    points = (np.asarray(landmarks, np.float64) - [x0, y0] + 0.5) * scale - 0.5
    return points.astype(np.float32)
