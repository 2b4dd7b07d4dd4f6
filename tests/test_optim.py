"""Tests for fdx.optim: schedules, parameter groups, and step-by-step agreement with torch.optim."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fdx import optim

STEPS = 5
SHAPES = {'backbone': {'kernel': (3, 4), 'bias': (4,)}, 'head': {'kernel': (4, 2), 'bias': (2,)}}


def _config(**overrides) -> ml_collections.ConfigDict:
    config = optim.default_config()
    config.update(overrides)
    return config


def _lrs(schedule, steps) -> np.ndarray:
    return np.array([float(schedule(step)) for step in steps])


def _params(seed: int = 0) -> dict:
    """{'params': {'backbone': {...}, 'head': {...}}} of float32 arrays around 1."""
    rng = np.random.default_rng(seed)
    arrays = jax.tree.map(lambda shape: rng.standard_normal(shape).astype(np.float32), SHAPES, is_leaf=_is_shape)
    return {'params': arrays}


def _is_shape(x) -> bool:
    return isinstance(x, tuple)


def _quadratic_grads(params, seed: int = 1):
    """Gradients of sum(c/2 · (p − t)²) with fixed c, t per tensor, in float32 numpy."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(params)
    grads = []
    for p in leaves:
        p = np.asarray(p, np.float32)
        c = rng.uniform(0.5, 2.0, p.shape).astype(np.float32)
        t = rng.standard_normal(p.shape).astype(np.float32)
        grads.append(c * (p - t))
    return jax.tree.unflatten(treedef, grads)


# --------------------------------------------------------------------------- #
# Schedules
# --------------------------------------------------------------------------- #


def test_step_schedule_dma_sta():
    # lr 0.01 divided by 10 every 40 epochs, never below 1e-4.
    spe = 100
    schedule = optim.make_schedule(_config(schedule='step', lr=0.01, factor=0.1, every_epochs=40, min_lr=1e-4), spe)
    epochs = [0, 39, 40, 80, 120, 200]
    np.testing.assert_allclose(
        _lrs(schedule, [e * spe for e in epochs]), [1e-2, 1e-2, 1e-3, 1e-4, 1e-4, 1e-4], rtol=1e-6
    )
    np.testing.assert_allclose(_lrs(schedule, [40 * spe - 1, 80 * spe - 1]), [1e-2, 1e-3], rtol=1e-6)


def test_step_schedule_recce_steps_and_long_distance_epochs():
    recce = optim.make_schedule(_config(schedule='step', lr=2e-4, factor=0.5, every_steps=22500), steps_per_epoch=7)
    np.testing.assert_allclose(
        _lrs(recce, [0, 22499, 22500, 44999, 45000, 67500]), [2e-4, 2e-4, 1e-4, 1e-4, 5e-5, 2.5e-5], rtol=1e-6
    )
    # every_epochs takes precedence over every_steps.
    lda = optim.make_schedule(_config(schedule='step', lr=3e-4, factor=0.5, every_epochs=5, every_steps=3), 10)
    np.testing.assert_allclose(_lrs(lda, [0, 49, 50, 100]), [3e-4, 3e-4, 1.5e-4, 7.5e-5], rtol=1e-6)


def test_cosine_with_warmup():
    config = _config(schedule='cosine', lr=0.1, min_lr=1e-3, warmup_epochs=2, total_steps=100)
    schedule = optim.make_schedule(config, steps_per_epoch=10)
    lrs = _lrs(schedule, range(120))
    assert lrs[0] == 0.0
    np.testing.assert_allclose(lrs[[10, 20, 60, 100, 119]], [0.05, 0.1, (0.1 + 1e-3) / 2, 1e-3, 1e-3], rtol=1e-6)
    assert np.argmax(lrs) == 20
    assert np.all(np.diff(lrs[:21]) > 0) and np.all(np.diff(lrs[20:101]) < 0)


def test_warmup_before_constant_and_step_counts_absolute_steps():
    constant = optim.make_schedule(_config(lr=0.1, warmup_steps=4), 1)
    np.testing.assert_allclose(_lrs(constant, range(6)), [0, 0.025, 0.05, 0.075, 0.1, 0.1], rtol=1e-6)
    step = optim.make_schedule(_config(schedule='step', lr=0.1, factor=0.1, every_steps=4, warmup_steps=2), 1)
    np.testing.assert_allclose(_lrs(step, range(9)), [0, 0.05, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001], rtol=1e-6)


@pytest.mark.parametrize('schedule', ['constant', 'step', 'cosine'])
def test_schedules_trace_under_jit(schedule):
    config = _config(schedule=schedule, lr=0.1, every_steps=3, warmup_steps=2, total_steps=10, min_lr=0.01)
    fn = optim.make_schedule(config, 1)
    np.testing.assert_allclose(_lrs(jax.jit(fn), [jnp.int32(s) for s in range(12)]), _lrs(fn, range(12)), rtol=1e-6)


@pytest.mark.parametrize(
    'overrides,match',
    [
        ({'schedule': 'cosin'}, r"optim\.schedule: unknown schedule 'cosin'; choose from constant, step, cosine"),
        ({'schedule': 'step'}, r'optim\.every_steps'),
        ({'schedule': 'step', 'every_steps': 5, 'factor': 0.0}, r'optim\.factor'),
        ({'schedule': 'cosine', 'warmup_steps': 10, 'total_steps': 10}, r'optim\.total_steps'),
        ({'lr': -1.0}, r'optim\.lr'),
        ({'min_lr': 1.0}, r'optim\.min_lr'),
        ({'warmup_steps': -1}, r'optim\.warmup_steps'),
        ({'name': 'sgdd'}, r"optim\.name: unknown optimizer 'sgdd'"),
        ({'momentum': 0.0, 'nesterov': True}, r'optim\.nesterov'),
        ({'name': 'adam', 'beta2': 1.0}, r'optim\.beta2'),
        ({'weight_decay': -0.1}, r'optim\.weight_decay'),
        ({'groups': ({'pattern': 'head', 'lr_mul': 0.1},)}, r"optim\.groups\[0\]: unknown fields \['lr_mul'\]"),
        ({'groups': ({'pattern': 'head('},)}, r'optim\.groups\[0\]\.pattern: invalid regex'),
        ({'groups': ({'name': 'head'},)}, r'optim\.groups\[0\]\.pattern'),
        ({'groups': ({'pattern': 'head', 'lr_mult': 0.0},)}, r'optim\.groups\[0\]\.lr_mult'),
        ({'groups': ({'pattern': 'head'}, {'pattern': 'backbone', 'name': 'head'})}, r'optim\.groups\[1\]\.name'),
    ],
)
def test_invalid_config_names_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        optim.make_optimizer(_config(**overrides), 10, _params())


def test_default_config_and_partial_config():
    config = optim.default_config()
    expected = {'name': 'sgd', 'lr': 0.01, 'momentum': 0.9, 'weight_decay': 0.0, 'schedule': 'constant', 'groups': ()}
    assert {key: config[key] for key in expected} == expected
    assert {
        'nesterov',
        'beta1',
        'beta2',
        'eps',
        'grad_clip_norm',
        'factor',
        'every_epochs',
        'every_steps',
        'min_lr',
        'warmup_epochs',
        'warmup_steps',
        'total_steps',
    } <= set(config.keys())
    # A config that sets only some fields (the anti-compression setting) falls back to the defaults.
    tx, schedules = optim.make_optimizer(ml_collections.ConfigDict({'name': 'adam', 'lr': 1e-4}), 10, _params())
    assert list(schedules) == ['default'] and float(schedules['default'](1000)) == pytest.approx(1e-4)
    params = _params()
    updates, _ = tx.update(_quadratic_grads(params), tx.init(params), params)
    # Adam's first step moves every parameter by lr (up to eps).
    np.testing.assert_allclose(np.abs(np.concatenate([u.ravel() for u in jax.tree.leaves(updates)])), 1e-4, rtol=1e-3)


# --------------------------------------------------------------------------- #
# Agreement with torch.optim
# --------------------------------------------------------------------------- #


def _run_fdx(config, steps_per_epoch: int = 1):
    params = _params()
    tx, _ = optim.make_optimizer(config, steps_per_epoch, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(STEPS):
        updates, state = update(_quadratic_grads(params), state, params)
        params = optax.apply_updates(params, updates)
    return jax.tree.map(np.asarray, params)


def _run_torch(torch, make_optimizer, clip_norm: float, frozen: list[str]):
    """STEPS torch.optim steps on the `_params()` tensors; those matching a `frozen` pattern get no gradient."""
    params = _params()
    treedef = jax.tree.structure(params)
    paths = [
        jax.tree_util.keystr(k, simple=True, separator='/') for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    named = {
        n: torch.tensor(p, requires_grad=not any(re.search(f, n) for f in frozen))
        for n, p in zip(paths, jax.tree.leaves(params))
    }
    trainable = [t for t in named.values() if t.requires_grad]
    opt, scheduler = make_optimizer(torch.optim, {n: t for n, t in named.items() if t.requires_grad})
    for _ in range(STEPS):
        current = jax.tree.unflatten(treedef, [t.detach().numpy() for t in named.values()])
        for t, g in zip(named.values(), jax.tree.leaves(_quadratic_grads(current))):
            t.grad = torch.tensor(g) if t.requires_grad else None
        if clip_norm:
            torch.nn.utils.clip_grad_norm_(trainable, clip_norm)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return jax.tree.unflatten(treedef, [t.detach().numpy() for t in named.values()])


def _split(named: dict, pattern: str, group: dict) -> list[dict]:
    """torch param groups: tensors whose name contains `pattern` with `group`'s options, then the rest."""
    return [
        {'params': [t for n, t in named.items() if pattern in n], **group},
        {'params': [t for n, t in named.items() if pattern not in n]},
    ]


# Case -> (fdx optim overrides, factory(torch.optim, named trainable tensors) -> (torch optimizer, scheduler or None)).
TORCH_CASES = {
    'sgd_momentum_wd_steplr': (
        {'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0.05, 'schedule': 'step', 'every_steps': 2},
        lambda to, p: (
            o := to.SGD(p.values(), lr=0.1, momentum=0.9, weight_decay=0.05),
            to.lr_scheduler.StepLR(o, 2, gamma=0.1),
        ),
    ),
    'sgd_nesterov_wd_steplr': (
        {
            'lr': 0.1,
            'momentum': 0.9,
            'nesterov': True,
            'weight_decay': 0.05,
            'schedule': 'step',
            'factor': 0.5,
            'every_steps': 3,
        },
        lambda to, p: (
            o := to.SGD(p.values(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05),
            to.lr_scheduler.StepLR(o, 3, gamma=0.5),
        ),
    ),
    'sgd_plain_wd': (
        {'lr': 0.2, 'momentum': 0.0, 'weight_decay': 0.1},
        lambda to, p: (to.SGD(p.values(), lr=0.2, weight_decay=0.1), None),
    ),
    'sgd_step_epochs_floor': (  # DMA-STA shape: ÷10 every half epoch (1 step), floored at lr / 100 from step 3
        {'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0.05, 'schedule': 'step', 'every_epochs': 0.5, 'min_lr': 1e-3},
        lambda to, p: (
            o := to.SGD(p.values(), lr=0.1, momentum=0.9, weight_decay=0.05),
            to.lr_scheduler.LambdaLR(o, lambda i: max(0.1**i, 1e-2)),
        ),
    ),
    'sgd_clip': (
        {'lr': 0.1, 'momentum': 0.9, 'grad_clip_norm': 0.5},
        lambda to, p: (to.SGD(p.values(), lr=0.1, momentum=0.9), None),
    ),
    'adam_wd_steplr': (
        {'name': 'adam', 'lr': 0.05, 'weight_decay': 0.1, 'schedule': 'step', 'factor': 0.5, 'every_steps': 2},
        lambda to, p: (o := to.Adam(p.values(), lr=0.05, weight_decay=0.1), to.lr_scheduler.StepLR(o, 2, gamma=0.5)),
    ),
    'adam_betas': (
        {'name': 'adam', 'lr': 0.05, 'beta1': 0.5, 'beta2': 0.99, 'eps': 1e-3},
        lambda to, p: (to.Adam(p.values(), lr=0.05, betas=(0.5, 0.99), eps=1e-3), None),
    ),
    'adamw_steplr': (
        {'name': 'adamw', 'lr': 0.05, 'weight_decay': 0.5, 'schedule': 'step', 'factor': 0.5, 'every_steps': 2},
        lambda to, p: (o := to.AdamW(p.values(), lr=0.05, weight_decay=0.5), to.lr_scheduler.StepLR(o, 2, gamma=0.5)),
    ),
    'adamw_groups': (
        {
            'name': 'adamw',
            'lr': 0.05,
            'weight_decay': 0.5,
            'schedule': 'step',
            'factor': 0.5,
            'every_steps': 2,
            'groups': ({'pattern': 'backbone/', 'lr_mult': 0.1, 'weight_decay': 0.2},),
        },
        lambda to, p: (
            o := to.AdamW(_split(p, 'backbone/', {'lr': 0.005, 'weight_decay': 0.2}), lr=0.05, weight_decay=0.5),
            to.lr_scheduler.StepLR(o, 2, gamma=0.5),
        ),
    ),
    'sgd_frozen_clip': (  # frozen tensors get no gradient in torch, so they do not count towards the clipped norm
        {
            'lr': 0.1,
            'momentum': 0.9,
            'weight_decay': 0.05,
            'grad_clip_norm': 0.5,
            'groups': ({'pattern': 'backbone/', 'frozen': True},),
        },
        lambda to, p: (to.SGD(p.values(), lr=0.1, momentum=0.9, weight_decay=0.05), None),
    ),
}


@pytest.mark.parametrize('case', TORCH_CASES)
def test_matches_torch_optim(case):
    torch = pytest.importorskip('torch', reason='torch is needed for the torch.optim reference comparison')
    overrides, make_torch = TORCH_CASES[case]
    config = _config(**overrides)
    frozen = [g['pattern'] for g in config.groups if g.get('frozen')]
    expected = _run_torch(torch, make_torch, config.grad_clip_norm, frozen)
    actual = _run_fdx(config, steps_per_epoch=2)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(actual)[-1], jax.tree.leaves(_params())[-1], atol=1e-3)  # it trained


@pytest.mark.parametrize(
    'a,b',
    [
        ({'name': 'adam', 'weight_decay': 0.5}, {'name': 'adamw', 'weight_decay': 0.5}),
        ({'nesterov': True}, {'nesterov': False}),
        ({'weight_decay': 0.05}, {'weight_decay': 0.0}),
    ],
)
def test_reference_settings_are_distinguishable(a, b):
    # The torch comparison's tolerance is far below the effect of coupling, Nesterov and weight decay.
    base = {'lr': 0.05, 'momentum': 0.9}
    diff = max(
        np.abs(x - y).max()
        for x, y in zip(
            jax.tree.leaves(_run_fdx(_config(**base, **a))), jax.tree.leaves(_run_fdx(_config(**base, **b)))
        )
    )
    assert diff > 1e-3


# --------------------------------------------------------------------------- #
# Parameter groups and clipping
# --------------------------------------------------------------------------- #


def test_frozen_group_stays_bit_identical_and_has_no_state():
    params = _params()
    config = _config(
        name='adamw', lr=0.1, weight_decay=0.1, grad_clip_norm=1.0, groups=({'pattern': 'backbone/', 'frozen': True},)
    )
    tx, schedules = optim.make_optimizer(config, 1, jax.eval_shape(lambda: params))
    assert float(schedules['backbone/'](3)) == 0.0 and float(schedules['default'](3)) == pytest.approx(0.1)
    state = tx.init(params)
    assert jax.tree.leaves(state[1].inner_states['backbone/']) == []
    update = jax.jit(tx.update)
    new = params
    for seed in range(4):
        updates, state = update(_quadratic_grads(new, seed), state, new)
        new = optax.apply_updates(new, updates)
    for name in ('kernel', 'bias'):
        old, now = params['params']['backbone'][name], np.asarray(new['params']['backbone'][name])
        assert now.dtype == old.dtype and np.array_equal(now.view(np.uint32), old.view(np.uint32))
        assert not np.allclose(np.asarray(new['params']['head'][name]), params['params']['head'][name], atol=1e-3)


def test_lr_mult_scales_plain_sgd_update():
    params = _params()
    grads = _quadratic_grads(params)
    base = {'lr': 0.5, 'momentum': 0.0}

    def first_update(config):
        tx, schedules = optim.make_optimizer(config, 1, params)
        return tx.update(grads, tx.init(params), params)[0], schedules

    reference, _ = first_update(_config(**base))
    scaled, schedules = first_update(_config(**base, groups=({'pattern': 'backbone/', 'lr_mult': 0.1, 'name': 'bb'},)))
    assert float(schedules['bb'](0)) == pytest.approx(0.1 * float(schedules['default'](0)), rel=1e-7)
    for name in ('kernel', 'bias'):
        np.testing.assert_allclose(
            scaled['params']['backbone'][name], 0.1 * np.asarray(reference['params']['backbone'][name]), rtol=1e-6
        )
        np.testing.assert_array_equal(scaled['params']['head'][name], reference['params']['head'][name])
        np.testing.assert_allclose(scaled['params']['head'][name], -0.5 * grads['params']['head'][name], rtol=1e-6)


def test_first_matching_group_wins_and_summary():
    groups = [{'pattern': 'kernel', 'name': 'kernels'}, ml_collections.ConfigDict({'pattern': r'^params/backbone/'})]
    labels = optim.param_labels(_params(), groups)
    assert labels == {
        'params': {
            'backbone': {'kernel': 'kernels', 'bias': '^params/backbone/'},
            'head': {'kernel': 'kernels', 'bias': 'default'},
        }
    }
    groups[1] = {'pattern': r'^params/backbone/', 'name': 'bb', 'frozen': True}
    assert optim.group_summary(_params(), groups) == [
        ('kernels', 2, 12 + 8, False),
        ('bb', 1, 4, True),
        ('default', 1, 2, False),
    ]


@pytest.mark.parametrize(
    'groups,pattern',
    [
        (({'pattern': 'backbon3/'},), 'backbon3/'),
        (({'pattern': 'head'}, {'pattern': 'backbone/', 'frozen': True}, {'pattern': 'head/kernel'}), 'head/kernel'),
    ],
)
def test_pattern_matching_nothing_raises(groups, pattern):
    with pytest.raises(ValueError, match=f"'{pattern}'.*match no parameter"):
        optim.make_optimizer(_config(groups=groups), 1, _params())
    with pytest.raises(ValueError, match=pattern):
        optim.group_summary(_params(), groups)


def test_grad_clipping_caps_global_norm():
    params = _params()
    grads = _quadratic_grads(params)
    norm = float(optax.tree.norm(grads))
    tx, _ = optim.make_optimizer(_config(lr=1.0, momentum=0.0, grad_clip_norm=norm / 4), 1, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(optax.tree.norm(updates)) == pytest.approx(norm / 4, rel=1e-5)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):  # same direction
        np.testing.assert_allclose(u, -g / 4, rtol=1e-5)
    # Below the cap the gradients pass unchanged; frozen gradients do not count towards the norm.
    tx, _ = optim.make_optimizer(_config(lr=1.0, momentum=0.0, grad_clip_norm=norm * 2), 1, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
        np.testing.assert_array_equal(u, -g)
    huge = jax.tree.map(lambda g: g * 1e6, grads)
    huge['params']['head'] = grads['params']['head']
    head_norm = float(optax.tree.norm(grads['params']['head']))
    frozen = _config(
        lr=1.0, momentum=0.0, grad_clip_norm=head_norm * 2, groups=({'pattern': 'backbone', 'frozen': True},)
    )
    tx, _ = optim.make_optimizer(frozen, 1, params)
    updates, _ = tx.update(huge, tx.init(params), params)
    np.testing.assert_array_equal(updates['params']['head']['kernel'], -grads['params']['head']['kernel'])
    np.testing.assert_array_equal(updates['params']['backbone']['kernel'], 0.0)
