"""Tests for fdx.input.views on in-memory records of a synthetic face with hand-placed dlib-68 landmarks."""

import itertools

import cv2
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage import draw

from fdx.input import pipeline, views
from fdx.input.records import decode_image, encode_image

CROP = 320
MARK = (255, 0, 0)  # pure red square near the top-left corner: makes every crop left/right asymmetric
DOT = (0, 0, 255)  # pure blue dot drawn on landmark 45 (outer corner of the image-right eye)
AU_NAMES = [f'AU{n}' for n in (1, 2, 4, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25)]


def _landmarks(size: int) -> np.ndarray:
    """A left/right symmetric dlib-68 layout on a size x size crop (mirror x -> size - 1 - x)."""
    s, c = size, (size - 1) / 2

    def arc(cx, cy, rx, ry, angles):
        return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)

    brow_y = s * (0.33 - 0.03 * np.sin(np.linspace(0, np.pi, 5)))
    parts = [
        arc(c, 0.45 * s, 0.36 * s, 0.42 * s, np.pi - np.pi * np.arange(17) / 16),  # jaw 0-16
        np.stack([c - s * np.linspace(0.28, 0.06, 5), brow_y], 1),  # brow 17-21
        np.stack([c + s * np.linspace(0.06, 0.28, 5), brow_y], 1),  # brow 22-26
        np.stack([np.full(4, c), s * np.linspace(0.42, 0.58, 4)], 1),  # nose bridge 27-30
        np.stack([c + s * np.linspace(-0.07, 0.07, 5), s * (0.62 + 0.01 * np.sin(np.linspace(0, np.pi, 5)))], 1),
        arc(c - 0.15 * s, 0.44 * s, 0.06 * s, 0.025 * s, np.pi + 2 * np.pi * np.arange(6) / 6),  # eye 36-41
        arc(c + 0.15 * s, 0.44 * s, 0.06 * s, 0.025 * s, np.pi + 2 * np.pi * np.arange(6) / 6),  # eye 42-47
        arc(c, 0.76 * s, 0.12 * s, 0.05 * s, np.pi + 2 * np.pi * np.arange(12) / 12),  # outer lips 48-59
        arc(c, 0.76 * s, 0.08 * s, 0.02 * s, np.pi + 2 * np.pi * np.arange(8) / 8),  # inner lips 60-67
    ]
    return np.concatenate(parts).astype(np.float32)


def _face(frame: int, size: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB crop, landmarks): gradient, skin-coloured hull, features, the red MARK, the blue DOT, and a grey
    square that moves with `frame` so consecutive frames differ."""
    landmarks = _landmarks(size)
    x = np.linspace(0, 1, size)
    image = np.stack(np.broadcast_arrays(60 + 80 * x[None], 40 + 60 * x[:, None], np.full((size, size), 90)), -1)
    image = image.astype(np.uint8)
    cv2.fillConvexPoly(image, cv2.convexHull(np.rint(landmarks).astype(np.int32)), (200, 160, 130))
    for part in (range(36, 42), range(42, 48), range(48, 60)):
        cv2.fillPoly(image, [np.rint(landmarks[list(part)]).astype(np.int32)], (70, 40, 40))
    image[12:40, 12:40] = MARK
    cx, cy = np.rint(landmarks[45]).astype(int)
    image[cy - 2 : cy + 3, cx - 2 : cx + 3] = DOT
    step = frame % 40
    image[250:270, 30 + 3 * step : 50 + 3 * step] = 255 - 3 * step
    return image, landmarks


def _record(video: int, frame: int, label: int, *, mask: bytes | None = None) -> dict:
    image, landmarks = _face(frame)
    if mask is None and label:
        mask = encode_image(cv2.ellipse(np.zeros((CROP, CROP), np.uint8), ((160, 180), (200, 240), 0), 255, -1))
    return {
        'image_c23': encode_image(image),
        'image_c40': encode_image(image, 'jpg', quality=30),
        'mask': mask or b'',
        'landmarks': landmarks,
        'box': np.array([0, 0, CROP, CROP], np.float32),
        'label': np.int64(label),
        'class_id': np.int64(2 * label),
        'video_id': f'v{video}'.encode(),
        'video_index': np.int64(video),
        'frame_index': np.int64(frame),
        'source_id': b'000',
    }


# video 0 (real): consecutive runs 0-4 and 10-12; video 1 (fake): every 5th of 20 frames; video 2 (fake): 4 frames;
# video 3 (real): 12 consecutive frames. Records are stored out of order on purpose.
VIDEOS = {0: (0, [0, 1, 2, 3, 4, 10, 11, 12]), 1: (1, list(range(0, 100, 5))), 2: (1, [0, 1, 2, 3]), 3: (0, range(12))}


@pytest.fixture(scope='module')
def records() -> list[dict]:
    rows = [(v, f, label) for v, (label, frames) in VIDEOS.items() for f in frames]
    order = np.random.default_rng(0).permutation(len(rows))
    return [_record(*rows[i]) for i in order]


@pytest.fixture(scope='module')
def index(records) -> views.SplitIndex:
    return views.SplitIndex.from_records(records)


def _decode(record: dict, quality: str = 'c23') -> np.ndarray:
    return decode_image(record[f'image_{quality}'])


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if size < image.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def _find(records, video: int, frame: int) -> dict:
    return next(r for r in records if r['video_index'] == video and r['frame_index'] == frame)


# --------------------------------------------------------------------------- #
# Normalisation and augmentation
# --------------------------------------------------------------------------- #


def test_normalise_values():
    white, black = np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)
    for name in ('xception', 'imagenet'):
        assert views.normalise(white, name).dtype == np.float32
    np.testing.assert_allclose(views.normalise(white, 'xception'), 1.0, atol=1e-6)
    np.testing.assert_allclose(views.normalise(black, 'xception'), -1.0, atol=1e-6)
    imagenet = views.normalise(white, 'imagenet')[0, 0]
    np.testing.assert_allclose(imagenet, [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_allclose(views.normalise(black, 'imagenet')[1, 1, 0], -0.485 / 0.229, rtol=1e-6)
    with pytest.raises(ValueError, match='unknown normalisation'):
        views.normalise(white, 'nope')


@pytest.mark.parametrize('shape', [(299, 299, 3), (2, 5, 7, 3), (4, 3)])
def test_normalise_lookup_table_is_bit_identical_to_the_arithmetic(shape):
    """uint8 images take cv2.LUT; it must give exactly (rgb / 255 - mean) / std in float32, at any leading shape."""
    rgb = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for name in views.NORMALISATION:
        mean, std = (np.asarray(v, np.float32) for v in views.normalisation_stats(name))
        expected = (rgb.astype(np.float32) * (1 / 255) - mean) / std
        got = views.normalise(rgb, name)
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(views.normalise(rgb.astype(np.float32), name), expected)  # the arithmetic path


def test_decode_image_gives_rgb():
    """decode_image reads RGB directly (cv2.IMREAD_COLOR_RGB): the same pixels as decoding BGR and swapping."""
    rgb = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    rgb[:8, :8] = MARK
    for ext in ('.png', '.jpg'):
        _, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        swapped = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(decode_image(data.tobytes()), swapped)
    assert (decode_image(cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())[:8, :8] == MARK).all()


def test_flip_permutation_matches_the_mirrored_layout():
    landmarks = _landmarks(224)
    mirrored = landmarks.copy()
    mirrored[:, 0] = 223 - mirrored[:, 0]
    np.testing.assert_allclose(mirrored[views.FLIP_68], landmarks, atol=1e-3)
    np.testing.assert_array_equal(views.FLIP_68[views.FLIP_68], np.arange(68))
    assert (views.FLIP_68 != np.arange(68)).sum() == 2 * len(views.FLIP_PAIRS)


def test_augment_sampling():
    assert views.Augment(flip=0.0).sample(np.random.default_rng(0)) == views.IDENTITY
    flips = [views.Augment().sample(np.random.default_rng(s)).flip for s in range(200)]
    assert 60 < sum(flips) < 140
    centre = views.Augment(flip=0.0, resize_then_center_crop=True).sample(np.random.default_rng(0))
    np.testing.assert_allclose(centre.box, [1 / 16, 1 / 16, 15 / 16, 15 / 16])
    for seed in range(50):
        params = views.Augment(crop_scale=(0.5, 0.8), jitter=0.2).sample(np.random.default_rng(seed))
        x0, y0, x1, y1 = params.box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert 0.5 - 1e-9 <= (x1 - x0) * (y1 - y0) <= 0.8 + 1e-9 and np.isclose(x1 - x0, y1 - y0)
        assert all(0.8 <= f <= 1.2 for f in (params.brightness, params.contrast, params.saturation))
    with pytest.raises(ValueError):
        views.Augment(crop_scale=(0.9, 0.5))


def test_warp_moves_image_and_landmarks_together():
    """A dot drawn at a landmark stays under that landmark through random crops and flips."""
    image, landmarks = _face(0)
    for seed in range(10):
        params = views.Augment(crop_scale=(0.5, 0.9)).sample(np.random.default_rng(seed))
        out = params.warp(image, 224)
        points = params.landmarks(landmarks, (CROP, CROP), 224)
        index = 36 if params.flip else 45  # a mirror relabels the dot's landmark from 45 to 36
        x, y = np.rint(points[index]).astype(int)
        np.testing.assert_array_equal(out[y, x], DOT)


# --------------------------------------------------------------------------- #
# Split index and sampling helpers
# --------------------------------------------------------------------------- #


def test_split_index_videos_save_load(tmp_path, records, index):
    assert len(index) == len(records) and index.label.dtype == np.int64
    videos = index.videos()
    assert list(videos) == [0, 1, 2, 3]
    for video, indices in videos.items():
        np.testing.assert_array_equal(index.frame_index[indices], sorted(VIDEOS[video][1]))
        assert (index.video_index[indices] == video).all()
    index.save(tmp_path / 'train.npz')
    loaded = views.SplitIndex.load(tmp_path / 'train.npz')
    for name in ('video_index', 'frame_index', 'label', 'class_id'):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(index, name))
    with pytest.raises(ValueError, match='equal length'):
        views.SplitIndex(np.zeros(3), np.zeros(3), np.zeros(2), np.zeros(3))


def test_balanced_real_only_subset_and_eval_order(index):
    labels = np.array([0] * 7 + [1] * 17)
    small = views.SplitIndex(np.arange(24), np.zeros(24), labels, labels)
    picks = views.balanced(small.label, seed=0)
    assert (labels[picks] == 0).sum() == (labels[picks] == 1).sum() == 17
    assert set(picks) == set(range(24)) and (np.bincount(picks)[labels == 1] == 1).all()
    assert set(np.bincount(picks)[labels == 0]) == {2, 3}  # 10 extra reals spread over 7
    np.testing.assert_array_equal(views.balanced(small.label, seed=0), picks)
    assert any(not np.array_equal(views.balanced(small.label, seed=s), picks) for s in range(1, 5))

    np.testing.assert_array_equal(views.real_only(small.label), np.arange(7))
    subset = views.Subset(list(range(100, 124)), picks)
    assert len(subset) == 34 and subset[3] == 100 + picks[3]
    with pytest.raises(ValueError):
        views.Subset(list(range(5)), [0, 5])

    order = views.video_eval_indices(index)
    assert sorted(order) == list(range(len(index)))
    keys = list(zip(index.video_index[order], index.frame_index[order]))
    assert keys == sorted(keys)


# --------------------------------------------------------------------------- #
# Frames and clips
# --------------------------------------------------------------------------- #


def test_frame_view(records):
    record = records[0]
    out = views.FrameView('c23', 299)(record, np.random.default_rng(0))
    assert out['image'].shape == (299, 299, 3) and out['image'].dtype == np.float32
    np.testing.assert_allclose(out['image'], views.normalise(_resize(_decode(record), 299), 'xception'), atol=1e-6)
    assert out['label'].dtype == np.int32 and out['class_id'].dtype == np.int32
    assert out['video_index'].dtype == np.int64 and out['frame_index'].dtype == np.int64
    assert (out['label'], out['class_id'], out['frame_index']) == (
        record['label'],
        record['class_id'],
        record['frame_index'],
    )
    flipped = views.FrameView('c23', 299, augment=views.Augment(flip=1.0))(record, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped['image'], out['image'][:, ::-1])
    assert (flipped['image'][20, -20] == views.normalise(np.uint8(MARK), 'xception')).all()


def test_clip_positions():
    np.testing.assert_array_equal(views.clip_positions(20, 10, 'periodic'), np.arange(0, 20, 2))
    periodic = views.clip_positions(25, 10, 'periodic')
    assert periodic[0] == 0 and set(np.diff(periodic)) <= {2, 3} and periodic[-1] < 25
    np.testing.assert_array_equal(views.clip_positions(4, 10, 'periodic'), [0, 1, 2, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(views.clip_positions(4, 6, 'consecutive'), [0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(views.clip_positions(20, 10, 'consecutive'), np.arange(5, 15))
    starts = set()
    for seed in range(100):
        run = views.clip_positions(20, 10, 'consecutive', np.random.default_rng(seed))
        assert (np.diff(run) == 1).all() and 0 <= run[0] and run[-1] < 20
        starts.add(run[0])
    assert starts == set(range(11))
    with pytest.raises(ValueError):
        views.clip_positions(20, 10, 'random')


def test_clip_source_and_view(records, index):
    source = views.ClipSource(records, index)
    assert len(source) == 4
    periodic = views.ClipView('c40', 224, frames=10)
    out = periodic(source[1], np.random.default_rng(0))
    assert out['image'].shape == (10, 224, 224, 3) and out['image'].dtype == np.float32
    np.testing.assert_array_equal(out['frame_index'], np.arange(0, 100, 10))
    assert out['label'] == 1 and out['class_id'] == 2 and out['video_index'] == 1
    expected = views.normalise(_resize(_decode(_find(records, 1, 30), 'c40'), 224), 'imagenet')
    np.testing.assert_allclose(out['image'][3], expected, atol=1e-6)

    short = periodic(source[2], np.random.default_rng(0))
    assert short['image'].shape == (10, 224, 224, 3)
    np.testing.assert_array_equal(short['frame_index'], [0, 1, 2, 3, 3, 3, 3, 3, 3, 3])
    np.testing.assert_array_equal(short['image'][9], short['image'][3])

    consecutive = views.ClipView('c23', 64, frames=5, mode='consecutive', random_start=True)
    starts = {int(consecutive(source[3], np.random.default_rng(s))['frame_index'][0]) for s in range(30)}
    assert starts == set(range(8))
    run = consecutive(source[3], np.random.default_rng(0))['frame_index']
    np.testing.assert_array_equal(np.diff(run), 1)


def test_clip_frames_share_one_augmentation(records, index):
    source = views.ClipSource(records, index)
    augment = views.Augment(crop_scale=(0.5, 1.0), jitter=0.2)
    view = views.ClipView('c23', 96, augment=augment, frames=4)
    video = source[3]['frames']
    flips = set()
    for seed in range(8):
        out = view(source[3], np.random.default_rng(seed))
        params = augment.sample(np.random.default_rng(seed))
        flips.add(params.flip)
        for t, position in enumerate(views.clip_positions(12, 4, 'periodic')):
            expected = views.normalise(params.apply(_decode(video[int(position)]), 96), 'imagenet')
            np.testing.assert_allclose(out['image'][t], expected, atol=1e-6)
    assert flips == {False, True}
    mirrored = views.ClipView('c23', 64, augment=views.Augment(flip=1.0), frames=4)(source[0], np.random.default_rng(0))
    red = views.normalise(np.uint8(MARK), 'imagenet')
    assert all(np.allclose(frame[4, -4], red) and not np.allclose(frame[4, 3], red) for frame in mirrored['image'])


def test_clip_code_options_flip_frames_independently_and_start_test_clips_at_random(records, index):
    """DMA-STA's official code: torchvision flips each frame on its own; its test clips start at a random frame."""
    source = views.ClipSource(records, index)
    view = views.ClipView('c23', 32, augment=views.Augment(flip=0.5), frames=6, flip_per_frame=True)
    plain = views.ClipView('c23', 32, frames=6)(source[0], np.random.default_rng(0))['image']

    def mirrored(clip):
        assert all(np.allclose(f, p) or np.allclose(f, p[:, ::-1]) for f, p in zip(clip, plain))
        return [not np.allclose(f, p) for f, p in zip(clip, plain)]

    patterns = {tuple(mirrored(view(source[0], np.random.default_rng(s))['image'])) for s in range(12)}
    assert any(len(set(p)) == 2 for p in patterns)  # some clips mix mirrored and unmirrored frames
    shared = views.ClipView('c23', 32, augment=views.Augment(flip=0.5), frames=6)
    assert all(len(set(mirrored(shared(source[0], np.random.default_rng(s))['image']))) == 1 for s in range(12))
    test = views.ClipView('c23', 32, augment=views.Augment(), frames=5, mode='consecutive', test_random_start=True)
    evaluation = test.for_eval()
    assert evaluation.random_start and evaluation.augment.flip == 0.0 and not test.random_start
    starts = {int(evaluation(source[3], np.random.default_rng(s))['frame_index'][0]) for s in range(30)}
    assert len(starts) > 1


def test_clip_view_in_train_pipeline(records, index):
    view = views.ClipView('c23', 32, augment=views.Augment(), frames=4, mode='consecutive', random_start=True)

    def batches():
        dataset = pipeline.train_dataset(
            views.ClipSource(records, index),
            global_batch_size=2,
            seed=3,
            process_index=0,
            process_count=1,
            transform=view,
            num_epochs=2,
        )
        loader = pipeline.make_loader(dataset, workers=0)
        out = list(loader)
        loader.close()
        return out

    first = batches()
    assert len(first) == 4
    assert first[0]['image'].shape == (2, 4, 32, 32, 3) and first[0]['frame_index'].shape == (2, 4)
    assert sorted(np.concatenate([b['video_index'] for b in first[:2]])) == [0, 1, 2, 3]
    for a, b in zip(first, batches()):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


# --------------------------------------------------------------------------- #
# Residuals
# --------------------------------------------------------------------------- #


def test_residual_source_keeps_only_consecutive_runs(records, index):
    source = views.ResidualSource(records, index, next_frames=3)
    starts = sorted((int(index.video_index[run[0]]), int(index.frame_index[run[0]])) for run in source.runs)
    # video 0: 0 and 1 (run 0-4; 10-12 is too short); video 1: none (every 5th frame); video 2: 0; video 3: 0-8
    assert starts == [(0, 0), (0, 1), (2, 0)] + [(3, f) for f in range(9)]
    for i in range(len(source)):
        frames = source[i]['frames']
        assert len(frames) == 4 and len({int(r['video_index']) for r in frames}) == 1
        np.testing.assert_array_equal(np.diff([r['frame_index'] for r in frames]), 1)
    with pytest.raises(ValueError, match=r'runs of at most 12 consecutive frames, the view needs 13 .*--sampling runs '
                       r'--run-length 13'):  # fmt: skip
        views.ResidualSource(records, index, next_frames=12)
    assert views.ResidualSource(records, index, next_frames=3).skipped_videos == [1]  # reported, not silently dropped
    with pytest.raises(ValueError, match='index'):
        views.ResidualSource(records[:-1], index)


def test_residual_view(records, index):
    source = views.ResidualSource(records, index)
    item = source[len(source) - 1]
    out = views.ResidualView('c23')(item, np.random.default_rng(0))
    assert out['image'].shape == (398, 398, 3) and out['image_small'].shape == (224, 224, 3)
    assert out['residuals'].shape == (3, 224, 224, 3) and out['residuals'].dtype == np.float32
    small = np.stack([_resize(_decode(r), 224) for r in item['frames']]).astype(np.float32) / 255
    np.testing.assert_allclose(out['residuals'], small[1:] - small[:-1], atol=1e-6)
    assert np.abs(out['residuals']).max() > 0.5  # the moving square
    np.testing.assert_allclose(out['image'], views.normalise(_resize(_decode(item['frames'][0]), 398), 'xception'))
    np.testing.assert_allclose(out['image_small'], small[0] * 2 - 1, atol=1e-5)
    assert out['frame_index'] == item['frames'][0]['frame_index'] and out['label'] == item['frames'][0]['label']
    flipped = views.ResidualView('c23', augment=views.Augment(flip=1.0))(item, np.random.default_rng(0))
    for key in ('image', 'image_small', 'residuals'):
        np.testing.assert_allclose(flipped[key], out[key][..., ::-1, :], atol=1e-6)


# --------------------------------------------------------------------------- #
# HQ/LQ pairs
# --------------------------------------------------------------------------- #


def test_pair_view_shapes_and_shared_flip(records):
    fake, real = _find(records, 1, 0), _find(records, 0, 0)
    view = views.PairView('c23', 'c40', mask_sizes=(19, 10))
    out = view(fake, np.random.default_rng(0))
    for key in ('image_hq', 'image_lq'):
        assert out[key].shape == (299, 299, 3) and out[key].dtype == np.float32
    assert out['mask'].shape == (299, 299) and out['mask_19'].shape == (19, 19) and out['mask_10'].shape == (10, 10)
    assert set(np.unique(out['mask'])) == {0.0, 1.0} and out['mask_19'].dtype == np.float32
    assert not np.allclose(out['image_hq'], out['image_lq'])  # JPEG q30 differs from PNG
    empty = view(real, np.random.default_rng(0))
    assert not empty['mask'].any() and not empty['mask_19'].any() and empty['label'] == 0

    mask = np.zeros((CROP, CROP), np.uint8)
    mask[:, :40] = 255  # left edge only: asymmetric
    record = {**fake, 'mask': encode_image(mask)}
    plain = view(record, np.random.default_rng(0))
    flipped = views.PairView('c23', 'c40', augment=views.Augment(flip=1.0))(record, np.random.default_rng(0))
    for key in ('image_hq', 'image_lq', 'mask'):
        np.testing.assert_array_equal(flipped[key], plain[key][:, ::-1])
    np.testing.assert_array_equal(flipped['mask_19'], plain['mask_19'][:, ::-1])
    assert plain['mask_19'][:, 0].all() and not plain['mask_19'][:, -1].any()


def test_pair_mask_binarised_at_threshold(records):
    """At 304 = 19 x 16 the warp is the identity, so every 19 x 19 cell is exactly 16 x 16 mask pixels."""
    image = encode_image(np.zeros((304, 304, 3), np.uint8))
    mask = np.full((304, 304), 25, np.uint8)  # 25 / 255 = 0.098: below 0.1
    mask[:16, 16:32] = 26  # 0.102: above
    mask[32:48, :161] = 255  # cells 0-9 full, cell 10 1/16 = 6.25 % covered
    mask[48:64, :162] = 255  # cell 10 2/16 = 12.5 % covered
    record = {**records[0], 'image_c23': image, 'image_c40': image, 'mask': encode_image(mask), 'label': np.int64(1)}
    out = views.PairView('c23', 'c40', size=304)(record, np.random.default_rng(0))
    np.testing.assert_array_equal(out['mask'], (mask > 25.5).astype(np.float32))
    expected = np.zeros((19, 19), np.float32)
    expected[0, 1] = 1
    expected[2, :10] = 1
    expected[3, :11] = 1
    np.testing.assert_array_equal(out['mask_19'], expected)


# --------------------------------------------------------------------------- #
# Action units
# --------------------------------------------------------------------------- #


def _region(groups, landmarks: np.ndarray, size: int, pad: float) -> np.ndarray:
    """Union of the convex hulls of each group's points grown by `pad` pixels (octagon rings)."""
    ring = pad * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
    region = np.zeros((size, size), np.uint8)
    for group in groups:
        points = (landmarks[list(group), None] + ring).reshape(-1, 2)
        cv2.fillConvexPoly(region, cv2.convexHull(np.rint(points).astype(np.int32)), 1)
    return region.astype(bool)


def test_au_regions_table():
    assert list(views.AU_REGIONS) == AU_NAMES
    for name, groups in views.AU_REGIONS.items():
        assert all(0 <= i < 68 for group in groups for i in group), name
        mirrored = {frozenset(views.FLIP_68[list(group)]) for group in groups}
        assert mirrored == {frozenset(group) for group in groups}, name


def test_au_maps_peak_in_their_regions():
    size = 224
    landmarks = _landmarks(size)
    maps = views.au_maps(landmarks, size)
    assert maps.shape == (size, size, 15) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(0, 1)), 1.0)
    margin = views.AU_MARGIN * np.ptp(landmarks, axis=0).max()
    for k, groups in enumerate(views.AU_REGIONS.values()):
        inside = _region(groups, landmarks, size, margin + 1)
        assert inside[maps[..., k] > 0.99].all(), AU_NAMES[k]
        far = ndimage.distance_transform_edt(~inside) > margin + 4 * 3 + 1  # ellipse overshoot + blur radius
        assert maps[..., k][far].max() < 1e-3, AU_NAMES[k]
    assert not views.au_maps(landmarks + 2 * size, size).any()  # regions out of view: zeros, not NaN
    eyes, mouth = maps[..., AU_NAMES.index('AU7')], maps[..., AU_NAMES.index('AU25')]
    x, y = np.rint(landmarks[[37, 62]]).astype(int).T
    assert eyes[y[0], x[0]] > 0.9 and eyes[y[1], x[1]] < 1e-3 and mouth[y[1], x[1]] > 0.9


def test_au_maps_smoothing_sigma():
    size = 224
    landmarks = _landmarks(size)
    hard = views.au_maps(landmarks, size, sigma=0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    smooth = views.au_maps(landmarks, size, sigma=3.0)
    for sigma, close in ((3.0, True), (1.5, False)):
        reference = ndimage.gaussian_filter(hard, (sigma, sigma, 0), mode='mirror', truncate=4.0)
        reference /= reference.max(axis=(0, 1))
        assert np.allclose(smooth, reference, atol=1e-4) == close


def test_face_mask_is_the_convex_hull():
    size = 224
    landmarks = _landmarks(size)
    mask = views.face_mask(landmarks, size)
    assert mask.shape == (size, size) and mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    hull = landmarks[ConvexHull(landmarks).vertices]
    reference = np.zeros((size, size), bool)
    reference[draw.polygon(hull[:, 1], hull[:, 0], (size, size))] = True
    differ = mask.astype(bool) != reference
    boundary = ndimage.binary_dilation(reference) & ~ndimage.binary_erosion(reference)
    assert differ.sum() < 0.02 * reference.sum() and (boundary | ~differ).all()  # rasterisation of the edge only


def test_au_view_and_shared_flip(records):
    record = records[0]
    view = views.AUView('c23')
    out = view(record, np.random.default_rng(0))
    shapes = {'image': (224, 224, 3), 'au_maps': (224, 224, 15), 'face_mask': (224, 224), 'landmarks': (68, 2)}
    assert {k: out[k].shape for k in shapes} == shapes
    assert all(out[k].dtype == np.float32 for k in shapes)
    np.testing.assert_allclose(out['landmarks'], (record['landmarks'] + 0.5) * 224 / CROP - 0.5, atol=1e-4)
    np.testing.assert_allclose(out['au_maps'], views.au_maps(out['landmarks'], 224), atol=1e-6)

    flipped = views.AUView('c23', augment=views.Augment(flip=1.0))(record, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped['image'], out['image'][:, ::-1])
    mirrored = out['landmarks'].copy()
    mirrored[:, 0] = 223 - mirrored[:, 0]
    np.testing.assert_allclose(flipped['landmarks'], mirrored[views.FLIP_68], atol=1e-4)
    x, y = np.rint(flipped['landmarks'][36]).astype(int)  # the dot drawn at 45, now on the image-left eye
    assert x < 112 and np.allclose(flipped['image'][y, x], views.normalise(np.uint8(DOT), 'xception'))
    assert np.abs(flipped['au_maps'] - out['au_maps'][:, ::-1]).max() < 0.1
    assert np.abs(flipped['au_maps'] - out['au_maps'][:, ::-1]).mean() < 1e-3
    assert (flipped['face_mask'] != out['face_mask'][:, ::-1]).sum() < 0.01 * out['face_mask'].sum()


# --------------------------------------------------------------------------- #
# Determinism
# --------------------------------------------------------------------------- #


def test_views_are_deterministic_in_rng(records, index):
    augment = views.Augment(crop_scale=(0.6, 1.0), jitter=0.1)
    cases = [
        (views.FrameView('c23', 64, augment=augment), records[0]),
        (views.ClipView('c23', 32, augment=augment, frames=3, random_start=True, mode='consecutive'),
         views.ClipSource(records, index)[3]),
        (views.ResidualView('c23', 64, 32, augment=augment), views.ResidualSource(records, index)[0]),
        (views.PairView('c23', 'c40', 64, augment=augment), _find(records, 1, 0)),
        (views.AUView('c23', 64, augment=augment), records[0]),
    ]  # fmt: skip
    for view, item in cases:
        first, again = (view(item, np.random.default_rng(7)) for _ in range(2))
        assert first.keys() == again.keys()
        for key in first:
            np.testing.assert_array_equal(first[key], again[key], err_msg=f'{type(view).__name__} {key}')
        other = view(item, np.random.default_rng(8))
        key = 'image' if 'image' in first else 'image_hq'
        assert not np.array_equal(first[key], other[key]), type(view).__name__


@pytest.mark.parametrize('flip', [False, True])
def test_view_shapes_fixed_across_items(records, index, flip):
    """Every item of a source gives the same shapes and dtypes (the pipeline stacks them)."""
    augment = views.Augment(flip=float(flip), crop_scale=(0.5, 1.0))
    frame = views.FrameView('c40', 48, augment=augment)
    pair = views.PairView('c23', 'c40', 48, augment=augment)
    au = views.AUView('c23', 48, augment=augment)
    clip = views.ClipView('c23', 24, augment=augment, frames=6)
    signatures = set()
    for view, items in ((frame, records), (pair, records), (au, records), (clip, views.ClipSource(records, index))):
        shapes = {
            tuple((k, v.shape, v.dtype.str) for k, v in sorted(view(item, np.random.default_rng(i)).items()))
            for i, item in zip(itertools.count(), itertools.islice(items, 0, None, 3))
        }
        assert len(shapes) == 1, type(view).__name__
        signatures |= shapes
    assert len(signatures) == 4
