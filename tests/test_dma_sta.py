"""DMA-STA: eq. 5 by hand, shapes and size, the config and a training step of each variant."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from numpy_reference import filled, numpy_params, sigmoid

from fdx import grid, methods, optim
from fdx.config import load_config
from fdx.input.layouts import MODELS
from fdx.models import pretrained
from fdx.models.attention import SpatialAttention
from fdx.models.dma_sta import DmaSta, FrameAttention, TemporalAttention, weighted_mean
from fdx.models.resnet import ResNet

CONFIG = str(Path(__file__).resolve().parents[1] / 'experiments' / 'dma_sta_dfdm.py')
MINI_BACKBONE = {'stage_sizes': (1, 1), 'width': 4}  # two bottlenecks
ONE_BLOCK = {'stage_sizes': (1,), 'width': 4}  # one bottleneck


# Eq. 3-5 on a hand-made input: 4 frames of 3 channels; the mean over channels is s = [2, 5, 1, 2].
FRAMES = np.array([[[1, 2, 3], [4, 5, 6], [0, 0, 3], [2, 2, 2]]], np.float32)
# f1 (T → T/2): hidden = ReLU([s_2, -s_1]) = [5, 0]; f2 (T/2 → T): logits = 5 · [0, ln 3 / 5, -ln 3 / 5, 0]
# (the second row only meets the zero the ReLU made), so m = σ(logits) = [1/2, 3/4, 1/4, 1/2] and Σ m = 2.
FC1 = np.array([[0, -1], [1, 0], [0, 0], [0, 0]], np.float32)
FC2 = np.array([[0, np.log(3) / 5, -np.log(3) / 5, 0], [7, 7, 7, 7]], np.float32)
WEIGHTS = np.array([[0.5, 0.75, 0.25, 0.5]])
# F = (0.5 f1 + 0.75 f2 + 0.25 f3 + 0.5 f4) / 2 = [4.5, 5.75, 7.75] / 2
FUSED = np.array([[2.25, 2.875, 3.875]])


def test_temporal_attention_and_eq5_by_hand():
    variables = {'params': {'fc1': {'kernel': FC1}, 'fc2': {'kernel': FC2}}}
    weights = TemporalAttention().apply(variables, FRAMES)
    np.testing.assert_allclose(weights, WEIGHTS, rtol=1e-6)
    np.testing.assert_allclose(weighted_mean(FRAMES, weights), FUSED, rtol=1e-6)
    # SAM+FA (FAN self-attention): α_i = σ(q·f_i + b) with q = [0, 0, 1], b = -3: logits [0, 3, 0, -1].
    alphas = FrameAttention().apply(
        {'params': {'fc': {'kernel': np.array([[0.0], [0], [1]]), 'bias': np.array([-3.0])}}}, FRAMES
    )
    np.testing.assert_allclose(alphas, [[0.5, sigmoid(3), 0.5, sigmoid(-1)]], rtol=1e-6)


def test_model_fuses_frames_by_eq5():
    model = DmaSta(**MINI_BACKBONE)
    clips = np.random.default_rng(6).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)
    variables = filled(model.init, clips)
    variables['params']['temporal_attention'] = {'fc1': {'kernel': FC1}, 'fc2': {'kernel': FC2}}
    logits, features = model.apply(variables, clips)
    f = np.asarray(features['frame_features'], np.float64)
    hidden = np.maximum(f.mean(-1) @ FC1, 0)
    m = sigmoid(hidden @ FC2)
    np.testing.assert_allclose(features['temporal_weights'], m, rtol=1e-5)
    fused = (m[..., None] * f).sum(1) / m.sum(1, keepdims=True)
    np.testing.assert_allclose(features['fused'], fused, rtol=1e-5, atol=1e-6)
    head = numpy_params(variables)['head']
    np.testing.assert_allclose(logits, fused @ head['kernel'] + head['bias'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fusion', ['temporal_attention', 'average', 'frame_attention'])
def test_output_shapes(fusion):
    model = DmaSta(frame_fusion=fusion, **MINI_BACKBONE)
    channels = 2 * MINI_BACKBONE['width'] * 4
    for batch, frames in ((2, 10), (2, 3), (8, 1)):
        clips = jnp.ones((batch, frames, 32, 32, 3))
        variables = jax.eval_shape(model.init, jax.random.key(0), clips)
        logits, features = jax.eval_shape(model.apply, variables, clips)
        assert logits.shape == (batch, 5) and features['fused'].shape == (batch, channels)
        assert features['frame_features'].shape == (batch, frames, channels)
        assert features['temporal_weights'].shape == (batch, frames)
        if fusion == 'temporal_attention':
            fc1 = variables['params']['temporal_attention']['fc1']['kernel']
            assert fc1.shape == (frames, max(frames // 2, 1))
    # One-frame clips run (8 x 1 frames: the backbone sees the batch shape of the other tests).
    clips = jnp.asarray(np.random.default_rng(7).standard_normal((8, 1, 32, 32, 3)), jnp.float32)
    logits, features = model.apply(filled(model.init, clips), clips)
    assert bool(jnp.isfinite(logits).all())
    np.testing.assert_allclose(features['fused'], features['frame_features'][:, 0], rtol=1e-5, atol=1e-6)


def stem_conv_numpy(x, kernel):
    """The ResNet stem's 7x7 stride-2 convolution with zero padding 3 written out, [N, H, W, 3] → [N, H/2, W/2, C]."""
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
    h, w = x.shape[1] // 2, x.shape[2] // 2
    return sum(padded[:, i : i + 2 * h : 2, j : j + 2 * w : 2] @ kernel[i, j] for i in range(7) for j in range(7))


def test_per_frame_batch_norm_normalises_each_frame_index_and_updates_t_times():
    """'per_frame' (the official code's frame loop): in training, frame t is normalised over the B clips' frames t and
    every running statistic takes T updates m ← 0.9 m + 0.1 μ_t in frame order; evaluation is the same computation as
    'clip'."""
    batch, frames = 3, 4
    clips = np.random.default_rng(8).standard_normal((batch, frames, 32, 32, 3)).astype(np.float32) + 0.5
    model = DmaSta(frame_batch_norm='per_frame', **ONE_BLOCK)
    variables = filled(model.init, clips)
    variables['batch_stats'] = jax.tree.map(lambda a: a + 0.5, variables['batch_stats'])  # non-zero start
    train = functools.partial(model.apply, train=True, mutable=['batch_stats'])
    (_, features), state = jax.jit(train)(variables, clips)
    initial, final = variables['batch_stats']['backbone'], state['batch_stats']['backbone']

    # The stem's BN by hand: μ_t, σ²_t (biased) of conv1 over the B clips' frames t, applied in frame order.
    frames_flat = clips.reshape(batch * frames, *clips.shape[2:]).astype(np.float64)
    stem = stem_conv_numpy(frames_flat, numpy_params(variables)['backbone']['conv1']['kernel'])
    stem = stem.reshape(batch, frames, -1, stem.shape[-1])  # [B, T, H·W, C]
    mean, var = np.full(stem.shape[-1], 0.5), np.full(stem.shape[-1], 1.5)
    for t in range(frames):
        mean = 0.9 * mean + 0.1 * stem[:, t].mean((0, 1))
        var = 0.9 * var + 0.1 * stem[:, t].var((0, 1))
    np.testing.assert_allclose(final['bn1']['mean'], mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final['bn1']['var'], var, rtol=1e-4, atol=1e-5)
    one_update = 0.9 * 0.5 + 0.1 * stem.mean((0, 1, 2))  # 'clip': one update over the B·T frames
    assert np.abs(one_update - mean).max() > 0.1

    # Every BN: the backbone on each frame index alone (vmap over T, each a BN batch of B frames, one update each).
    backbone = ResNet(num_classes=0, block_attention=SpatialAttention, **ONE_BLOCK)

    def one_frame_index(frames_t):
        (pooled, _), stats = backbone.apply(
            {'params': variables['params']['backbone'], 'batch_stats': initial}, frames_t, True, mutable=['batch_stats']
        )
        return pooled, stats['batch_stats']

    pooled, single = jax.jit(jax.vmap(one_frame_index, in_axes=1))(clips)
    np.testing.assert_allclose(features['frame_features'], pooled.transpose(1, 0, 2), rtol=1e-4, atol=1e-5)

    def in_sequence(start, updates):  # μ_t = (one update from `start` − 0.9 start) / 0.1, then T updates in order
        start, m = np.asarray(start, np.float64), np.asarray(start, np.float64)
        for update in np.asarray(updates, np.float64):
            m = 0.9 * m + (update - 0.9 * start)
        return m

    expected = jax.tree.map(in_sequence, initial, single)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), final, expected)

    def evaluation(m):
        return str(jax.make_jaxpr(functools.partial(m.apply, train=False))(variables, clips))

    assert evaluation(model) == evaluation(DmaSta(**ONE_BLOCK))


def test_he_normal_fan_out_initialises_every_convolution():
    """`conv_init='he_normal_fan_out'` (the official code): every kernel of the backbone and its SAMs is drawn from
    N(0, 2 / fan_out), fan_out = kh·kw·out_channels, untruncated; fdx's default is flax's truncated LeCun normal
    (variance 1 / fan_in)."""
    model = DmaSta(conv_init='he_normal_fan_out', **ONE_BLOCK)
    params = jax.jit(model.init)(jax.random.key(0, impl='rbg'), jnp.zeros((1, 1, 32, 32, 3)))['params']
    flat = traverse_util.flatten_dict(params['backbone'], sep='/')
    kernels = {k: np.asarray(v) for k, v in flat.items() if k.endswith('/kernel')}
    assert len(kernels) == 1 + 5  # stem + one bottleneck's 4 convolutions and SAM
    scores = []
    for name, kernel in kernels.items():
        kh, kw, fan_in, out = kernel.shape
        he, lecun = np.sqrt(2 / (kh * kw * out)), np.sqrt(1 / (kh * kw * fan_in))
        ratio, tolerance = kernel.std() / he, 4 / np.sqrt(2 * kernel.size)  # 4 standard errors of a sample std
        assert abs(ratio - 1) < tolerance, (name, ratio)
        if kernel.size >= 98 and abs(he / lecun - 1) > 2 * tolerance:  # the default init would fail these
            assert abs(kernel.std() / lecun - 1) > tolerance, name
        scores.append(kernel.ravel() / he)
    scores = np.concatenate(scores)
    assert abs(scores.std() - 1) < 4 / np.sqrt(2 * scores.size) and abs(scores.mean()) < 4 / np.sqrt(scores.size)
    assert np.abs(scores).max() > 2.5  # a normal, not flax's normal truncated at ±2 (±2.28 σ)
    assert kernels['layer1/block0/attention/conv/kernel'].shape == (7, 7, 2, 1)  # SAM's 7x7 included


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_full_size_parameter_count():
    clips = jax.ShapeDtypeStruct((1, 10, 224, 224, 3), jnp.float32)
    params = jax.eval_shape(DmaSta().init, jax.random.key(0), clips)['params']
    attention = {k: v for k, v in traverse_util.flatten_dict(params, sep='/').items() if '/attention/' in k}
    assert len(attention) == 16 and count(attention) == 16 * 98
    # ResNet-50 25,557,032 - fc (2048·1000 + 1000 = 2,049,000) = 23,508,032 trunk
    # + 16 SAMs × 98 (7·7·2 kernel, no bias) = 1,568
    # + temporal attention 10·5 + 5·10 (no biases) = 100
    # + head 2048·5 + 5 = 10,245
    # = 23,519,945
    assert count(params) == 25_557_032 - 2_049_000 + 16 * 98 + (10 * 5 + 5 * 10) + (2048 * 5 + 5) == 23_519_945


def test_config_defaults_are_the_papers():
    c = load_config(CONFIG)
    assert (c.method, c.model.backbone_attention, c.model.frame_fusion) == ('dma_sta', 'spatial', 'temporal_attention')
    assert tuple(c.model.backbone_kwargs.stage_sizes) == (3, 4, 6, 3) and c.model.backbone_kwargs.width == 64
    assert (c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay) == ('sgd', 0.01, 0.9, 5e-4)
    assert (c.optim.schedule, c.optim.every_epochs, c.optim.factor, c.optim.min_lr) == ('step', 40, 0.1, 1e-4)
    assert (c.batch_size, c.num_epochs, c.total_steps, tuple(c.eval_splits)) == (10, 300, 0, ('test',))
    d = c.data
    assert (d.name, d.train_view, d.clip.quality, d.target, tuple(d.class_names)) == (
        'dfdm',
        'clip',
        'crf10',
        'class_id',
        MODELS,
    )
    clip = d.clip
    assert (clip.frames, clip.mode, clip.random_start, clip.size, clip.normalisation) == (
        10,
        'periodic',
        False,
        224,
        'imagenet',
    )
    assert clip.flip == 0.5 and not clip.resize_then_center_crop and not clip.flip_per_frame and c.init == ()
    assert (d.val_from_train, c.select.split, c.select.metric, c.select.allow_test) == (0.1, 'val', 'frame/acc', False)
    schedule = optim.make_schedule(c.optim, steps_per_epoch=151)  # 1,505 training videos / 10
    lrs = [float(schedule(151 * epoch)) for epoch in (0, 39, 40, 80, 120, 299)]
    np.testing.assert_allclose(lrs, [1e-2, 1e-2, 1e-3, 1e-4, 1e-4, 1e-4], rtol=1e-6)

    model_options = ('frame_batch_norm', 'conv_init', 'cbam_spatial_batch_norm')
    assert tuple(c.model[k] for k in model_options) == ('clip', 'lecun_normal', False)

    code = load_config(f'{CONFIG}:code')
    assert (code.batch_size, code.num_epochs, code.optim.lr, code.data.clip.normalisation) == (
        20,
        299,
        1e-3,
        'dma_sta_code',
    )
    assert tuple(code.model[k] for k in model_options) == ('per_frame', 'he_normal_fan_out', True)
    assert code.data.clip.mode == 'consecutive' and code.data.clip.random_start and code.data.clip.test_random_start
    assert code.data.clip.flip_per_frame and code.data.clip.resize_then_center_crop
    official = load_config(f'{CONFIG}:select_on_test')
    assert (official.select.split, official.select.allow_test, official.data.val_from_train) == ('test', True, 0.0)
    schedule = optim.make_schedule(code.optim, steps_per_epoch=76)
    lrs = [float(schedule(76 * epoch)) for epoch in (0, 38, 39, 298)]
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-6)

    assert load_config(f'{CONFIG}:quality=crf23').data.clip.quality == 'crf23'
    mini = load_config(f'{CONFIG}:mini')
    assert (mini.data.clip.size, mini.data.clip.frames, mini.data.workers) == (96, 4, 0)
    assert (mini.batch_size, mini.total_steps, mini.checkpoint.every) == (8, 300, 300)
    with pytest.raises(ValueError, match='unknown option'):
        load_config(f'{CONFIG}:minu')
    with pytest.raises(ValueError, match='unknown variant'):
        load_config(f'{CONFIG}:variant=sam')


VARIANTS = ['resnet_score_fusion', 'cbam', 'sam_fa', 'sam_ave', 'dma_sta', 'xception_score_fusion']


def mini_config(arg: str):
    """The config with the test-sized ResNet (width 4)."""
    config = load_config(f'{CONFIG}:{arg}')
    if config.model.backbone == 'resnet':
        config.model.backbone_kwargs = MINI_BACKBONE
    return config


def test_sweeps_and_init_paths():
    points = grid.expand_sweep(f'{CONFIG}:init=/ckpt')
    keys = ('method', 'model.backbone_attention', 'model.frame_fusion')
    rows = [tuple(p.overrides[k] for k in keys) for p in points]
    assert rows == [
        ('classifier', 'none', 'average'),
        ('dma_sta', 'cbam', 'average'),
        ('dma_sta', 'spatial', 'frame_attention'),
        ('dma_sta', 'spatial', 'average'),
        ('dma_sta', 'spatial', 'temporal_attention'),
    ]
    qualities = [p.overrides for p in grid.expand_sweep(f'{CONFIG}:table5')]
    assert qualities == [{'data.clip.quality': q} for q in ('crf0', 'crf10', 'crf23')]

    # A converted ImageNet ResNet (1000-class `head`) initialises the trunk of every ResNet variant.
    source = filled(ResNet(**MINI_BACKBONE).init, jnp.zeros((1, 32, 32, 3)), seed=1)
    for variant in ('dma_sta', 'cbam', 'resnet_score_fusion'):
        c = mini_config(f'mini,variant={variant},init=/ckpt')
        (spec,) = c.init
        spec = {k: v for k, v in spec.items() if k != 'checkpoint'}
        method = methods.build(c)
        variables = filled(method.init, {'image': jnp.zeros((1, 4, 32, 32, 3))})
        grafted = pretrained.graft(variables, source, **spec)
        trunk = grafted['params'].get('backbone', grafted['params'])
        np.testing.assert_array_equal(trunk['conv1']['kernel'], source['params']['conv1']['kernel'])
        np.testing.assert_array_equal(
            trunk['layer2']['block0']['conv3']['kernel'], source['params']['layer2']['block0']['conv3']['kernel']
        )
        assert grafted['params']['head']['kernel'].shape[-1] == 5
        if variant != 'resnet_score_fusion':  # attention modules stay fresh
            fresh = variables['params']['backbone']['layer1']['block0']['attention']
            kept = trunk['layer1']['block0']['attention']
            assert jax.tree.all(jax.tree.map(np.array_equal, kept, fresh))


def test_code_model_options_reach_the_training_step():
    """`code` on the cbam variant: per-frame BN, He init and the CBAM code's spatial-gate BN, whose batch statistics
    the training step returns; unknown option values are errors."""
    method = methods.build(mini_config('mini,code,variant=cbam'))
    model = method.model
    assert (model.frame_batch_norm, model.conv_init, model.cbam_spatial_batch_norm) == (
        'per_frame',
        'he_normal_fan_out',
        True,
    )
    batch = {'image': jnp.zeros((2, 4, 32, 32, 3)), 'label': jnp.zeros(2, jnp.int32)}
    variables = jax.eval_shape(method.init, jax.random.key(0), batch)
    state = jax.eval_shape(lambda v: method.losses(v, batch, {}, 0).state, variables)
    stats = traverse_util.flatten_dict(state['batch_stats'], sep='/')
    assert set(stats) == set(traverse_util.flatten_dict(variables['batch_stats'], sep='/'))
    assert stats['backbone/layer2/block0/attention/spatial/bn/mean'].shape == (1,)
    gate = variables['params']['backbone']['layer2']['block0']['attention']['spatial']['bn']
    assert jax.tree.map(jnp.shape, gate) == {'scale': (1,), 'bias': (1,)}
    for key, value in (('frame_batch_norm', 'frame'), ('conv_init', 'he')):
        with pytest.raises(ValueError, match=f'{key}: unknown'):
            jax.eval_shape(DmaSta(**{key: value}, **MINI_BACKBONE).init, jax.random.key(0), batch['image'])


@pytest.mark.parametrize('variant', VARIANTS)
def test_variant_builds_and_trains(variant):
    batch = {'image': jnp.zeros((8, 4, 64, 64, 3)), 'label': jnp.zeros(8, jnp.int32)}
    jax.eval_shape(methods.build(load_config(f'{CONFIG}:mini,variant={variant}')).init, jax.random.key(0), batch)

    config = mini_config(f'mini,variant={variant}')
    method = methods.build(config)
    assert method.task == 'multiclass' and method.class_names == MODELS
    rng = np.random.default_rng(0)
    batch = {
        'image': jnp.asarray(rng.standard_normal((2, 4, 32, 32, 3)), jnp.float32),
        'label': jnp.array([0, 3], jnp.int32),
    }

    def loss_fn(params, state):
        out = method.losses({'params': params, **state}, batch, {}, jnp.zeros((), jnp.int32))
        return sum(out.terms.values()), out

    variables = filled(method.init, batch)
    params, state = variables['params'], {k: v for k, v in variables.items() if k != 'params'}
    if variant == 'xception_score_fusion':  # full-width Xception: compiling its step takes too long for a unit test
        (loss, out), grads = jax.eval_shape(jax.value_and_grad(loss_fn, has_aux=True), params, state)
        assert loss.shape == () and set(out.state) == {'batch_stats'}
        probs = jax.jit(method.predict)(variables, batch)['probs']
        np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
        return

    if 'temporal_attention' in params:  # positive f1 weights: no ReLU unit of the T/2 = 2 starts dead
        params['temporal_attention']['fc1']['kernel'] = jnp.abs(params['temporal_attention']['fc1']['kernel'])
    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state)
    assert np.isfinite(float(loss)) and 0 <= float(out.aux['accuracy']) <= 1
    assert set(out.state) == {'batch_stats'}
    grads = traverse_util.flatten_dict(grads, sep='/')
    attention = {k: v for k, v in grads.items() if '/attention/' in k or k.startswith(('temporal_', 'frame_'))}
    # Leaves in the test ResNet's 2 bottlenecks (SAM: conv kernel; CBAM: + 2 MLP kernels and biases) and the fusion.
    expected = {'cbam': 2 * 5, 'sam_fa': 2 + 2, 'sam_ave': 2, 'dma_sta': 2 + 2}
    assert len(attention) == expected.get(variant, 0)
    for name, grad in attention.items():
        assert float(jnp.abs(grad).max()) > 0, name
    assert float(jnp.abs(grads['head/kernel']).max()) > 0
    probs = method.predict(variables, batch)['probs']
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
