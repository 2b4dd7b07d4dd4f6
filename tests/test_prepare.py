"""`fdx prepare` on small trees in the official FF++, Celeb-DF v2 and DFDM layouts, made of real encoded face videos."""

import io
import json
from pathlib import Path

import cv2
import media
import numpy as np
import pytest
import tensorflow_datasets as tfds
from compilation_cache import persistent_compilation_cache

from fdx import cli
from fdx.input import prepare as prepare_lib
from fdx.input import records, tfds_builders
from fdx.input.records import SplitIndex

FRAMES = 4  # sampled per video
VIDEO = dict(frames=12, size=192)


@pytest.fixture(scope='module', autouse=True)
def compilation_cache(tmp_path_factory):
    """The tiny runs on the same view (here, a grid's points and crosseval's evaluations) compile each program once."""
    with persistent_compilation_cache(tmp_path_factory.mktemp('jax-cache')) as path:
        yield path


def degrade(path: Path, frames: list[np.ndarray]) -> None:
    """A lower-quality copy of the same frames (blurred, as heavier compression would), same frame count."""
    media.write_video(path, [cv2.GaussianBlur(f, (5, 5), 1.5) for f in frames])


def face_pair(hq: Path, lq: Path, seed: int, shift=(30, 10)) -> list[np.ndarray]:
    hq.parent.mkdir(parents=True, exist_ok=True)
    lq.parent.mkdir(parents=True, exist_ok=True)
    frames = media.face_video(hq, seed=seed, shift=shift, **VIDEO)
    degrade(lq, frames)
    return frames


def ffpp_tree(root: Path) -> Path:
    """Reals 000-005, Deepfakes fakes of pairs (000,001) train, (002,003) val, (004,005) test, at c23 and c40, masks.

    Broken on purpose: original 005 is an empty file at c23 and c40; Deepfakes 003_002 has no face; the mask of
    Deepfakes 001_000 is missing; the mask of 004_005 is random bytes.
    """
    original = root / 'original_sequences' / 'youtube'
    fake = root / 'manipulated_sequences' / 'Deepfakes'
    for i in range(6):
        name = f'{i:03d}.mp4'
        face_pair(original / 'c23' / 'videos' / name, original / 'c40' / 'videos' / name, seed=i)
    for a, b in ((0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4)):
        name = f'{a:03d}_{b:03d}.mp4'
        if (a, b) == (3, 2):
            for quality in ('c23', 'c40'):
                (fake / quality / 'videos').mkdir(parents=True, exist_ok=True)
                media.blank_video(fake / quality / 'videos' / name, frames=12, size=192)
            continue
        face_pair(fake / 'c23' / 'videos' / name, fake / 'c40' / 'videos' / name, seed=10 + a, shift=(-20, 15))
        (fake / 'masks' / 'videos').mkdir(parents=True, exist_ok=True)
        if (a, b) != (1, 0):
            media.mask_video(fake / 'masks' / 'videos' / name, frames=12, size=192, shift=(-20, 15), codec='mp4v')
    (fake / 'masks' / 'videos' / '004_005.mp4').write_bytes(np.random.default_rng(0).bytes(5000))
    for quality in ('c23', 'c40'):
        (original / quality / 'videos' / '005.mp4').write_bytes(b'')
    (root / 'splits').mkdir()
    for split, pair in (('train', ['000', '001']), ('val', ['002', '003']), ('test', ['004', '005'])):
        (root / 'splits' / f'{split}.json').write_text(json.dumps([pair]))
    return root


def dfdm_tree(root: Path) -> Path:
    for quality in ('crf0', 'crf10', 'crf23'):
        (root / f'DFDM_{quality}').mkdir(parents=True)
    for c, model in enumerate(('Faceswap', 'Lightweight', 'IAE', 'Dfaker', 'DFL-H128')):
        for v in range(2):
            name = f'id{c:02d}_id{v + 10:02d}_{v}_{model}.mp4'
            frames = media.face_video(root / 'DFDM_crf0' / name, seed=20 + 2 * c + v, **VIDEO)
            for quality in ('crf10', 'crf23'):
                degrade(root / f'DFDM_{quality}' / name, frames)
    (root / 'DFDM_crf23' / 'garbage_name.mp4').write_bytes(b'x' * 100)
    return root


def celebdf_tree(root: Path) -> Path:
    for folder, name, seed in (
        ('Celeb-real', 'id0_0000', 1),
        ('Celeb-real', 'id1_0001', 2),
        ('YouTube-real', '00000', 3),
        ('Celeb-synthesis', 'id0_id1_0000', 4),
        ('Celeb-synthesis', 'id1_id0_0001', 5),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        media.face_video(root / folder / f'{name}.mp4', seed=seed, **VIDEO)
    (root / 'Celeb-synthesis' / 'id2_id0_0002.mp4').write_bytes(np.random.default_rng(1).bytes(3000))  # corrupt
    (root / 'List_of_testing_videos.txt').write_text('1 Celeb-real/id1_0001.mp4\n0 Celeb-synthesis/id1_id0_0001.mp4\n')
    return root


def run_prepare(dataset: str, src: Path, out: Path, *extra: str) -> dict:
    args = [
        'prepare',
        dataset,
        '--src',
        str(src),
        '--out',
        str(out),
        '--frames',
        str(FRAMES),
        '--crop-size',
        '96',
        '--workers',
        '2',
        *extra,
    ]
    code = cli.main(args)
    manifest = json.loads(next(out.glob(f'{dataset}/*/*/manifest.json')).read_text())
    assert code == (0 if manifest['records'] else 1)
    return manifest


def source(manifest: dict, split: str):
    return tfds.builder_from_directory(manifest['directory']).as_data_source(split=split)


def by_video(src) -> dict[str, list[dict]]:
    out = {}
    for i in range(len(src)):
        record = src[i]
        out.setdefault(record['video_id'].decode(), []).append(record)
    return out


def reasons(manifest: dict) -> dict[str, str]:
    return {p['item']: p['reason'] for p in manifest['problems']}


@pytest.fixture(scope='module')
def ffpp(tmp_path_factory):
    root = tmp_path_factory.mktemp('ffpp')
    return run_prepare('ffpp', ffpp_tree(root / 'raw'), root / 'data', '--methods', 'Deepfakes'), root


@pytest.mark.parametrize('shape', [(320, 320, 3), (37, 53, 3), (1, 1, 3), (64, 48), (1, 7)])
def test_png_crops_decode_to_the_same_pixels(shape):
    """`records.encode_png` (fdx's own PNG writer) is lossless for every decoder: OpenCV (libpng), Pillow (which
    checks every chunk's CRC) and `records.decode_image`; its files of smooth images stay as small as OpenCV's."""
    from PIL import Image

    rng = np.random.default_rng(sum(shape))
    smooth = cv2.resize(rng.integers(0, 256, (8, 8) + shape[2:], np.uint8), shape[1::-1], cv2.INTER_CUBIC)
    noise = rng.integers(0, 256, shape, np.uint8)
    for image in (noise, noise[::-1, ::-1], smooth.reshape(shape), np.full(shape, 255, np.uint8)):  # views too
        data = records.encode_png(image)
        flag = cv2.IMREAD_COLOR_RGB if image.ndim == 3 else cv2.IMREAD_GRAYSCALE
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), flag), image)
        with Image.open(io.BytesIO(data)) as png:
            png.verify()
        with Image.open(io.BytesIO(data)) as png:
            np.testing.assert_array_equal(np.asarray(png), image)
        if image.ndim == 3:
            np.testing.assert_array_equal(records.decode_image(data), image)
    reference = cv2.imencode('.png', smooth[..., ::-1] if smooth.ndim == 3 else smooth)[1]
    assert len(records.encode_png(smooth.reshape(shape))) <= 1.05 * len(reference) + 64
    with pytest.raises(ValueError, match=r'uint8 \[H, W\] or \[H, W, 3\], got float32'):
        records.encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match='got uint8 \\[4, 4, 4\\]'):
        records.encode_png(np.zeros((4, 4, 4), np.uint8))


def test_ffpp_labels_splits_and_problems(ffpp):
    manifest, _ = ffpp
    assert manifest['class_names'] == ['real', 'Deepfakes']
    train, val, test = (by_video(source(manifest, s)) for s in ('train', 'val', 'test'))
    assert set(train) == {'original/000', 'original/001', 'Deepfakes/000_001', 'Deepfakes/001_000'}
    assert set(val) == {'original/002', 'original/003', 'Deepfakes/002_003'}  # 003_002 has no face
    assert set(test) == {'original/004', 'Deepfakes/004_005', 'Deepfakes/005_004'}  # 005 is an empty file
    for videos in (train, val, test):
        for video_id, frames in videos.items():
            assert len(frames) == FRAMES
            fake = video_id.startswith('Deepfakes')
            assert all(r['label'] == int(fake) and r['class_id'] == int(fake) for r in frames)
    assert train['Deepfakes/000_001'][0]['source_id'] == b'000'
    problems = reasons(manifest)
    assert 'zero-length file' in problems['original/005']
    assert 'no face found' in problems['Deepfakes/003_002']
    assert any('mask' in reason for item, reason in problems.items() if '001_000' in item)
    assert 'mask video unusable' in problems['Deepfakes/004_005']
    assert manifest['splits']['train'] == {
        'records/Deepfakes': 8,
        'records/real': 8,
        'videos/Deepfakes': 2,
        'videos/real': 2,
    }


def test_ffpp_pairs_masks_and_landmarks_align(ffpp):
    manifest, _ = ffpp
    train = by_video(source(manifest, 'train'))
    for record in train['Deepfakes/000_001']:
        hq, lq = records.decode_image(record['image_c23']), records.decode_image(record['image_c40'])
        assert hq.shape == lq.shape == (96, 96, 3)
        aligned = np.abs(hq.astype(float) - lq).mean()
        shifted = np.abs(hq[:, 4:].astype(float) - lq[:, :-4]).mean()
        assert aligned < 0.5 * shifted  # the LQ crop is the same window as the HQ crop
        mask = records.decode_mask(record['mask'], (96, 96))
        assert mask.max() > 0.9
        ys, xs = np.nonzero(mask > 0.5)
        nose = record['landmarks'][27:36].mean(0)  # nose landmarks lie inside the face ellipse of the mask
        assert mask[int(nose[1]), int(nose[0])] > 0.5
        assert abs(xs.mean() - nose[0]) < 15 and abs(ys.mean() - nose[1]) < 20
        landmarks = record['landmarks']
        assert (landmarks >= 0).all() and (landmarks < 96).all()
        assert landmarks[36:48, 1].mean() < landmarks[48:68, 1].mean()  # eyes above the mouth
    assert train['Deepfakes/001_000'][0]['mask'] == b''  # its mask video is missing
    assert train['original/000'][0]['mask'] == b''


def test_split_index_matches_records(ffpp):
    manifest, _ = ffpp
    src = source(manifest, 'train')
    index = SplitIndex.load(Path(manifest['directory']) / 'index_train.npz')
    assert len(index.video_index) == len(src)
    for i in range(len(src)):
        assert (index.video_index[i], index.frame_index[i], index.label[i]) == (
            src[i]['video_index'],
            src[i]['frame_index'],
            src[i]['label'],
        )


def test_resume_after_interruption(tmp_path, monkeypatch):
    raw = dfdm_tree(tmp_path / 'raw')
    calls = []
    original = prepare_lib.extract_video

    def interrupted(job, *args):
        calls.append(job.video_id)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(job, *args)

    monkeypatch.setattr(prepare_lib, 'extract_video', interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(
            [
                'prepare',
                'dfdm',
                '--src',
                str(raw),
                '--out',
                str(tmp_path / 'data'),
                '--frames',
                '2',
                '--crop-size',
                '64',
                '--workers',
                '1',
            ]
        )
    assert len(calls) == 4
    monkeypatch.setattr(prepare_lib, 'extract_video', lambda job, *a: calls.append(job.video_id) or original(job, *a))
    manifest = run_prepare('dfdm', raw, tmp_path / 'data', '--frames', '2', '--crop-size', '64', '--workers', '1')
    assert len(calls) == 4 + 10 - 3  # the three finished videos were not extracted again
    assert len(set(calls)) == 10
    complete = run_prepare('dfdm', raw, tmp_path / 'fresh', '--frames', '2', '--crop-size', '64', '--workers', '1')
    assert {k: v for k, v in manifest['splits'].items()} == complete['splits']
    resumed, fresh = by_video(source(manifest, 'train')), by_video(source(complete, 'train'))
    assert resumed.keys() == fresh.keys()
    for video_id in resumed:
        key = lambda r: r['frame_index']  # noqa: E731
        for a, b in zip(sorted(resumed[video_id], key=key), sorted(fresh[video_id], key=key)):
            assert a['image_crf0'] == b['image_crf0'] and np.array_equal(a['landmarks'], b['landmarks'])


@pytest.fixture(scope='module')
def dfdm(tmp_path_factory):
    root = tmp_path_factory.mktemp('dfdm')
    return run_prepare('dfdm', dfdm_tree(root / 'raw'), root / 'data'), root


def test_dfdm_classes_qualities_and_video_split(dfdm):
    manifest, _ = dfdm
    assert manifest['class_names'] == ['Faceswap', 'Lightweight', 'IAE', 'Dfaker', 'DFL-H128']
    train, test = by_video(source(manifest, 'train')), by_video(source(manifest, 'test'))
    assert not set(train) & set(test) and len(train) + len(test) == 10
    for videos in (train, test):
        for video_id, frames in videos.items():
            model = video_id.split('/')[0]
            assert all(r['class_id'] == manifest['class_names'].index(model) and r['label'] == 1 for r in frames)
            assert all({'image_crf0', 'image_crf10', 'image_crf23'} <= set(r) for r in frames)
    assert sorted(manifest['splits']['train']) == sorted(
        f'{kind}/{m}' for m in manifest['class_names'] for kind in ('records', 'videos')
    )
    assert any('garbage_name' in p['item'] for p in manifest['problems'])


@pytest.fixture(scope='module')
def celebdf(tmp_path_factory):
    root = tmp_path_factory.mktemp('celebdf')
    return run_prepare('celebdf', celebdf_tree(root / 'raw'), root / 'data'), root


def test_celebdf_and_nothing_usable(celebdf, tmp_path):
    manifest, _ = celebdf
    test = by_video(source(manifest, 'test'))
    assert set(test) == {'Celeb-real/id1_0001', 'Celeb-synthesis/id1_id0_0001'}
    assert test['Celeb-real/id1_0001'][0]['label'] == 0 and test['Celeb-synthesis/id1_id0_0001'][0]['label'] == 1
    assert 'cannot open' in reasons(manifest)['Celeb-synthesis/id2_id0_0002']
    empty = tmp_path / 'faceless'
    for folder in ('Celeb-real', 'YouTube-real', 'Celeb-synthesis'):
        (empty / folder).mkdir(parents=True)
    media.blank_video(empty / 'Celeb-real' / 'id0_0000.mp4')
    (empty / 'List_of_testing_videos.txt').write_text('1 Celeb-real/id0_0000.mp4\n')
    nothing = run_prepare('celebdf', empty, tmp_path / 'nothing')
    assert nothing['records'] == 0 and 'no face found' in reasons(nothing)['Celeb-real/id0_0000']


def test_missing_source_folder(tmp_path, capsys):
    assert cli.main(['prepare', 'dfdm', '--src', str(tmp_path / 'absent'), '--out', str(tmp_path / 'o')]) == 2
    assert 'absent' in capsys.readouterr().err


def test_detect_options_name_the_output_and_reject_bad_values(tmp_path, capsys):
    Options = prepare_lib.Options
    assert Options().name() == 'even32-s320-x1p3-png'
    assert Options(detect_size=224, detect_every=4).name() == 'even32-s320-x1p3-png-det224-every4'
    for fields, message in (
        ({'detect_every': 0}, '--detect-every'),
        ({'detect_size': -1}, '--detect-size'),
        ({'detect_every': 2, 'faces': 'all'}, '--faces largest'),
    ):
        with pytest.raises(ValueError, match=message):
            Options(**fields)
    flags = ['--detect-every', '3', '--faces', 'all']
    assert cli.main(['prepare', 'ffpp', '--src', str(tmp_path), '--out', str(tmp_path / 'o'), *flags]) == 2
    err = capsys.readouterr().err
    assert 'it needs --faces largest' in err and len(err.strip().splitlines()) == 1 and 'Traceback' not in err


def data_config(root: Path, name: str, view: str = 'frame', sampling: str = 'all', target: str = 'label', **fields):
    """`config.data` of a prepared tree with `view` at 48 px; `fields` are the view's."""
    from fdx import input as input_lib

    size = {'residual': 'backbone_size'}.get(view, 'size')
    return input_lib.data_config(
        name=name,
        dir=str(root / 'data'),
        train_view=view,
        sampling=sampling,
        target=target,
        **{view: {size: 48, **fields}},
    )


def first_batch(config, split='train'):
    from fdx import input as input_lib
    from fdx.input import pipeline

    dataset = pipeline.train_dataset(
        input_lib.build_source(config, split),
        global_batch_size=2,
        seed=0,
        process_index=0,
        process_count=1,
        transform=input_lib.build_transform(config, split),
    )
    return next(iter(pipeline.make_loader(dataset)))


def test_views_on_prepared_records(ffpp, dfdm):
    _, ffpp_root = ffpp
    _, dfdm_root = dfdm
    frame = first_batch(data_config(ffpp_root, 'ffpp', quality='c40', sampling='balanced'))
    assert frame['image'].shape == (2, 48, 48, 3) and frame['image'].dtype == np.float32
    pair = first_batch(data_config(ffpp_root, 'ffpp', view='pair', normalisation='xception'))
    assert pair['image_hq'].shape == pair['image_lq'].shape == (2, 48, 48, 3) and pair['mask_19'].shape == (2, 19, 19)
    au = first_batch(data_config(ffpp_root, 'ffpp', view='au'))
    assert au['au_maps'].shape == (2, 48, 48, 15) and au['face_mask'].shape == (2, 48, 48)
    clip = first_batch(data_config(dfdm_root, 'dfdm', view='clip', quality='crf0', frames=3, target='class_id'))
    assert clip['image'].shape == (2, 3, 48, 48, 3) and set(clip['label']) <= set(range(5))
    with pytest.raises(ValueError, match=r"quality c40 not prepared .* \(has crf0, crf10, crf23\)"):
        first_batch(data_config(dfdm_root, 'dfdm', quality='c40'))
    with pytest.raises(ValueError, match="no split 'val'"):
        first_batch(data_config(dfdm_root, 'dfdm', quality='crf0'), split='val')


def test_residual_view_needs_runs(tmp_path):
    raw = dfdm_tree(tmp_path / 'raw')
    run_prepare(
        'dfdm',
        raw,
        tmp_path / 'data',
        '--sampling',
        'runs',
        '--frames',
        '2',
        '--run-length',
        '4',
        '--qualities',
        'crf23',
    )
    batch = first_batch(data_config(tmp_path, 'dfdm', view='residual', quality='crf23', attention_size=32))
    assert batch['image'].shape == (2, 48, 48, 3) and batch['residuals'].shape == (2, 3, 32, 32, 3)
    too_large = data_config(tmp_path, 'dfdm', view='residual', quality='crf23', attention_size=32)
    too_large.residual.backbone_size = 128  # the crops were prepared at 96 px
    with pytest.raises(
        ValueError, match=r'crops are 96 px but the model reads 128 px.*--crop-size 128.*allow_upsampling'
    ):
        first_batch(too_large)
    too_large.residual.allow_upsampling = True
    assert first_batch(too_large)['image'].shape == (2, 128, 128, 3)


def test_train_and_eval_on_prepared_dfdm(dfdm, tmp_path):
    _, root = dfdm
    for view in ('frame', 'clip'):
        workdir = tmp_path / view
        code = cli.main(
            [
                'train',
                '--config',
                f'{Path(__file__).parent}/configs/tiny_prepared.py:{view}',
                f'--config.data.dir={root / "data"}',
                '--workdir',
                str(workdir),
            ]
        )
        assert code == 0
        done = json.loads((workdir / 'done.json').read_text())
        frame = done['eval']['test']['frame']
        assert frame['n'] == (20 if view == 'frame' else 5)  # 5 test videos (one per model) of 4 frames
        assert len(frame['per_class_acc']) == 5 and (workdir / 'eval' / 'step_3' / 'confusion_test_frame.png').is_file()


def test_tfds_build_command_with_manual_dir(dfdm, tmp_path):
    """TFDS's own `tfds build` implementation (its CLI module needs TensorFlow; the build command does not)."""
    import simple_parsing
    from tensorflow_datasets.scripts.cli import build

    _, root = dfdm
    args = [
        'dfdm',
        '--imports',
        'fdx.input.tfds_builders',
        '--manual_dir',
        str(root / 'raw'),
        '--data_dir',
        str(tmp_path),
        '--file_format',
        'array_record',
    ]  # the default builder config: 32 frames, 320 px
    simple_parsing.parse(build.Args, args=args).execute()
    directory = tmp_path / 'dfdm' / 'crf0_crf10_crf23-even32-s320-x1p3-png' / tfds_builders.DATA_VERSION
    built = tfds.builder_from_directory(str(directory))
    assert {s: built.info.splits[s].num_examples for s in built.info.splits} == {'train': 60, 'test': 60}
    from fdx import input as input_lib

    first = first_batch(input_lib.data_config(name='dfdm', dir=str(tmp_path), frame={'quality': 'crf23', 'size': 48}))
    assert first['image'].shape == (2, 48, 48, 3)
    assert (directory / 'index_train.npz').is_file()  # computed on first use


@pytest.mark.parametrize('view', ['frame', 'pair', 'au', 'clip'])
def test_view_pipelines_are_deterministic_and_resume_exactly(ffpp, dfdm, view):
    from fdx import input as input_lib
    from fdx.input import pipeline

    root, name = (dfdm[1], 'dfdm') if view == 'clip' else (ffpp[1], 'ffpp')
    config = data_config(root, name, view=view, **({'quality': 'crf0', 'frames': 3} if view == 'clip' else {}))

    def batches(state=None, count=4):
        dataset = pipeline.train_dataset(
            input_lib.build_source(config, 'train'),
            global_batch_size=2,
            seed=3,
            process_index=0,
            process_count=1,
            transform=input_lib.build_transform(config, 'train'),
        )
        iterator = pipeline.make_loader(dataset)
        if state is not None:
            iterator.set_state(state)
        return [next(iterator) for _ in range(count)], iterator.get_state()

    first, state = batches(count=2)
    again, _ = batches(count=2)
    rest, _ = batches(state, count=2)
    whole, _ = batches(count=4)
    for a, b in zip(first + rest, whole):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for a, b in zip(first, again):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_quality_grid_and_cross_quality_table(dfdm, tmp_path, monkeypatch, capsys):
    """DMA-STA's Table 5 mechanics on tiny runs: train on each quality (a grid), test on every quality (crosseval)."""
    _, root = dfdm
    monkeypatch.setenv('PYTHONPATH', str(Path(__file__).parent))
    spec = f'{Path(__file__).parent}/configs/tiny_prepared.py:clip'
    grid = ['grid', spec, f'--config.data.dir={root / "data"}', '--root', str(tmp_path), '--name', 'table5']
    grid.append('--config.eval_splits=()')  # crosseval evaluates every point on every quality
    assert cli.main([*grid, '--backend', 'local']) == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                'crosseval',
                '--root',
                str(tmp_path),
                '--name',
                'table5',
                '--key',
                'data.clip.quality',
                '--values',
                'crf0,crf10,crf23',
                '--labels',
                'NoL,HQ,LQ',
            ]
        )
        == 0
    )
    pairs, matrix = (tmp_path / 'table5' / 'crosseval_data_clip_quality.md').read_text().split('\n\n')[:2]
    pairs = pairs.splitlines()
    assert pairs[0] == '| Train→Test | Faceswap | Lightweight | IAE | Dfaker | DFL-H128 | Overall |'
    rows = [line.split(' | ')[0].lstrip('| ') for line in pairs[2:]]
    assert rows == [f'{a}→{b}' for a in ('NoL', 'HQ', 'LQ') for b in ('NoL', 'HQ', 'LQ')]
    assert matrix.startswith('Train × test (overall accuracy, %)')
    for line in pairs[2:]:
        cells = [float(c.split(' [')[0]) for c in line.strip('| ').split(' | ')[1:]]
        assert all(0 <= c <= 100 for c in cells) and len(cells) == 6


def test_cross_dataset_rows_and_per_manipulation_metrics(ffpp, celebdf, tmp_path, monkeypatch, capsys):
    """Train a tiny FF++ detector, evaluate it on FF++ and on Celeb-DF in one command: one row per dataset."""
    monkeypatch.setenv('PYTHONPATH', str(Path(__file__).parent))
    _, ffpp_root = ffpp
    _, celebdf_root = celebdf
    workdir = tmp_path / 'ffpp-run'
    overrides = [
        f'--config.data.dir={ffpp_root / "data"}',
        '--config.data.name=ffpp',
        '--config.data.target=label',
        "--config.data.class_names=('real','fake')",
        '--config.data.frame.quality=c23',
        '--config.eval_splits=()',
    ]
    spec = f'{Path(__file__).parent}/configs/tiny_prepared.py:frame'
    assert cli.main(['train', '--config', spec, *overrides, '--workdir', str(workdir)]) == 0
    capsys.readouterr()
    celebdf_set = [f'--set=celebdf:data.dir={celebdf_root / "data"}', '--set=celebdf:data.frame.quality=raw']
    assert cli.main(['crosseval', '--workdir', str(workdir), '--datasets', 'ffpp,celebdf', *celebdf_set]) == 0
    out = capsys.readouterr().out
    rows = [line.split(' | ')[0].lstrip('| ') for line in out.split('\n\n')[0].splitlines()[2:]]
    assert rows == ['ffpp→ffpp', 'ffpp→celebdf'] and 'Train × test (frame AUC, %)' in out
    ffpp_metrics = json.loads((workdir / 'crosseval' / 'ffpp' / 'metrics_test.json').read_text())
    celebdf_metrics = json.loads((workdir / 'crosseval' / 'celebdf' / 'metrics_test.json').read_text())
    assert (
        set(ffpp_metrics['frame']['per_manipulation'])
        == set(ffpp_metrics['video']['per_manipulation'])
        == {'Deepfakes'}
    )
    assert celebdf_metrics['frame']['n'] == 2 * FRAMES and 'per_manipulation' not in celebdf_metrics['frame']
