"""`fdx synth` end to end at a tiny size: both trees are what `fdx prepare` reads, with H.264 at the stated CRFs."""

import json
import subprocess

from fdx import cli
from fdx.synth import build


def codec(path) -> str:
    result = subprocess.run(
        [
            'ffprobe',
            '-v',
            'error',
            '-select_streams',
            'v:0',
            '-show_entries',
            'stream=codec_name,nb_frames',
            '-of',
            'csv=p=0',
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def test_trees_follow_the_official_layouts(synth):
    models = ('Faceswap', 'Lightweight', 'IAE', 'Dfaker', 'DFL-H128')
    for crf in (0, 10, 23):
        names = sorted(p.name for p in (synth / 'dfdm' / f'DFDM_crf{crf}').glob('*.mp4'))
        assert len(names) == 5 * 4 and {n.rsplit('_', 1)[1][:-4] for n in names} == set(models)
        assert codec(synth / 'dfdm' / f'DFDM_crf{crf}' / names[0]) == 'h264,6'
    ffpp = synth / 'ffpp'
    assert len(list((ffpp / 'original_sequences/youtube/c40/videos').glob('*.mp4'))) == 4
    for method in ('Deepfakes', 'FaceSwap'):
        fakes = sorted(p.name for p in (ffpp / 'manipulated_sequences' / method / 'c23' / 'videos').glob('*.mp4'))
        masks = sorted(p.name for p in (ffpp / 'manipulated_sequences' / method / 'masks' / 'videos').glob('*.mp4'))
        assert fakes == masks == ['000_002.mp4', '001_003.mp4', '002_000.mp4', '003_001.mp4']
    splits = {s: json.loads((ffpp / 'splits' / f'{s}.json').read_text()) for s in ('train', 'val', 'test')}
    assert sorted(map(len, splits.values())) == [0, 1, 1]
    assert json.loads((synth / 'synth.json').read_text())['seed'] == 1


def test_prepare_ingests_both_trees(synth, tmp_path):
    for dataset, extra in (('dfdm', []), ('ffpp', ['--methods', 'Deepfakes,FaceSwap'])):
        code = cli.main(
            [
                'prepare',
                dataset,
                '--src',
                str(synth / dataset),
                '--out',
                str(tmp_path),
                '--frames',
                '3',
                '--crop-size',
                '64',
                '--workers',
                '1',
                *extra,
            ]
        )
        assert code == 0
        manifest = json.loads(next(tmp_path.glob(f'{dataset}/*/*/manifest.json')).read_text())
        assert manifest['records'] > 0
        assert not [p for p in manifest['problems'] if 'no face' not in p['reason']], manifest['problems']


def test_reuse_and_missing_ffmpeg(synth, monkeypatch, capsys):
    assert cli.main(['synth', '--out', str(synth), '--size', 'tiny', '--seed', '1']) == 0
    assert 'reusing' in capsys.readouterr().out
    assert cli.main(['synth', '--out', str(synth), '--size', 'tiny', '--seed', '2']) == 2
    monkeypatch.setattr(build.shutil, 'which', lambda name: None)
    assert cli.main(['synth', '--out', str(synth / 'x'), '--size', 'tiny']) == 2
    assert 'apt-get install ffmpeg' in capsys.readouterr().err
