"""`fdx export`: the exported predict equals the in-process one (binary and attribution, two batch sizes), its loader
imports no trainer, and the errors a user can cause are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fdx import cli, evaluate, export, train
from fdx import input as input_lib
from fdx.config import load_config
from fdx.input.layouts import MODELS

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'tests' / 'configs' / 'tiny.py')
DMA_STA = str(ROOT / 'experiments' / 'dma_sta_dfdm.py')


class Run(NamedTuple):
    workdir: Path
    out: Path  # its export
    restored: evaluate.Restored


def one_step(config):
    """`config` with a one-block ResNet, trained for one step and checkpointed, without evaluation."""
    config.model.backbone_kwargs = {'stage_sizes': (1,), 'width': 4}
    config.total_steps = 1
    config.checkpoint.every = 1
    config.eval_splits = ()
    return config


@pytest.fixture(scope='module')
def binary_run(tmp_path_factory):
    """The tiny binary classifier, exported by `fdx export` into an existing empty directory, with a marker in the
    workdir's preprocessing.json (the export copies the file)."""
    workdir = tmp_path_factory.mktemp('binary')
    train.train(one_step(load_config(TINY)), workdir)
    path = workdir / input_lib.PREPROCESSING_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), 'marker': 'from the workdir'}))
    out = tmp_path_factory.mktemp('binary_export')
    assert cli.main(['export', '--workdir', str(workdir), '--out', str(out)]) == 0
    return Run(workdir, out, evaluate.restore(workdir))


@pytest.fixture(scope='module')
def attribution_run(tmp_path_factory):
    """DMA-STA (spatial and temporal attention) on synthetic 4-frame clips of three generation models, exported at
    step 1 from a workdir without preprocessing.json (a run older than the file)."""
    config = one_step(load_config(f'{DMA_STA}:mini'))
    config.batch_size = 2
    config.select.split = ''
    config.data = input_lib.data_config(
        name='synthetic',
        class_names=MODELS[:3],
        image_size=32,
        frames=4,
        records={'train': 4, 'test': 8},
        train_view='synthetic',
    )
    workdir = tmp_path_factory.mktemp('attribution')
    train.train(config, workdir)
    (workdir / input_lib.PREPROCESSING_FILE).unlink()
    out = export.export_workdir(workdir, tmp_path_factory.mktemp('attribution_export') / 'export', step=1)
    return Run(workdir, out, evaluate.restore(workdir))


def eval_batch(config, size: int) -> dict[str, np.ndarray]:
    """The first `size` examples of the test split through its eval view, metadata included (as `fdx eval` feeds)."""
    source = input_lib.build_source(config.data, 'test')
    transform = input_lib.build_transform(config.data, 'test')
    examples = [transform(source[i], np.random.default_rng(i)) for i in range(size)]
    return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


@pytest.mark.parametrize('run_name, key, classes', [('binary_run', 'score', 0), ('attribution_run', 'probs', 3)])
def test_export_equals_the_in_process_predict(request, run_name, key, classes):
    run = request.getfixturevalue(run_name)
    predictor = export.load(run.out)
    assert predictor.output_names == (key,) and predictor.task == run.restored.method.task
    predict = jax.jit(run.restored.method.predict)
    for size in (3, 5):  # one program, any batch size
        batch = eval_batch(run.restored.config, size)
        got = predictor(batch)
        want = np.asarray(predict(run.restored.variables, batch)[key])
        assert set(got) == {key} and got[key].shape == want.shape == (size, *((classes,) if classes else ()))
        np.testing.assert_allclose(got[key], want, rtol=0, atol=1e-5)
        assert np.ptp(want, axis=0).max() > 1e-4  # examples differ: not a comparison of constants
        if classes:
            np.testing.assert_allclose(got[key].sum(-1), 1, rtol=1e-5)


def test_export_json_and_variables(binary_run, attribution_run):
    binary = json.loads((binary_run.out / export.DESCRIPTION_FILE).read_text())
    assert binary['inputs'] == {'image': {'shape': [32, 32, 3], 'dtype': 'float32'}}  # no label, video_index, …
    assert binary['outputs'] == {'score': {'shape': [], 'dtype': 'float32'}}
    assert (binary['task'], binary['class_names'], binary['method'], binary['step']) == (
        'binary',
        ['real', 'fake'],
        'classifier',
        1,
    )
    preprocessing = binary['preprocessing']
    assert preprocessing['marker'] == 'from the workdir' and preprocessing['dataset'] == 'synthetic'
    # the eval view as evaluation builds it: the config's flip 0.5 is training augmentation
    assert preprocessing['view'] == {'name': 'synthetic', 'split': 'test', 'fields': {'flip': 0.0}}
    assert preprocessing['eval'] == {'video_aggregation': 'mean', 'face_aggregation': 'track_max', 'threshold': 0.5}
    assert {'cpu', 'cuda', 'tpu'} <= set(binary['platforms']) and binary['jax_version'] == jax.__version__
    assert binary['source_workdir'] == str(binary_run.workdir)

    attribution = json.loads((attribution_run.out / export.DESCRIPTION_FILE).read_text())
    assert attribution['inputs'] == {'image': {'shape': [4, 32, 32, 3], 'dtype': 'float32'}}
    assert attribution['outputs'] == {'probs': {'shape': [3], 'dtype': 'float32'}}
    assert (attribution['task'], attribution['class_names']) == ('multiclass', list(MODELS[:3]))
    assert attribution['preprocessing']['dataset'] == 'synthetic'  # from config.data: the workdir has no file

    # the variables are arguments of the function (not constants), saved with their paths
    predictor = export.load(binary_run.out)
    flat = traverse_util.flatten_dict(binary_run.restored.variables, sep='/')
    with np.load(binary_run.out / export.VARIABLES_FILE) as saved:
        assert set(saved.files) == set(flat) and any(k.startswith('batch_stats/') for k in flat)
        for k, v in flat.items():
            np.testing.assert_array_equal(saved[k], np.asarray(v))
    assert len(predictor.exported.in_avals) == len(flat) + 1
    assert str(predictor.exported.in_avals[-1].shape[0]) == 'b'  # the batch axis is symbolic


LOADER = """
import json, sys
import numpy as np
from fdx.export import load
with np.load(sys.argv[2]) as batch:
    outputs = load(sys.argv[1])(dict(batch))
np.savez(sys.argv[3], **outputs)
heavy = ('flax', 'ml_collections', 'optax', 'orbax', 'grain', 'tensorflow_datasets')
print(json.dumps(sorted(m for m in sys.modules if m.startswith('fdx.') and m != 'fdx.export' or m.split('.')[0] in heavy)))
"""


def test_the_loader_imports_no_trainer(binary_run, tmp_path):
    batch = eval_batch(binary_run.restored.config, 4)
    np.savez(tmp_path / 'batch.npz', **batch)
    result = subprocess.run(
        [sys.executable, '-c', LOADER, str(binary_run.out), str(tmp_path / 'batch.npz'), str(tmp_path / 'out.npz')],
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == []  # no fdx.methods, fdx.train, fdx.config, flax, …
    with np.load(tmp_path / 'out.npz') as outputs:
        want = jax.jit(binary_run.restored.method.predict)(binary_run.restored.variables, batch)['score']
        np.testing.assert_allclose(outputs['score'], want, rtol=0, atol=1e-5)


def test_the_loader_rejects_bad_batches_in_one_line(binary_run, tmp_path):
    predictor = export.load(binary_run.out)
    image = eval_batch(binary_run.restored.config, 2)['image']
    bad = [
        ({'images': image}, "batch has no 'image'; the export reads image [B, 32, 32, 3] float32"),
        ({'image': image[:, :16, :16]}, "batch['image']: shape [2, 16, 16, 3], the export reads [B, 32, 32, 3]"),
        ({'image': image[0]}, "batch['image']: shape [32, 32, 3], the export reads [B, 32, 32, 3]"),
        ({'image': (image * 127).astype(np.uint8)}, "batch['image']: dtype uint8, the export reads float32"),
        ({'image': image[:0]}, "batch: the inputs need one batch size B >= 1, got {'image': 0}"),
    ]
    for batch, message in bad:
        with pytest.raises(ValueError) as error:
            predictor(batch)
        assert str(error.value).startswith(message) and '\n' not in str(error.value)
    # float64 is the same kind: cast, and the same scores
    np.testing.assert_allclose(
        predictor({'image': image.astype(np.float64)})['score'], predictor({'image': image})['score']
    )
    (tmp_path / 'partial').mkdir()
    (tmp_path / 'partial' / export.DESCRIPTION_FILE).write_text('{}')
    with pytest.raises(FileNotFoundError, match=f'{tmp_path / "partial" / export.EXPORT_FILE} is missing'):
        export.load(tmp_path / 'partial')


def test_export_errors_are_one_line(binary_run, tmp_path, capsys):
    def error(*args: str) -> str:
        assert cli.main(['export', *args]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith('fdx export: '), lines
        return lines[0]

    workdir = ['--workdir', str(binary_run.workdir)]
    assert f'--out {binary_run.out} exists and is not an empty directory' in error(
        *workdir, '--out', str(binary_run.out)
    )
    fresh = str(tmp_path / 'fresh')
    assert 'no checkpoint for step 7 (available: [1])' in error(*workdir, '--out', fresh, '--step', '7')
    assert 'no best checkpoint' in error(*workdir, '--out', fresh, '--step', 'best')
    assert f'no config.json in {tmp_path / "absent"}' in error('--workdir', str(tmp_path / 'absent'), '--out', fresh)
    assert not (tmp_path / 'fresh').exists()


def test_inputs_are_what_predict_reads_without_the_dataset(tmp_path):
    """A view with a `spec()` gives the example without the dataset; the inputs are the keys predict cannot trace
    without — not metadata, nor a key it only reads when present."""
    data = input_lib.data_config(name='ffpp', dir=str(tmp_path / 'no_data'), train_view='frame', frame={'size': 48})
    example = export.example_inputs(data, 'test')
    assert example['image'].shape == (48, 48, 3) and 'label' in example

    def predict(variables, batch):
        score = batch['image'].mean((1, 2, 3)) * variables['w'] + batch['extra'][:, 0]
        return {'score': score + batch.get('mask', jnp.zeros(1)).sum()}

    example = {**example, 'extra': np.zeros(2, np.float32), 'mask': np.zeros((4, 4), np.float32), 'name': 'x.png'}
    assert export.input_keys(predict, {'w': np.ones(())}, example) == ('image', 'extra')
