"""The trainer: end to end, exact resume after SIGKILL or SIGTERM, a gs:// workdir, device/process equivalence, critic,
frozen groups, NaN stop."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gcs_emulator
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from compilation_cache import persistent_compilation_cache

from fdx import cli, storage, train
from fdx import config as config_lib

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'tests' / 'configs' / 'tiny.py')


def env(devices: int = 1) -> dict[str, str]:
    return {
        **os.environ,
        'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
        'JAX_PLATFORMS': 'cpu',
        'PYTHONPATH': os.pathsep.join([str(ROOT / 'tests'), os.environ.get('PYTHONPATH', '')]),
    }


def fdx(*args: str, devices: int = 1, **kwargs) -> subprocess.Popen:
    command = [sys.executable, '-m', 'fdx.cli', *args]
    return subprocess.Popen(command, env=env(devices), cwd=ROOT, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, expect: int = 0) -> str:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == expect, stderr[-3000:]
    return stderr


def losses(workdir: Path) -> dict[int, float]:
    """The loss of every step, the last record winning (a resumed run re-logs the steps after its checkpoint)."""
    records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
    return {r['step']: r['loss'] for r in records if 'loss' in r}


def restored_state(workdir: Path) -> dict:
    """The train state of the newest complete checkpoint, onto this process's first device (any saved topology)."""
    manager = ocp.CheckpointManager(workdir / 'checkpoints')
    path = workdir / 'checkpoints' / str(manager.latest_step()) / 'state'
    manager.close()
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), checkpointer.metadata(path).item_metadata
    )
    return checkpointer.restore(path, target)


@pytest.fixture(scope='module', autouse=True)
def compilation_cache(tmp_path_factory):
    """Runs of the same model on the same devices, here and in subprocesses, compile each program once."""
    with persistent_compilation_cache(tmp_path_factory.mktemp('jax-cache')) as path:
        yield path


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    """An uninterrupted 12-step run of the tiny config on one device."""
    workdir = tmp_path_factory.mktemp('reference')
    finish(fdx('train', '--config', TINY, '--workdir', str(workdir)))
    return workdir


def test_end_to_end_outputs(reference_run):
    done = json.loads((reference_run / train.DONE_FILE).read_text())
    assert done['step'] == 12 and set(done['eval']['test']) == {'frame', 'video', 'checkpoint'}
    assert done['eval']['test']['frame']['n'] == 40 and done['eval']['test']['video']['n'] == 10
    assert sorted(losses(reference_run)) == list(range(1, 13))
    record = json.loads((reference_run / 'metrics.jsonl').read_text().splitlines()[0])
    assert {'loss', 'loss/cls', 'train/accuracy', 'grad_norm', 'lr/default'} <= set(record)
    assert list((reference_run / 'tb').glob('events.out.tfevents.*'))
    assert (reference_run / 'parameters.txt').read_text().startswith('variable')
    assert json.loads((reference_run / 'config.json').read_text())['batch_size'] == 8
    assert sorted(ocp.CheckpointManager(reference_run / 'checkpoints').all_steps()) == [9, 12]  # keep 2
    assert (reference_run / 'eval' / 'step_12' / 'roc_test_frame.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with np.load(reference_run / 'eval' / 'step_12' / 'roc_test_frame.npz') as roc:  # what `fdx results --plots` draws
        assert roc['fpr'][0] == 0 and roc['tpr'][-1] == 1 and roc['fpr'].shape == roc['tpr'].shape
    assert json.loads((reference_run / 'preprocessing.json').read_text()) == {'dataset': 'synthetic', 'faces': None}


def test_train_names_its_devices_and_a_mesh_too_large(tmp_path, capsys):
    """`fdx train` says what it runs on; a mesh wanting more devices than exist is a one-line error that names them."""
    argv = ['train', '--config', 'tests/configs/tiny.py', '--workdir', str(tmp_path / 'run'), '--config.mesh.data=16']
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert f'fdx train on cpu: {jax.device_count()} device' in out
    assert f"config.mesh {{'data': 16, 'model': 1}} needs 16 devices, this run has {jax.device_count()} (cpu: " in err


def test_eval_from_checkpoint(reference_run, tmp_path, capsys):
    out = tmp_path / 'eval9'
    finish(fdx('eval', '--workdir', str(reference_run), '--step', '9', '--out', str(out)))
    metrics = json.loads((out / 'metrics_test.json').read_text())
    assert 0 <= metrics['frame']['auc'] <= 1 and metrics['frame']['n'] == 40
    assert (out / 'roc_test_video.png').is_file()
    # the errors, in this process (`fdx` exits with cli.main's code): one line on stderr and exit 2
    assert cli.main(['eval', '--workdir', str(reference_run), '--step', '5']) == 2
    assert 'no checkpoint for step 5 (available: [9, 12])' in capsys.readouterr().err
    assert cli.main(['eval', '--workdir', str(reference_run), '--config.data.recods=1']) == 2
    stderr = capsys.readouterr().err
    assert "unknown config key 'data.recods'" in stderr and 'data.records' in stderr


def _read_proc(path: str) -> bytes:
    """A /proc file, or b'' when its process or thread has just ended."""
    try:
        return Path(path).read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b''


def _children(pid: int) -> list[int]:
    return [int(c) for f in Path(f'/proc/{pid}/task').glob('*/children') for c in _read_proc(str(f)).split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def test_kill_during_checkpoint_save(reference_run, tmp_path):
    """SIGKILL while orbax writes a checkpoint, with two loader workers: the workers exit by themselves, the previous
    checkpoint restores, the resumed run logs the reference losses and ends without leaked shared memory."""
    workdir = tmp_path / 'killed-in-save'
    checkpoints = workdir / 'checkpoints'
    args = (
        'train',
        '--config',
        TINY,
        '--workdir',
        str(workdir),
        '--config.checkpoint.every=1',
        '--config.data.workers=2',
    )
    caught, workers = None, []
    for _ in range(5):  # the kill must land while orbax is writing a checkpoint; retry if it missed
        process = fdx(*args, stdout=subprocess.DEVNULL)
        while process.poll() is None:
            partial = [p for p in checkpoints.glob('*') if 'tmp' in p.name] if checkpoints.is_dir() else []
            if partial and any(p.name.isdigit() for p in checkpoints.glob('*')):
                workers = [c for c in _children(process.pid) if b'spawn_main' in _read_proc(f'/proc/{c}/cmdline')]
                process.send_signal(signal.SIGKILL)
                process.wait()
                caught = partial
                break
        if caught:
            break
    assert caught, 'never caught a save in progress'
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if _alive(w)]
    for worker in alive:
        os.kill(worker, signal.SIGKILL)
    assert len(workers) == 2 and not alive, f'workers {workers}: {alive} outlived the killed trainer'
    finished = [int(p.name) for p in checkpoints.glob('*') if p.name.isdigit()]
    restored = restored_state(workdir)  # the newest complete checkpoint restores
    assert int(restored['step']) == max(finished)
    stderr = finish(fdx(*args))
    assert losses(workdir) == losses(reference_run) and 'leaked' not in stderr


def test_sigterm_saves_and_resumes_exactly(reference_run, tmp_path):
    """SIGTERM (a pre-emption, SLURM's time-limit warning): the run saves a checkpoint after its current step and exits
    with EXIT_PREEMPTED; the re-run resumes there and logs the reference losses."""
    workdir = tmp_path / 'preempted'
    process = fdx('train', '--config', TINY, '--workdir', str(workdir))
    while not (workdir / 'config.json').is_file() and process.poll() is None:  # written before setup and compilation
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stderr = finish(process, expect=train.EXIT_PREEMPTED)
    saved = int(stderr.split('SIGTERM received: checkpoint saved at step ')[1].split(';')[0])
    assert 1 <= saved < 12 and int(restored_state(workdir)['step']) == saved
    assert not (workdir / train.DONE_FILE).exists()
    stderr = finish(fdx('train', '--config', TINY, '--workdir', str(workdir)))
    assert f'resumed from step {saved}' in stderr and losses(workdir) == losses(reference_run)


def test_gs_workdir_is_preempted_resumes_and_evaluates(reference_run, tmp_path, monkeypatch, capsys):
    """A `gs://` workdir, against a test double for Google Cloud Storage (tests/gcs_emulator.py, an HTTP emulator of
    its API): config, orbax checkpoints, metrics.jsonl, TensorBoard events and evaluation outputs land in the bucket;
    SIGTERM saves there, the re-run resumes with the reference losses; `fdx eval` reads the run back."""
    with gcs_emulator.serve() as variables:
        for key, value in variables.items():
            monkeypatch.setenv(key, value)  # for this process and, through env(), the trainers
        workdir = storage.path(f'gs://{gcs_emulator.BUCKET}/runs/preempted')
        process = fdx('train', '--config', TINY, '--workdir', str(workdir))
        while not (workdir / 'config.json').exists() and process.poll() is None:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stderr = finish(process, expect=train.EXIT_PREEMPTED)
        saved = int(stderr.split('SIGTERM received: checkpoint saved at step ')[1].split(';')[0])
        assert 1 <= saved < 12 and not (workdir / train.DONE_FILE).exists()
        assert str(saved) in {p.name for p in (workdir / 'checkpoints').iterdir()}
        stderr = finish(fdx('train', '--config', TINY, '--workdir', str(workdir)))
        assert f'resumed from step {saved}' in stderr and losses(workdir) == losses(reference_run)
        done = json.loads((workdir / train.DONE_FILE).read_text())
        reference = json.loads((reference_run / train.DONE_FILE).read_text())
        assert {k: done['eval']['test'][k] for k in ('frame', 'video')} == {
            k: reference['eval']['test'][k] for k in ('frame', 'video')
        }
        assert list((workdir / 'tb').glob('events.out.tfevents.*'))
        assert (workdir / 'eval' / 'step_12' / 'roc_test_frame.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert cli.main(['eval', '--workdir', str(workdir), '--step', '12']) == 0, [
            l for l in capsys.readouterr().err.splitlines() if 'fdx' in l
        ]
        metrics = json.loads((workdir / 'eval' / 'step_12' / 'metrics_test.json').read_text())
        assert metrics['frame'] == reference['eval']['test']['frame'] and metrics['checkpoint'] == {'step': 12}


@pytest.fixture(scope='module')
def eight_device_run(tmp_path_factory):
    """The reference run's config on eight devices of one process."""
    workdir = tmp_path_factory.mktemp('eight')
    finish(fdx('train', '--config', TINY, '--workdir', str(workdir), devices=8))
    return workdir


def test_one_device_equals_eight(reference_run, eight_device_run):
    one, eight = losses(reference_run), losses(eight_device_run)
    np.testing.assert_allclose([eight[s] for s in sorted(one)], [one[s] for s in sorted(one)], rtol=2e-5)
    stats_one = restored_state(reference_run)['model_state']
    stats_eight = restored_state(eight_device_run)['model_state']
    for a, b in zip(jax.tree.leaves(stats_one), jax.tree.leaves(stats_eight)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fsdp_over_data_and_model_axes_equals_one_device(reference_run, tmp_path):
    workdir = tmp_path / 'fsdp'
    overrides = [
        '--config.mesh.data=4',
        '--config.mesh.model=2',
        '--config.sharding.fsdp=True',
        '--config.sharding.min_fsdp_size=64',
    ]
    stderr = finish(fdx('train', '--config', TINY, '--workdir', str(workdir), *overrides, devices=8))
    assert "mesh {'data': 4, 'model': 2}" in stderr
    line = next(line for line in stderr.splitlines() if 'state arrays sharded' in line)
    assert int(line.split(' of ')[0].rsplit(' ', 1)[-1]) > 0, line
    one, fsdp = losses(reference_run), losses(workdir)
    np.testing.assert_allclose([fsdp[s] for s in sorted(one)], [one[s] for s in sorted(one)], rtol=2e-5)


def test_two_processes_equal_one(eight_device_run, tmp_path, monkeypatch):
    """Two processes of four devices each, started as on the two hosts of a Cloud TPU VM slice (the environment the
    VMs give: TPU_WORKER_HOSTNAMES, TPU_WORKER_ID), against one process of eight (`eight_device_run`)."""
    reference = eight_device_run
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    workdir = tmp_path / 'two-processes'
    monkeypatch.setenv('TPU_WORKER_HOSTNAMES', '127.0.0.1,127.0.0.1')
    monkeypatch.setenv('FDX_COORDINATOR_PORT', str(port))
    processes = []
    for i in range(2):
        monkeypatch.setenv('TPU_WORKER_ID', str(i))
        processes.append(fdx('train', '--config', TINY, '--workdir', str(workdir), devices=4))
    for process in processes:
        stderr = finish(process)
    assert "2 process(es)" in stderr or (workdir / train.DONE_FILE).is_file()
    one, two = losses(reference), losses(workdir)
    assert sorted(two) == list(range(1, 13))
    np.testing.assert_allclose([two[s] for s in range(1, 13)], [one[s] for s in range(1, 13)], rtol=2e-5)
    done_one = json.loads((reference / train.DONE_FILE).read_text())['eval']
    done_two = json.loads((workdir / train.DONE_FILE).read_text())['eval']
    assert done_one['test']['frame']['n'] == done_two['test']['frame']['n'] == 40
    np.testing.assert_allclose(done_two['test']['frame']['auc'], done_one['test']['frame']['auc'], atol=1e-6)


def tiny(*overrides: str, arg: str | None = None):
    spec = TINY + (f':{arg}' if arg else '')
    return config_lib.apply_overrides(config_lib.load_config(spec), list(overrides))


def test_frozen_group_stays_bit_identical(tmp_path):
    config = tiny("--config.optim.groups=({'pattern': '^layer1/', 'frozen': True},)", '--config.total_steps=4')
    train.train(config, tmp_path)
    initial = train.setup_for(config).initial_state()
    final = restored_state(tmp_path)
    for name, changed in (('layer1', False), ('layer2', True), ('head', True)):
        a, b = jax.tree.leaves(initial.params[name]), jax.tree.leaves(final['params'][name])
        assert all(np.array_equal(x, y) for x, y in zip(a, b)) != changed, name


def test_bf16_compute_with_remat_keeps_f32_params(tmp_path, monkeypatch):
    config = tiny('--config.model.dtype=bfloat16', '--config.model.remat=True', '--config.total_steps=3')
    monkeypatch.chdir(tmp_path.parent)
    results = train.train(config, tmp_path.name)  # a relative workdir works too
    state = restored_state(tmp_path)
    assert {leaf.dtype for leaf in jax.tree.leaves(state['params'])} == {np.dtype('float32')}
    assert np.isfinite([v for k, v in losses(tmp_path).items()]).all() and results['test']['frame']['n'] == 40


def adversarial(method: str, *overrides: str):
    """The tiny config with a method of tests/toy_methods.py and its critic, both trained with Adam."""
    config = tiny(f'--config.method=toy_methods:{method}', *overrides)
    config.unlock()
    config.loss.gp_weight = 10.0
    config.optim.name = config.critic_optim.name = 'adam'
    config.optim.lr, config.critic_optim.lr = 0.02, 0.02
    return config


def test_alternating_critic_trains(tmp_path):
    config = adversarial('MeanGenerator', '--config.total_steps=60', '--config.checkpoint.every=60')
    train.train(config, tmp_path)
    state = restored_state(tmp_path)
    source = train.input_lib.build_source(config.data, 'train')
    real_mean = np.stack([source[i]['image'].mean((0, 1)) + 1.0 for i in range(len(source))]).mean(0)
    # The generator's mean starts at 0 and moves towards the real vectors' mean (about (1, 1, 1)).
    assert np.linalg.norm(state['params']['mean'] - real_mean) < 0.5 * np.linalg.norm(real_mean)
    records = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
    assert all('critic/wasserstein' in r and 'critic/gradient_penalty' in r for r in records if 'loss' in r)
    counts = [int(x) for x in jax.tree.leaves(state['critic_opt_state']) if np.ndim(x) == 0]
    assert 3 * 60 in counts  # three critic updates per generator step


def test_non_finite_loss_stops_with_named_step(tmp_path):
    workdir = tmp_path / 'nan'
    config = tiny('--config.method=toy_methods:NanAfter', '--config.checkpoint.every=2')
    config.unlock()
    config.loss.nan_step = 5
    config_lib.save_config(config, workdir)
    process = fdx('train', '--workdir', str(workdir))
    stderr = finish(process, expect=3)
    assert 'non-finite loss at step 5: loss=nan, loss/cls=nan' in stderr
    assert restored_state(workdir)['step'] == 4  # the last good checkpoint is intact
    assert not (workdir / train.DONE_FILE).exists()


def test_config_mismatch_in_existing_workdir(reference_run, capsys):
    assert cli.main(['train', '--config', TINY, '--workdir', str(reference_run), '--config.optim.lr=0.5']) == 2
    assert 'differs in: optim' in capsys.readouterr().err


def test_grid_runs_points_and_skips_finished(tmp_path, capsys, monkeypatch):
    args = ['grid', TINY, '--config.eval_splits=()', '--root', str(tmp_path), '--name', 'g']  # no evaluation needed
    assert cli.main([*args, '--dry-run']) == 0
    commands = capsys.readouterr().out.strip().splitlines()
    assert len(commands) == 2 and all('fdx train --config' in c and "--config.optim.lr=" in c for c in commands)
    for key, value in env().items():  # the points run `python -m fdx.cli train` as subprocesses
        monkeypatch.setenv(key, value)
    assert cli.main([*args, '--backend', 'local']) == 0
    first = json.loads((tmp_path / 'g' / 'grid_status.json').read_text())
    assert [p['status'] for p in first['points']] == ['started', 'started']
    assert cli.main([*args, '--backend', 'local']) == 0
    second = json.loads((tmp_path / 'g' / 'grid_status.json').read_text())
    assert [p['status'] for p in second['points']] == ['finished', 'finished']
    for point in first['points']:
        assert json.loads((Path(point['workdir']) / 'config.json').read_text())['total_steps'] == 4


def _copy_run(reference_run: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(reference_run, destination)
    return destination


def _data_files(workdir: Path, step: int) -> list[Path]:
    state = workdir / 'checkpoints' / str(step) / 'state'
    return sorted([*state.glob('d/*'), *state.glob('ocdbt.process_*/d/*')])


@pytest.mark.parametrize('damage', ['truncated', 'missing'])
def test_broken_latest_checkpoint_falls_back(reference_run, tmp_path, capsys, damage):
    workdir = _copy_run(reference_run, tmp_path / 'run')
    (workdir / train.DONE_FILE).unlink()
    for data in _data_files(workdir, 12):  # parameters and optimizer state alike
        if damage == 'truncated':
            data.write_bytes(data.read_bytes()[:16])
        else:
            data.unlink()
    out = tmp_path / 'eval'
    assert cli.main(['eval', '--workdir', str(workdir), '--out', str(out)]) == 0
    err = capsys.readouterr().err
    assert 'warning: checkpoint step 12 in' in err and 'is broken' in err and 'step 9: test/frame' in err
    assert len(err.splitlines()) < 20
    assert cli.main(['eval', '--workdir', str(workdir), '--step', '12']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'checkpoint step 12 is broken' in err[0]
    if damage == 'truncated':
        train.train(config_lib.load_saved_config(workdir), workdir)  # resumes from 9, sets 12 aside, saves it anew
        err = capsys.readouterr().err
        assert 'resumed from step 9' in err and (workdir / 'checkpoints' / 'broken_12').is_dir()
        assert losses(workdir) == losses(reference_run)


def test_selection_never_reads_test_unless_allowed(tmp_path, monkeypatch):
    from fdx import evaluate

    read, evaluators = [], set()
    original = evaluate.Evaluator.predict_split

    def spy(self, variables, split):
        read.append(split)
        evaluators.add(self)
        return original(self, variables, split)

    monkeypatch.setattr(evaluate.Evaluator, 'predict_split', spy)
    config = tiny('--config.eval_splits=()', '--config.eval_every=4', '--config.select.split=val')
    train.train(config, tmp_path / 'val')
    assert read == ['val'] * 3 and json.loads((tmp_path / 'val' / 'best.json').read_text())['split'] == 'val'
    (evaluator,) = evaluators
    assert evaluator.predict_step._cache_size() == 1  # compiled once for the three evaluations
    with pytest.raises(ValueError, match="config.select.split='test': choosing a checkpoint on the test split"):
        train.train(tiny('--config.select.split=test'), tmp_path / 'refused')
    config = tiny('--config.eval_splits=()', '--config.select.split=test', '--config.select.allow_test=True')
    train.train(config, tmp_path / 'allowed')
    assert json.loads((tmp_path / 'allowed' / 'best.json').read_text())['selected_on_test'] is True
    assert json.loads((tmp_path / 'allowed' / train.DONE_FILE).read_text())['best']['selected_on_test'] is True


def test_rng_streams_are_derived_by_name():
    from fdx import state

    rng = jax.random.key(3)
    two, three = state.stream_keys(rng, ('dropout', 'noise')), state.stream_keys(rng, ('mixing', 'dropout', 'noise'))
    for name in ('dropout', 'noise'):
        np.testing.assert_array_equal(jax.random.key_data(two[name]), jax.random.key_data(three[name]))
    assert not np.array_equal(jax.random.key_data(three['mixing']), jax.random.key_data(three['noise']))


def test_prng_key_draws_the_numbers_of_jax_random_key():
    """`state.prng_key` (threefry with flat bit generation, faster to compile on CPU) changes no random number."""
    from fdx import state

    flat, default = state.prng_key(5), jax.random.key(5)
    np.testing.assert_array_equal(jax.random.key_data(flat), jax.random.key_data(default))
    draws = (
        lambda key: jax.random.normal(jax.random.fold_in(key, 3), (2, 3, 4)),
        lambda key: jax.random.bernoulli(jax.random.split(key)[1], 0.3, (3, 5)),
        lambda key: jax.random.bits(key, (7,), jnp.uint8),
    )
    for draw in draws:
        np.testing.assert_array_equal(draw(flat), draw(default))


def test_critic_schedule_counts_critic_updates(tmp_path):
    config = adversarial('MeanGenerator', '--config.total_steps=12')
    config.critic_optim.update({'schedule': 'step', 'every_epochs': 1.0, 'factor': 0.1, 'lr': 0.01})
    train.train(config, tmp_path)
    records = map(json.loads, (tmp_path / 'metrics.jsonl').open())
    rates = {r['step']: r['lr/critic/default'] for r in records if 'lr/critic/default' in r}
    # 8 steps per epoch (64 records, batch 8), 3 critic updates each: the rate drops after 24 critic updates
    np.testing.assert_allclose([rates[s] for s in range(1, 13)], [0.01] * 8 + [0.001] * 4, rtol=1e-6)
    counts = [int(x) for x in jax.tree.leaves(restored_state(tmp_path)['critic_opt_state']) if np.ndim(x) == 0]
    assert 3 * 12 in counts


def test_critic_can_train_on_the_methods_activations(tmp_path):
    import toy_methods  # tests/ is on sys.path under pytest

    toy_methods.MeanGenerator.samples = 0
    train.train(adversarial('SharedActivations', '--config.total_steps=30'), tmp_path)
    assert toy_methods.MeanGenerator.samples == 1  # traced once: the critic never re-runs the generator
    state = restored_state(tmp_path)
    assert np.linalg.norm(state['params']['mean']) > 0.1  # moved towards the real vectors
