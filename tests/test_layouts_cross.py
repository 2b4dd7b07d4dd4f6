"""Tests for the cross-dataset scanners of fdx.input.layouts (DFD, FaceShifter, DFDC, DFDC Preview, FFIW-10K,
DeeperForensics-1.0) on small trees of empty files and label files named as in the releases."""

import json
from pathlib import Path

import numpy as np
import pytest

from fdx.input import layouts
from fdx.input.layouts import (
    scan,
    scan_deeperforensics,
    scan_dfd,
    scan_dfdc,
    scan_dfdcp,
    scan_ffiw,
    scan_ffpp,
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _jobs(layout) -> dict:
    return {job.video_id: job for job in layout.jobs}


def _summary(layout) -> dict:
    return {job.video_id: (job.label, job.class_id, job.split, job.source_id) for job in layout.jobs}


# ---------------------------------------------------------------------------------------------------- DFD

DFD_REALS = ['01__exit_phone_room', '01__kitchen_pan', '02__exit_phone_room', '03__walking', '04__podium']
DFD_FAKES = [
    '01_02__exit_phone_room__YVGY8LOK',
    '02_01__exit_phone_room__ABCDEFGH',
    '03_04__walking__12345678',
    '04_03__kitchen_pan__QQQQQQQQ',  # its real 04__kitchen_pan is not on disk
]


def _dfd_tree(root: Path) -> Path:
    """Five reals of actors 01–04, four fakes (one without c40, one without a mask), one unparsable name."""
    for quality in ('c23', 'c40'):
        for stem in DFD_REALS:
            _touch(root / 'original_sequences' / 'actors' / quality / 'videos' / f'{stem}.mp4')
        for stem in DFD_FAKES:
            if (stem, quality) != (DFD_FAKES[1], 'c40'):
                _touch(root / 'manipulated_sequences' / 'DeepFakeDetection' / quality / 'videos' / f'{stem}.mp4')
    _touch(root / 'manipulated_sequences' / 'DeepFakeDetection' / 'c23' / 'videos' / 'clip.mp4')
    for stem in DFD_FAKES[:2] + DFD_FAKES[3:]:
        _touch(root / 'manipulated_sequences' / 'DeepFakeDetection' / 'masks' / 'videos' / f'{stem}.mp4')
    return root


def test_dfd_jobs(tmp_path):
    root = _dfd_tree(tmp_path)
    layout = scan_dfd(root)
    assert (layout.dataset, layout.class_names, layout.qualities) == ('dfd', ('real', 'DeepFakeDetection'), ('c23',))
    assert _summary(layout) == {
        **{f'actors/{stem}': (0, 0, 'test', stem) for stem in DFD_REALS},
        'DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK': (1, 1, 'test', '01__exit_phone_room'),
        'DeepFakeDetection/02_01__exit_phone_room__ABCDEFGH': (1, 1, 'test', '02__exit_phone_room'),
        'DeepFakeDetection/03_04__walking__12345678': (1, 1, 'test', '03__walking'),
        'DeepFakeDetection/04_03__kitchen_pan__QQQQQQQQ': (1, 1, 'test', '04__kitchen_pan'),
    }
    jobs = _jobs(layout)
    fakes = root / 'manipulated_sequences' / 'DeepFakeDetection'
    fake = jobs[f'DeepFakeDetection/{DFD_FAKES[0]}']
    assert fake.paths == {'c23': fakes / 'c23' / 'videos' / f'{DFD_FAKES[0]}.mp4'}
    assert fake.mask == fakes / 'masks' / 'videos' / f'{DFD_FAKES[0]}.mp4'
    real = jobs['actors/03__walking']
    assert real.paths == {'c23': root / 'original_sequences' / 'actors' / 'c23' / 'videos' / '03__walking.mp4'}
    assert real.mask is None and jobs[f'DeepFakeDetection/{DFD_FAKES[2]}'].mask is None
    assert [job.video_id for job in layout.jobs] == sorted(jobs, key=lambda v: (jobs[v].class_id, v))
    assert layout.problems == sorted(
        [
            (
                f'DeepFakeDetection/{DFD_FAKES[2]}',
                f'missing mask video {fakes / "masks" / "videos" / DFD_FAKES[2]}.mp4',
            ),
            (f'DeepFakeDetection/{DFD_FAKES[3]}', 'its real actors/04__kitchen_pan is not on disk (kept)'),
            (str(fakes / 'c23' / 'videos' / 'clip.mp4'), 'unparsable file name'),
        ]
    )


def test_dfd_qualities_and_folders(tmp_path):
    root = _dfd_tree(tmp_path)
    layout = scan_dfd(root, qualities=('c23', 'c40'), masks=False)
    assert layout.qualities == ('c23', 'c40') and all(job.mask is None for job in layout.jobs)
    assert f'DeepFakeDetection/{DFD_FAKES[1]}' not in _jobs(layout)
    assert (f'DeepFakeDetection/{DFD_FAKES[1]}', 'missing quality c40') in layout.problems
    assert not any('mask' in reason for _, reason in layout.problems)
    with pytest.raises(ValueError, match=r'actors/raw/videos'):
        scan_dfd(root, qualities=('raw',))
    with pytest.raises(ValueError, match='qualities'):
        scan_dfd(root, qualities=('hq',))
    (root / 'manipulated_sequences' / 'DeepFakeDetection' / 'masks' / 'videos').rename(tmp_path / 'masks')
    mask_dir = root / 'manipulated_sequences' / 'DeepFakeDetection' / 'masks' / 'videos'
    problems = scan_dfd(root).problems
    assert (str(mask_dir), 'missing mask folder: no masks for DeepFakeDetection') in problems
    assert not any(reason.startswith('missing mask video') for _, reason in problems)


def test_dfd_actor_split(tmp_path):
    root = _dfd_tree(tmp_path)
    layout = scan_dfd(root, split='actors', fractions=(0.5, 0.25, 0.25), seed=3)
    actors = ['01', '02', '03', '04']  # the documented rule: permute the sorted actor ids, then 2 / 1 / 1
    order = np.random.default_rng(3).permutation(4)
    expected = {actors[i]: split for i, split in zip(order, ['train', 'train', 'val', 'test'])}
    for job in layout.jobs:
        assert job.split == expected[job.video_id.split('/')[1][:2]]  # a fake goes with its target actor
    assert {job.split for job in layout.jobs} == {'train', 'val', 'test'}
    assert scan_dfd(root, split='actors', fractions=(0.5, 0.25, 0.25), seed=3) == layout
    default = scan_dfd(root, split='actors')  # (0.7, 0.15, 0.15) of 4 actors: 3 / 1 / 0 (round(0.6) == 1)
    assert len({job.video_id.split('/')[1][:2] for job in default.jobs if job.split == 'train'}) == 3
    with pytest.raises(ValueError, match='fractions'):
        scan_dfd(root, split='actors', fractions=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match='split'):
        scan_dfd(root, split='random')


# ---------------------------------------------------------------------------------------------------- FaceShifter


def test_ffpp_faceshifter(tmp_path):
    for stem in ('000', '001', '002', '003'):
        _touch(tmp_path / 'original_sequences' / 'youtube' / 'c23' / 'videos' / f'{stem}.mp4')
    for stem in ('000_001', '001_000', '002_003'):
        _touch(tmp_path / 'manipulated_sequences' / 'FaceShifter' / 'c23' / 'videos' / f'{stem}.mp4')
    for split, pairs in {'train': [['000', '001']], 'val': [], 'test': [['002', '003']]}.items():
        _write(tmp_path / 'splits' / f'{split}.json', json.dumps(pairs))
    layout = scan_ffpp(tmp_path, qualities=('c23',), methods=('FaceShifter',))
    assert layout.class_names == ('real', 'FaceShifter')
    assert _summary(layout) == {
        'original/000': (0, 0, 'train', '000'),
        'original/001': (0, 0, 'train', '001'),
        'original/002': (0, 0, 'test', '002'),
        'original/003': (0, 0, 'test', '003'),
        'FaceShifter/000_001': (1, 1, 'train', '000'),
        'FaceShifter/001_000': (1, 1, 'train', '001'),
        'FaceShifter/002_003': (1, 1, 'test', '002'),
    }
    assert all(job.mask is None for job in layout.jobs)  # FaceShifter has no masks
    mask_dir = tmp_path / 'manipulated_sequences' / 'FaceShifter' / 'masks' / 'videos'
    assert layout.problems == sorted(
        [
            ('FaceShifter/003_002', 'listed in the test split but missing on disk'),
            (str(mask_dir), 'missing mask folder: no masks for this method'),
        ]
    )


# ---------------------------------------------------------------------------------------------------- DFDC


def _dfdc_tree(root: Path) -> Path:
    part0 = root / 'train' / 'dfdc_train_part_0'
    metadata = {
        'aaaaaaaaaa.mp4': {'label': 'REAL', 'split': 'train'},
        'bbbbbbbbbb.mp4': {'label': 'FAKE', 'split': 'train', 'original': 'aaaaaaaaaa.mp4'},
        'cccccccccc.mp4': {'label': 'FAKE', 'split': 'train', 'original': 'zzzzzzzzzz.mp4'},  # original not here
        'dddddddddd.mp4': {'label': 'FAKE', 'split': 'train', 'original': None},
        'eeeeeeeeee.mp4': {'label': 'MAYBE', 'split': 'train'},  # bad label
        'ffffffffff.mp4': {'label': 'REAL', 'split': 'train', 'original': None},  # not on disk
    }
    _write(part0 / 'metadata.json', json.dumps(metadata))
    for name in ('aaaaaaaaaa', 'bbbbbbbbbb', 'cccccccccc', 'dddddddddd', 'eeeeeeeeee', 'gggggggggg'):
        _touch(part0 / f'{name}.mp4')  # gggggggggg is not in metadata.json
    part1 = root / 'dfdc_train_part_1'  # a part directly under the root
    part1_metadata = {
        'hhhhhhhhhh.mp4': {'label': 'REAL', 'split': 'train'},
        'iiiiiiiiii.mp4': {'label': 'FAKE', 'split': 'train', 'original': 'hhhhhhhhhh.mp4'},
    }
    _write(part1 / 'metadata.json', json.dumps(part1_metadata))
    _touch(part1 / 'hhhhhhhhhh.mp4')
    _touch(part1 / 'iiiiiiiiii.mp4')
    _touch(root / 'train' / 'dfdc_train_part_2' / 'jjjjjjjjjj.mp4')  # no metadata.json
    _write(root / 'train' / 'dfdc_train_part_3' / 'metadata.json', '{"kkkkkkkkkk.mp4": ')  # truncated
    _write(root / 'test' / 'labels.csv', 'filename,label\nt1.mp4,0\nt2.mp4,1\nt3.mp4,1\nt4.mp4,2\n')
    for name in ('t1', 't2', 't5', 't4'):
        _touch(root / 'test' / 'videos' / f'{name}.mp4')
    _write(root / 'validation' / 'labels.csv', 'filename,label\nv1.mp4,1\n')
    _touch(root / 'validation' / 'v1.mp4')  # beside the label file
    return root


def test_dfdc(tmp_path):
    root = _dfdc_tree(tmp_path)
    layout = scan_dfdc(root, val_parts=(1,))
    assert (layout.dataset, layout.class_names, layout.qualities) == ('dfdc', ('real', 'fake'), ('raw',))
    assert _summary(layout) == {
        'dfdc_train_part_0/aaaaaaaaaa': (0, 0, 'train', 'aaaaaaaaaa'),
        'dfdc_train_part_0/bbbbbbbbbb': (1, 1, 'train', 'aaaaaaaaaa'),
        'dfdc_train_part_0/cccccccccc': (1, 1, 'train', 'zzzzzzzzzz'),
        'dfdc_train_part_0/dddddddddd': (1, 1, 'train', 'dddddddddd'),
        'dfdc_train_part_1/hhhhhhhhhh': (0, 0, 'val', 'hhhhhhhhhh'),
        'dfdc_train_part_1/iiiiiiiiii': (1, 1, 'val', 'hhhhhhhhhh'),
        'test/t1': (0, 0, 'test', 't1'),
        'test/t2': (1, 1, 'test', 't2'),
        'validation/v1': (1, 1, 'val', 'v1'),
    }
    jobs = _jobs(layout)
    assert jobs['test/t2'].paths == {'raw': root / 'test' / 'videos' / 't2.mp4'} and jobs['test/t2'].mask is None
    assert jobs['validation/v1'].paths == {'raw': root / 'validation' / 'v1.mp4'}
    assert jobs['dfdc_train_part_1/iiiiiiiiii'].paths == {'raw': root / 'dfdc_train_part_1' / 'iiiiiiiiii.mp4'}
    part0, meta0 = root / 'train' / 'dfdc_train_part_0', root / 'train' / 'dfdc_train_part_0' / 'metadata.json'
    meta3 = root / 'train' / 'dfdc_train_part_3' / 'metadata.json'
    labels = root / 'test' / 'labels.csv'
    problems = dict(layout.problems)
    assert problems.pop(str(meta3)).startswith('unparsable metadata: ')
    assert problems == {
        'dfdc_train_part_0/cccccccccc': 'its original zzzzzzzzzz is not in the dataset (kept)',
        'dfdc_train_part_0/dddddddddd': 'fake without an original (kept; its own stem is its source_id)',
        'dfdc_train_part_0/eeeeeeeeee': f"bad label entry in {meta0}: {{'label': 'MAYBE', 'split': 'train'}}",
        'dfdc_train_part_0/ffffffffff': f'in {meta0} but missing on disk',
        str(part0 / 'gggggggggg.mp4'): f'not in {meta0}',
        str(root / 'train' / 'dfdc_train_part_2'): 'missing metadata.json: part skipped',
        f'{labels}:5': "bad label entry 't4.mp4': '2'",
        'test/t3': f'in {labels} but missing on disk',
        str(root / 'test' / 'videos' / 't4.mp4'): f'not in {labels}',
        str(root / 'test' / 'videos' / 't5.mp4'): f'not in {labels}',
    }
    assert layout.problems == sorted(layout.problems)
    assert [job.video_id for job in layout.jobs] == sorted(jobs, key=lambda v: (jobs[v].class_id, v))
    assert {job.split for job in scan_dfdc(root).jobs if job.video_id.startswith('dfdc_')} == {'train'}
    moved = _summary(scan_dfdc(root, test_parts=(0,), val_parts=(7,)))
    assert moved['dfdc_train_part_0/aaaaaaaaaa'][2] == 'test' and moved['dfdc_train_part_1/hhhhhhhhhh'][2] == 'train'
    assert ('dfdc_train_part_7', 'requested in val_parts/test_parts but not found') in scan_dfdc(
        root, val_parts=(7,)
    ).problems


def test_dfdc_folders(tmp_path):
    root = _dfdc_tree(tmp_path / 'full')
    with pytest.raises(ValueError, match='overlap'):
        scan_dfdc(root, val_parts=(1,), test_parts=(1, 2))
    _write(root / 'train' / 'dfdc_train_part_1' / 'metadata.json', '{}')
    with pytest.raises(ValueError, match='part 1 found twice'):
        scan_dfdc(root)
    (root / 'train' / 'dfdc_train_part_1' / 'metadata.json').unlink()
    (root / 'train' / 'dfdc_train_part_1').rmdir()
    (root / 'test' / 'labels.csv').unlink()
    with pytest.raises(ValueError, match=str(root / 'test' / 'labels.csv')):
        scan_dfdc(root)
    _write(root / 'test' / 'labels.csv', 'name,is_fake\nt1.mp4,0\n')
    with pytest.raises(ValueError, match='filename,label'):
        scan_dfdc(root)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no DFDC data'):
        scan_dfdc(tmp_path / 'empty')
    with pytest.raises(ValueError, match='qualities'):
        scan_dfdc(root, qualities=('c23',))

    flat = tmp_path / 'sbi'  # SBI keeps the test set's labels.csv and videos/ at the root
    _write(flat / 'labels.csv', 'filename,label\nx.mp4,1\ny.mp4,0\n')
    _touch(flat / 'videos' / 'x.mp4')
    _touch(flat / 'videos' / 'y.mp4')
    assert _summary(scan_dfdc(flat)) == {'test/y': (0, 0, 'test', 'y'), 'test/x': (1, 1, 'test', 'x')}

    meta = tmp_path / 'meta'  # DeepFakeChain reads the test labels from test/metadata.json ("is_fake")
    _write(meta / 'test' / 'metadata.json', json.dumps({'x.mp4': {'is_fake': 1}, 'y.mp4': {'is_fake': 'yes'}}))
    _touch(meta / 'test' / 'videos' / 'x.mp4')
    layout = scan_dfdc(meta)
    assert _summary(layout) == {'test/x': (1, 1, 'test', 'x')}
    assert layout.problems == [('test/y', f"bad label entry in {meta / 'test' / 'metadata.json'}: 'yes'")]


# ---------------------------------------------------------------------------------------------------- DFDC Preview

DFDCP_INDEX = {
    'original_videos/100/r1.mp4': {'label': 'real', 'set': 'train', 'target_id': '100'},
    'original_videos/100/r2.mp4': {'label': 'real', 'set': 'test', 'target_id': '100'},
    'original_videos/101/r3.mp4': {'label': 'real', 'set': 'train', 'target_id': '101'},
    'original_videos/101/r4.mp4': {'label': 'fake', 'set': 'train'},  # disagrees with its folder
    'method_A/100/100_A/f1.mp4': {'label': 'fake', 'set': 'train', 'source_video': 'original_videos/100/r1.mp4'},
    'method_A/101/101_A/f2.mp4': {'label': 'fake', 'set': 'test', 'source_video': 'unknown_format'},
    'method_A/100/100_A/f4.mp4': {'label': 'fake', 'set': 'test'},  # not on disk
    'method_B/100/100_B/f3.mp4': {'label': 'fake', 'set': 'train'},
    'method_B/100/100_C/f3.mp4': {'label': 'fake', 'set': 'train'},  # the stem f3 repeats in method_B
    'method_B/101/101_B/f5.mp4': {'label': 'maybe', 'set': 'train'},  # bad label
    'method_B/101/101_B/f6.mp4': {'label': 'fake', 'set': 'dev'},  # bad set
    'other/x.mp4': {'label': 'fake', 'set': 'train'},
}


def _dfdcp_tree(root: Path) -> Path:
    _write(root / 'dataset.json', json.dumps(DFDCP_INDEX))
    for key in DFDCP_INDEX:
        if key.split('/')[-1] not in ('f4.mp4', 'x.mp4') and key != 'method_B/100/100_B/f3.mp4':
            _touch(root / key)
    _touch(root / 'method_B' / 'videos' / '100' / '100_B' / 'f3.mp4')  # SBI's copy: a videos/ level
    _touch(root / 'method_A' / '101' / '101_A' / 'extra.mp4')  # not in dataset.json
    return root


def test_dfdcp(tmp_path):
    root = _dfdcp_tree(tmp_path)
    layout = scan_dfdcp(root)
    assert (layout.dataset, layout.class_names, layout.qualities) == (
        'dfdcp',
        ('real', 'method_A', 'method_B'),
        ('raw',),
    )
    assert _summary(layout) == {
        'original_videos/r1': (0, 0, 'train', 'r1'),
        'original_videos/r2': (0, 0, 'test', 'r2'),
        'original_videos/r3': (0, 0, 'train', 'r3'),
        'original_videos/r4': (0, 0, 'train', 'r4'),
        'method_A/f1': (1, 1, 'train', 'r1'),  # its source_video names a listed real
        'method_A/f2': (1, 1, 'test', 'f2'),
        'method_B/100/100_B/f3': (1, 2, 'train', 'f3'),
        'method_B/100/100_C/f3': (1, 2, 'train', 'f3'),
    }
    jobs = _jobs(layout)
    assert jobs['method_B/100/100_B/f3'].paths == {'raw': root / 'method_B' / 'videos' / '100' / '100_B' / 'f3.mp4'}
    assert jobs['method_A/f1'].paths == {'raw': root / 'method_A' / '100' / '100_A' / 'f1.mp4'}
    index = root / 'dataset.json'
    assert layout.problems == sorted(
        [
            ('method_A/100/100_A/f4.mp4', 'in dataset.json but missing on disk'),
            ('method_B/101/101_B/f5.mp4', f"bad label entry in {index}: {{'label': 'maybe', 'set': 'train'}}"),
            ('method_B/101/101_B/f6.mp4', f"bad label entry in {index}: {{'label': 'fake', 'set': 'dev'}}"),
            ('original_videos/101/r4.mp4', 'dataset.json says fake, folder original_videos says otherwise (kept)'),
            ('other/x.mp4', 'unexpected path in dataset.json'),
            (str(root / 'method_A' / '101' / '101_A' / 'extra.mp4'), 'not in dataset.json'),
        ]
    )


def test_dfdcp_val_and_folders(tmp_path):
    root = _dfdcp_tree(tmp_path)
    layout = scan_dfdcp(root, val_fraction=0.5, seed=1)
    train_sources = ['f3', 'r1', 'r3', 'r4']  # the documented rule: permute the sorted train source ids
    order = np.random.default_rng(1).permutation(4)
    expected = {train_sources[i]: split for i, split in zip(order, ['train', 'train', 'val', 'val'])}
    for job in layout.jobs:
        assert job.split == (
            'test' if job.video_id in ('original_videos/r2', 'method_A/f2') else expected[job.source_id]
        )
    assert layout.problems == scan_dfdcp(root).problems
    with pytest.raises(ValueError, match='val_fraction'):
        scan_dfdcp(root, val_fraction=1.0)
    (root / 'dataset.json').write_text('[1, 2]')
    with pytest.raises(ValueError, match='not a'):
        scan_dfdcp(root)
    (root / 'dataset.json').write_text('{"a": ')
    with pytest.raises(ValueError, match='not valid JSON'):
        scan_dfdcp(root)
    (root / 'dataset.json').unlink()
    with pytest.raises(ValueError, match=str(root / 'dataset.json')):
        scan_dfdcp(root)
    _write(root / 'dataset.json', '{}')
    (root / 'method_B').rename(tmp_path / 'method_B_elsewhere')
    with pytest.raises(ValueError, match=str(root / 'method_B')):
        scan_dfdcp(root)


# ---------------------------------------------------------------------------------------------------- FFIW-10K


def _ffiw_tree(root: Path) -> tuple[Path, Path]:
    release, test_release = root / 'FFIW10K-v1-release', root / 'FFIW10K-v1-release-test'
    for kind, stems in {
        'source': ['train_00000001', '00000009'],
        'target': ['train_00000001', 'train_00000003'],
    }.items():
        for stem in stems:
            _touch(release / kind / 'train' / 'videos' / f'{stem}.mp4')  # SBI: <kind>/<split>/videos/
    for kind in ('source', 'target'):
        _touch(release / kind / 'val' / 'val_00000001.mp4')  # others: the videos in the split folder
    _touch(release / 'source' / 'val' / '00000009.mp4')  # the stem 00000009 repeats across splits
    _touch(release / 'source' / 'test' / 'test_00000005.mp4')  # a test split without target/test
    _touch(release / 'target_mask' / 'val' / 'val_00000001.mp4')
    _touch(test_release / 'source' / 'test' / 'test_00000001.mp4')
    _touch(test_release / 'target' / 'test' / 'test_00000002.mp4')
    return release, test_release


def test_ffiw(tmp_path):
    release, test_release = _ffiw_tree(tmp_path)
    layout = scan_ffiw(release, test_root=test_release)
    assert (layout.dataset, layout.class_names, layout.qualities) == ('ffiw', ('real', 'fake'), ('raw',))
    assert _summary(layout) == {
        'source/train/00000009': (0, 0, 'train', '00000009'),
        'source/val/00000009': (0, 0, 'val', '00000009'),
        'source/train_00000001': (0, 0, 'train', 'train_00000001'),
        'source/val_00000001': (0, 0, 'val', 'val_00000001'),
        'source/test_00000005': (0, 0, 'test', 'test_00000005'),
        'source/test_00000001': (0, 0, 'test', 'test_00000001'),
        'target/train_00000001': (1, 1, 'train', 'train_00000001'),
        'target/train_00000003': (1, 1, 'train', 'train_00000003'),
        'target/val_00000001': (1, 1, 'val', 'val_00000001'),
        'target/test_00000002': (1, 1, 'test', 'test_00000002'),
    }
    jobs = _jobs(layout)
    assert jobs['target/train_00000003'].paths == {
        'raw': release / 'target' / 'train' / 'videos' / 'train_00000003.mp4'
    }
    assert jobs['source/val_00000001'].paths == {'raw': release / 'source' / 'val' / 'val_00000001.mp4'}
    assert jobs['source/test_00000001'].paths == {'raw': test_release / 'source' / 'test' / 'test_00000001.mp4'}
    assert all(job.mask is None for job in layout.jobs)
    assert layout.problems == [
        (str(release / 'target' / 'test'), 'missing folder: the test split has no target videos')
    ]
    assert scan_ffiw(test_release).jobs == [jobs['source/test_00000001'], jobs['target/test_00000002']]

    masked = _jobs(scan_ffiw(release, masks=True))
    assert masked['target/val_00000001'].mask == release / 'target_mask' / 'val' / 'val_00000001.mp4'
    assert masked['target/train_00000001'].mask is None and masked['source/val_00000001'].mask is None
    assert (str(release / 'target_mask' / 'train'), 'missing mask folder: no masks for this split') in scan_ffiw(
        release, masks=True
    ).problems


def test_ffiw_folders(tmp_path):
    release, _ = _ffiw_tree(tmp_path)
    (release / 'source' / 'val' / 'val_00000001.mp4').unlink()
    (release / 'source' / 'val' / '00000009.mp4').unlink()
    assert (str(release / 'source' / 'val'), 'empty folder') in scan_ffiw(release).problems
    with pytest.raises(ValueError, match='qualities'):
        scan_ffiw(release, qualities=('c23',))
    (tmp_path / 'bare' / 'source').mkdir(parents=True)
    (tmp_path / 'bare' / 'target').mkdir()
    with pytest.raises(ValueError, match='no FFIW split folder'):
        scan_ffiw(tmp_path / 'bare')
    (release / 'target').rename(tmp_path / 'target_elsewhere')
    with pytest.raises(ValueError, match=str(release / 'target')):
        scan_ffiw(release)


# ----------------------------------------------------------------------------------------------- DeeperForensics-1.0

DF_FAKES = ['000_M101', '001_W102', '002_M103', '003_M101', '004_W104']  # 004_W104 is in no split list


def _df_tree(root: Path) -> tuple[Path, Path]:
    df, ffpp = root / 'DeeperForensics-1.0', root / 'FaceForensics++'
    for variant in ('end_to_end', 'end_to_end_level_1'):
        for stem in DF_FAKES:
            if (variant, stem) != ('end_to_end_level_1', '001_W102'):
                _touch(df / 'manipulated_videos' / variant / f'{stem}.mp4')
    _touch(df / 'manipulated_videos' / 'end_to_end' / 'bad.mp4')
    _write(df / 'lists' / 'splits' / 'train.txt', '000_M101.mp4\n003_M101.mp4\n')
    _write(df / 'lists' / 'splits' / 'val.txt', '001_W102.mp4\n')
    _write(df / 'lists' / 'splits' / 'test.txt', '002_M103.mp4\n005_W105.mp4\nnot a name\n\n')
    for stem in ('000', '001', '002', '003', '004', '005', '009'):
        _touch(ffpp / 'original_sequences' / 'youtube' / 'c23' / 'videos' / f'{stem}.mp4')
    for actor, sub in [('M101', 'light_up/happy/camera_front'), ('W102', 'BlendShape/camera_down'), ('W999', 'x')]:
        name = f'{actor}_{sub.replace("/", "_")}.mp4'
        _touch(df / 'source_videos' / actor / sub / name)
    return df, ffpp


def test_deeperforensics_ffpp_reals(tmp_path):
    df, ffpp = _df_tree(tmp_path)
    layout = scan_deeperforensics(df, ffpp_root=ffpp)
    assert (layout.dataset, layout.class_names, layout.qualities) == ('deeperforensics', ('real', 'fake'), ('raw',))
    assert _summary(layout) == {
        'original/000': (0, 0, 'train', '000'),
        'original/001': (0, 0, 'val', '001'),
        'original/002': (0, 0, 'test', '002'),
        'original/003': (0, 0, 'train', '003'),
        'original/005': (0, 0, 'test', '005'),
        'manipulated_videos/000_M101': (1, 1, 'train', '000'),
        'manipulated_videos/001_W102': (1, 1, 'val', '001'),
        'manipulated_videos/002_M103': (1, 1, 'test', '002'),
        'manipulated_videos/003_M101': (1, 1, 'train', '003'),
    }
    jobs = _jobs(layout)
    assert jobs['manipulated_videos/002_M103'].paths == {
        'raw': df / 'manipulated_videos' / 'end_to_end' / '002_M103.mp4'
    }
    assert jobs['original/002'].paths == {'raw': ffpp / 'original_sequences' / 'youtube' / 'c23' / 'videos' / '002.mp4'}
    splits = df / 'lists' / 'splits'
    assert layout.problems == sorted(
        [
            (f'{splits / "test.txt"}:3', "unparsable split-list line 'not a name'"),
            ('manipulated_videos/004_W104', 'not in any split'),
            ('manipulated_videos/005_W105', 'listed in the test split but missing on disk'),
            ('original/004', 'not in any split'),
            ('original/009', 'not in any split'),
            (str(df / 'manipulated_videos' / 'end_to_end' / 'bad.mp4'), 'unparsable file name'),
        ]
    )

    variants = scan_deeperforensics(df, ffpp_root=ffpp, qualities=('raw', 'end_to_end_level_1'))
    assert variants.qualities == ('raw', 'end_to_end_level_1')
    jobs = _jobs(variants)
    assert jobs['manipulated_videos/000_M101'].paths == {
        'raw': df / 'manipulated_videos' / 'end_to_end' / '000_M101.mp4',
        'end_to_end_level_1': df / 'manipulated_videos' / 'end_to_end_level_1' / '000_M101.mp4',
    }
    real = ffpp / 'original_sequences' / 'youtube' / 'c23' / 'videos' / '000.mp4'
    assert jobs['original/000'].paths == {'raw': real, 'end_to_end_level_1': real}  # a real's single file
    assert ('manipulated_videos/001_W102', 'missing quality end_to_end_level_1') in variants.problems
    assert 'manipulated_videos/001_W102' not in jobs


def test_deeperforensics_source_reals_and_options(tmp_path):
    df, ffpp = _df_tree(tmp_path)
    layout = scan_deeperforensics(df, reals='source')
    reals = {v: s for v, s in _summary(layout).items() if s[0] == 0}
    assert reals == {
        'source_videos/M101_light_up_happy_camera_front': (0, 0, 'train', 'M101_light_up_happy_camera_front'),
        'source_videos/W102_BlendShape_camera_down': (0, 0, 'val', 'W102_BlendShape_camera_down'),
    }
    assert ('source_videos/W999_x', 'not in any split') in layout.problems
    assert [job.video_id for job in scan_deeperforensics(df, reals='none').jobs] == [
        f'manipulated_videos/{stem}' for stem in DF_FAKES[:4]
    ]
    with pytest.raises(ValueError, match='ffpp_root'):
        scan_deeperforensics(df)
    with pytest.raises(ValueError, match='reals'):
        scan_deeperforensics(df, reals='youtube')
    with pytest.raises(ValueError, match='qualities'):
        scan_deeperforensics(df, reals='none', qualities=('end_to_end',))  # spelled 'raw'
    with pytest.raises(ValueError, match='end_to_end_level_2'):
        scan_deeperforensics(df, reals='none', qualities=('end_to_end_level_2',))
    with pytest.raises(ValueError, match=r'youtube/c40/videos'):
        scan_deeperforensics(df, ffpp_root=ffpp, ffpp_quality='c40')
    (df / 'lists' / 'splits' / 'val.txt').unlink()
    layout = scan_deeperforensics(df, reals='none')
    assert (str(df / 'lists' / 'splits' / 'val.txt'), 'missing split list') in layout.problems
    assert ('manipulated_videos/001_W102', 'not in any split') in layout.problems
    (df / 'lists' / 'splits').rename(tmp_path / 'splits')
    with pytest.raises(ValueError, match=str(df / 'lists' / 'splits' / 'train.txt')):
        scan_deeperforensics(df, reals='none')
    assert len(scan_deeperforensics(df, reals='none', splits_dir=tmp_path / 'splits').jobs) == 3


# ---------------------------------------------------------------------------------------------------- dispatch


def test_scan_dispatch_cross(tmp_path):
    assert {'dfd', 'dfdc', 'dfdcp', 'ffiw', 'deeperforensics'} <= set(layouts.SCANNERS)
    dfd = _dfd_tree(tmp_path / 'dfd')
    assert scan('dfd', dfd, split='actors', seed=2) == scan_dfd(dfd, split='actors', seed=2)
    dfdc = _dfdc_tree(tmp_path / 'dfdc')
    assert scan('dfdc', dfdc, val_parts=(1,)) == scan_dfdc(dfdc, val_parts=(1,))
    assert scan('dfdcp', _dfdcp_tree(tmp_path / 'dfdcp')).dataset == 'dfdcp'
    release, test_release = _ffiw_tree(tmp_path / 'ffiw')
    assert scan('ffiw', release, test_root=test_release) == scan_ffiw(release, test_root=test_release)
    df, ffpp = _df_tree(tmp_path / 'df')
    assert scan('deeperforensics', df, ffpp_root=ffpp) == scan_deeperforensics(df, ffpp_root=ffpp)
    with pytest.raises(ValueError, match='deeperforensics'):
        scan('df40', df)
    for dataset in ('dfd', 'dfdc', 'dfdcp', 'ffiw', 'deeperforensics'):
        with pytest.raises(FileNotFoundError, match=str(tmp_path / 'missing')):
            scan(dataset, tmp_path / 'missing')
