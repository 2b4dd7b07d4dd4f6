"""The face-detection report of an `fdx synth` output: rows per tree × class × quality, problems, markdown.

The tiny synth's face rates are not asserted (its generators are tiny); the thresholds used here make the verdict
independent of them.
"""

import json
import shutil
from pathlib import Path

import pytest

from fdx.input import layouts
from fdx.synth import build, report

FRAMES = 2  # per video; the tiny synth's videos are longer, so every video gives exactly this many


def linked(synth: Path, out: Path) -> Path:
    """`out` holding links to the synth's trees, so the report is written there and not into the shared fixture."""
    out.mkdir()
    for tree in report.TREES:
        if (synth / tree).is_dir():
            (out / tree).symlink_to(synth / tree, target_is_directory=True)
    return out


def expected_choices(root: Path, tree: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(qualities, FF++ methods) of a tree as found on disk."""
    if tree == 'dfdm':
        return tuple(q for q in layouts.DFDM_QUALITIES if (root / f'DFDM_{q}').is_dir()), ()
    if tree == 'ffpp':
        reals = root / 'original_sequences' / 'youtube'
        qualities = tuple(q for q in layouts.FFPP_QUALITIES if (reals / q).is_dir())
        return qualities, tuple(m for m in layouts.FFPP_METHODS if (root / 'manipulated_sequences' / m).is_dir())
    return ('raw',), ()


@pytest.fixture(scope='module')
def full(synth, tmp_path_factory):
    out = linked(synth, tmp_path_factory.mktemp('report') / 'out')
    assert build.SIZES['tiny'].frames > FRAMES
    return out, report.face_report(out, frames=FRAMES, workers=2, threshold=1.01, progress=lambda _: None)


def test_rows_cover_every_class_and_quality_of_each_tree(full):
    out, result = full
    assert json.loads((out / 'report.json').read_text()) == json.loads(json.dumps(result))
    present = [tree for tree in report.TREES if (out / tree).is_dir()]
    assert list(result['trees']) == present and {'dfdm', 'ffpp'} <= set(present)
    expected_rows = []
    for tree in present:
        qualities, methods = expected_choices(out / tree, tree)
        info = result['trees'][tree]
        assert (tuple(info['qualities']), tuple(info['methods'])) == (qualities, methods)
        options = {'qualities': qualities, **({'methods': methods} if tree == 'ffpp' else {})}
        layout = layouts.scan(tree, out / tree, **options)
        assert info['classes'] == list(layout.class_names) and info['videos'] == len(layout.jobs)
        for class_id, name in enumerate(layout.class_names):
            videos = sum(job.class_id == class_id for job in layout.jobs)
            expected_rows += [(tree, name, quality, videos) for quality in qualities]
    rows = result['rows']
    assert [(r['tree'], r['class'], r['quality'], r['videos']) for r in rows] == expected_rows
    for row in rows:
        assert row['videos'] > 0 and row['frames'] == row['videos'] * FRAMES
        assert 0 <= row['faces'] <= row['frames'] and row['rate'] == row['faces'] / row['frames']
        assert 0.0 <= row['rate'] <= 1.0
    assert result['problems'] == [] and result['frames_per_video'] == FRAMES
    # threshold 1.01: no rate reaches it, so every row fails and the verdict is FAIL whatever the face rates.
    assert result['passes'] is False and result['failing'] == rows
    assert result['seconds_per_video'] > 0 and result['worker_seconds_per_video'] > 0

    text = report.format_report(result).splitlines()
    assert text[0] == '| tree | class | quality | videos | frames | faces found % |'
    table = [line for line in text[2:] if line.startswith('| ')]
    assert len(table) == len(rows) and len(text) == 2 + len(rows) + 1
    assert table[0].startswith(f'| {rows[0]["tree"]} | {rows[0]["class"]} | {rows[0]["quality"]} | ')
    assert text[-1].startswith(f'FAIL: {len(rows)} of {len(rows)} rows below 101%')


def test_corrupted_video_is_a_problem_and_the_rest_is_reported(full, synth, tmp_path):
    _, result = full
    out = tmp_path / 'out'
    shutil.copytree(synth / 'ffpp', out / 'ffpp')
    broken = min((out / 'ffpp' / 'manipulated_sequences' / 'Deepfakes' / 'c23' / 'videos').glob('*.mp4'))
    broken.write_bytes(b'not a video at all ' * 64)
    # In-process (workers=1) against the pool's result above: the same counts, whatever the number of workers.
    damaged = report.face_report(out, frames=FRAMES, workers=1, threshold=0.0, progress=lambda _: None)
    assert list(damaged['trees']) == ['ffpp'] and (out / 'report.json').is_file()
    [problem] = damaged['problems']
    assert problem['tree'] == 'ffpp' and problem['video_id'] == f'Deepfakes/{broken.stem}'
    assert problem['quality'] == 'c23' and problem['reason']
    before = [row for row in result['rows'] if row['tree'] == 'ffpp']
    assert len(damaged['rows']) == len(before)
    for row, old in zip(damaged['rows'], before):
        if (row['class'], row['quality']) == ('Deepfakes', 'c23'):
            assert row['videos'] == old['videos'] - 1 and row['frames'] == row['videos'] * FRAMES
        else:
            assert row == old
    assert damaged['passes'] is True and damaged['failing'] == []  # threshold 0: every row with frames passes
    text = report.format_report(damaged).splitlines()
    assert text[-2] == 'PASS: faces found in at least 0% of the sampled frames of every row.'
    assert text[-1] == f'1 video not fully decoded: ffpp Deepfakes/{broken.stem} (c23): {problem["reason"]}.'
