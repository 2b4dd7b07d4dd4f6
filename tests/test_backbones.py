"""Backbone structure: parameter counts of the full-size models, feature shapes, Xception sub-ranges, dtypes."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdx.models import pretrained
from fdx.models.resnet import Bottleneck, resnet50
from fdx.models.vit import VisionTransformer
from fdx.models.xception import LAYERS, Xception
from fdx.state import prng_key  # jax.random.key's numbers, initialisers compiled faster on CPU


def abstract_variables(module, size):
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize(
    'module, size, expected',
    [
        (Xception(num_classes=1000), 299, 22_855_952),
        (resnet50(num_classes=1000), 224, 25_557_032),
        (VisionTransformer(num_classes=1000), 224, 86_567_656),
    ],
)
def test_full_size_parameter_counts(module, size, expected):
    assert pretrained.count_params(abstract_variables(module, size)) == expected


@pytest.mark.parametrize('size, middle, exit_', [(299, 19, 10), (256, 16, 8), (224, 14, 7), (398, 25, 13)])
def test_xception_feature_sizes(size, middle, exit_):
    out, features = jax.eval_shape(
        lambda: Xception(num_classes=2).init_with_output(jax.random.key(0), jnp.zeros((1, size, size, 3)))[0]
    )
    assert out.shape == (1, 2)
    assert features['block3'].shape == features['block11'].shape == (1, middle, middle, 728)
    assert features['block12'].shape == (1, exit_, exit_, 1024)
    assert features['conv4'].shape == (1, exit_, exit_, 2048)
    assert features['pre_logits'].shape == (1, 2048)
    assert set(LAYERS) <= set(features)


@pytest.fixture(scope='module')
def small_xception():
    """A 64px Xception with non-trivial batch statistics (one training step's update)."""
    module = Xception(num_classes=3)
    x = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    variables = jax.jit(module.init)(prng_key(0), x)
    _, updates = jax.jit(functools.partial(module.apply, train=True, mutable=['batch_stats']))(variables, x)
    return module, {**variables, **updates}, x


@pytest.mark.parametrize('cut', ['block4', 'block7', 'block11', 'conv3'])
def test_xception_sub_ranges_compose_to_full_forward(small_xception, cut):
    module, variables, x = small_xception
    full, full_features = jax.jit(module.apply)(variables, x)
    after = LAYERS[LAYERS.index(cut) + 1]
    mid, head_features = jax.jit(Xception(num_classes=3, last=cut).apply)(variables, x)
    out, tail_features = jax.jit(Xception(num_classes=3, first=after).apply)(variables, mid)
    np.testing.assert_array_equal(mid, full_features[cut])
    np.testing.assert_allclose(out, full, rtol=1e-6, atol=1e-6)
    assert set(head_features) | set(tail_features) == set(full_features)


def test_xception_sub_range_owns_only_its_layers():
    head = Xception(last='block7')
    tail = Xception(first='block8', num_classes=1)
    head_vars = abstract_variables(head, 64)
    tail_vars = jax.eval_shape(lambda: tail.init(jax.random.key(0), jnp.zeros((1, 4, 4, 728))))
    assert set(head_vars['params']) == {'conv1', 'bn1', 'conv2', 'bn2', *(f'block{i}' for i in range(1, 8))}
    assert set(tail_vars['params']) == {*(f'block{i}' for i in range(8, 13)), 'conv3', 'bn3', 'conv4', 'bn4', 'head'}


def test_xception_bad_layer_range():
    with pytest.raises(ValueError, match="no layer 'block13'"):
        abstract_variables(Xception(last='block13'), 64)
    with pytest.raises(ValueError, match='range is empty'):
        abstract_variables(Xception(first='block8', last='block7'), 64)


def test_resnet_block_attention_sits_after_bn3_before_the_residual_add():
    class ZeroGate(nn.Module):
        @nn.compact
        def __call__(self, y, train):
            return y * self.param('gate', nn.initializers.zeros, ())

    block = Bottleneck(width=4, stride=2, block_attention=ZeroGate)
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 8))
    variables = block.init(jax.random.key(0), x)
    assert 'attention' in variables['params']
    variables['params']['bn3']['bias'] = jnp.ones(16)  # a gate placed before bn3 would let this bias through
    variables['params']['downsample_bn']['bias'] = -0.1 * jnp.arange(16.0)
    shortcut = jnp.einsum('bhwc,cd->bhwd', x[:, ::2, ::2], variables['params']['downsample_conv']['kernel'][0, 0])
    shortcut = shortcut / jnp.sqrt(1 + 1e-5) + variables['params']['downsample_bn']['bias']
    out = block.apply(variables, x)
    np.testing.assert_allclose(out, nn.relu(shortcut), rtol=1e-5, atol=1e-6)
    assert (out == 0).any() and (out > 0).any()  # neither an all-zero (gate after the add) nor an all-pass output
    gate_open = jax.tree.map(lambda v: v, variables)
    gate_open['params']['attention']['gate'] = jnp.ones(())
    plain = Bottleneck(width=4, stride=2)
    no_attention = {**variables, 'params': {k: v for k, v in variables['params'].items() if k != 'attention'}}
    np.testing.assert_allclose(block.apply(gate_open, x), plain.apply(no_attention, x), rtol=1e-6)


def test_resnet_features_and_headless():
    logits, features = jax.eval_shape(
        lambda: resnet50(num_classes=0).init_with_output(jax.random.key(0), jnp.zeros((2, 224, 224, 3)))[0]
    )
    assert logits.shape == (2, 2048)
    assert [features[f'layer{i}'].shape[1:] for i in range(1, 5)] == [
        (56, 56, 256),
        (28, 28, 512),
        (14, 14, 1024),
        (7, 7, 2048),
    ]


def test_vit_tokens_attention_and_other_grids():
    module = VisionTransformer(num_classes=0, width=32, depth=2, num_heads=4, mlp_dim=64)
    x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    variables = jax.jit(module.init)(prng_key(0), x)
    assert variables['params']['pos_embed'].shape == (1, 1 + 14 * 14, 32)
    (out, features), state = jax.jit(functools.partial(module.apply, mutable=['intermediates']))(variables, x)
    assert out.shape == (2, 32) and features['tokens'].shape == (2, 1 + 16, 32)
    np.testing.assert_array_equal(out, features['tokens'][:, 0])
    attention = state['intermediates']['block1']['attn']['attention'][0]
    assert attention.shape == (2, 4, 17, 17)
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)


def test_bf16_compute_keeps_f32_params():
    module = Xception(num_classes=2, dtype=jnp.bfloat16)
    x = jnp.ones((1, 64, 64, 3))
    variables = jax.jit(module.init)(prng_key(0), x)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype('float32')}
    out, features = jax.jit(module.apply)(variables, x)
    assert out.dtype == jnp.float32 and features['block4'].dtype == jnp.bfloat16
    reference, _ = jax.jit(Xception(num_classes=2).apply)(variables, x)
    np.testing.assert_allclose(out, reference, rtol=0.1, atol=0.1 * float(jnp.abs(reference).max()))


def test_dropout_needs_rng_only_in_training():
    module = VisionTransformer(num_classes=2, width=16, depth=1, num_heads=2, mlp_dim=32, dropout_rate=0.5)
    x = jnp.ones((2, 32, 32, 3))
    variables = jax.jit(module.init)(prng_key(0), x)
    train_apply = jax.jit(lambda v, key: module.apply(v, x, train=True, rngs={'dropout': key})[0])
    assert not np.allclose(train_apply(variables, prng_key(1)), train_apply(variables, prng_key(2)))
    eval_apply = jax.jit(lambda v: module.apply(v, x)[0])
    np.testing.assert_array_equal(eval_apply(variables), eval_apply(variables))
