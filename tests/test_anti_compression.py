"""Anti-compression metric learning: the critic's size, every loss term on hand-made tensors, the gradient penalty
against finite differences, the LQ-only test path, PBCA, the HQ/LQ pairing, the `code` option, and one train step
in which the critic really trains."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fdx import input as input_lib
from fdx import methods
from fdx.config import import_config_file, load_config
from fdx.input import views
from fdx.input.records import encode_image
from fdx.methods import anti_compression as ac
from fdx.models import pretrained
from fdx.models.anti_compression import AntiCompressionNet, OrderCritic, attention_size
from fdx.models.xception import Xception
from fdx.state import Setup, prng_key

CONFIG = f'{Path(__file__).parent.parent}/experiments/anti_compression_ffpp.py'


def test_critic_parameter_count_and_input():
    pairs = jnp.zeros((1, 19, 19, 2 * 728))
    paper = jax.eval_shape(OrderCritic().init, jax.random.key(0), pairs)
    assert pretrained.count_params(paper) == 184_057_521  # "about 184 M"
    code = jax.eval_shape(OrderCritic(first_kernel=3).init, jax.random.key(0), pairs)
    assert pretrained.count_params(code) == 184_057_521 + 8 * 1456 * 1456
    kernels = {k: v.shape for k, v in traverse_util.flatten_dict(paper['params'], sep='/').items() if 'kernel' in k}
    assert kernels == {
        'fuse/kernel': (1, 1, 1456, 1456),
        'down1/kernel': (4, 4, 1456, 2048),
        'down2/kernel': (4, 4, 2048, 2048),
        'reduce/kernel': (4, 4, 2048, 2048),  # 19 → 9 → 4: the last convolution spans the map
        'score/kernel': (2048, 1),
    }


def test_two_branches_at_299():
    net = AntiCompressionNet()
    image = jnp.zeros((2, 299, 299, 3))
    variables = jax.eval_shape(net.init, jax.random.key(0), image[:1], image[:1])
    logits, features = jax.eval_shape(lambda v: net.apply(v, image, image), variables)
    for branch in ('hq', 'lq'):
        assert logits[branch].shape == (2, 2)
        assert features[branch]['v'].shape == (2, 19, 19, 728) and features[branch]['attention'].shape == (2, 19, 19)
        assert features[branch]['embedding'].shape == (2, 2048)
    assert attention_size(299) == 19 and attention_size(96) == 6
    params = variables['params']
    assert set(params) == {'hq', 'lq', 'tail_hq', 'tail_lq'}
    assert set(params['hq']) == {'conv1', 'bn1', 'conv2', 'bn2', *(f'block{i}' for i in range(1, 8)), 'attention'}
    shared = jax.eval_shape(
        AntiCompressionNet(shared_tail=True, classifier=False).init, jax.random.key(0), image, image
    )
    assert set(shared['params']) == {'hq', 'lq', 'tail'} and 'fc_lq' not in shared['params']['tail']


def test_imagenet_xception_initialises_every_head_and_tail():
    config = load_config(f'{CONFIG}:init=/ckpt')
    net = AntiCompressionNet()
    image = jnp.zeros((1, 299, 299, 3))
    target = jax.eval_shape(net.init, jax.random.key(0), image, image)
    source = jax.eval_shape(Xception(num_classes=1000).init, jax.random.key(0), image)

    def graft_all(target, source):
        for spec in config.init:
            spec = {k: v for k, v in dict(spec).items() if k != 'checkpoint'}
            target = pretrained.graft(target, source, **spec)
        return target

    jax.eval_shape(graft_all, target, source)  # every variable matched: an error lists anything missing or unused
    assert [spec['dst'] for spec in config.init] == ['hq', 'lq', 'tail_hq', 'tail_lq']


def test_attention_transfer_and_mask_terms():
    m_hq = jnp.array([[[0.0, 1.0], [1.0, 1.0]]])
    m_lq = jnp.array([[[0.5, 0.5], [1.0, 0.0]]])
    np.testing.assert_allclose(ac.attention_transfer(m_hq, m_lq), [(0.5 + 0.5 + 0 + 1) / 4])
    np.testing.assert_allclose(ac.attention_transfer(m_hq, m_lq, map_reduction='sum'), [2.0])
    unit_hq, unit_lq = np.array([0, 1, 1, 1]) / np.sqrt(3), np.array([0.5, 0.5, 1, 0]) / np.sqrt(1.5)
    np.testing.assert_allclose(
        ac.attention_transfer(m_hq, m_lq, 'normalised_l2'), [np.linalg.norm(unit_hq - unit_lq)], rtol=1e-6
    )
    for stop in (True, False):
        grad = jax.grad(lambda m, stop=stop: ac.attention_transfer(m, m_lq, stop_gradient=stop).sum())(m_hq)
        assert np.any(grad) != stop  # with the stop-gradient, no gradient reaches M_H

    # M_gt: zeros for the real (row 0), the mask for the fake (row 1), nothing for a fake without a mask (row 2)
    maps = jnp.array([[[0.2, 0.0], [0.0, 0.0]], [[0.9, 0.1], [1.0, 0.0]], [[0.7, 0.7], [0.7, 0.7]]])
    masks = jnp.array([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    known = jnp.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(ac.mask_supervision(maps, masks, known), [0.05, (0.1 + 0.1 + 0 + 1) / 4, 0.0])
    p = np.clip(np.array([0.9, 0.1, 1.0, 0.0]), 1e-7, 1 - 1e-7)
    bce = -np.mean([np.log(p[0]), np.log(1 - p[1]), np.log(p[2]), np.log(p[3])])
    np.testing.assert_allclose(ac.mask_supervision(maps, masks, known, 'bce')[1], bce, rtol=1e-5)


def test_metric_terms_radii_and_pairing():
    c_hq = jnp.array([[3.0, 4.0], [0.0, 80.0], [6.0, 8.0]])  # norms 5, 80, 10
    c_lq = jnp.array([[0.0, 7.0], [0.0, 50.0], [0.0, 0.0]])  # norms 7, 50, 0
    is_real = jnp.array([True, False, True])
    out = ac.metric_terms(c_hq, c_lq, is_real, 5.0, 75.0, 1.0)
    pair = np.linalg.norm(np.asarray(c_hq) - np.asarray(c_lq), axis=-1)
    np.testing.assert_allclose(out, [0 + 2 + pair[0], 0 + 25 + pair[1], 5 + 0 + pair[2]], rtol=1e-6)
    # the pair term compares the HQ and LQ embeddings of the same frame: swapping frames changes it
    swapped = ac.metric_terms(c_hq, c_lq[::-1], is_real, 5.0, 75.0, 0.0)
    np.testing.assert_allclose(swapped, [0 + 0, 0 + 25, 5 + 0 + 2], rtol=1e-6)
    np.testing.assert_allclose(ac.metric_terms(None, c_lq, jnp.ones(3, bool), 5.0, 75.0, 1.0), [2, 45, 0])
    code = ac.metric_terms(c_hq, c_lq, jnp.zeros(3, bool), 0.01, 18.0, 0.2)  # all fakes, the code's radii
    np.testing.assert_allclose(
        code, [13 + 11 + 0.2 * pair[0], 0 + 0 + 0.2 * pair[1], 8 + 18 + 0.2 * pair[2]], rtol=1e-6
    )


def test_gradient_penalty_matches_finite_differences():
    critic = OrderCritic(width=8)
    first, second = (jax.random.normal(jax.random.key(i), (2, 4, 4, 6)) for i in (1, 2))
    params = critic.init(jax.random.key(0), first)['params']
    score = lambda x: critic.apply({'params': params}, x)
    rng = jax.random.key(3)
    penalty = ac.gradient_penalty(score, first, second, rng)

    eps = jax.random.uniform(rng, (2, 1, 1, 1))
    between = np.asarray(eps * first + (1 - eps) * second, np.float64)
    norms = []
    for example in between:  # central differences of D at each interpolate, every input element in one batch
        steps = 1e-2 * np.eye(example.size)
        inputs = np.concatenate([example.ravel() + steps, example.ravel() - steps]).reshape(-1, *example.shape)
        values = np.asarray(score(jnp.asarray(inputs, jnp.float32)), np.float64)
        grad = (values[: example.size] - values[example.size :]) / 2e-2
        norms.append(np.linalg.norm(grad))
    np.testing.assert_allclose(float(penalty), np.mean((np.array(norms) - 1) ** 2), rtol=2e-3)


def test_pbca_and_masked_frame_view():
    attention = jnp.array([[[0.9, 0.2], [0.6, 0.4]], [[0.1, 0.1], [0.1, 0.8]]])
    mask = jnp.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(ac.pbca(attention, mask), [0.75, 0.75])

    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    mask_image = np.zeros((64, 64), np.uint8)
    mask_image[:32] = 255
    base = {'image_c40': encode_image(crop), 'class_id': 1, 'video_index': 3, 'frame_index': 7}
    view = views.MaskedFrameView('c40', size=64, mask_sizes=(4,))
    fake = view({**base, 'label': 1, 'mask': encode_image(mask_image)}, np.random.default_rng(0))
    assert fake['image'].shape == (64, 64, 3) and fake['mask_known'] == 1
    np.testing.assert_array_equal(fake['mask_4'], np.repeat([[1.0], [1.0], [0.0], [0.0]], 4, axis=1))
    unknown = view({**base, 'label': 1, 'mask': b''}, np.random.default_rng(0))
    real = view({**base, 'label': 0, 'class_id': 0, 'mask': b''}, np.random.default_rng(0))
    assert unknown['mask_known'] == 0 and real['mask_known'] == 1 and not real['mask_4'].any()
    assert set(view.spec()) == set(fake)


def test_pair_view_gives_both_branches_the_same_window():
    """One augmentation draw (scale, jitter, flip) crops HQ, LQ and the mask alike: identical PNGs stay identical."""
    crop = np.random.default_rng(1).integers(0, 255, (80, 80, 3), np.uint8)
    record = {
        'image_c23': encode_image(crop),
        'image_c40': encode_image(crop),
        'mask': b'',
        'label': 0,
        'class_id': 0,
        'video_index': 0,
        'frame_index': 0,
    }
    augment = views.Augment(flip=0.5, crop_scale=(0.7, 1.0), jitter=0.1)
    view = views.PairView('c23', 'c40', size=64, augment=augment, mask_sizes=(4,))
    plain = views.PairView('c23', 'c40', size=64, mask_sizes=(4,))(record, np.random.default_rng(0))
    for seed in range(4):
        out = view(record, np.random.default_rng(seed))
        np.testing.assert_array_equal(out['image_hq'], out['image_lq'])
        assert not np.allclose(out['image_hq'], plain['image_hq'])  # the draw did move the window
    assert set(view.spec()) == set(plain)
    assert load_config(CONFIG).data.pair.hq == 'c23' and load_config(CONFIG).data.pair.lq == 'c40'


def test_code_option_changes_exactly_the_documented_values():
    flat = lambda c: traverse_util.flatten_dict(c.to_dict(), sep='.')
    paper, code = flat(load_config(CONFIG)), flat(load_config(f'{CONFIG}:code'))
    changed = {k: (paper[k], code[k]) for k in paper if paper[k] != code[k]}
    assert changed == {
        'model.shared_tail': (False, True),
        'model.classifier': (True, False),
        'model.critic.first_kernel': (1, 3),
        'loss.cls_weight': (1.0, 0.0),
        'loss.gan_weight': (0.001, 0.0),
        'loss.metric_weight': (0.1, 1.0),
        'loss.radius_real': (5.0, 0.01),
        'loss.radius_fake': (75.0, 18.0),
        'loss.pair_weight': (1.0, 0.2),
        'loss.transfer': ('l1', 'normalised_l2'),
        'loss.mask_loss': ('l1', 'bce'),
        'loss.mask_branches': (('hq',), ('hq', 'lq')),
        'predict.score': ('softmax', 'norm'),
        'data.pair.mask_threshold': (0.1, 0.2),
        'data.masked_frame.mask_threshold': (0.1, 0.2),
    }
    assert set(code) == set(paper)
    assert methods.build(load_config(f'{CONFIG}:code')).critic is None  # the code never trains its critic
    rows = list(import_config_file(f'{CONFIG}:mini')[0].sweep('mini'))
    assert [r['loss.gan_weight'] for r in rows] == [0.0, 0.0, 0.0, 0.001]
    assert [r['model.branches'] for r in rows] == [('lq',), ('hq', 'lq'), ('hq', 'lq'), ('hq', 'lq')]
    assert all(r['data.classes'] == ('real', 'Deepfakes') for r in rows)


def tiny_config(arg: str = 'mini'):
    config = load_config(f'{CONFIG}:{arg}')
    config.model.backbone_kwargs = {'width': 0.125}
    config.model.critic.update({'width': 16, 'steps': 2})
    config.batch_size = 4
    config.critic_optim.lr = 1e-2  # big enough to see the critic move in two steps
    for view in ('pair', 'masked_frame'):
        config.data[view].size = 64
        config.data[view].mask_sizes = (attention_size(64),)
    return config


def synthetic_batch(view, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of the view's spec: random images, half fakes with a mask over the top rows."""
    rng = np.random.default_rng(seed)
    batch = {}
    for key, (shape, dtype) in view.spec().items():
        batch[key] = (
            rng.uniform(-1, 1, (batch_size, *shape)).astype(dtype)
            if key.startswith('image')
            else (np.zeros((batch_size, *shape), dtype))
        )
    batch['label'] = np.arange(batch_size, dtype=np.int32) % 2
    for key, value in batch.items():
        if key.startswith('mask_') and key != 'mask_known':
            value[1::2, : value.shape[1] // 2] = 1
    batch['mask_known'] = np.ones(batch_size, np.float32)
    return batch


def test_train_step_trains_the_critic_on_the_heads_features():
    config = tiny_config()
    batch = synthetic_batch(input_lib.build_view(config.data, 'train'), 4)
    setup = Setup(config, steps_per_epoch=10, example_batch=batch)
    state = setup.initial_state()
    before = jax.device_get(state.critic_params)
    step = setup.compiled_train_step()
    state, metrics = step(state, batch)
    state, metrics = step(state, batch)
    metrics = jax.device_get(metrics)
    for key in (
        'loss/cls',
        'loss/attention',
        'loss/metric',
        'loss/gan',
        'critic/wasserstein',
        'critic/gradient_penalty',
        'train/gap',
        'train/pbca_lq',
    ):
        assert np.isfinite(metrics[key]), key
    moved = traverse_util.flatten_dict(
        jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.critic_params, before), sep='/'
    )
    # every critic tensor updated but the score's bias, which cancels in D(V_H‖V_L) − D(V_L‖V_H) and the penalty
    assert moved.pop('score/bias') == 0 and min(moved.values()) > 0
    counts = [int(x) for x in jax.tree.leaves(state.critic_opt_state) if np.ndim(x) == 0]
    assert 2 * 2 in counts  # two critic updates per step


def test_predict_runs_the_lq_branch_alone():
    config = tiny_config()
    method = methods.build(config)
    pair = synthetic_batch(input_lib.build_view(config.data, 'train'), 2)
    variables = jax.jit(method.init)(prng_key(0), pair)
    frames = synthetic_batch(input_lib.build_view(config.data, 'test'), 2)
    lq_only = {**variables, 'params': {k: v for k, v in variables['params'].items() if k in ('lq', 'tail_lq')}}
    lq_only['batch_stats'] = {k: v for k, v in variables['batch_stats'].items() if k in ('lq', 'tail_lq')}
    out = jax.jit(method.predict)(lq_only, frames)  # no HQ parameters needed
    assert out['score'].shape == (2,) and out['attention_lq'].shape == (2, 4, 4)
    np.testing.assert_array_equal(out['mask'], frames['mask_4'])  # drawn beside M_L by --save-maps
    with pytest.raises(KeyError):
        method.predict(variables, {k: v for k, v in pair.items()})  # HQ/LQ pairs have no `image`: LQ frames only
    metric = method.eval_metrics(out, {**frames, 'mask_known': np.array([1.0, 0.0], np.float32)})['pbca']
    assert np.isfinite(metric[0]) and np.isnan(metric[1])  # a fake without a mask is left out
    expected = ac.pbca(out['attention_lq'], frames['mask_4'])
    np.testing.assert_allclose(metric[0], expected[0])
