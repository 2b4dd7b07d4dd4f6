"""Video probing, frame sampling and reading on real encoded files; dlib detection, landmarks and face crops."""

import importlib.util
import pickle
import sys

import cv2
import media
import numpy as np
import pytest

from fdx.input import faces as faces_lib
from fdx.input.faces import DlibDetector, Face, crop, crop_window, landmarks_to_crop, largest_face
from fdx.input.video import VideoError, VideoInfo, probe, read_frames, sample_indices

FRAMES, SIZE, SHIFT = 24, 256, (40, 20)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    """Face videos (mp4v .mp4 and MJPG .avi) with the frames written, a mask video, a blank video, broken files."""
    root = tmp_path_factory.mktemp('media')
    written = {}
    for name, codec in (('face.mp4', 'mp4v'), ('face.avi', 'MJPG')):
        written[name] = media.face_video(root / name, frames=FRAMES, size=SIZE, codec=codec, shift=SHIFT)
    written['mask.avi'] = media.mask_video(root / 'mask.avi', frames=FRAMES, size=SIZE, shift=SHIFT)
    written['blank.mp4'] = media.blank_video(root / 'blank.mp4')
    return root, written, media.corrupt_files(root / 'corrupt')


@pytest.fixture(scope='module')
def detected(videos):
    """Every frame of the face .mp4 as decoded, and DlibDetector's faces in each."""
    root, _, _ = videos
    frames = read_frames(root / 'face.mp4', range(FRAMES)).frames
    detector = DlibDetector()
    return frames, [detector.detect(frames[i]) for i in range(FRAMES)]


# Probing and reading.


def test_probe(videos):
    root, _, corrupt = videos
    assert probe(root / 'face.mp4') == VideoInfo(FRAMES, 12.0, SIZE, SIZE)
    assert probe(root / 'face.avi', exact=True) == VideoInfo(FRAMES, 12.0, SIZE, SIZE)
    assert probe(root / 'blank.mp4')[::2] == (10, 128)
    # A truncated AVI keeps its header's frame count; only decoding finds the true length.
    assert probe(corrupt['truncated_avi']).frame_count == FRAMES
    assert 0 < probe(corrupt['truncated_avi'], exact=True).frame_count < FRAMES * 0.6


@pytest.mark.parametrize(
    'name, reason',
    [
        ('missing', 'no such file'),
        ('empty', 'zero-length file'),
        ('random', 'cannot open'),
        ('truncated', 'cannot open'),
    ],
)
def test_broken_files_raise(videos, name, reason):
    _, _, corrupt = videos
    path = corrupt.get(name, corrupt['empty'].parent / 'missing.mp4')
    for call in (lambda: probe(path), lambda: read_frames(path, [0])):
        with pytest.raises(VideoError) as error:
            call()
        assert error.value.reason == reason and str(path) in str(error.value)


def test_read_frames_match_written(videos):
    root, written, _ = videos
    for name in ('face.mp4', 'face.avi'):
        result = read_frames(root / name, [11, 0, 23, 5, 5])
        assert sorted(result.frames) == [0, 5, 11, 23] and result.wanted == 4 and result.read == FRAMES
        assert not result.truncated
        for i, frame in result.frames.items():
            assert frame.dtype == np.uint8 and frame.shape == (SIZE, SIZE, 3)
            own = mad(frame, written[name][i])
            neighbours = [mad(frame, written[name][j]) for j in (i - 1, i + 1) if 0 <= j < FRAMES]
            assert own < 4.0 and own < 0.5 * min(neighbours), (name, i, own, neighbours)
            assert mad(frame[..., ::-1], written[name][i]) > 3 * own  # RGB, not BGR
        one_thread = read_frames(root / name, [11, 0, 23, 5, 5], threads=1)  # as `fdx prepare`'s workers decode
        assert one_thread.read == FRAMES and sorted(one_thread.frames) == [0, 5, 11, 23]
        for i, frame in one_thread.frames.items():
            np.testing.assert_array_equal(frame, result.frames[i])


def test_read_frames_stops_after_last_wanted(videos):
    root, _, _ = videos
    result = read_frames(root / 'face.mp4', [2])
    assert list(result.frames) == [2] and result.read == 3
    assert read_frames(root / 'face.mp4', []) == ({}, 0, 0)
    with pytest.raises(ValueError):
        read_frames(root / 'face.mp4', [-1, 3])


def test_read_truncated_returns_partial(videos):
    _, written, corrupt = videos
    path = corrupt['truncated_avi']
    result = read_frames(path, range(FRAMES))
    assert result.truncated and result.wanted == FRAMES and 0 < len(result.frames) <= result.read < FRAMES
    assert set(result.frames) <= set(range(result.read))
    assert mad(result.frames[0], written['face.avi'][0]) < 4.0
    # Nothing wanted was reached: an error naming the decoded and the reported length.
    with pytest.raises(VideoError) as error:
        read_frames(path, [FRAMES - 3, FRAMES - 1])
    assert error.value.reason.startswith(f'truncated: decoded {result.read} of {FRAMES} frames')


# Sampling.


def test_sample_even():
    assert sample_indices(100, mode='even', count=8) == np.floor(np.linspace(0, 99, 8) + 0.5).astype(int).tolist()
    indices = sample_indices(301, mode='even', count=32)
    assert len(indices) == 32 and indices[0] == 0 and indices[-1] == 300
    assert set(np.diff(indices)) <= {9, 10}
    assert sample_indices(5, mode='even', count=8) == [0, 1, 2, 3, 4]
    assert sample_indices(8, mode='even', count=8) == list(range(8))
    assert sample_indices(0, mode='even', count=8) == []
    for n in range(1, 80):
        for count in (1, 2, 3, 7, 32):
            got = sample_indices(n, mode='even', count=count)
            assert len(got) == min(n, count) and got == sorted(set(got)) and 0 <= got[0] and got[-1] < n


def test_sample_runs():
    indices = sample_indices(100, mode='runs', count=4, run_length=3)
    assert indices == [0, 1, 2, 32, 33, 34, 65, 66, 67, 97, 98, 99]
    assert sample_indices(10, mode='runs', count=4, run_length=4) == [0, 1, 2, 3, 6, 7, 8, 9]  # 2 runs fit
    assert sample_indices(3, mode='runs', count=2, run_length=4) == []
    for n in range(60):
        for count in (1, 2, 5):
            for run_length in (1, 3, 4):
                got = sample_indices(n, mode='runs', count=count, run_length=run_length)
                runs = min(count, n // run_length)
                assert len(got) == runs * run_length and got == sorted(set(got))
                assert all(0 <= i < n for i in got)
                for run in np.reshape(got, (runs, run_length)):
                    assert (np.diff(run) == 1).all()
                if runs > 1:
                    assert got[0] == 0 and got[-1] == n - 1


def test_sample_all():
    assert sample_indices(50, mode='all') == list(range(50))
    assert sample_indices(50, mode='all', max_frames=270) == list(range(50))
    capped = sample_indices(500, mode='all', max_frames=270)
    assert len(set(capped)) == 270 and capped[0] == 0 and capped[-1] == 499 and set(np.diff(capped)) <= {1, 2}
    with pytest.raises(ValueError):
        sample_indices(10, mode='random', count=2)
    with pytest.raises(ValueError):
        sample_indices(10, mode='even', count=0)


# Detection.


def test_one_face_per_frame_moving_with_the_shift(detected):
    frames, found = detected
    assert [len(f) for f in found] == [1] * FRAMES
    offsets = media.face_offsets(FRAMES, SHIFT)
    first = found[0][0]
    for face, offset in zip((f[0] for f in found), offsets):
        assert face.box.dtype == np.float32 and face.landmarks.shape == (68, 2) and face.score > 0
        box_move = (face.box[:2] + face.box[2:]) / 2 - (first.box[:2] + first.box[2:]) / 2
        face_centre = np.array(media.FACE_ELLIPSE[0]) * SIZE + offset
        assert np.abs((face.box[:2] + face.box[2:]) / 2 - face_centre).max() < 8
        assert np.abs(box_move - offset).max() < 8  # HOG boxes snap to a coarse grid
        landmark_move = face.landmarks.mean(0) - first.landmarks.mean(0)
        assert np.abs(landmark_move - offset).max() < 1.5
        # dlib's boxes are tight (the chin falls up to 15% below): landmarks lie in the box grown 1.5×, their centre
        # in the box itself.
        x0, y0, x1, y1 = crop_window(face.box, frames[0].shape, scale=1.5)
        assert ((face.landmarks >= [x0, y0]) & (face.landmarks < [x1, y1])).all()
        assert (face.box[:2] < face.landmarks.mean(0)).all() and (face.landmarks.mean(0) < face.box[2:]).all()
        assert face.landmarks[36:48, 1].max() < face.landmarks[48:68, 1].min()  # eyes above the mouth


def landmark_error(face: Face, reference: Face) -> float:
    """The largest landmark distance (per axis) as a fraction of the reference box's side."""
    return float(np.abs(face.landmarks - reference.landmarks).max() / (reference.box[2] - reference.box[0]))


def test_detect_frames_is_detect_of_each_frame(detected):
    frames, found = detected
    batch = DlibDetector().detect_frames([frames[i] for i in range(FRAMES)])
    for faces, reference in zip(batch, found):
        assert len(faces) == len(reference) == 1
        np.testing.assert_array_equal(faces[0].box, reference[0].box)
        np.testing.assert_array_equal(faces[0].landmarks, reference[0].landmarks)
        assert faces[0].score == reference[0].score


def test_follow_carries_the_face_frame_to_frame(detected):
    frames, found = detected
    detector = DlibDetector()
    face = found[0][0]
    for i in range(1, FRAMES):
        face = faces_lib.follow(detector, frames[i], face)
        assert face is not None and face.score == found[0][0].score
        assert landmark_error(face, found[i][0]) < 0.035  # measured 0.023 (2 px on a 87-105 px box)
        assert faces_lib.box_iou(face.box, found[i][0].box) > 0.6  # the box moves with the points (0.70 at the end)
    # A 10-frame move (16% of the box) is caught in one go; 23 frames (38%) is not: follow hands the frame back.
    assert landmark_error(faces_lib.follow(detector, frames[10], found[0][0]), found[10][0]) < 0.035
    assert faces_lib.follow(detector, frames[23], found[0][0]) is None
    assert faces_lib.follow(detector, frames[0], found[23][0]) is None


def test_follow_gives_up_outside_the_frame_or_at_another_scale(detected):
    frames, found = detected
    detector, face = DlibDetector(), found[0][0]
    away = np.float32([0.8 * SIZE, 0])
    outside = Face(face.box + np.tile(away, 2), face.landmarks + away, face.score)
    assert faces_lib.follow(detector, frames[0], outside) is None
    centre = np.float32([SIZE / 2, SIZE / 2])
    larger = Face((face.box - np.tile(centre, 2)) * 3 + np.tile(centre, 2), (face.landmarks - centre) * 3 + centre, 1.0)
    assert faces_lib.follow(detector, frames[0], larger) is None


@pytest.mark.parametrize('size', [224, 192])
def test_detect_size_finds_the_faces_with_close_landmarks(detected, size):
    frames, found = detected
    detector = DlibDetector(detect_size=size)
    for i in range(0, FRAMES, 3):
        (box, _), *rest = detector.search(frames[i])
        assert not rest and faces_lib.box_iou(box, found[i][0].box) > 0.6  # HOG's coarse box grid, at another scale
        (face,) = detector.detect(frames[i])
        assert landmark_error(face, found[i][0]) < 0.05  # measured ≤ 0.034


def test_detect_size_too_small_falls_back_to_full_size(detected):
    frames, found = detected
    detector = DlibDetector(detect_size=64)  # the 87-105 px faces shrink below HOG's 80 px window
    assert detector.boxes(cv2.resize(frames[0], (64, 64), interpolation=cv2.INTER_AREA)) == []
    for i in (0, 11):
        (face,) = detector.detect(frames[i])
        np.testing.assert_array_equal(face.landmarks, found[i][0].landmarks)


@pytest.mark.parametrize('every', [2, 8])
def test_search_and_follow_keeps_every_face(detected, every, monkeypatch):
    from fdx.input import prepare

    frames, found = detected
    detector = DlibDetector()
    searched = []
    monkeypatch.setattr(detector, 'search', lambda rgb: searched.append(1) or DlibDetector.search(detector, rgb))
    result = prepare._search_and_follow(detector, [frames[i] for i in range(FRAMES)], every)
    assert [len(faces) for faces in result] == [1] * FRAMES
    assert len(searched) == -(-FRAMES // every)  # the motion is small: no follow hands a frame back
    assert max(landmark_error(faces[0], reference[0]) for faces, reference in zip(result, found)) < 0.035
    np.testing.assert_array_equal(result[every][0].landmarks, found[every][0].landmarks)  # a search frame


def test_blank_video_has_no_face(videos):
    root, _, _ = videos
    detector = DlibDetector(upsample=1)
    frames = read_frames(root / 'blank.mp4', range(10)).frames
    assert len(frames) == 10 and all(detector.detect(frame) == [] for frame in frames.values())


def test_mask_video_aligns_with_detected_face(videos, detected):
    root, written, _ = videos
    _, found = detected
    masks = read_frames(root / 'mask.avi', range(FRAMES)).frames
    centroids = []
    for i in range(FRAMES):
        mask = masks[i][..., 0]
        assert mad(mask, written['mask.avi'][i]) < 2.0
        ys, xs = np.nonzero(mask > 127)
        centroids.append((xs.mean(), ys.mean()))
        x0, y0, x1, y1 = found[i][0].box
        assert x0 < xs.mean() < x1 and y0 < ys.mean() < y1
    drift = np.array(centroids) - media.face_offsets(FRAMES, SHIFT)
    assert np.abs(drift - drift[0]).max() < 1.0


def test_detector_pickles(detected):
    frames, found = detected
    detector = DlibDetector(upsample=1)
    fresh = pickle.dumps(detector)
    detector.detect(frames[0])
    used = pickle.dumps(detector)
    assert len(used) == len(fresh) < 200  # no dlib objects inside
    clone = pickle.loads(used)
    assert clone.upsample == 1
    (face,) = pickle.loads(fresh).detect(frames[3])
    np.testing.assert_allclose(face.landmarks, found[3][0].landmarks, atol=2)


def test_missing_dlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'dlib', None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[faces\]"'):
        DlibDetector().detect(np.zeros((32, 32, 3), np.uint8))
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(ImportError, match='face-recognition-models'):
        faces_lib._predictor_path()


def test_largest_face():
    def face(box):
        return Face(np.float32(box), np.zeros((68, 2), np.float32), 1.0)

    small, large, wide = face([0, 0, 10, 10]), face([50, 50, 80, 90]), face([0, 0, 100, 5])
    assert largest_face([small, large, wide]) is large
    assert largest_face([]) is None


# Crops.


def test_crop_window_square_and_inside():
    window = crop_window([100, 100, 200, 180], (480, 640), scale=1.3)
    np.testing.assert_array_equal(window, [85, 75, 215, 205])  # side 1.3 × max(100, 80), same centre
    np.testing.assert_array_equal(crop_window([0, 0, 50, 60], (480, 640)), [0, 0, 78, 78])  # shifted in
    np.testing.assert_array_equal(crop_window([600, 440, 640, 480], (480, 640)), [588, 428, 640, 480])
    np.testing.assert_array_equal(crop_window([10, 10, 470, 470], (480, 640)), [0, 0, 480, 480])  # frame-limited
    np.testing.assert_array_equal(crop_window([0, 10, 100, 50], (480, 640), square=False), [0, 4, 115, 56])
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = rng.integers(40, 400, 2)
        x0, y0 = rng.uniform(-20, [width, height])
        box = [x0, y0, x0 + rng.uniform(2, width), y0 + rng.uniform(2, height)]
        x0, y0, x1, y1 = crop_window(box, (height, width), scale=rng.uniform(1, 2))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and x1 - x0 == y1 - y0


def test_crop_sizes_and_interpolation():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for size in (32, 256):
        out = crop(frame, [10, 20, 110, 120], size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(crop(frame, [10, 20, 110, 120], 100), frame[20:120, 10:110])
    # Growing a hard-edged float mask: linear interpolation, so no over- or undershoot around the edge.
    mask = np.zeros((120, 160), np.float32)
    mask[40:80, 50:90] = 1
    grown = crop(mask, [30, 30, 100, 100], 224)
    assert grown.shape == (224, 224) and grown.min() >= 0 and grown.max() <= 1 and 0 < grown.mean() < 1
    with pytest.raises(ValueError):
        crop(frame, [100, 20, 200, 120], 64)


@pytest.mark.parametrize('size', [40, 100, 299])
def test_landmarks_to_crop_matches_crop(size):
    points = np.array([[60.0, 50.0], [95.0, 102.0], [131.0, 77.0], [120.0, 120.0]])
    window = [45, 35, 145, 135]
    frame = np.zeros((160, 200), np.float32)
    for x, y in points.astype(int):
        frame[y - 1 : y + 2, x - 1 : x + 2] = 1  # 3x3 dot centred on the landmark
    cropped = crop(frame, window, size)
    mapped = landmarks_to_crop(points, window, size)
    assert mapped.dtype == np.float32 and mapped.shape == points.shape
    radius = max(3, int(np.ceil(3 * size / 100)))
    for u, v in mapped:
        iu, iv = round(u), round(v)
        patch = cropped[iv - radius : iv + radius + 1, iu - radius : iu + radius + 1]
        ys, xs = np.mgrid[iv - radius : iv + radius + 1, iu - radius : iu + radius + 1]
        centroid = np.array([(xs * patch).sum(), (ys * patch).sum()]) / patch.sum()
        np.testing.assert_allclose(centroid, [u, v], atol=0.3)


def test_landmarks_on_the_crop_match_mapped(detected):
    frames, found = detected
    detector = DlibDetector()
    for i in (0, 12, 23):
        face = found[i][0]
        window = crop_window(face.box, frames[i].shape)
        for size in (128, 320):
            (again,) = detector.detect(crop(frames[i], window, size))
            error = np.linalg.norm(again.landmarks - landmarks_to_crop(face.landmarks, window, size), axis=1)
            assert error.mean() < 0.04 * size, (i, size, error.mean())
