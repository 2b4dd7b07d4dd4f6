"""AUNet's image-level tampering (Bai et al., CVPR 2023, Sec. 3.3, eq. 8-9): self-blended fakes through a partial
face mask, after SBI (Shiohara & Yamasaki, CVPR 2022; its code's choices as in the reference notes).

For each real record the `self_blended` view gives the real frame and its fake side by side (`examples_per_item` 2):

1. one `Augment` draw (flips) warps the crop to `size` and its landmarks; Y_Att = `au_maps` on the token grid;
2. M_p (`partial_face_mask`): the landmarks' convex hull M_f minus `removed_aus` randomly chosen AU regions (their
   hard ellipses, `au_maps(σ = 0)` > 0.5); `mask='face'` keeps M_f (Table 4, w/o M_p);
3. source and target are copies of the frame; with p `source_prob` the source, else the target, gets
   `sbi_augment`: RGB shift ±20, HSV shift ±0.3 (OpenCV uint8 units, as SBI passes it to albumentations: below one
   level, it seldom changes a pixel), brightness/contrast ±0.1, then a ×2 or ×4 downscale or a sharpen (α 0.2-0.5,
   lightness 0.5-1);
4. the source and M_p get one small `random_affine` (translate ±3 % x, ±1.5 % y, scale 0.95-1/0.95); M_p alone an
   `elastic_deform` (α 50, σ 7, SBI's);
5. `blend_mask` (SBI's): an aspect jitter (each side resized to 0.75-1 of the size and back), a Gaussian blur (odd
   kernel 5-25), the values below the maximum set to 0 (an erosion), a second blur (odd kernel 5-25, σ 5-45), peak 1;
6. I_f = r·m ⊙ I_s + (1 − r·m) ⊙ I_t (eq. 9) with r from `blend_ratios` (0.25, 0.5, 0.75, 1, 1, 1); where m = 0
   (background, removed AU regions) the fake is the target;
7. the same post-processing on both examples (SBI's joint transforms): RGB shift, HSV shift and brightness/contrast
   ±0.3, each with p 0.3, then JPEG at quality 40-100 with p `jpeg_prob` 0.5.

The real example is the target. Outputs per example: `image` [S, S, 3], `au_maps` [g, g, 15] (g = S // 16, the
backbone's token grid), `tamper_mask` [S, S] (m before the blend ratio; zeros for the real), `token_labels` [g, g]
(`token_labels`: m area-resized to g x g, > 0.5, eq. 18) and the record's meta with `label` and `class_id` 0 / 1.
`tampering=False` (Table 4, w/o IT) gives the fake the real's image; only its label and masks differ (feature mixing
then makes its features fake). `frames_per_video` (8, Sec. 4.1: "eight frames per video for training") evenly
spaced prepared frames of each video form the items. Training only: evaluate with the `frame` view.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from fdx.input.pipeline import Record
from fdx.input.records import decode_image, image_key
from fdx.input.registry import View, register_view
from fdx.input.views import (
    AU_REGIONS,
    META_SPEC,
    Augment,
    Subset,
    au_maps,
    augment_params,
    clip_positions,
    face_mask,
    normalisation_stats,
    normalise,
    record_meta,
)

MASKS = ('partial', 'face')


def partial_face_mask(landmarks: np.ndarray, size: int, removed: np.ndarray, regions=AU_REGIONS) -> np.ndarray:
    """M_p before blurring (Sec. 3.3): the convex hull minus the hard ellipses of the AUs at `removed` (indices)."""
    mask = face_mask(landmarks, size)
    if len(removed):
        hard = au_maps(landmarks, size, sigma=0.0, regions=regions)[..., removed]
        mask[(hard > 0.5).any(-1)] = 0.0
    return mask


def _odd(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.choice(np.arange(low, high + 1, 2)))


def colour_shift(image: np.ndarray, rng: np.random.Generator, rgb: float, hsv: float, bc: float) -> np.ndarray:
    """RGB shift ±`rgb`, HSV shift ±`hsv` (OpenCV uint8 units), brightness and contrast ±`bc` (albumentations'
    RandomBrightnessContrast: α = 1 + c, β = b · 255), on uint8 RGB."""
    x = image.astype(np.float32) + rng.uniform(-rgb, rgb, 3).astype(np.float32)
    hsv_image = cv2.cvtColor(np.clip(np.rint(x), 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv_image += rng.uniform(-hsv, hsv, 3).astype(np.float32)
    hsv_image[..., 0] %= 180
    x = cv2.cvtColor(np.clip(np.rint(hsv_image), 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    x = x * (1 + rng.uniform(-bc, bc)) + rng.uniform(-bc, bc) * 255
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def frequency_change(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of SBI's two: a ×2 or ×4 downscale and back, or a sharpen (α 0.2-0.5, lightness 0.5-1)."""
    size = image.shape[1], image.shape[0]
    if rng.random() < 0.5:
        factor = int(rng.choice([2, 4]))
        small = cv2.resize(image, (size[0] // factor, size[1] // factor), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    alpha, lightness = rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0)
    effect = -np.ones((3, 3), np.float32)
    effect[1, 1] = 8 + lightness
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1
    return cv2.filter2D(image, -1, (1 - alpha) * identity + alpha * effect)


def sbi_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Φ of eq. 8 (SBI's source transforms): colour, then a frequency change."""
    return frequency_change(colour_shift(image, rng, 20.0, 0.3, 0.1), rng)


def random_affine(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, translate=(0.03, 0.015), scale=(0.95, 1 / 0.95)
):
    """The same small affine on the source and the mask (SBI): a scale about the centre and a translation."""
    size = image.shape[0]
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), 0.0, float(rng.uniform(*scale)))
    matrix[:, 2] += rng.uniform(-1, 1, 2) * np.array(translate) * size
    warp = lambda a: cv2.warpAffine(a, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return warp(image), cv2.warpAffine(mask, matrix, (size, size), flags=cv2.INTER_LINEAR)


def elastic_deform(mask: np.ndarray, rng: np.random.Generator, alpha: float = 50.0, sigma: float = 7.0) -> np.ndarray:
    """A smooth random displacement field (uniform ±1 per pixel, Gaussian σ, times α pixels) applied to the mask."""
    size = mask.shape[0]
    fields = [
        cv2.GaussianBlur(rng.uniform(-1, 1, (size, size)).astype(np.float32), (0, 0), sigma) * alpha for _ in '01'
    ]
    grid_x, grid_y = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    return cv2.remap(mask, grid_x + fields[0], grid_y + fields[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def blend_mask(mask: np.ndarray, rng: np.random.Generator, kernels=(5, 25)) -> np.ndarray:
    """SBI's soft blending mask (step 5 of the module docstring), float32 [S, S] with peak 1 (zeros stay zeros)."""
    size = mask.shape[0]
    if mask.max() <= 0:
        return np.zeros_like(mask)
    height, width = (int(rng.integers(int(0.75 * size), size + 1)) for _ in '01')
    x = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    k1 = _odd(rng, *kernels)
    x = cv2.GaussianBlur(x, (k1, k1), 0)
    x = np.where(x >= x.max() * (1 - 1e-6), 1.0, 0.0).astype(np.float32)  # SBI: values below 1 (the peak) → 0
    k2 = _odd(rng, *kernels)
    x = cv2.GaussianBlur(x, (k2, k2), float(rng.integers(5, 46)))
    x = cv2.resize(x / max(float(x.max()), 1e-12), (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(x, 0.0, 1.0)


def self_blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray, ratio: float) -> np.ndarray:
    """Eq. 9: r·m ⊙ I_s + (1 − r·m) ⊙ I_t on uint8 RGB; exactly I_t where m = 0."""
    weight = (ratio * mask)[..., None]
    blended = np.rint(weight * source.astype(np.float32) + (1 - weight) * target.astype(np.float32))
    return np.where(weight > 0, blended, target).astype(np.uint8)


def token_labels(mask: np.ndarray, grid: int, threshold: float = 0.5) -> np.ndarray:
    """Eq. 18: the mask area-resized to grid x grid, 1 where above `threshold`."""
    coarse = cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return (coarse > threshold).astype(np.float32)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    _, data = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR_RGB)


@register_view('self_blended')
@dataclass(frozen=True)
class SelfBlendedView(View):
    """A real record → [real example, its self-blended fake] (see the module docstring for every step)."""

    quality: str = 'c23'
    size: int = 224
    normalisation: str = 'xception'
    augment: Augment | None = None
    sigma: float = 3.0  # Y_Att smoothing at `size` (Sec. 4.1: σ = 3 at 224)
    frames_per_video: int = 8  # 0: every prepared frame
    mask: str = 'partial'  # | 'face' (M_f)
    removed_aus: tuple[int, int] = (1, 3)  # how many AU regions M_p drops, drawn uniformly (ours)
    tampering: bool = True
    source_prob: float = 0.5  # augment the source (else the target)
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
    post_colour_prob: float = 0.3  # each joint colour transform
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 100)
    token_threshold: float = 0.5  # t of eq. 18
    au_regions: Mapping[str, tuple[tuple[int, ...], ...]] = field(default_factory=lambda: AU_REGIONS)
    examples_per_item = 2

    def __post_init__(self):
        normalisation_stats(self.normalisation)
        if self.mask not in MASKS:
            raise ValueError(f'config.data.self_blended.mask: unknown {self.mask!r}; choose from {", ".join(MASKS)}')
        low, high = self.removed_aus
        if not 0 <= low <= high <= len(self.au_regions):
            raise ValueError(f'config.data.self_blended.removed_aus: need 0 <= low <= high <= {len(self.au_regions)}')

    def source(self, records, index):
        """`frames_per_video` evenly spaced prepared frames of every video (all of them when 0)."""
        if not self.frames_per_video:
            return records
        picks = [
            indices[np.unique(clip_positions(len(indices), self.frames_per_video, 'periodic'))]
            for indices in index.videos().values()
        ]
        picks = np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
        return Subset(records, picks, index.label)

    def grid(self) -> int:
        return self.size // 16

    def spec(self) -> dict[str, tuple[tuple[int, ...], str]]:
        g, s = self.grid(), self.size
        return {
            'image': ((s, s, 3), 'float32'),
            'au_maps': ((g, g, len(self.au_regions)), 'float32'),
            'tamper_mask': ((s, s), 'float32'),
            'token_labels': ((g, g), 'float32'),
            **META_SPEC,
        }

    def _post_process(self, images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """SBI's joint transforms: one draw applied to every image."""
        seed = rng.integers(2**63)
        out = []
        for image in images:
            draw = np.random.default_rng(seed)
            if draw.random() < self.post_colour_prob:
                image = colour_shift(image, draw, 20.0, 0.0, 0.0)
            if draw.random() < self.post_colour_prob:
                image = colour_shift(image, draw, 0.0, 0.3, 0.0)
            if draw.random() < self.post_colour_prob:
                image = colour_shift(image, draw, 0.0, 0.0, 0.3)
            if draw.random() < self.jpeg_prob:
                image = _jpeg(image, int(draw.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
            out.append(image)
        return out

    def __call__(self, record: Record, rng: np.random.Generator) -> list[Record]:
        if int(record['label']) != 0:
            raise ValueError(
                f'the self_blended view blends its own fakes from real frames but got a fake record (video '
                f'{record.get("video_index")}): set config.data.sampling = "real_only"'
            )
        params = augment_params(self.augment, rng)
        crop = decode_image(record[image_key(self.quality)])
        landmarks = params.landmarks(record['landmarks'], (crop.shape[1], crop.shape[0]), self.size)
        image = params.apply(crop, self.size)
        grid = self.grid()
        maps = cv2.resize(
            au_maps(landmarks, self.size, sigma=self.sigma, regions=self.au_regions),
            (grid, grid),
            interpolation=cv2.INTER_AREA,
        ).reshape(grid, grid, -1)
        removed = np.zeros(0, np.int64)
        if self.mask == 'partial':
            count = int(rng.integers(self.removed_aus[0], self.removed_aus[1] + 1))
            removed = np.sort(rng.choice(len(self.au_regions), count, replace=False))
        mask = partial_face_mask(landmarks, self.size, removed, self.au_regions)
        source, target = image, image
        if self.tampering:
            if rng.random() < self.source_prob:
                source = sbi_augment(image, rng)
            else:
                target = sbi_augment(image, rng)
            source, mask = random_affine(source, mask, rng)
        mask = blend_mask(elastic_deform(mask, rng), rng)
        ratio = float(rng.choice(self.blend_ratios))
        fake = self_blend(source, target, mask, ratio) if self.tampering else target
        real, fake = self._post_process([target, fake], rng)
        meta = record_meta(record)
        zeros = np.zeros((self.size, self.size), np.float32)
        examples = []
        for label, picture, tampered in ((0, real, zeros), (1, fake, mask.astype(np.float32))):
            examples.append(
                {
                    'image': normalise(picture, self.normalisation),
                    'au_maps': maps,
                    'tamper_mask': tampered,
                    'token_labels': token_labels(tampered, grid, self.token_threshold),
                    **meta,
                    'label': np.int32(label),
                    'class_id': np.int32(label),
                }
            )
        return examples
