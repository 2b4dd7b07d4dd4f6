"""Synthetic faces for `fdx synth`: identities morphed from one real photo, animated "real" videos, a graphic swap.

The base face is skimage's astronaut photo with dlib's 68 landmarks. `make_identities` turns it into distinct people
(landmark-driven morphing, framing, skin, lip, brow and hair colour, moles, lighting, background); `animate` makes a
"real" video of one with head motion, blinking and talking, returning the landmarks of every frame. `landmark_swap` is a FaceSwap-style
graphics swap, `reenact` a Face2Face-style expression reenactment and `mouth_rerender` a NeuralTextures-style mouth
re-rendering; `blend` and `face_mask` are the blending shared by every manipulation method, `align_face` and
`paste_face` the aligned crops the autoencoder swaps train on and are pasted back from.

Points are (x, y) pixel positions with (0, 0) the centre of the top-left pixel, as in dlib and `cv2`; landmarks follow
the dlib 68-point layout (0-based). Every function is deterministic for its inputs and seed.
"""

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

SIZE = 256
# Rows and columns of the 512x512 astronaut photo around her head (as tests/media.py); dlib finds the face in it.
FACE_REGION = (slice(0, 250), slice(120, 370))
# The astronaut's suit and helmet ring below the face, a polygon in fractions of the base frame: kept as foreground
# although its white parts look like the photo's background.
SHOULDERS = ((0.0, 0.617), (0.129, 0.594), (0.262, 0.602), (0.469, 0.633), (0.559, 0.656), (0.621, 0.691),
             (0.688, 0.797), (0.727, 0.883), (0.742, 0.93), (0.781, 0.938), (0.844, 0.93), (0.859, 1.0),
             (0.0, 1.0))  # fmt: skip

JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE_BASE = np.arange(30, 36)  # tip and nostrils
EYES = (np.arange(36, 42), np.arange(42, 48))  # image left (the subject's right eye), image right
MOUTH = np.arange(48, 68)
# Blinking closes each eye's (upper, lower) lid pairs; the upper lid travels this share of the aperture.
LIDS = (((37, 41), (38, 40)), ((43, 47), (44, 46)))
UPPER_LID_SHARE = 0.7
# Expression transfer: the head's pose is fitted on the nose bridge and eye corners (moved by neither blinks nor
# talking); reenactment moves the brows, lids, mouth and lower jaw, mouth re-rendering the mouth and lower jaw.
RIGID = np.array([27, 28, 29, 30, 36, 39, 42, 45])
LOWER_JAW = np.arange(5, 12)
FACE_EXPRESSION = np.concatenate([BROWS, [p for eye in LIDS for pair in eye for p in pair], MOUTH, LOWER_JAW])
MOUTH_EXPRESSION = np.concatenate([MOUTH, LOWER_JAW])
MOUTH_REGION = np.concatenate([MOUTH, np.arange(4, 13)])  # mouth and the jaw below it: mouth_rerender's mask
# (upper, lower) pairs the transferred expression never crosses: inner lips, then lids.
CLOSING_PAIRS = ((61, 67), (62, 66), (63, 65), *(pair for eye in LIDS for pair in eye))
# Talking opens the mouth by d pixels: each listed landmark moves down by weight × d.
JAW_DROP = {
    **{i: 1.0 for i in (*range(55, 60), *range(65, 68))},  # lower lip
    **{i: 0.4 for i in (48, 54, 60, 64)},  # mouth corners
    5: 0.3, 11: 0.3, 6: 0.6, 10: 0.6, 7: 0.85, 9: 0.85, 8: 1.0,  # jaw
}  # fmt: skip

# Aligned-face template: image-left eye centre, image-right eye centre, nose tip, left and right mouth corners as
# fractions of the crop size. FFHQ/ArcFace-like proportions (eyes level, 0.28 apart, mouth 0.245 below them), but
# looser than ArcFace's 112 template so the whole landmark hull (brows to chin, jaw to jaw) stays inside the crop with
# a margin: on the base face it spans x 0.22-0.79, y 0.25-0.82; over identities and videos x 0.18-0.83, y 0.21-0.9.
ALIGN_TEMPLATE = np.array([[0.36, 0.34], [0.64, 0.34], [0.5, 0.5], [0.385, 0.585], [0.615, 0.585]], np.float64)


@dataclass(frozen=True, eq=False)
class Identity:
    image: np.ndarray  # uint8 RGB [S, S, 3], head and shoulders
    landmarks: np.ndarray  # float32 [68, 2] (x, y) pixels
    name: str


# --------------------------------------------------------------------------- #
# Geometry helpers
# --------------------------------------------------------------------------- #


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points [N, 2] through a 2x3 affine matrix (as `cv2.warpAffine` moves content), float32."""
    matrix = np.asarray(matrix, np.float64)
    return (np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation) taking points [N, 2] `source` onto
    `target`, float64 [2, 3]."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    ones, zeros = np.ones(len(source)), np.zeros(len(source))
    # x' = a x - b y + tx, y' = b x + a y + ty
    rows = np.concatenate([
        np.stack([source[:, 0], -source[:, 1], ones, zeros], axis=1),
        np.stack([source[:, 1], source[:, 0], zeros, ones], axis=1),
    ])  # fmt: skip
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.concatenate([target[:, 0], target[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def _border_anchors(height: int, width: int) -> np.ndarray:
    """Corners and edge midpoints half a pixel outside the frame, so the anchor hull covers every pixel centre."""
    xs, ys = (-1.0, (width - 1) / 2, float(width)), (-1.0, (height - 1) / 2, float(height))
    return np.array([(x, y) for y in ys for x in xs if not (x == xs[1] and y == ys[1])], np.float64)


def piecewise_warp(
    image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Warp an image ([H, W] or [H, W, C]) so that the content at `src_points` lands on `dst_points`.

    Piecewise affine over the Delaunay triangulation of the destination points plus fixed border anchors (corners and
    edge midpoints): each output pixel samples the source through its triangle's affine map (bilinear, reflected
    borders), so the whole frame is covered and points move continuously. `box` (x0, y0, x1, y1) computes only that
    window of the output (the same pixels as cropping the full result).
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box or (0, 0, width, height)
    anchors = _border_anchors(height, width)
    src = np.concatenate([np.asarray(src_points, np.float64), anchors])
    dst = np.concatenate([np.asarray(dst_points, np.float64), anchors])
    triangles = Delaunay(dst).simplices
    # [x, y, 1] @ coefficients = source point, per triangle; the last row (identity) covers unrasterised pixels.
    corners = np.concatenate([dst[triangles], np.ones((len(triangles), 3, 1))], axis=2)
    coefficients = np.linalg.solve(corners, src[triangles]).reshape(len(triangles), 6)
    coefficients = np.concatenate([coefficients, [[1, 0, 0, 1, 0, 0]]]).T
    coefficients[4:] += x0 * coefficients[0:2] + y0 * coefficients[2:4]  # window pixel (x, y) is (x0 + x, y0 + y)
    # Each pixel's triangle, rasterised over the whole frame (edge pixels go to the last triangle drawn on them).
    index = np.full((height, width), len(triangles), np.int32)
    corners_fixed = np.rint(dst * 16).astype(np.int32)
    for k, triangle in enumerate(triangles):
        cv2.fillConvexPoly(index, corners_fixed[triangle], k, lineType=cv2.LINE_8, shift=4)
    c = np.take(coefficients.astype(np.float32), index[y0:y1, x0:x1], axis=1)
    xs, ys = np.arange(x1 - x0, dtype=np.float32), np.arange(y1 - y0, dtype=np.float32)[:, None]
    map_x = xs * c[0] + ys * c[2] + c[4]
    map_y = xs * c[1] + ys * c[3] + c[5]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def face_width(landmarks: np.ndarray) -> float:
    """Distance between the jaw's ends (0 and 16)."""
    return float(np.linalg.norm(landmarks[16] - landmarks[0]))


def _fill_hull(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    hull = cv2.convexHull(np.asarray(points, np.float32))
    cv2.fillConvexPoly(mask, np.rint(hull * 16).astype(np.int32), 1.0, lineType=cv2.LINE_8, shift=4)
    return mask


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return mask
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT), 0, 1)


def face_mask(landmarks: np.ndarray, shape: tuple[int, ...], feather: float, forehead: float = 0.0) -> np.ndarray:
    """The blending mask: the filled convex hull of the landmarks, Gaussian-feathered (σ = `feather` pixels).

    float32 [H, W] in [0, 1]: about 0.5 on the hull's edge, under 0.01 from 3σ outside it and exactly 0 from 6σ.
    `forehead` lifts the brows by that fraction of the face height (nose bridge to chin) along the face's axis, to
    cover the forehead.
    """
    points = np.asarray(landmarks, np.float64).copy()
    if forehead:
        up = points[27] - points[8]
        points[BROWS] += forehead * up
    return _feather(_fill_hull(points, shape), feather)


def blend(target_frame: np.ndarray, face_image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Alpha blending shared by every manipulation: round(mask × face + (1 − mask) × target), uint8."""
    alpha = np.asarray(mask, np.float32)[..., None]
    mixed = face_image.astype(np.float32) * alpha + target_frame.astype(np.float32) * (1 - alpha)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- #
# Base face and identities
# --------------------------------------------------------------------------- #


@functools.cache
def _reference_landmarks() -> np.ndarray:
    """dlib's 68 landmarks of the base face at SIZE × SIZE (the photo never changes, so one detection serves all)."""
    from fdx.input.faces import DlibDetector, largest_face

    face = largest_face(DlibDetector().detect(_base_image(SIZE)))
    if face is None:
        raise RuntimeError('dlib found no face in the astronaut photo')
    face.landmarks.flags.writeable = False
    return face.landmarks


def _base_image(size: int) -> np.ndarray:
    from skimage.data import astronaut

    return cv2.resize(astronaut()[FACE_REGION], (size, size), interpolation=cv2.INTER_AREA)


def base_face(size: int = SIZE) -> Identity:
    """The astronaut's head and shoulders at size × size with dlib's landmarks (detected once, at SIZE, and scaled)."""
    landmarks = (_reference_landmarks().astype(np.float64) + 0.5) * (size / SIZE) - 0.5
    return Identity(_base_image(size), landmarks.astype(np.float32), 'astronaut')


@functools.cache
def _base_silhouette(size: int) -> np.ndarray:
    """Soft mask (float32 [size, size]) of the base photo's person: face, hair, neck and suit; 0 on the backdrop.

    The backdrop is the photo's pale, unsaturated pixels connected to its border, outside the face (brows lifted)
    and the suit polygon SHOULDERS.
    """
    base = base_face(size)
    hsv = cv2.cvtColor(base.image, cv2.COLOR_RGB2HSV)
    backdrop = ((hsv[..., 1] < 45) & (hsv[..., 2] > 140)).astype(np.uint8)
    keep = face_mask(base.landmarks, base.image.shape, 0, forehead=0.3) > 0
    keep |= _fill_polygon(np.array(SHOULDERS) * size - 0.5, (size, size)) > 0
    backdrop[keep] = 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    backdrop = cv2.morphologyEx(backdrop, cv2.MORPH_OPEN, kernel)
    _, labels = cv2.connectedComponents(backdrop)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    person = ~np.isin(labels, border[border > 0])
    # Opened, then eroded by 2 pixels so the hair's edge (mixed with the backdrop) is left out.
    person = cv2.erode(cv2.morphologyEx(person.astype(np.uint8), cv2.MORPH_OPEN, kernel), kernel).astype(np.float32)
    silhouette = _feather(person, size / 160)
    silhouette.flags.writeable = False
    return silhouette


def _fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.rint(points * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_8, shift=4)
    return mask


def _morph(landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New landmarks: jaw width and length, eye spacing and size, brow height, nose length and width, mouth width and
    height moved by random amounts (fractions of the face width)."""
    points = landmarks.astype(np.float64).copy()
    width = face_width(points)
    centre_x = points[27, 0]
    eye_y = points[np.concatenate(EYES), 1].mean()
    chin_y = points[8, 1]
    # Jaw: wider or narrower about the face's axis, and a longer or shorter chin (more so nearer the chin).
    points[JAW, 0] = centre_x + (points[JAW, 0] - centre_x) * rng.uniform(0.9, 1.12)
    below_eyes = np.clip((points[JAW, 1] - eye_y) / (chin_y - eye_y), 0, 1)
    points[JAW, 1] += below_eyes**2 * rng.uniform(-0.05, 0.07) * width
    # Eyes: spacing (each eye moves outwards symmetrically) and size (about its centre).
    spacing, scale = rng.uniform(-0.035, 0.04) * width, rng.uniform(0.85, 1.2)
    for side, eye in zip((-1, 1), EYES):
        centre = points[eye].mean(axis=0)
        points[eye] = centre + (points[eye] - centre) * scale + (side * spacing, 0)
    # Brows: higher or lower.
    points[BROWS, 1] += rng.uniform(-0.06, 0.04) * width
    # Nose: longer or shorter (the tip and nostrils move; the bridge stretches), wider or narrower nostrils.
    points[NOSE_BASE, 1] += rng.uniform(-0.04, 0.05) * width
    nose_x = points[33, 0]
    points[NOSE_BASE, 0] = nose_x + (points[NOSE_BASE, 0] - nose_x) * rng.uniform(0.85, 1.25)
    # Mouth: wider or narrower, higher or lower.
    mouth_x = points[MOUTH, 0].mean()
    points[MOUTH, 0] = mouth_x + (points[MOUTH, 0] - mouth_x) * rng.uniform(0.85, 1.15)
    points[MOUTH, 1] += rng.uniform(-0.02, 0.035) * width
    return points.astype(np.float32)


def _hsv_shift(rgb: np.ndarray, weight: np.ndarray, hue: float, saturation: float, value: float) -> np.ndarray:
    """float32 RGB in [0, 1] with hue rotated by `hue` degrees and saturation and value scaled, where `weight` is 1."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    shifted = np.stack([(hsv[..., 0] + hue) % 360, np.clip(hsv[..., 1] * saturation, 0, 1),
                        np.clip(hsv[..., 2] * value, 0, 1)], axis=-1)  # fmt: skip
    shifted = cv2.cvtColor(shifted, cv2.COLOR_HSV2RGB)
    return rgb + weight[..., None] * (shifted - rgb)


def _spots(rng: np.random.Generator, where: np.ndarray) -> np.ndarray:
    """A multiplicative map (float32, 1 elsewhere) of 0-15 soft dark moles or freckles at random pixels of `where`."""
    ys, xs = np.nonzero(where)
    pick = rng.choice(len(xs), rng.integers(0, 16), replace=False)
    spots = np.zeros(where.shape, np.float32)
    for x, y, depth in zip(xs[pick], ys[pick], rng.uniform(0.1, 0.35, len(pick))):
        cv2.circle(spots, (int(x), int(y)), 1, float(depth), -1)
    return 1 - _feather(spots, 0.6)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random backdrop: a 3x3 grid of colours near one random hue, bicubically upsampled, float32 RGB."""
    hue = rng.uniform(0, 360)
    grid = np.stack([(hue + rng.uniform(-25, 25, (3, 3))) % 360, rng.uniform(0.05, 0.55, (3, 3)),
                     rng.uniform(0.35, 0.95, (3, 3))], axis=-1).astype(np.float32)  # fmt: skip
    colours = cv2.cvtColor(grid, cv2.COLOR_HSV2RGB)
    return np.clip(cv2.resize(colours, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def _identity(base: Identity, silhouette: np.ndarray, rng: np.random.Generator, name: str) -> Identity:
    size = base.image.shape[0]
    morphed = _morph(base.landmarks, rng)
    # Framing: the person enlarged, turned and shifted a little about the bottom edge's centre, never exposing the
    # bottom edge (reflected there, the suit would show a seam).
    angle, scale = rng.uniform(-3, 3), rng.uniform(1, 1.08)
    framing = cv2.getRotationMatrix2D(((size - 1) / 2, size - 0.5), angle, scale)
    lift = scale * size / 2 * abs(np.sin(np.radians(angle)))
    framing[:, 2] += rng.uniform(-0.05, 0.05) * size, lift + rng.uniform(0, 0.03) * size
    rgb, person = (cv2.warpAffine(piecewise_warp(x, base.landmarks, morphed), framing, (size, size),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                   for x in (base.image, silhouette))  # fmt: skip
    rgb = rgb.astype(np.float32) / 255
    landmarks = apply_affine(morphed, framing)
    width = face_width(landmarks)
    # Skin: the face with forehead, ears and neck, softly.
    skin_points = np.concatenate([landmarks, landmarks[JAW[3:14]] + (0, 0.3 * width)])
    skin = face_mask(skin_points, rgb.shape, 0.08 * width, forehead=0.35)
    rgb = _hsv_shift(rgb, skin, rng.uniform(-6, 4), rng.uniform(0.8, 1.3), rng.uniform(0.65, 1.1))
    # Features: lip colour, brow darkness, and moles or freckles on the face.
    shape = rgb.shape[:2]
    lips = _feather(_fill_polygon(landmarks[48:60], shape) - _fill_polygon(landmarks[60:68], shape), 0.01 * width)
    rgb = _hsv_shift(rgb, lips, rng.uniform(-6, 6), rng.uniform(0.8, 1.4), rng.uniform(0.7, 1.1))
    brows = np.zeros(shape, np.float32)
    for brow in (landmarks[17:22], landmarks[22:27]):
        cv2.polylines(brows, [np.rint(brow * 16).astype(np.int32)], False, 1.0, round(0.035 * width), shift=4)
    rgb = _hsv_shift(rgb, _feather(brows, 0.01 * width), 0, 1, rng.uniform(0.65, 1.15))
    rgb *= _spots(rng, face_mask(landmarks, shape, 0) > 0)[..., None]
    # Hair: the person above the mouth and outside the skin.
    above_mouth = np.clip((landmarks[51, 1] - np.arange(size, dtype=np.float32)) / (0.2 * width) + 0.5, 0, 1)
    hair = person * (1 - skin) * above_mouth[:, None]
    rgb = _hsv_shift(rgb, hair, rng.uniform(-22, 5), rng.uniform(0.5, 1.2), rng.uniform(0.3, 1.1))
    # Backdrop, then a linear lighting gradient across the frame.
    rgb = rgb * person[..., None] + _background(rng, size) * (1 - person[..., None])
    angle = rng.uniform(0, 2 * np.pi)
    xs = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    light = 1 + rng.uniform(0.15, 0.45) * (xs * np.cos(angle) + xs[:, None] * np.sin(angle)) + rng.uniform(-0.08, 0.08)
    image = np.clip(np.rint(rgb * light[..., None] * 255), 0, 255).astype(np.uint8)
    return Identity(image, landmarks, name)


def make_identities(count: int, seed: int, size: int = SIZE) -> list[Identity]:
    """`count` distinct people made from the base face, named '000', '001', …; identity i draws from (seed, i)."""
    base = base_face(size)
    silhouette = _base_silhouette(size)
    return [_identity(base, silhouette, np.random.default_rng([seed, i]), f'{i:03d}') for i in range(count)]


# --------------------------------------------------------------------------- #
# Animation
# --------------------------------------------------------------------------- #


def _smooth(rng: np.random.Generator, times: np.ndarray, amplitude: float, low: float, high: float) -> np.ndarray:
    """A smooth random signal in [-amplitude, amplitude]: three sinusoids of frequencies in [low, high] Hz."""
    frequency, phase, weight = rng.uniform(low, high, 3), rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.5, 1, 3)
    waves = np.sin(2 * np.pi * frequency * times[:, None] + phase) @ (weight / weight.sum())
    return amplitude * waves


def _blinks(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Eyelid closure per frame in [0, 0.85]: blinks of ~0.15 s, the first in 0.1-1 s, then every 1.5-4.5 s."""
    closure = np.zeros(frames)
    length = max(3, round(0.15 * fps))
    profile = 0.85 * np.sin(np.pi * np.arange(1, length + 1) / (length + 1))
    start = rng.uniform(0.1, 1.0) * fps
    while start < frames:
        index = int(start) + np.arange(length)
        closure[index[index < frames]] = profile[index < frames]
        start += rng.uniform(1.5, 4.5) * fps
    return closure


def _mouth(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """Mouth opening per frame in [0, 1]: syllables at 2.5-5 Hz under a 0.2-0.6 Hz phrase envelope."""
    syllables = 0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(2.5, 5) * times + rng.uniform(0, 2 * np.pi))
    phrases = np.clip(0.6 + 0.7 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * times + rng.uniform(0, 2 * np.pi)), 0, 1)
    return syllables * phrases


def animate(identity: Identity, frames: int, seed: int, fps: float = 25) -> tuple[np.ndarray, np.ndarray]:
    """A "real" video of `identity`: uint8 RGB [T, S, S, 3] and the landmarks of every frame, float32 [T, 68, 2].

    Blinks (lids closing to 15 % of their gap) and talking (lower lip and jaw dropping by up to 8-14 % of the face
    width) move the landmarks, which warp the identity image piecewise-affinely; then smooth head motion (translation
    up to 3 % of the frame, rotation up to 5°, scale up to 3 %, each a sum of 0.05-0.5 Hz sinusoids) moves the whole
    frame (reflected borders). The landmarks go through the same transforms, so they stay the ground truth.
    """
    rng = np.random.default_rng(seed)
    size = identity.image.shape[0]
    times = np.arange(frames) / fps
    base = identity.landmarks.astype(np.float64)
    closure = _blinks(rng, frames, fps)
    opening = _mouth(rng, times) * rng.uniform(0.08, 0.14) * face_width(base)
    shift_x, shift_y = (_smooth(rng, times, 0.03 * size, 0.05, 0.5) for _ in range(2))
    angle = _smooth(rng, times, 5.0, 0.05, 0.5)
    scale = 1 + _smooth(rng, times, 0.03, 0.05, 0.5)
    drop = np.zeros(len(base))
    drop[list(JAW_DROP)] = list(JAW_DROP.values())
    centre = tuple(base.mean(axis=0))
    video, tracks = np.empty((frames, size, size, 3), np.uint8), np.empty((frames, len(base), 2), np.float32)
    for t in range(frames):
        points = base.copy()
        points[:, 1] += drop * opening[t]
        for lids in LIDS:
            for upper, lower in lids:
                gap = base[lower, 1] - base[upper, 1]
                points[upper, 1] += closure[t] * UPPER_LID_SHARE * gap
                points[lower, 1] -= closure[t] * (1 - UPPER_LID_SHARE) * gap
        frame = piecewise_warp(identity.image, base, points)
        matrix = cv2.getRotationMatrix2D(centre, angle[t], scale[t])
        matrix[:, 2] += (shift_x[t], shift_y[t])
        video[t] = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        tracks[t] = apply_affine(points, matrix)
    return video, tracks


# --------------------------------------------------------------------------- #
# Swaps and alignment
# --------------------------------------------------------------------------- #


def colour_transfer(face: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """`face` (uint8 RGB) with its LAB mean and std under `weight` matched to the target's, float32 RGB in [0, 255]."""
    face_lab, target_lab = (cv2.cvtColor(x.astype(np.float32) / 255, cv2.COLOR_RGB2Lab) for x in (face, target))
    inside = weight > 0
    w = weight[inside][:, None] / weight[inside].sum()
    face_mean, target_mean = ((x[inside] * w).sum(axis=0) for x in (face_lab, target_lab))
    face_std, target_std = (np.sqrt(((x[inside] - mean) ** 2 * w).sum(axis=0))
                            for x, mean in ((face_lab, face_mean), (target_lab, target_mean)))  # fmt: skip
    matched = (face_lab - face_mean) * (target_std / (face_std + 1e-3)) + target_mean
    return np.clip(cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_Lab2RGB) * 255, 0, 255)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding window (x0, y0, x1, y1) of a mask's non-zero pixels (a 1-pixel window if there are none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return 0, 0, 1, 1
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def landmark_swap(
    source_frame: np.ndarray,
    source_landmarks: np.ndarray,
    target_frame: np.ndarray,
    target_landmarks: np.ndarray,
    feather: float = 6.0,
    colour_match: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """FaceSwap-style graphics swap of the source face onto the target: (fake uint8 [H, W, 3], mask float32 [H, W]).

    The source frame is warped piecewise-affinely so its landmarks land on the target's, its colours optionally
    matched to the target face (LAB mean and std weighted by the mask), and blended by `blend` with
    `face_mask(target_landmarks, feather)`, which is returned as the manipulation mask. Only the mask's bounding window
    is computed; outside it the fake is the target.
    """
    mask = face_mask(target_landmarks, target_frame.shape, feather)
    x0, y0, x1, y1 = mask_box(mask)
    window = (slice(y0, y1), slice(x0, x1))
    face = piecewise_warp(source_frame, source_landmarks, target_landmarks, box=(x0, y0, x1, y1))
    if colour_match:
        face = colour_transfer(face, target_frame[window], mask[window])
    fake = target_frame.copy()
    fake[window] = blend(target_frame[window], face, mask[window])
    return fake, mask


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The face warped by a similarity onto ALIGN_TEMPLATE at size × size: (crop uint8, matrix float64 [2, 3]).

    The similarity is the least-squares fit of the eye centres (mean of each eye's corners, stable under blinks), the
    nose tip (30) and the mouth corners (48, 54) to the template; `matrix` maps frame points to crop points.
    """
    points = np.asarray(landmarks, np.float64)
    source = np.stack([points[[36, 39]].mean(0), points[[42, 45]].mean(0), points[30], points[48], points[54]])
    matrix = _similarity(source, ALIGN_TEMPLATE * size)
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return crop, matrix


def paste_face(frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The aligned `crop` warped back into a copy of `frame` (inverse of `align_face`'s matrix); pixels the crop does
    not cover keep the frame's values."""
    pasted = frame.copy()
    cv2.warpAffine(crop, np.asarray(matrix, np.float64), frame.shape[1::-1], dst=pasted,
                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_TRANSPARENT)  # fmt: skip
    return pasted


# --------------------------------------------------------------------------- #
# Expression transfer: reenactment and mouth re-rendering
# --------------------------------------------------------------------------- #


def _transfer_expression(target_landmarks: np.ndarray, driver_landmarks: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The target's landmarks [T, 68, 2] with `points` following the driver's expression, float32; the rest unchanged.

    Each video's pose at frame t is the similarity fitted (on RIGID) from its mean shape to that frame. The driver's
    expression is its frame mapped back by the inverse of its pose, minus its mean shape, scaled by the ratio of the
    mean shapes' face widths (target / driver); it is added to the target's mean shape (the lower inner lip and lids
    kept from rising above the upper ones) and moved by the target's pose. Both videos must have the same length.
    """
    target, driver = np.asarray(target_landmarks, np.float64), np.asarray(driver_landmarks, np.float64)
    if target.ndim != 3 or target.shape[1:] != (68, 2) or driver.shape[1:] != target.shape[1:]:
        raise ValueError(f'landmarks must be [T, 68, 2], got target {target.shape} and driver {driver.shape}')
    if len(driver) != len(target):
        raise ValueError(f'the driver has {len(driver)} frames and the target {len(target)}: they must match')
    target_mean, driver_mean = target.mean(axis=0), driver.mean(axis=0)
    scale = face_width(target_mean) / face_width(driver_mean)
    upper, lower = np.array(CLOSING_PAIRS).T
    new = target.copy()
    for t in range(len(target)):
        back = cv2.invertAffineTransform(_similarity(driver_mean[RIGID], driver[t, RIGID]))
        shape = target_mean + scale * (apply_affine(driver[t], back) - driver_mean)
        shape[lower, 1] = np.maximum(shape[lower, 1], shape[upper, 1])
        new[t, points] = apply_affine(shape, _similarity(target_mean[RIGID], target[t, RIGID]))[points]
    return new.astype(np.float32)


def _rewarp(
    frames: np.ndarray,
    landmarks: np.ndarray,
    new_landmarks: np.ndarray,
    region: np.ndarray,
    feather: float,
    render_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames warped from their landmarks to the new ones and blended back: (fake uint8 [T, H, W, 3], masks float32).

    The mask is the feathered hull of the `region` landmarks, old and new (so a face that shrinks leaves no trace
    of its old outline); only its bounding window is warped (and, with `render_scale` < 1, resampled down by it,
    area-averaged, and back up, bilinearly) and blended by `blend`; outside the window the fake is the frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) != len(landmarks):
        raise ValueError(f'target frames {frames.shape} must be [T, H, W, 3] for {len(landmarks)} landmark frames')
    fake, masks = frames.copy(), np.empty(frames.shape[:3], np.float32)
    for t, (frame, old, new) in enumerate(zip(frames, landmarks, new_landmarks)):
        masks[t] = face_mask(np.concatenate([old[region], new[region]]), frame.shape, feather)
        x0, y0, x1, y1 = mask_box(masks[t])
        window = (slice(y0, y1), slice(x0, x1))
        face = piecewise_warp(frame, old, new, box=(x0, y0, x1, y1))
        if render_scale < 1:
            small = (max(1, round((x1 - x0) * render_scale)), max(1, round((y1 - y0) * render_scale)))
            face = cv2.resize(cv2.resize(face, small, interpolation=cv2.INTER_AREA), (x1 - x0, y1 - y0),
                              interpolation=cv2.INTER_LINEAR)  # fmt: skip
        fake[t][window] = blend(frame[window], face, masks[t][window])
    return fake, masks


def reenact(
    target_frames: np.ndarray, target_landmarks: np.ndarray, driver_landmarks: np.ndarray, feather: float = 6.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face2Face-style reenactment: the target keeps its identity and head pose, its brows, lids, mouth and lower jaw
    follow the driver's expression. (fake uint8 [T, H, W, 3], masks float32 [T, H, W], new landmarks float32
    [T, 68, 2]).

    The driver's landmarks must have the target's frame count (ValueError otherwise). The expression points
    (FACE_EXPRESSION) move as `_transfer_expression` says, the others keep the target's; each frame is warped
    piecewise-affinely onto the new landmarks and blended with the feathered hull of its old and new landmarks.
    """
    new = _transfer_expression(target_landmarks, driver_landmarks, FACE_EXPRESSION)
    fake, masks = _rewarp(target_frames, np.asarray(target_landmarks, np.float32), new, np.arange(68), feather)
    return fake, masks, new


def mouth_rerender(
    target_frames: np.ndarray,
    target_landmarks: np.ndarray,
    driver_landmarks: np.ndarray,
    feather: float = 4.0,
    render_scale: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """NeuralTextures-style mouth re-rendering: (fake uint8 [T, H, W, 3], masks float32 [T, H, W]).

    The target's mouth and lower jaw (MOUTH_EXPRESSION) follow the driver's mouth as in `reenact`; the mouth region is
    warped onto them and "re-rendered" (resampled down by `render_scale` and back up, the loss of detail of a neural
    renderer), then blended with the feathered hull of the mouth and the jaw below it (MOUTH_REGION, old and new
    landmarks), as FF++'s NeuralTextures masks cover the mouth. Equal frame counts are required, as in `reenact`.
    """
    if not 0 < render_scale <= 1:
        raise ValueError(f'render_scale must be in (0, 1], got {render_scale}')
    new = _transfer_expression(target_landmarks, driver_landmarks, MOUTH_EXPRESSION)
    landmarks = np.asarray(target_landmarks, np.float32)
    return _rewarp(target_frames, landmarks, new, MOUTH_REGION, feather, render_scale)
