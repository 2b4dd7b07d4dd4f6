"""Tests for fdx.input.layouts on small trees of empty files named as in the FF++, Celeb-DF and DFDM releases."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fdx.input import layouts, tfds_builders
from fdx.input.layouts import MODELS, scan, scan_celebdf, scan_dfdm, scan_ffpp

FFPP_PAIRS = {'train': [['000', '001']], 'val': [['002', '003']], 'test': [['004', '005']]}
FFPP_SPLIT_OF = {'000': 'train', '001': 'train', '002': 'val', '003': 'val', '004': 'test', '005': 'test'}
DFDM_INPUTS = [f'id{i:02d}_id{i + 1:02d}_{i:04d}' for i in range(10)]


def _touch(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def _ffpp_tree(root: Path) -> Path:
    """Originals 000–006 (006 in no split); Deepfakes and Face2Face fakes of every pair, with gaps; masks but one."""
    fakes = [f'{a}_{b}' for pairs in FFPP_PAIRS.values() for x, y in pairs for a, b in ((x, y), (y, x))]
    for quality in ('c23', 'c40'):
        for real in [*FFPP_SPLIT_OF, '006']:
            _touch(root / 'original_sequences' / 'youtube' / quality / 'videos' / f'{real}.mp4')
        for method in ('Deepfakes', 'Face2Face'):
            for fake in fakes:
                if (method, fake) == ('Face2Face', '005_004') or (method, fake, quality) == (
                    'Deepfakes',
                    '003_002',
                    'c40',
                ):
                    continue
                _touch(root / 'manipulated_sequences' / method / quality / 'videos' / f'{fake}.mp4')
    _touch(root / 'manipulated_sequences' / 'Deepfakes' / 'c23' / 'videos' / 'clip.mp4')
    for method in ('Deepfakes', 'Face2Face'):
        for fake in fakes:
            if (method, fake) != ('Deepfakes', '001_000'):
                _touch(root / 'manipulated_sequences' / method / 'masks' / 'videos' / f'{fake}.mp4')
    (root / 'splits').mkdir()
    for split, pairs in FFPP_PAIRS.items():
        (root / 'splits' / f'{split}.json').write_text(json.dumps(pairs))
    return root


def _jobs(layout) -> dict:
    return {job.video_id: job for job in layout.jobs}


def test_ffpp_jobs(tmp_path):
    root = _ffpp_tree(tmp_path)
    layout = scan_ffpp(root, methods=('Deepfakes', 'Face2Face'))
    assert layout.dataset == 'ffpp'
    assert layout.class_names == ('real', 'Deepfakes', 'Face2Face')
    assert layout.qualities == ('c23', 'c40')
    jobs = _jobs(layout)
    reals = [f'original/{v}' for v in FFPP_SPLIT_OF]
    deepfakes = [
        'Deepfakes/000_001',
        'Deepfakes/001_000',
        'Deepfakes/002_003',
        'Deepfakes/004_005',
        'Deepfakes/005_004',
    ]
    face2face = [
        'Face2Face/000_001',
        'Face2Face/001_000',
        'Face2Face/002_003',
        'Face2Face/003_002',
        'Face2Face/004_005',
    ]
    assert sorted(jobs) == sorted(reals + deepfakes + face2face)
    for video_id in reals:
        job = jobs[video_id]
        stem = video_id.split('/')[1]
        assert (job.label, job.class_id, job.mask, job.source_id) == (0, 0, None, stem)
        assert job.split == FFPP_SPLIT_OF[stem]
    for video_id in deepfakes + face2face:
        job = jobs[video_id]
        method, stem = video_id.split('/')
        target, source = stem.split('_')
        assert (job.label, job.class_id, job.source_id) == (1, layout.class_names.index(method), target)
        assert job.split == FFPP_SPLIT_OF[target] == FFPP_SPLIT_OF[source]  # both fakes of a pair share its split
        assert job.paths == {
            q: root / 'manipulated_sequences' / method / q / 'videos' / f'{stem}.mp4' for q in ('c23', 'c40')
        }
        if video_id != 'Deepfakes/001_000':
            assert job.mask == root / 'manipulated_sequences' / method / 'masks' / 'videos' / f'{stem}.mp4'
    assert jobs['original/003'].paths == {
        q: root / 'original_sequences' / 'youtube' / q / 'videos' / '003.mp4' for q in ('c23', 'c40')
    }
    assert jobs['Deepfakes/001_000'].mask is None
    assert [job.video_id for job in layout.jobs] == sorted(jobs, key=lambda v: (jobs[v].class_id, v))


def test_ffpp_problems(tmp_path):
    root = _ffpp_tree(tmp_path)
    layout = scan_ffpp(root, methods=('Deepfakes', 'Face2Face'))
    assert layout.problems == sorted(
        [
            (
                'Deepfakes/001_000',
                f'missing mask video {root}/manipulated_sequences/Deepfakes/masks/videos/001_000.mp4',
            ),
            ('Deepfakes/003_002', 'missing quality c40'),
            ('Face2Face/005_004', 'listed in the test split but missing on disk'),
            ('original/006', 'not in any split'),
            (str(root / 'manipulated_sequences' / 'Deepfakes' / 'c23' / 'videos' / 'clip.mp4'), 'unparsable file name'),
        ]
    )


def test_ffpp_options(tmp_path):
    root = _ffpp_tree(tmp_path)
    layout = scan_ffpp(root, qualities=('c40',), methods=('Face2Face',), masks=False)
    assert layout.class_names == ('real', 'Face2Face')
    jobs = _jobs(layout)
    assert jobs['Face2Face/003_002'].class_id == 1
    assert all(job.mask is None and list(job.paths) == ['c40'] for job in layout.jobs)
    assert not any('Deepfakes' in where or 'mask' in reason for where, reason in layout.problems)
    with pytest.raises(ValueError, match='FaceSwap/c23/videos'):
        scan_ffpp(root, methods=('Deepfakes', 'FaceSwap'))  # FaceSwap was not downloaded
    with pytest.raises(ValueError, match=r'raw/videos'):
        scan_ffpp(root, qualities=('raw',))
    with pytest.raises(ValueError, match='qualities'):
        scan_ffpp(root, qualities=('c23', 'hq'))
    with pytest.raises(ValueError, match='methods'):
        scan_ffpp(root, methods=('Deepfakes', 'Deepfakes'))


def test_ffpp_split_files(tmp_path):
    root = _ffpp_tree(tmp_path)
    (root / 'splits' / 'val.json').unlink()
    layout = scan_ffpp(root, methods=('Deepfakes',))
    assert (str(root / 'splits' / 'val.json'), 'missing split file') in layout.problems
    unassigned = {where for where, reason in layout.problems if reason == 'not in any split'}
    assert unassigned == {'original/002', 'original/003', 'original/006', 'Deepfakes/002_003'}  # 003_002 lacks c40
    assert {job.split for job in layout.jobs} == {'train', 'test'}

    (root / 'splits').rename(tmp_path / 'FaceForensics_splits')
    with pytest.raises(ValueError, match=str(root / 'splits' / 'train.json')):
        scan_ffpp(root)
    layout = scan_ffpp(root, methods=('Deepfakes',), splits_dir=tmp_path / 'FaceForensics_splits')
    assert _jobs(layout)['original/000'].split == 'train'

    (tmp_path / 'FaceForensics_splits' / 'test.json').write_text('{"pairs": []}')
    with pytest.raises(ValueError, match='test.json'):
        scan_ffpp(root, splits_dir=tmp_path / 'FaceForensics_splits')


def _celebdf_tree(root: Path) -> Path:
    names = {
        'Celeb-real': ['id0_0000', 'id0_0001', 'id1_0000'],
        'YouTube-real': ['00000', '00001'],
        'Celeb-synthesis': ['id0_id1_0000', 'id0_id1_0001', 'id1_id0_0000', 'id0_0000_swap'],
    }
    for folder, stems in names.items():
        for stem in stems:
            _touch(root / folder / f'{stem}.mp4')
    lines = [
        '1 Celeb-real/id0_0000.mp4',
        '1 YouTube-real/00001.mp4',
        '0 Celeb-synthesis/id0_id1_0000.mp4',
        '1 Celeb-synthesis/id1_id0_0000.mp4',  # wrong label: a fake listed as real
        '0 Celeb-synthesis/id5_id6_0003.mp4',  # not on disk
        '',
    ]
    (root / 'List_of_testing_videos.txt').write_text('\n'.join(lines))
    return root


def test_celebdf(tmp_path):
    root = _celebdf_tree(tmp_path)
    layout = scan_celebdf(root)
    assert (layout.dataset, layout.class_names, layout.qualities) == ('celebdf', ('real', 'fake'), ('raw',))
    got = {job.video_id: (job.label, job.class_id, job.split, job.source_id) for job in layout.jobs}
    assert got == {
        'Celeb-real/id0_0000': (0, 0, 'test', 'id0_0000'),
        'Celeb-real/id0_0001': (0, 0, 'train', 'id0_0001'),
        'Celeb-real/id1_0000': (0, 0, 'train', 'id1_0000'),
        'YouTube-real/00000': (0, 0, 'train', '00000'),
        'YouTube-real/00001': (0, 0, 'test', '00001'),
        'Celeb-synthesis/id0_id1_0000': (1, 1, 'test', 'id0_0000'),
        'Celeb-synthesis/id0_id1_0001': (1, 1, 'train', 'id0_0001'),
        'Celeb-synthesis/id1_id0_0000': (1, 1, 'test', 'id1_0000'),
    }
    assert scan_celebdf(root, qualities=('raw',)) == layout
    with pytest.raises(ValueError, match='qualities'):
        scan_celebdf(root, qualities=('c23',))
    job = _jobs(layout)['Celeb-synthesis/id0_id1_0001']
    assert job.paths == {'raw': root / 'Celeb-synthesis' / 'id0_id1_0001.mp4'} and job.mask is None
    assert layout.problems == sorted(
        [
            ('Celeb-synthesis/id1_id0_0000', 'test list says real, folder says fake'),
            ('Celeb-synthesis/id5_id6_0003', 'in the test list but missing on disk'),
            (str(root / 'Celeb-synthesis' / 'id0_0000_swap.mp4'), 'unparsable file name'),
        ]
    )


def test_celebdf_missing_files(tmp_path):
    root = _celebdf_tree(tmp_path)
    (root / 'List_of_testing_videos.txt').write_text('1 Celeb-real/id0_0000.mp4\n2 Celeb-real/id0_0001.mp4\n')
    problems = scan_celebdf(root).problems
    assert (
        f'{root / "List_of_testing_videos.txt"}:2',
        "unparsable test-list line '2 Celeb-real/id0_0001.mp4'",
    ) in problems
    assert not any('test list' in reason for _, reason in problems)
    for path in (root / 'YouTube-real').iterdir():
        path.unlink()
    assert (str(root / 'YouTube-real'), 'empty folder') in scan_celebdf(root).problems
    (root / 'YouTube-real').rmdir()
    with pytest.raises(ValueError, match='YouTube-real'):
        scan_celebdf(root)
    (root / 'List_of_testing_videos.txt').unlink()
    with pytest.raises(ValueError, match=str(root / 'List_of_testing_videos.txt')):
        scan_celebdf(root)


def _dfdm_tree(root: Path, prefix: str = 'DFDM_') -> Path:
    """10 inputs × 5 models × 3 qualities; one lower-case model name, one file missing in crf10, two bad names."""
    for quality in ('crf0', 'crf10', 'crf23'):
        folder = root / f'{prefix}{quality}'
        for name in DFDM_INPUTS:
            for model in MODELS:
                if (name, model, quality) == (DFDM_INPUTS[4], 'IAE', 'crf10'):
                    continue
                spelled = 'dfaker' if (name, model, quality) == (DFDM_INPUTS[3], 'Dfaker', 'crf23') else model
                sub = model if (quality, model) == ('crf23', 'DFL-H128') else ''  # one model in a sub-folder
                _touch(folder / sub / f'{name}_{spelled}.mp4')
    _touch(root / f'{prefix}crf0' / 'id01_Faceswap.mp4')
    _touch(root / f'{prefix}crf0' / f'{DFDM_INPUTS[0]}_SimSwap.mp4')
    return root


def _splits(layout) -> dict[str, str]:
    return {job.video_id: job.split for job in layout.jobs}


def test_dfdm_jobs(tmp_path):
    root = _dfdm_tree(tmp_path)
    layout = scan_dfdm(root)
    assert (layout.dataset, layout.class_names, layout.qualities) == ('dfdm', MODELS, ('crf0', 'crf10', 'crf23'))
    assert layout.class_names == ('Faceswap', 'Lightweight', 'IAE', 'Dfaker', 'DFL-H128')
    jobs = _jobs(layout)
    assert len(jobs) == 49
    for job in layout.jobs:
        model = MODELS[job.class_id]
        assert job.label == 1 and job.mask is None and job.split in ('train', 'test')
        assert job.video_id.startswith(f'{model}/') and job.video_id.endswith(f'_{model}')
        assert job.source_id in DFDM_INPUTS and job.video_id == f'{model}/{job.source_id}_{model}'
    dfl = jobs[f'DFL-H128/{DFDM_INPUTS[2]}_DFL-H128']
    assert dfl.class_id == 4
    assert dfl.paths == {
        'crf0': root / 'DFDM_crf0' / f'{DFDM_INPUTS[2]}_DFL-H128.mp4',
        'crf10': root / 'DFDM_crf10' / f'{DFDM_INPUTS[2]}_DFL-H128.mp4',
        'crf23': root / 'DFDM_crf23' / 'DFL-H128' / f'{DFDM_INPUTS[2]}_DFL-H128.mp4',
    }
    assert (
        jobs[f'Dfaker/{DFDM_INPUTS[3]}_Dfaker'].paths['crf23'] == root / 'DFDM_crf23' / f'{DFDM_INPUTS[3]}_dfaker.mp4'
    )
    assert layout.problems == sorted(
        [
            (f'IAE/{DFDM_INPUTS[4]}_IAE', 'missing quality crf10'),
            (str(root / 'DFDM_crf0' / 'id01_Faceswap.mp4'), 'unparsable file name'),
            (str(root / 'DFDM_crf0' / f'{DFDM_INPUTS[0]}_SimSwap.mp4'), "unknown model name 'SimSwap'"),
        ]
    )
    kept = scan_dfdm(root, qualities=('crf0', 'crf23'))
    assert len(kept.jobs) == 50 and kept.qualities == ('crf0', 'crf23')
    assert all(list(job.paths) == ['crf0', 'crf23'] for job in kept.jobs)
    assert _splits(kept).items() >= _splits(layout).items()  # a missing crf10 file moves no other video


def test_dfdm_split(tmp_path, monkeypatch):
    root = _dfdm_tree(tmp_path)
    layout = scan_dfdm(root, qualities=('crf0', 'crf23'))
    counts = Counter((job.class_id, job.split) for job in layout.jobs)
    assert counts == {(c, split): n for c in range(5) for split, n in (('train', 7), ('test', 3))}
    rng = np.random.default_rng(0)  # the documented rule: per model, permute its sorted ids, first 70% train
    for class_id, model in enumerate(MODELS):
        ids = sorted(f'{model}/{name}_{model}' for name in DFDM_INPUTS)
        train = {ids[i] for i in rng.permutation(len(ids))[:7]}
        assert {job.video_id for job in layout.jobs if job.class_id == class_id and job.split == 'train'} == train
    assert _splits(scan_dfdm(root, qualities=('crf0', 'crf23'))) == _splits(layout)
    other = _splits(scan_dfdm(root, qualities=('crf0', 'crf23'), seed=1))
    assert other != _splits(layout) and Counter(other.values()) == {'train': 35, 'test': 15}
    assert Counter(_splits(scan_dfdm(root, qualities=('crf0',), train_fraction=0.5)).values()) == {
        'train': 25,
        'test': 25,
    }

    iterdir = Path.iterdir
    monkeypatch.setattr(Path, 'iterdir', lambda self: sorted(iterdir(self), reverse=True))
    assert scan_dfdm(root, qualities=('crf0', 'crf23')) == layout


def test_dfdm_folders(tmp_path):
    root = _dfdm_tree(tmp_path / 'plain', prefix='')
    layout = scan_dfdm(root)
    assert _jobs(layout)[f'Faceswap/{DFDM_INPUTS[0]}_Faceswap'].paths['crf10'] == (
        root / 'crf10' / f'{DFDM_INPUTS[0]}_Faceswap.mp4'
    )
    assert _splits(layout) == _splits(scan_dfdm(_dfdm_tree(tmp_path / 'prefixed')))
    (root / 'DFDM_crf0').mkdir()
    with pytest.raises(ValueError, match='found both'):
        scan_dfdm(root)
    with pytest.raises(ValueError, match='DFDM_crf10'):
        scan_dfdm(tmp_path / 'prefixed' / 'DFDM_crf0', qualities=('crf10',))
    with pytest.raises(ValueError, match='train_fraction'):
        scan_dfdm(tmp_path / 'prefixed', train_fraction=1.0)


def test_scan_dispatch(tmp_path):
    root = _dfdm_tree(tmp_path / 'dfdm')
    assert scan('dfdm', root, seed=3) == scan_dfdm(root, seed=3)
    assert scan('celebdf', _celebdf_tree(tmp_path / 'celebdf')).dataset == 'celebdf'
    assert scan('ffpp', _ffpp_tree(tmp_path / 'ffpp'), methods=('Face2Face',)).class_names == ('real', 'Face2Face')
    assert set(layouts.SCANNERS) == set(tfds_builders.BUILDERS) >= {'ffpp', 'celebdf', 'dfdm', 'dfd', 'dfdc', 'ffiw'}
    with pytest.raises(ValueError, match='ffpp, celebdf, dfdm'):
        scan('df40', root)
    for dataset in layouts.SCANNERS:
        with pytest.raises(FileNotFoundError, match=str(tmp_path / 'missing')):
            scan(dataset, tmp_path / 'missing')
