"""`fdx prepare` and `fdx prepare --check` on tiny trees of real encoded videos in the cross-dataset layouts (DFD,
DFDC, DFDC Preview, FFIW-10K, DeeperForensics-1.0): labels, splits and per-method classes of the records, and every
broken item (unlisted, listed but missing, corrupt, faceless, unparsable) reported by name and reason."""

import json
from pathlib import Path

import media
import numpy as np
import pytest
import tensorflow_datasets as tfds

from fdx import cli

VIDEO = dict(frames=6, size=160)


def _face(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    media.face_video(path, seed=seed, **VIDEO)


def _faceless(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    media.blank_video(path, frames=6, size=160)


def _corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).bytes(4000))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def dfd(root: Path):
    reals, fakes = root / 'original_sequences/actors/c23/videos', root / 'manipulated_sequences/DeepFakeDetection'
    _face(reals / '01__walking.mp4', 1)
    _faceless(reals / '02__walking.mp4')
    _face(fakes / 'c23/videos/01_02__walking__ABCDEFGH.mp4', 2)
    _corrupt(fakes / 'c23/videos/02_01__walking__ZZZZZZZZ.mp4')
    _face(fakes / 'c23/videos/clip.mp4', 3)
    records = {
        'actors/01__walking': (0, 0, 'test'),
        'DeepFakeDetection/01_02__walking__ABCDEFGH': (1, 1, 'test'),
    }
    problems = {
        'actors/02__walking': 'no face found',
        'DeepFakeDetection/02_01__walking__ZZZZZZZZ': 'cannot open',
        str(fakes / 'c23/videos/clip.mp4'): 'unparsable file name',
        str(fakes / 'masks/videos'): 'missing mask folder',
    }
    return root, [], ('real', 'DeepFakeDetection'), records, problems


def dfdc(root: Path):
    part = root / 'train/dfdc_train_part_0'
    metadata = {'aaaa.mp4': {'label': 'REAL', 'split': 'train'}, 'bbbb.mp4': {'label': 'FAKE', 'original': 'aaaa.mp4'}}
    _write(part / 'metadata.json', json.dumps(metadata))
    _face(part / 'aaaa.mp4', 1)
    _face(part / 'bbbb.mp4', 2)
    test = root / 'test'
    _write(test / 'labels.csv', 'filename,label\nt1.mp4,0\nt2.mp4,1\nt3.mp4,1\nt4.mp4,0\nt5.mp4,1\n')
    _face(test / 'videos/t1.mp4', 3)
    _face(test / 'videos/t2.mp4', 4)
    _corrupt(test / 'videos/t4.mp4')
    _faceless(test / 'videos/t5.mp4')
    _face(test / 'videos/t6.mp4', 5)  # not in labels.csv
    records = {
        'dfdc_train_part_0/aaaa': (0, 0, 'train'),
        'dfdc_train_part_0/bbbb': (1, 1, 'train'),
        'test/t1': (0, 0, 'test'),
        'test/t2': (1, 1, 'test'),
    }
    problems = {
        'test/t3': 'missing on disk',
        'test/t4': 'cannot open',
        'test/t5': 'no face found',
        str(test / 'videos/t6.mp4'): 'not in',
    }
    return root, [], ('real', 'fake'), records, problems


def dfdcp(root: Path):
    index = {
        'original_videos/100/r1.mp4': {'label': 'real', 'set': 'train'},
        'original_videos/101/r2.mp4': {'label': 'real', 'set': 'test'},
        'method_A/100/100_A/f1.mp4': {'label': 'fake', 'set': 'test'},
        'method_A/100/100_A/f9.mp4': {'label': 'fake', 'set': 'test'},
        'method_B/100/100_B/f2.mp4': {'label': 'fake', 'set': 'train'},
        'method_B/101/101_B/f3.mp4': {'label': 'fake', 'set': 'test'},
    }
    _write(root / 'dataset.json', json.dumps(index))
    _face(root / 'original_videos/100/r1.mp4', 1)
    _faceless(root / 'original_videos/101/r2.mp4')
    _face(root / 'method_A/100/100_A/f1.mp4', 2)
    _face(root / 'method_B/100/100_B/f2.mp4', 3)
    _corrupt(root / 'method_B/101/101_B/f3.mp4')
    _face(root / 'method_B/101/101_B/extra.mp4', 4)  # not in dataset.json
    records = {
        'original_videos/r1': (0, 0, 'train'),
        'method_A/f1': (1, 1, 'test'),
        'method_B/f2': (1, 2, 'train'),
    }
    problems = {
        'original_videos/r2': 'no face found',
        'method_A/100/100_A/f9.mp4': 'missing on disk',
        'method_B/f3': 'cannot open',
        str(root / 'method_B/101/101_B/extra.mp4'): 'not in dataset.json',
    }
    return root, [], ('real', 'method_A', 'method_B'), records, problems


def ffiw(root: Path):
    release = root / 'FFIW10K-v1-release'
    _face(release / 'source/val/videos/val_00000001.mp4', 1)
    _face(release / 'target/val/videos/val_00000001.mp4', 2)
    _corrupt(release / 'target/val/videos/val_00000002.mp4')
    _faceless(release / 'source/train/videos/train_00000001.mp4')
    _face(release / 'target/train/videos/train_00000003.mp4', 3)
    records = {
        'source/val_00000001': (0, 0, 'val'),
        'target/val_00000001': (1, 1, 'val'),
        'target/train_00000003': (1, 1, 'train'),
    }
    problems = {'target/val_00000002': 'cannot open', 'source/train_00000001': 'no face found'}
    return release, [], ('real', 'fake'), records, problems


def deeperforensics(root: Path):
    fakes, ffpp = root / 'DF/manipulated_videos/end_to_end', root / 'FF++/original_sequences/youtube/c23/videos'
    _face(fakes / '000_M101.mp4', 1)
    _corrupt(fakes / '001_M102.mp4')
    _faceless(fakes / '002_W101.mp4')
    _face(fakes / '004_M104.mp4', 2)  # in no split list
    _face(ffpp / '000.mp4', 3)
    _face(ffpp / '002.mp4', 4)
    splits = root / 'DF/lists/splits'
    _write(splits / 'train.txt', '002_W101.mp4\n')
    _write(splits / 'val.txt', '')
    _write(splits / 'test.txt', '000_M101.mp4\n001_M102.mp4\n003_M103.mp4\n')
    records = {
        'manipulated_videos/000_M101': (1, 1, 'test'),
        'original/000': (0, 0, 'test'),
        'original/002': (0, 0, 'train'),
    }
    problems = {
        'manipulated_videos/001_M102': 'cannot open',
        'manipulated_videos/002_W101': 'no face found',
        'manipulated_videos/003_M103': 'missing on disk',
        'manipulated_videos/004_M104': 'not in any split',
    }
    return root / 'DF', ['--option', f'ffpp_root={root / "FF++"}'], ('real', 'fake'), records, problems


LAYOUTS = {'dfd': dfd, 'dfdc': dfdc, 'dfdcp': dfdcp, 'ffiw': ffiw, 'deeperforensics': deeperforensics}


@pytest.mark.parametrize('dataset', LAYOUTS)
def test_prepare_and_check(dataset, tmp_path, capsys):
    src, extra, class_names, expected, expected_problems = LAYOUTS[dataset](tmp_path / 'raw')
    assert cli.main(['prepare', dataset, '--src', str(src), '--check', *extra]) == 0
    report = capsys.readouterr().out
    layout_problems = {
        item: reason for item, reason in expected_problems.items() if reason not in ('cannot open', 'no face found')
    }
    for item, reason in layout_problems.items():
        assert any(item in line and reason in line for line in report.splitlines()), (item, reason, report)

    out = tmp_path / 'data'
    args = ['prepare', dataset, '--src', str(src), '--out', str(out), '--frames', '2', '--crop-size', '64']
    assert cli.main([*args, '--workers', '1', *extra]) == 0
    manifest = json.loads(next(out.glob(f'{dataset}/*/*/manifest.json')).read_text())
    assert manifest['class_names'] == list(class_names)
    reasons = {p['item']: p['reason'] for p in manifest['problems']}
    for item, reason in expected_problems.items():
        assert reason in reasons.get(item, ''), (item, reason, reasons)
    builder = tfds.builder_from_directory(manifest['directory'])
    assert builder.info.features['class_id'].names == list(class_names)
    found = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split=split)
        for i in range(len(source)):
            record = source[i]
            found[record['video_id'].decode()] = (int(record['label']), int(record['class_id']), split)
    assert found == expected


def _records_by_key(out: Path) -> dict:
    manifest = json.loads(next(out.glob('dfdc/*/*/manifest.json')).read_text())
    builder = tfds.builder_from_directory(manifest['directory'])
    found = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split=split)
        for i in range(len(source)):
            record = source[i]
            key = (split, record['video_id'].decode(), int(record['frame_index']))
            found[key] = {k: v.tolist() if hasattr(v, 'tolist') else v for k, v in record.items()}
    return manifest, found


def test_sharded_prepare_equals_unsharded(tmp_path, capsys):
    """`--shard I/N` extracts disjoint parts into the shared cache; `--merge` refuses while a shard is missing, then
    writes the records (keys and contents) and the manifest of an unsharded run."""
    src, extra, *_ = dfdc(tmp_path / 'raw')
    common = ['--frames', '2', '--crop-size', '64', '--workers', '1', *extra]
    assert cli.main(['prepare', 'dfdc', '--src', str(src), '--out', str(tmp_path / 'whole'), *common]) == 0
    sharded = ['prepare', 'dfdc', '--src', str(src), '--out', str(tmp_path / 'sharded'), *common]
    assert cli.main([*sharded, '--shard', '0/3']) == 0
    assert cli.main([*sharded, '--merge']) == 2
    assert 'not extracted' in capsys.readouterr().err
    for shard in ('1/3', '2/3'):
        assert cli.main([*sharded, '--shard', shard]) == 0
    assert cli.main([*sharded, '--merge']) == 0
    whole_manifest, whole = _records_by_key(tmp_path / 'whole')
    merged_manifest, merged = _records_by_key(tmp_path / 'sharded')
    assert merged == whole and len(whole) == 8
    for key in ('splits', 'problems', 'records', 'videos'):
        assert merged_manifest[key] == whole_manifest[key]
    assert cli.main([*sharded, '--shard', '3/3']) == 2
