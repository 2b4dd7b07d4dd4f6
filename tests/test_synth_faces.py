"""Synthetic identities, animated real videos, the landmark-warp face swap, blending masks and face alignment."""

import cv2
import numpy as np
import pytest

from fdx.input.faces import DlibDetector, largest_face
from fdx.synth import faces

FRAMES, SIZE = 48, 256


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def eye_aperture(landmarks: np.ndarray) -> float:
    """Mean distance between the upper and lower lid landmarks of both eyes."""
    return float(np.linalg.norm(landmarks[[37, 38, 43, 44]] - landmarks[[41, 40, 47, 46]], axis=1).mean())


def mouth_aperture(landmarks: np.ndarray) -> float:
    """Distance between the inner lips' middles."""
    return float(np.linalg.norm(landmarks[62] - landmarks[66]))


@pytest.fixture(scope='module')
def detector():
    return DlibDetector()


@pytest.fixture(scope='module')
def identities():
    return faces.make_identities(4, seed=0)


@pytest.fixture(scope='module')
def videos(identities):
    """Two videos (frames, landmarks) of identity 0 and one of identity 1."""
    return [faces.animate(identities[i], FRAMES, seed) for i, seed in ((0, 1), (0, 2), (1, 3))]


def detect(detector: DlibDetector, frame: np.ndarray) -> np.ndarray:
    face = largest_face(detector.detect(frame))
    assert face is not None, 'dlib finds no face'
    return face.landmarks


def landmark_error(detected: np.ndarray, landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(detected - landmarks, axis=1).mean())


# Base face and identities.


def test_base_face(detector):
    base = faces.base_face()
    assert base.image.shape == (SIZE, SIZE, 3) and base.image.dtype == np.uint8
    assert base.landmarks.shape == (68, 2) and base.landmarks.dtype == np.float32
    assert landmark_error(detect(detector, base.image), base.landmarks) < 0.01
    small = faces.base_face(128)
    assert small.image.shape == (128, 128, 3)
    np.testing.assert_allclose(small.landmarks, (base.landmarks + 0.5) / 2 - 0.5)


def test_identities_deterministic(identities):
    again = faces.make_identities(4, seed=0)
    for a, b in zip(identities, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
    other = faces.make_identities(2, seed=1)
    assert mad(other[0].image, identities[0].image) > 10
    assert np.abs(other[0].landmarks - identities[0].landmarks).max() > 1
    assert [i.name for i in identities] == ['000', '001', '002', '003']


def test_identities_distinct_and_detectable(identities, videos, detector):
    between = min(mad(a.image, b.image) for k, a in enumerate(identities) for b in identities[k + 1 :])
    frames, landmarks = videos[0]
    within = max(mad(frames[0], frame) for frame in frames)
    assert between > 1.3 * within
    # Aligned (head motion removed), identities differ far more than the frames of one video.
    aligned = [faces.align_face(i.image, i.landmarks, 128)[0] for i in identities]
    between = min(mad(a, b) for k, a in enumerate(aligned) for b in aligned[k + 1 :])
    video = [faces.align_face(f, lm, 128)[0] for f, lm in zip(frames, landmarks)]
    assert between > 1.5 * max(mad(video[0], crop) for crop in video)
    # The morphs move the landmarks, and dlib still finds each face where its landmarks say.
    base = faces.base_face()
    for identity in identities:
        assert np.linalg.norm(identity.landmarks - base.landmarks, axis=1).mean() > 2
        assert landmark_error(detect(detector, identity.image), identity.landmarks) < 2.5


# Animation.


def test_animate_deterministic(identities, videos):
    frames, landmarks = faces.animate(identities[0], FRAMES, 1)
    np.testing.assert_array_equal(frames, videos[0][0])
    np.testing.assert_array_equal(landmarks, videos[0][1])
    assert mad(videos[0][0], videos[1][0]) > 3
    assert np.abs(videos[0][1] - videos[1][1]).mean() > 1


def test_animate_shapes_and_motion(videos):
    frames, landmarks = videos[0]
    assert frames.shape == (FRAMES, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert landmarks.shape == (FRAMES, 68, 2) and landmarks.dtype == np.float32
    # Smooth head motion: the face moves over the video, little from one frame to the next.
    centres = landmarks.mean(axis=1)
    assert np.ptp(centres, axis=0).max() > 2
    assert np.linalg.norm(np.diff(centres, axis=0), axis=1).max() < 2


def test_animate_landmarks_track_the_image(videos, detector):
    for frames, landmarks in videos:
        for t in (0, FRAMES // 3, FRAMES - 1):
            assert landmark_error(detect(detector, frames[t]), landmarks[t]) < 3


def test_blinking(videos, detector):
    for frames, landmarks in videos:
        aperture = np.array([eye_aperture(lm) for lm in landmarks])
        closed, open_ = int(aperture.argmin()), int(aperture.argmax())
        assert aperture[closed] < 0.3 * aperture[open_]
        assert np.mean(aperture > 0.9 * aperture[open_]) > 0.7  # eyes are open most of the time
        # The image blinks too: dlib sees the eyes narrow.
        assert eye_aperture(detect(detector, frames[closed])) < 0.75 * eye_aperture(detect(detector, frames[open_]))


def test_talking(videos, detector):
    for frames, landmarks in videos:
        aperture = np.array([mouth_aperture(lm) for lm in landmarks])
        shut, wide = int(aperture.argmin()), int(aperture.argmax())
        assert aperture[wide] - aperture[shut] > 5
        assert mouth_aperture(detect(detector, frames[wide])) > mouth_aperture(detect(detector, frames[shut])) + 3
        # The chin drops with the lower lip: the face gets longer.
        height = np.linalg.norm(landmarks[:, 8] - landmarks[:, 27], axis=1)
        assert height[wide] - height[shut] > 0.5 * (aperture[wide] - aperture[shut])


# Warping and masks.


def test_piecewise_warp_identity(identities):
    identity = identities[0]
    same = faces.piecewise_warp(identity.image, identity.landmarks, identity.landmarks)
    assert same.shape == identity.image.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - identity.image).max() <= 1


def test_piecewise_warp_moves_points():
    size = 128
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    fixed = np.array([[30, 30], [100, 25], [95, 100], [25, 90], [64, 20]], np.float32)
    src, dst = np.array([60, 59], np.float32), np.array([71, 50], np.float32)
    image = np.exp(-((xs - src[0]) ** 2 + (ys - src[1]) ** 2) / (2 * 1.5**2)).astype(np.float32)
    warped = faces.piecewise_warp(image, np.vstack([fixed, src]), np.vstack([fixed, dst]))
    # The mark's peak (1 at `src`) is now at `dst`.
    assert np.unravel_index(warped.argmax(), warped.shape) == (50, 71)
    assert warped[50, 71] == pytest.approx(1, abs=1e-4)
    # The fixed points and the frame's border stay put; a window is the same pixels as the full result's crop.
    assert np.abs(warped - image)[:, :8].max() < 1e-6
    box = (40, 30, 90, 75)
    window = faces.piecewise_warp(image, np.vstack([fixed, src]), np.vstack([fixed, dst]), box=box)
    np.testing.assert_allclose(window, warped[30:75, 40:90], atol=1e-5)


def test_face_mask(identities):
    landmarks = identities[0].landmarks
    feather = 4.0
    mask = faces.face_mask(landmarks, (SIZE, SIZE), feather)
    hard = faces.face_mask(landmarks, (SIZE, SIZE), 0)
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() <= 1
    assert set(np.unique(hard)) == {0.0, 1.0}
    # Hull covered: every landmark is at least half inside; the hull's interior far from its edge is fully inside.
    rows, cols = np.rint(landmarks[:, 1]).astype(int), np.rint(landmarks[:, 0]).astype(int)
    assert mask[rows, cols].min() > 0.3
    centre = np.rint(landmarks[[30, 33, 51, 28]]).astype(int)
    assert mask[centre[:, 1], centre[:, 0]].min() > 0.99
    # Exactly 0 far from the hull, ~0 from 3σ out; a feathered edge in between (both sides of the middle row).
    distance = cv2.distanceTransform((hard == 0).astype(np.uint8), cv2.DIST_L2, 5)
    assert mask[distance > 6 * feather].max() == 0
    assert mask[distance > 3 * feather].max() < 0.01
    row = mask[round(float(landmarks[30, 1]))]
    assert np.sum((row > 0.05) & (row < 0.95)) >= 4 * feather
    # `forehead` lifts the brows: the mask reaches higher.
    lifted = faces.face_mask(landmarks, (SIZE, SIZE), 0, forehead=0.3)
    assert np.flatnonzero(lifted.any(axis=1))[0] < np.flatnonzero(hard.any(axis=1))[0] - 10


def test_blend_is_alpha_blending():
    rng = np.random.default_rng(0)
    target, face = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    mask = rng.uniform(0, 1, (32, 32)).astype(np.float32)
    mask[:8], mask[8:16] = 0, 1
    out = faces.blend(target, face, mask)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[:8], target[:8])
    np.testing.assert_array_equal(out[8:16], face[8:16])
    exact = mask[..., None].astype(np.float64) * face + (1 - mask[..., None].astype(np.float64)) * target
    assert np.abs(out - exact).max() <= 0.5 + 1e-3


# Swaps and alignment.


def test_landmark_swap(videos):
    (source, source_landmarks), _, (target, target_landmarks) = videos
    t = 5
    fake, mask = faces.landmark_swap(source[t], source_landmarks[t], target[t], target_landmarks[t])
    assert fake.shape == target[t].shape and fake.dtype == np.uint8
    np.testing.assert_array_equal(mask, faces.face_mask(target_landmarks[t], target[t].shape, 6.0))
    outside = mask == 0
    assert outside.mean() > 0.5
    np.testing.assert_array_equal(fake[outside], target[t][outside])
    assert mad(fake[mask > 0.9], target[t][mask > 0.9]) > 3
    plain, plain_mask = faces.landmark_swap(source[t], source_landmarks[t], target[t], target_landmarks[t],
                                            colour_match=False)  # fmt: skip
    np.testing.assert_array_equal(plain_mask, mask)
    assert mad(plain[mask > 0.9], fake[mask > 0.9]) > 1
    # Without colour transfer the face inside is the source's, moved onto the target's landmarks.
    warped = faces.piecewise_warp(source[t], source_landmarks[t], target_landmarks[t])
    assert np.abs(plain.astype(int) - faces.blend(target[t], warped, mask)).max() <= 1


def test_align_and_paste_round_trip(videos):
    frames, landmarks = videos[0]
    size = 128
    for t in (0, FRAMES // 2):
        crop, matrix = faces.align_face(frames[t], landmarks[t], size)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8 and matrix.shape == (2, 3)
        # The five alignment points land near the template.
        points = faces.apply_affine(landmarks[t], matrix)
        five = np.stack([points[[36, 39]].mean(0), points[[42, 45]].mean(0), points[30], points[48], points[54]])
        assert np.abs(five - faces.ALIGN_TEMPLATE * size).max() < 0.05 * size
        # The whole landmark hull lies inside the crop.
        assert points.min() > 0.1 * size and points.max() < 0.95 * size
        pasted = faces.paste_face(frames[t], crop, matrix)
        face = faces.face_mask(landmarks[t], frames[t].shape, 0) > 0
        assert mad(pasted[face], frames[t][face]) < 2
        # Pixels the crop does not cover keep the frame's values.
        ys, xs = np.mgrid[0:SIZE, 0:SIZE]
        inside = faces.apply_affine(np.stack([xs.ravel(), ys.ravel()], 1), matrix).reshape(SIZE, SIZE, 2)
        uncovered = ((inside < -1) | (inside > size)).any(axis=-1)
        assert uncovered.any()
        np.testing.assert_array_equal(pasted[uncovered], frames[t][uncovered])


# Expression transfer: reenactment and mouth re-rendering.


def inner_lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap (62 to 66) of each frame of landmarks [T, 68, 2]."""
    return np.linalg.norm(landmarks[:, 62] - landmarks[:, 66], axis=1)


@pytest.fixture(scope='module')
def reenacted(videos):
    """Identity 1's video (target) driven by identity 0's (driver): target, driver landmarks, reenact's outputs."""
    (_, driver_landmarks), _, (target, target_landmarks) = videos
    return target, target_landmarks, driver_landmarks, faces.reenact(target, target_landmarks, driver_landmarks)


def test_reenact_masks_and_outside(reenacted):
    target, target_landmarks, _, (fake, masks, new) = reenacted
    assert fake.shape == target.shape and fake.dtype == np.uint8
    assert masks.shape == target.shape[:3] and masks.dtype == np.float32 and new.shape == (FRAMES, 68, 2)
    assert masks.min() >= 0 and masks.max() <= 1
    outside = masks == 0
    assert 0.5 < outside.mean() < 0.9
    np.testing.assert_array_equal(fake[outside], target[outside])
    # The mask covers the face: every new landmark at least half inside, the nose and mouth fully.
    for t in (0, FRAMES // 2):
        rows, cols = np.rint(new[t, :, 1]).astype(int), np.rint(new[t, :, 0]).astype(int)
        assert masks[t][rows, cols].min() > 0.3
        assert masks[t][rows[[30, 33, 51, 57]], cols[[30, 33, 51, 57]]].min() > 0.99
    # The face changed, most around the mouth where the target's opening and the new one differ most.
    assert mad(fake[masks > 0.9], target[masks > 0.9]) > 1
    t = int(np.abs(inner_lip_gap(new) - inner_lip_gap(target_landmarks)).argmax())
    x0, y0 = np.floor(new[t, faces.MOUTH].min(axis=0)).astype(int)
    x1, y1 = np.ceil(new[t, faces.MOUTH].max(axis=0)).astype(int)
    assert mad(fake[t, y0:y1, x0:x1], target[t, y0:y1, x0:x1]) > 5


def test_reenact_follows_the_driver(reenacted, detector):
    _, target_landmarks, driver_landmarks, (fake, _, new) = reenacted
    # The rigid points (and every other non-expression point) stay the target's; the expression follows the driver.
    still = np.setdiff1d(np.arange(68), faces.FACE_EXPRESSION)
    assert set(faces.RIGID) <= set(still)
    np.testing.assert_array_equal(new[:, still], target_landmarks[:, still])
    gap, driver_gap = inner_lip_gap(new), inner_lip_gap(driver_landmarks)
    assert np.corrcoef(gap, driver_gap)[0, 1] > 0.9
    eyes = np.array([eye_aperture(lm) for lm in new])
    assert np.corrcoef(eyes, [eye_aperture(lm) for lm in driver_landmarks])[0, 1] > 0.9
    # dlib finds the reenacted face where the new landmarks say, and sees the mouth open with the driver's.
    wide, shut = int(driver_gap.argmax()), int(driver_gap.argmin())
    detected = {t: detect(detector, fake[t]) for t in (wide, shut)}
    for t, landmarks in detected.items():
        assert landmark_error(landmarks, new[t]) < 3
    assert mouth_aperture(detected[wide]) > mouth_aperture(detected[shut]) + 3


def test_mouth_rerender(reenacted, detector):
    target, target_landmarks, driver_landmarks, (_, face_masks, _) = reenacted
    fake, masks = faces.mouth_rerender(target, target_landmarks, driver_landmarks)
    assert fake.shape == target.shape and fake.dtype == np.uint8
    assert masks.shape == target.shape[:3] and masks.dtype == np.float32
    outside = masks == 0
    np.testing.assert_array_equal(fake[outside], target[outside])
    # The mask covers the mouth, not the eyes, and is much smaller than the reenactment's face mask.
    assert 0.02 < (masks > 0.5).mean() < 0.5 * (face_masks > 0.5).mean()
    for t in (0, FRAMES // 2):
        rows, cols = np.rint(target_landmarks[t, :, 1]).astype(int), np.rint(target_landmarks[t, :, 0]).astype(int)
        # The upper outer lip is the hull's edge (about 0.5); the lower lip and the lower inner lip lie well inside.
        assert masks[t][rows[faces.MOUTH], cols[faces.MOUTH]].min() > 0.3
        assert masks[t][rows[[*range(55, 60), 65, 66, 67]], cols[[*range(55, 60), 65, 66, 67]]].min() > 0.99
        eyes = np.concatenate(faces.EYES)
        assert masks[t][rows[eyes], cols[eyes]].max() == 0
    # The mouth opens with the driver's (dlib sees it) ...
    driver_gap = inner_lip_gap(driver_landmarks)
    wide, shut = int(driver_gap.argmax()), int(driver_gap.argmin())
    assert mouth_aperture(detect(detector, fake[wide])) > mouth_aperture(detect(detector, fake[shut])) + 3
    # ... and is re-rendered: blurrier than the plain warp (render_scale 1).
    sharp, sharp_masks = faces.mouth_rerender(target[:4], target_landmarks[:4], driver_landmarks[:4], render_scale=1)
    soft, soft_masks = faces.mouth_rerender(target[:4], target_landmarks[:4], driver_landmarks[:4])
    np.testing.assert_array_equal(soft_masks, sharp_masks)
    inside = sharp_masks > 0.99

    def detail(frames: np.ndarray) -> float:
        grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)
        return float(np.abs(np.stack([cv2.Laplacian(g, cv2.CV_32F) for g in grey]))[inside].mean())

    assert detail(soft) < 0.85 * detail(sharp)


def test_expression_transfer_deterministic_and_checked(videos):
    (_, driver_landmarks), _, (target, target_landmarks) = videos
    target, target_landmarks, driver_landmarks = target[:6], target_landmarks[:6], driver_landmarks[:6]
    for a, b in zip(faces.reenact(target, target_landmarks, driver_landmarks),
                    faces.reenact(target, target_landmarks, driver_landmarks)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    for a, b in zip(faces.mouth_rerender(target, target_landmarks, driver_landmarks),
                    faces.mouth_rerender(target, target_landmarks, driver_landmarks)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    for method in (faces.reenact, faces.mouth_rerender):
        with pytest.raises(ValueError, match='frames'):
            method(target, target_landmarks, driver_landmarks[:-1])
        with pytest.raises(ValueError, match='frames'):
            method(target[:-1], target_landmarks, driver_landmarks)
    with pytest.raises(ValueError, match='render_scale'):
        faces.mouth_rerender(target, target_landmarks, driver_landmarks, render_scale=0)
