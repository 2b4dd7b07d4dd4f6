"""The `self_blended` view (AUNet's image-level tampering after SBI) on a synthetic face with dlib-68 landmarks."""

import numpy as np
import pytest
from test_views import _record

from fdx.input import self_blended as sb
from fdx.input import views
from fdx.input.views import Augment, denormalise

SIZE = 224


def view(**fields) -> sb.SelfBlendedView:
    return sb.SelfBlendedView(**{'size': SIZE, **fields})


@pytest.fixture(scope='module')
def real():
    return _record(0, 0, 0)


def test_spec_shapes_labels_and_pairs(real):
    v = view(augment=Augment())
    out = v(real, np.random.default_rng(0))
    assert isinstance(out, list) and len(out) == v.examples_per_item == 2
    for example in out:
        assert {k: (np.shape(a), np.asarray(a).dtype.name) for k, a in example.items()} == {
            k: (shape, dtype) for k, (shape, dtype) in v.spec().items()
        }
    assert [int(e['label']) for e in out] == [0, 1] and [int(e['class_id']) for e in out] == [0, 1]
    assert not out[0]['tamper_mask'].any() and not out[0]['token_labels'].any()
    assert out[1]['tamper_mask'].max() == pytest.approx(1.0) and out[1]['token_labels'].any()


def test_deterministic_for_its_rng(real):
    v = view(augment=Augment())
    first, again = v(real, np.random.default_rng(3)), v(real, np.random.default_rng(3))
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other = v(real, np.random.default_rng(4))
    assert not np.array_equal(first[1]['image'], other[1]['image'])


def test_flip_mirrors_the_maps_consistently(real):
    """With everything random off but the flip, the flipped AU maps are the mirror of the unflipped ones (left and
    right AU groups swap with the landmarks) and the mirrored real image is the unflipped one."""
    plain = dict(tampering=False, jpeg_prob=0.0, post_colour_prob=0.0)
    flipped = view(augment=Augment(flip=1.0), **plain)(real, np.random.default_rng(0))
    unflipped = view(augment=Augment(flip=0.0), **plain)(real, np.random.default_rng(0))
    np.testing.assert_allclose(flipped[0]['au_maps'], unflipped[0]['au_maps'][:, ::-1], atol=0.02)
    np.testing.assert_array_equal(flipped[0]['image'], unflipped[0]['image'][:, ::-1])


def test_blending_keeps_background_and_removed_regions(real):
    v = view(jpeg_prob=0.0, removed_aus=(2, 2))
    for seed in range(4):
        real_example, fake_example = v(real, np.random.default_rng(seed))
        outside = fake_example['tamper_mask'] == 0
        rgb_real = denormalise(real_example['image'], 'xception')
        rgb_fake = denormalise(fake_example['image'], 'xception')
        np.testing.assert_array_equal(rgb_fake[outside], rgb_real[outside])  # background and removed AUs: I_t
        assert outside.any() and (rgb_fake[~outside] != rgb_real[~outside]).any()


def test_partial_mask_removes_the_drawn_aus():
    landmarks = views.AugmentParams().landmarks(_record(0, 0, 0)['landmarks'], (320, 320), SIZE)
    full = sb.partial_face_mask(landmarks, SIZE, np.zeros(0, np.int64))
    np.testing.assert_array_equal(full, views.face_mask(landmarks, SIZE))
    removed = np.array([4, 12])  # AU7 (eyes), AU23 (lips)
    partial = sb.partial_face_mask(landmarks, SIZE, removed)
    hard = views.au_maps(landmarks, SIZE, sigma=0.0)[..., removed] > 0.5
    assert not partial[hard.any(-1)].any()  # the removed AU regions are outside M_p
    assert partial.sum() < full.sum() and (partial <= full).all()


def test_face_mask_option_and_no_tampering(real):
    face = view(mask='face', tampering=False, jpeg_prob=0.0, post_colour_prob=0.0)
    real_example, fake_example = face(real, np.random.default_rng(0))
    np.testing.assert_array_equal(real_example['image'], fake_example['image'])  # w/o IT: the same image
    assert fake_example['tamper_mask'].max() == pytest.approx(1.0) and int(fake_example['label']) == 1
    with pytest.raises(ValueError, match='mask'):
        view(mask='hull')


def test_token_labels_from_a_known_mask():
    mask = np.zeros((64, 64), np.float32)
    mask[0:16, 0:32] = 1.0  # exactly the top-left 1 x 2 cells of a 4 x 4 grid
    mask[32:40, 32:64] = 1.0  # half of each cell of row 2, columns 2-3: not above t = 0.5
    expected = np.zeros((4, 4), np.float32)
    expected[0, 0:2] = 1.0
    np.testing.assert_array_equal(sb.token_labels(mask, 4), expected)
    np.testing.assert_array_equal(
        sb.token_labels(mask, 4, threshold=0.4), expected + (np.arange(4) >= 2) * [[0], [0], [1], [0]]
    )


def test_fake_records_are_refused():
    with pytest.raises(ValueError, match='real_only'):
        view()(_record(1, 0, 1), np.random.default_rng(0))


def test_frames_per_video_source():
    records = [_record(v, f, 0) for v in range(2) for f in range(10)]
    index = views.SplitIndex.from_records(records)
    source = view(frames_per_video=4).source(records, index)
    frames = sorted((int(source[i]['video_index']), int(source[i]['frame_index'])) for i in range(len(source)))
    assert frames == [(v, f) for v in range(2) for f in (0, 2, 5, 7)] and len(source.labels) == 8
    assert view(frames_per_video=0).source(records, index) is records
