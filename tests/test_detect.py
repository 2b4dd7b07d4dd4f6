"""`fdx detect` end to end on small Celeb-DF and DFDM trees of a real face video: a new video scores as `fdx eval`
scores its prepared records (binary frames and attribution clips), the outputs (table, JSON, CSV, annotated H.264,
strips), and each bad input."""

import csv
import json
import shutil

import cv2
import jax
import numpy as np
import pytest
from media import blank_video, corrupt_files, face_video, two_face_video

import fdx
from fdx import cli, evaluate
from fdx import input as input_lib
from fdx.input import layouts

TINY = 'tests/configs/tiny_prepared.py'


def _train(workdir, data, config, *overrides):
    argv = ['train', '--config', config, f'--config.data.dir={data}', '--workdir', str(workdir), *overrides]
    assert cli.main(argv) == 0
    return workdir


def _celebdf_tree(raw):
    """A Celeb-DF-layout tree of the astronaut video: 3 real and 3 "fake" (other flicker seeds and motions) videos,
    two of each in the test list."""
    for folder in ('Celeb-real', 'YouTube-real', 'Celeb-synthesis'):
        (raw / folder).mkdir(parents=True)
    listed = []
    for k in range(3):
        face_video(raw / 'Celeb-real' / f'id0_000{k}.mp4', frames=8, size=160, seed=k, shift=(8 * k, 4))
        face_video(raw / 'Celeb-synthesis' / f'id0_id1_000{k}.mp4', frames=8, size=160, seed=10 + k, shift=(4, 8 * k))
        listed += [f'1 Celeb-real/id0_000{k}.mp4', f'0 Celeb-synthesis/id0_id1_000{k}.mp4'] if k else []
    (raw / 'List_of_testing_videos.txt').write_text('\n'.join(listed) + '\n')
    return raw


def _dfdm_tree(raw):
    """A DFDM-layout tree (crf23 only): two videos per model (one train, one test)."""
    for class_id, model in enumerate(layouts.MODELS):
        for k in range(2):
            path = raw / 'DFDM_crf23' / model / f'id{class_id}_id{k}_000{k}_{model}.mp4'
            path.parent.mkdir(parents=True, exist_ok=True)
            face_video(path, frames=8, size=160, seed=class_id, shift=(6 * class_id, 6 * k))
    return raw


@pytest.fixture(scope='module')
def celebdf_run(tmp_path_factory):
    """The tiny classifier trained 3 steps as a binary detector on a Celeb-DF-layout tree (4 frames a video, 64 px)."""
    root = tmp_path_factory.mktemp('detect_celebdf')
    raw = _celebdf_tree(root / 'raw')
    args = ['--frames', '4', '--crop-size', '64', '--workers', '1']
    assert cli.main(['prepare', 'celebdf', '--src', str(raw), '--out', str(root / 'data'), *args]) == 0
    overrides = [
        '--config.data.name=celebdf',
        '--config.data.target=label',
        "--config.data.class_names=('real', 'fake')",
        '--config.data.frame.quality=raw',
    ]
    return _train(root / 'run', root / 'data', f'{TINY}:frame', *overrides), raw


@pytest.fixture(scope='module')
def dfdm_clip_run(tmp_path_factory):
    """The tiny classifier on 3-frame clips, attributing DFDM-layout videos to their 5 models."""
    root = tmp_path_factory.mktemp('detect_dfdm')
    raw = _dfdm_tree(root / 'raw')
    args = ['--frames', '4', '--crop-size', '64', '--workers', '1', '--qualities', 'crf23']
    assert cli.main(['prepare', 'dfdm', '--src', str(raw), '--out', str(root / 'data'), *args]) == 0
    return _train(root / 'run', root / 'data', f'{TINY}:clip'), raw


def eval_video_values(workdir, split='test'):
    """{video_id: the video's score or probabilities} as `fdx eval` computes them from the prepared records."""
    restored = evaluate.restore(workdir)
    evaluator = evaluate.Evaluator(restored.config, restored.method, restored.mesh)
    with jax.set_mesh(restored.mesh):
        predictions = evaluator.predict_split(restored.variables, split)
    _, values, _, _ = evaluator.levels(predictions)['video']
    items, ids = input_lib.build_source(restored.config.data, split), {}
    for i in range(len(items)):
        record = items[i]['frames'][0] if 'frames' in items[i] else items[i]  # clips, or frames
        ids.setdefault(int(record['video_index']), record['video_id'].decode())
    return dict(zip([ids[v] for v in sorted(ids)], values))


def video_paths(dataset, root, quality):
    scanner = layouts.SCANNERS[dataset]
    return {job.video_id: job.paths[quality] for job in scanner(root, qualities=(quality,)).jobs}


def test_detect_reproduces_eval_video_scores(celebdf_run):
    """Acceptance: each test video of the tree, cut and scored by `Detector`, gets the score `fdx eval` gives its
    prepared records (same sampling, detector, crops and aggregation) within 1e-5."""
    workdir, tree = celebdf_run
    expected = eval_video_values(workdir)
    assert len(expected) == 4
    paths = video_paths('celebdf', tree, 'raw')
    detector = fdx.Detector.from_workdir(workdir)
    assert detector.step == 3
    for video_id, value in expected.items():
        result = detector.score_video(paths[video_id])
        assert result.ok, result.error
        assert abs(result.score - float(value)) <= 1e-5, video_id
        assert [item['frame_index'] for item in result.items] == sorted(item['frame_index'] for item in result.items)
        assert len(result.items) == 4 and result.tracks[0]['items'] == 4


def test_attribution_clips_reproduce_eval_probabilities(dfdm_clip_run, tmp_path):
    """The clip view's probabilities per video equal `fdx eval`'s; a video with fewer face frames than a clip is
    refused with its reason, not padded."""
    workdir, tree = dfdm_clip_run
    expected = eval_video_values(workdir)
    assert len(expected) == 5
    paths = video_paths('dfdm', tree, 'crf23')
    detector = fdx.Detector.from_workdir(workdir, step='latest')
    names = detector.class_names
    for video_id, probs in expected.items():
        result = detector.score_video(paths[video_id])
        assert result.ok, result.error
        got = np.array([result.probs[n] for n in names])
        np.testing.assert_allclose(got, probs, atol=1e-5, err_msg=video_id)
        assert result.prediction == names[int(np.argmax(probs))]
        assert len(result.items) == 1 and len(result.items[0]['frame_index']) == 3
    short = tmp_path / 'short.mp4'
    face_video(short, frames=2)
    result = detector.score_video(short)
    assert result.error == "shorter than the method's clip: 2 frames with a face, the clip needs 3"


def test_command_outputs_annotations_and_bad_inputs(celebdf_run, tmp_path, capsys):
    """`fdx detect` on a folder and files: table, JSON and CSVs; `--annotate` writes an H.264 copy with the input's
    frame count, a strip per input and an annotated PNG for an image; every bad input gets its reason and the run
    goes on."""
    workdir, tree = celebdf_run
    inputs = tmp_path / 'inputs'
    (inputs / 'nested').mkdir(parents=True)
    real = tree / 'Celeb-real' / 'id0_0001.mp4'
    shutil.copy(real, inputs / 'nested' / 'real.mp4')
    shutil.copy(tree / 'Celeb-real' / 'id0_0002.mp4', inputs / 'real.mp4')  # the same name in another folder
    (inputs / 'notes.txt').write_text('not a video')
    frames = face_video(tmp_path / 'face.avi', frames=6, codec='MJPG')
    cv2.imwrite(str(inputs / 'face.png'), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    blank_video(inputs / 'blank.mp4')
    broken = corrupt_files(tmp_path / 'broken')
    odd = tmp_path / 'clip.gif'
    odd.write_bytes(b'GIF89a')
    out, annotated = tmp_path / 'out', tmp_path / 'annotated'
    argv = [
        'detect',
        str(inputs),
        str(broken['random']),
        str(broken['truncated']),
        str(odd),
        str(tmp_path / 'gone.mp4'),
    ]
    assert (
        cli.main([*argv, '--workdir', str(workdir), '--out', str(out), '--annotate', str(annotated), '--frames']) == 0
    )
    document = json.loads((out / 'detections.json').read_text())
    by_name = {entry['path'].rsplit('/', 1)[-1]: entry for entry in document['inputs'] if 'nested' not in entry['path']}
    by_name['real.mp4'] = next(entry for entry in document['inputs'] if 'nested' in entry['path'])
    assert set(by_name) == {'real.mp4', 'face.png', 'blank.mp4', 'random.mp4', 'truncated.mp4', 'clip.gif', 'gone.mp4'}
    assert len(document['inputs']) == 8
    assert by_name['real.mp4']['error'] is None and 0 <= by_name['real.mp4']['score'] <= 1
    assert by_name['face.png']['error'] is None and by_name['face.png']['kind'] == 'image'
    assert by_name['blank.mp4']['error'] == 'no usable frame among 4 sampled (no face found)'
    assert by_name['random.mp4']['error'] == 'cannot open'
    assert by_name['truncated.mp4']['error'] == 'cannot open'
    assert by_name['clip.gif']['error'].startswith("unsupported extension '.gif'")
    assert by_name['gone.mp4']['error'] == 'no such file'
    assert document['preprocessing']['faces']['crop_size'] == 64 and document['checkpoint']['step'] == 3
    assert document['preprocessing']['faces']['detector'] == input_lib.FACE_DETECTOR
    with (out / 'videos.csv').open() as f:
        rows = {row['path']: row for row in csv.DictReader(f)}
    nested = by_name['real.mp4']
    assert rows[nested['path']]['status'] == 'ok' and float(rows[nested['path']]['score']) == nested['score']
    with (out / 'frames.csv').open() as f:
        assert sum(row['path'] == nested['path'] for row in csv.DictReader(f)) == 4
    table = capsys.readouterr().out
    assert 'real.mp4' in table and 'cannot open' in table and 'notes.txt' not in table
    frame_rows = [line.split() for line in table.splitlines() if line.startswith(nested['path'] + ' ')]
    assert [row[1] for row in frame_rows[:4]] == [str(item['frame_index']) for item in nested['items']]
    assert frame_rows[0][3:] == ['P(fake)', f'{nested["items"][0]["score"]:.3f}']
    names = sorted(p.name for p in annotated.iterdir())
    expected = [
        *(f'real{n}{s}' for n in ('', '_2') for s in ('.mp4', '_strip.png')),
        'face_annotated.png',
        'face_strip.png',
    ]
    assert names == sorted(expected)
    assert nested['annotations'] == [str(annotated / 'real.mp4'), str(annotated / 'real_strip.png')]
    capture = cv2.VideoCapture(str(annotated / 'real.mp4'))
    assert capture.isOpened()
    count = 0
    while capture.grab():
        count += 1
    assert count == cv2.VideoCapture(str(real)).get(cv2.CAP_PROP_FRAME_COUNT) > 0
    assert cv2.imread(str(annotated / 'real_strip.png')) is not None
    assert cv2.imread(str(annotated / 'face_annotated.png')).shape[:2] == frames[0].shape[:2]
    assert not (annotated / 'blank.mp4').exists()


def test_exit_code_is_one_only_when_nothing_scores(celebdf_run, tmp_path):
    workdir, _ = celebdf_run
    blank = tmp_path / 'blank.mp4'
    blank_video(blank)
    assert cli.main(['detect', str(blank), '--workdir', str(workdir), '--out', str(tmp_path / 'o')]) == 1


def test_all_faces_scores_every_track(celebdf_run, tmp_path):
    """`all_faces`: both faces of a two-face video are tracks of their own; the largest-face default scores one."""
    workdir, _ = celebdf_run
    path = tmp_path / 'two.mp4'
    two_face_video(path, frames=6)
    every = fdx.Detector.from_workdir(workdir, all_faces=True).score_video(path)
    assert every.ok and [t['track'] for t in every.tracks] == [0, 1]
    assert max(t['score'] for t in every.tracks) == pytest.approx(every.score, abs=1e-6)  # track_max
    largest = fdx.Detector.from_workdir(workdir).score_video(path)
    assert len(largest.tracks) == 1


def test_workdir_without_face_preprocessing_is_refused(tmp_path):
    """A workdir trained on synthetic arrays has no face preprocessing: a one-line error names its file."""
    workdir = _train(tmp_path / 'run', '', 'tests/configs/tiny.py', '--config.total_steps=3')
    with pytest.raises(ValueError, match=r'preprocessing.json: the workdir was trained on .synthetic. data'):
        fdx.Detector.from_workdir(workdir)


def test_bench_detect_reports_frames_per_second_per_stage(celebdf_run, tmp_path):
    workdir, tree = celebdf_run
    out = tmp_path / 'bench.json'
    video = tree / 'Celeb-real' / 'id0_0001.mp4'
    assert (
        cli.main(['bench', 'detect', str(video), '--workdir', str(workdir), '--repeats', '2', '--json', str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert result['frames'] == 8 and result['repeats'] == 2  # 4 sampled frames, scored twice
    assert set(result['stage_seconds']) == {'decode', 'faces', 'predict'}
    assert result['frames_per_s'] == pytest.approx(8 / sum(result['stage_seconds'].values()))


def test_annotator_draws_reconstruction_errors_and_leaves_out_label_maps(tmp_path):
    """A method with an image map (RECCE's reconstruction) gets its error drawn (zero where it equals the crop), and
    ground-truth maps (`Method.label_maps`) are not shown."""
    from types import SimpleNamespace

    from fdx.detect import Annotator, Result
    from fdx.input import records, views

    crop = np.zeros((8, 8, 3), np.uint8)
    crop[:, 4:] = 200
    view = views.FrameView(size=8, normalisation='xception')
    reconstruction = views.normalise(crop.copy(), 'xception')
    reconstruction[:4] = views.normalise(np.full((4, 8, 3), 255, np.uint8), 'xception')  # wrong in the top half
    method = SimpleNamespace(maps={'reconstruction': 'image', 'mask': 'heat'}, label_maps=('mask',))
    detector = SimpleNamespace(
        view=view,
        binary=True,
        maps={n: k for n, k in method.maps.items() if n not in method.label_maps},
        restored=SimpleNamespace(method=method),
    )
    result = Result('clip.mp4', 'video', score=0.5, prediction='fake')
    result.items = [{'frame_index': 0, 'track': 0, 'window': [0, 0, 8, 8], 'score': 0.5}]
    result.crops = {(0, 0): records.encode_image(crop, 'png')}
    result.maps = {'reconstruction': reconstruction[None]}
    annotator = Annotator(detector, tmp_path)
    assert annotator.heat_maps == [] and annotator.image_maps == ['reconstruction']
    error = annotator._heat(result, 0)
    assert error.shape == (8, 8) and error.max() == 1.0
    np.testing.assert_array_equal(error[4:], 0)
    assert (error[:4] > 0).all()
    path = annotator._strip(result, tmp_path / 'strip.png')
    assert cv2.imread(str(path)) is not None
