"""Several faces per video (DFDC, FFIW): face tracks in `fdx prepare --faces all` and the max-over-faces video score."""

import json
import types

import media
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from fdx import cli, evaluate, metrics, sharding
from fdx.input import faces
from fdx.input.faces import Face


def _face(x0, y0, side) -> Face:
    return Face(np.array([x0, y0, x0 + side, y0 + side], np.float32), np.zeros((68, 2), np.float32), 1.0)


def test_large_faces_keeps_half_the_largest_area_and_min_size():
    found = [_face(0, 0, 50), _face(100, 0, 100), _face(300, 0, 71), _face(400, 0, 70)]
    assert [f.box[0] for f in faces.large_faces(found)] == [100, 300]  # 71² ≥ 0.5·100² > 70²
    assert [f.box[0] for f in faces.large_faces(found, min_area_ratio=0.0, min_size=60)] == [100, 300, 400]
    assert faces.large_faces([]) == []


def test_track_faces_follows_boxes_not_sizes():
    left, right = _face(0, 0, 100), _face(300, 0, 90)
    frames = [
        [left, right],
        [_face(310, 5, 110), _face(5, 0, 100)],  # the right face is now the larger: it keeps track 1
        [_face(8, 2, 100)],  # the right face is gone
        [_face(600, 0, 80), _face(10, 0, 100)],  # a new face far from every track starts track 2
    ]
    assert faces.track_faces(frames) == [[0, 1], [1, 0], [0], [2, 0]]


def test_multi_face_video_scores():
    # video 0 real: tracks 0 and 1; video 2 fake: track 2 real-looking, track 3 (its second face) fake-looking
    tracks = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    videos = np.array([0, 0, 0, 0, 2, 2, 2, 2])
    frames = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.3, 0.2, 0.2, 0.1, 0.1, 0.9, 0.5])
    video_labels, video_scores, ids = metrics.multi_face_video_level(labels, scores, tracks, videos, frames)
    np.testing.assert_array_equal(ids, [0, 2])
    np.testing.assert_array_equal(video_labels, [0, 1])
    np.testing.assert_allclose(video_scores, [0.2, 0.7])  # max over tracks of the track means
    _, sbi_scores, _ = metrics.multi_face_video_level(labels, scores, tracks, videos, frames, rule='frame_max')
    np.testing.assert_allclose(sbi_scores, [0.25, 0.7])  # mean over frames of the max over faces (SBI)
    with pytest.raises(ValueError, match='face aggregation'):
        metrics.multi_face_video_level(labels, scores, tracks, videos, frames, rule='mean')


@pytest.fixture(scope='module')
def two_faces(tmp_path_factory):
    """A Celeb-DF-layout tree whose fake has two faces, prepared with every face track and with the largest face."""
    root = tmp_path_factory.mktemp('two_faces')
    raw = root / 'raw'
    for folder in ('Celeb-real', 'YouTube-real', 'Celeb-synthesis'):
        (raw / folder).mkdir(parents=True)
    media.face_video(raw / 'Celeb-real' / 'id0_0000.mp4', frames=8, size=192)
    media.two_face_video(raw / 'Celeb-synthesis' / 'id0_id1_0000.mp4', frames=8)
    (raw / 'List_of_testing_videos.txt').write_text('1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n')
    manifests = {}
    for mode in ('all', 'largest'):
        args = ['prepare', 'celebdf', '--src', str(raw), '--out', str(root / mode), '--frames', '4']
        assert cli.main([*args, '--crop-size', '64', '--workers', '1', '--faces', mode]) == 0
        manifests[mode] = json.loads(next((root / mode).glob('celebdf/*/*/manifest.json')).read_text())
    return manifests


def _records(manifest):
    source = tfds.builder_from_directory(manifest['directory']).as_data_source(split='test')
    return [source[i] for i in range(len(source))]


def test_all_faces_gives_one_track_per_face(two_faces):
    manifest = two_faces['all']
    assert manifest['config'].endswith('-faces0p5')
    assert manifest['splits']['test'] == {
        'records/fake': 8,
        'records/real': 4,
        'tracks/fake': 2,
        'tracks/real': 1,
        'videos/fake': 1,
        'videos/real': 1,
    }
    by_track = {}
    for record in _records(manifest):
        key = (record['video_id'].decode(), int(record['face_index']), int(record['video_index']))
        by_track.setdefault(key, []).append(record)
    fake = 'Celeb-synthesis/id0_id1_0000'
    assert sorted(by_track) == [('Celeb-real/id0_0000', 0, 0), (fake, 0, 1), (fake, 1, 2)]
    # each track is the same face in every frame: the left (larger) one is track 0, the right one track 1
    left = [float(r['box'][0]) for r in by_track[fake, 0, 1]]
    right = [float(r['box'][0]) for r in by_track[fake, 1, 2]]
    assert len(left) == len(right) == 4 and max(left) < 200 < min(right)
    largest = _records(two_faces['largest'])
    assert {int(r['face_index']) for r in largest} == {0} and len(largest) == 8


def test_video_score_is_the_max_over_face_tracks(two_faces):
    records = _records(two_faces['all'])
    predictions = {k: np.array([int(r[k]) for r in records]) for k in ('label', 'video_index', 'face_index')}
    predictions['frame_index'] = np.array([int(r['frame_index']) for r in records])
    # the fake's right face (track 1) looks fake, its left face and the real video do not
    predictions['score'] = np.where(predictions['face_index'] == 1, 0.9, 0.2)
    config = ml_collections.ConfigDict({'eval': evaluate.eval_config_defaults()})
    config.eval.bootstrap_resamples = 0
    evaluator = evaluate.Evaluator(config, types.SimpleNamespace(task='binary'), sharding.make_mesh({'data': 1}))
    results = evaluator.metrics(predictions, None)
    assert results['video']['n'] == 2 and results['video']['auc'] == 1.0
    assert results['frame']['n'] == 12
    video_labels, video_scores, _, _ = evaluator.levels(predictions)['video']
    np.testing.assert_allclose(video_scores[video_labels == 1], [0.9])
