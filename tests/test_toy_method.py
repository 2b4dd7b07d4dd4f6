"""A method defined entirely in this file — its own view giving two examples per record, a map in its predictions
and an extra metric — trains, resumes exactly after SIGKILL, is selected on val and evaluates with --save-maps,
without any change to `fdx/`."""

import dataclasses
import json
import signal
import subprocess
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_train import finish, fdx, losses

from fdx import cli, train
from fdx import config as config_lib
from fdx.input import data_config, registry
from fdx.methods.base import LossOutput, Method


@registry.register_view('toy_negated_pair')
@dataclasses.dataclass(frozen=True)
class NegatedPair(registry.View):
    """A synthetic record (real) and its colour-negated copy (fake), flipped together with probability `flip`."""

    flip: float = 0.5
    examples_per_item = 2

    def for_eval(self):
        return NegatedPair(flip=0.0)

    def __call__(self, record, rng):
        image = record['image'][:, ::-1] if rng.random() < self.flip else record['image']
        real = {'image': image, 'label': np.int32(0), 'class_id': np.int32(0), 'video_index': record['video_index']}
        fake_video = np.int32(-1 - record['video_index'])  # the negated copies form videos of their own
        return [real, {'image': -image, 'label': np.int32(1), 'class_id': np.int32(1), 'video_index': fake_video}]


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
        attention = nn.sigmoid(nn.Conv(1, (1, 1))(x))[..., 0]  # [B, h, w]
        return nn.Dense(1)((x * attention[..., None]).mean((1, 2)))[:, 0], attention


class ToyMethod(Method):
    maps = {'attention': 'heat'}

    def __init__(self, config):
        super().__init__(config)
        self.net = Net()

    def init(self, rng, batch):
        return self.net.init(rng, batch['image'][:1])

    def losses(self, variables, batch, rngs, step, critic_params=None):
        logits, _ = self.net.apply(variables, batch['image'])
        loss = optax.sigmoid_binary_cross_entropy(logits, batch['label'].astype(jnp.float32)).mean()
        return LossOutput({'cls': loss}, {}, {'accuracy': ((logits > 0) == (batch['label'] == 1)).mean()})

    def predict(self, variables, batch):
        logits, attention = self.net.apply(variables, batch['image'])
        return {'score': jax.nn.sigmoid(logits), 'attention': attention}

    def eval_metrics(self, outputs, batch):
        return {'attention_mean': outputs['attention'].mean(axis=(1, 2))}


def toy_config():
    c = train.base_config()
    c.method = 'test_toy_method:ToyMethod'
    c.batch_size = 8  # 4 records, 8 examples
    c.total_steps = 12
    c.log_every = 1
    c.eval_every = 4
    c.checkpoint.every = 3
    c.checkpoint.keep = 2
    c.optim.name = 'adam'
    c.optim.lr = 0.01
    c.eval_splits = ('test',)
    c.select.update({'split': 'val', 'metric': 'frame/auc', 'mode': 'max'})
    c.data = data_config(
        name='synthetic',
        image_size=16,
        records={'train': 32, 'val': 12, 'test': 12},
        frames_per_video=4,
        class_names=('real', 'fake'),
        train_view='toy_negated_pair',
    )
    return c


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('toy')
    train.train(toy_config(), workdir)
    return workdir


def test_trains_with_two_examples_per_record_and_selects_on_val(toy_run):
    records = [json.loads(line) for line in (toy_run / 'metrics.jsonl').read_text().splitlines()]
    assert sorted(losses(toy_run)) == list(range(1, 13))
    val = {r['step']: r['val/frame/auc'] for r in records if 'val/frame/auc' in r}
    assert sorted(val) == [4, 8, 12]
    best = json.loads((toy_run / 'best.json').read_text())
    first_best = max(val, key=lambda s: (val[s], -s))  # the first step reaching the maximum is kept
    assert best == {
        'step': first_best,
        'split': 'val',
        'metric': 'frame/auc',
        'mode': 'max',
        'value': val[first_best],
        'selected_on_test': False,
    }
    done = json.loads((toy_run / train.DONE_FILE).read_text())
    test = done['eval']['test']['frame']
    assert test['n'] == 24 and test['n_pos'] == 12  # every test record gives a real and a fake example
    assert 0 < test['attention_mean'] < 1 and done['best'] == best


def test_resumes_exactly_after_sigkill(toy_run, tmp_path):
    workdir = tmp_path / 'killed'
    config_lib.save_config(toy_config(), workdir)
    process = fdx('train', '--workdir', str(workdir), stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (workdir / 'metrics.jsonl').is_file() or max(losses(workdir), default=0) < 7:
        assert time.time() < deadline and process.poll() is None, 'the run ended before it could be killed'
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 'resumed from step' in finish(fdx('train', '--workdir', str(workdir)))
    assert losses(workdir) == losses(toy_run)
    assert json.loads((workdir / 'best.json').read_text()) == json.loads((toy_run / 'best.json').read_text())


def test_eval_best_with_maps(toy_run, tmp_path, capsys):
    out = tmp_path / 'eval'
    assert cli.main(['eval', '--workdir', str(toy_run), '--step', 'best', '--out', str(out), '--save-maps', '3']) == 0
    best = json.loads((toy_run / 'best.json').read_text())
    metrics = json.loads((out / 'metrics_test.json').read_text())
    assert metrics['checkpoint'] == {'step': best['step'], 'selected_by': best, 'selected_on_test': False}
    assert 'attention_mean' in metrics['frame'] and metrics['frame']['ci']['unit'] == 'video'
    assert (out / 'maps_test.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert f'step {best["step"]}: test/frame acc=' in capsys.readouterr().err
