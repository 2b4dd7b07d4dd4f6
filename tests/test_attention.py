"""Attention modules against numpy forwards written from the equations: CBAM's branches (DMA-STA's SAM, PANet's
SCAM) and EMA (PANet's EMAM), including EMA's grouping and cross-spatial aggregation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import channel_numpy, ema_numpy, filled, numpy_params, spatial_logits_numpy, spatial_numpy

from fdx.models.attention import CBAM, ChannelAttention, EfficientMultiScaleAttention, SpatialAttention


def test_spatial_attention_matches_numpy():
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 8)).astype(np.float32)
    module = SpatialAttention()
    variables = filled(module.init, x, seed=1)
    assert jax.tree.map(jnp.shape, variables['params']) == {'conv': {'kernel': (7, 7, 2, 1)}}  # 98, no bias
    expected = spatial_numpy(x.astype(np.float64), numpy_params(variables)['conv']['kernel'])
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def test_channel_attention_matches_numpy():
    x = np.random.default_rng(2).standard_normal((2, 5, 6, 32)).astype(np.float32)
    module = ChannelAttention()
    variables = jax.tree.map(lambda a: a + 0.3, filled(module.init, x, seed=3))  # non-zero biases
    assert jax.tree.map(jnp.shape, variables['params']) == {
        'fc1': {'kernel': (32, 2), 'bias': (2,)},  # r = 16
        'fc2': {'kernel': (2, 32), 'bias': (32,)},
    }
    expected = channel_numpy(x.astype(np.float64), numpy_params(variables))
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-6)
    small = jax.eval_shape(ChannelAttention(use_bias=False).init, jax.random.key(0), x[..., :8])['params']
    assert jax.tree.map(jnp.shape, small) == {'fc1': {'kernel': (8, 1)}, 'fc2': {'kernel': (1, 8)}}  # max(C//r, 1)


def test_cbam_is_channel_then_spatial():
    x = np.random.default_rng(4).standard_normal((2, 5, 6, 32)).astype(np.float32)
    module = CBAM()
    variables = jax.tree.map(lambda a: a - 0.2, filled(module.init, x, seed=5))
    p = numpy_params(variables)
    expected = spatial_numpy(channel_numpy(x.astype(np.float64), p['channel']), p['spatial']['conv']['kernel'])
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-6)


def test_cbam_spatial_batch_norm_is_the_cbam_codes():
    """`spatial_batch_norm`: BN(1) between the spatial gate's 7x7 convolution and its sigmoid (the CBAM code), running
    statistics in evaluation, batch statistics over (N, H, W) in training with PyTorch momentum 0.01."""
    x = np.random.default_rng(8).standard_normal((2, 5, 6, 32)).astype(np.float32)
    module = CBAM(spatial_batch_norm=True)
    variables = filled(module.init, x, seed=9)
    assert jax.tree.map(jnp.shape, variables['params']['spatial']) == {
        'conv': {'kernel': (7, 7, 2, 1)},
        'bn': {'scale': (1,), 'bias': (1,)},
    }
    assert jax.tree.map(jnp.shape, variables['batch_stats']) == {'spatial': {'bn': {'mean': (1,), 'var': (1,)}}}
    variables['params']['spatial']['bn'] = {'scale': jnp.array([1.5]), 'bias': jnp.array([-0.3])}
    variables['batch_stats']['spatial']['bn'] = {'mean': jnp.array([0.2]), 'var': jnp.array([2.0])}
    p = numpy_params(variables)
    gated = channel_numpy(x.astype(np.float64), p['channel'])
    kernel = p['spatial']['conv']['kernel']

    def bn(mean, var):
        return lambda logits: (logits - mean) / np.sqrt(var + 1e-5) * 1.5 - 0.3

    expected = spatial_numpy(gated, kernel, bn(0.2, 2.0))
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-6)

    out, state = module.apply(variables, x, True, mutable=['batch_stats'])
    logits = spatial_logits_numpy(gated, kernel)
    mean, var = logits.mean(), logits.var()  # over (N, H, W); the running variance takes the biased one
    np.testing.assert_allclose(out, spatial_numpy(gated, kernel, bn(mean, var)), rtol=1e-5, atol=1e-6)
    stats = state['batch_stats']['spatial']['bn']
    np.testing.assert_allclose(stats['mean'], [0.99 * 0.2 + 0.01 * mean], rtol=1e-5)
    np.testing.assert_allclose(stats['var'], [0.99 * 2.0 + 0.01 * var], rtol=1e-5)
    assert 'batch_stats' not in jax.eval_shape(CBAM().init, jax.random.key(0), x)  # the paper's gate: no BN


@pytest.mark.parametrize('groups, channels', [(2, 8), (4, 12), (1, 6)])
def test_ema_matches_numpy(groups, channels):
    x = np.random.default_rng(6).standard_normal((2, 5, 4, channels)).astype(np.float32)  # H ≠ W
    module = EfficientMultiScaleAttention(groups)
    variables = jax.tree.map(lambda a: a + 0.1, filled(module.init, x, seed=7))  # non-zero biases, GN scale ≠ 1
    cg = channels // groups
    assert jax.tree.map(jnp.shape, variables['params']) == {
        'conv1x1': {'kernel': (1, 1, cg, cg), 'bias': (cg,)},
        'conv3x3': {'kernel': (3, 3, cg, cg), 'bias': (cg,)},
        'norm': {'scale': (cg,), 'bias': (cg,)},
    }
    expected = ema_numpy(x.astype(np.float64), numpy_params(variables), groups)
    np.testing.assert_allclose(module.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_ema_cross_spatial_aggregation_by_hand():
    """One group of 2 channels on a 1x2 map with identity 1x1 / zero 3x3 convolutions and GN scale 0: x1 = GN bias
    b = (1, 3) everywhere, x2 = 3x3 bias (0, ln 2). a1 = softmax(1, 3), a2 = softmax(0, ln 2) = (1/3, 2/3), so every
    position gets weight a1 · (0, ln 2) + a2 · (1, 3) = σ(2)·ln 2 + 7/3 and out = x · σ(that)."""
    x = np.array([[[[1.0, -2.0], [0.5, 4.0]]]], np.float32)  # [1, 1, 2, 2]
    params = {
        'conv1x1': {'kernel': np.eye(2)[None, None], 'bias': np.zeros(2)},
        'conv3x3': {'kernel': np.zeros((3, 3, 2, 2)), 'bias': np.array([0.0, np.log(2)])},
        'norm': {'scale': np.zeros(2), 'bias': np.array([1.0, 3.0])},
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    out = EfficientMultiScaleAttention(groups=1).apply({'params': params}, x)
    a1_second = 1 / (1 + np.exp(-2.0))  # softmax(1, 3)[1]
    weight = a1_second * np.log(2) + 7 / 3
    np.testing.assert_allclose(out, x / (1 + np.exp(-weight)), rtol=1e-6)


def test_ema_groups_must_divide_channels():
    x = jnp.zeros((1, 4, 4, 728))
    with pytest.raises(ValueError, match=r'728 channels are not divisible by 32 groups .*2, 4, 7, 8, 13, 14, 26'):
        jax.eval_shape(EfficientMultiScaleAttention(32).init, jax.random.key(0), x)
