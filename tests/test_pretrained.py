"""Saving converted variables and grafting them into part of a model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdx.models import pretrained
from fdx.models.vit import VisionTransformer
from fdx.state import prng_key  # jax.random.key's numbers, initialisers compiled faster on CPU

SMALL = dict(width=16, num_heads=2, mlp_dim=32, image_size=32, patch_size=8)


class Wrapper(nn.Module):
    """A method model holding a backbone under `backbone` and a fresh part of its own."""

    depth: int = 2

    @nn.compact
    def __call__(self, x):
        _, features = VisionTransformer(num_classes=3, depth=self.depth, name='backbone', **SMALL)(x)
        return nn.Dense(1, name='extra')(features['pre_logits'])


def init(module, seed):
    return jax.jit(module.init)(prng_key(seed), jnp.zeros((1, 32, 32, 3)))


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_save_load_round_trip(tmp_path):
    variables = init(VisionTransformer(num_classes=3, depth=2, **SMALL), 0)
    pretrained.save_variables(tmp_path / 'ckpt', variables, arch='vit', model_kwargs={'depth': 2})
    restored, meta = pretrained.load_variables(tmp_path / 'ckpt')
    assert meta == {'arch': 'vit', 'model_kwargs': {'depth': 2}}
    assert jax.tree.structure(restored) == jax.tree.structure(variables) and leaves_equal(restored, variables)
    with pytest.raises(FileExistsError, match='already exists'):
        pretrained.save_variables(tmp_path / 'ckpt', variables)
    with pytest.raises(FileNotFoundError, match='no meta.json'):
        pretrained.load_variables(tmp_path)


def test_graft_into_a_sub_module_keeping_fresh_parts():
    source = init(VisionTransformer(num_classes=1000, depth=3, **SMALL), 1)
    target = init(Wrapper(), 2)
    grafted = pretrained.graft(target, source, dst='backbone', fresh=['head'], ignore=['head', 'block2'])
    backbone, src = grafted['params']['backbone'], source['params']
    assert leaves_equal(backbone['block1'], src['block1']) and leaves_equal(backbone['pos_embed'], src['pos_embed'])
    assert leaves_equal(backbone['head'], target['params']['backbone']['head'])  # fresh
    assert leaves_equal(grafted['params']['extra'], target['params']['extra'])  # outside dst: untouched
    assert not leaves_equal(backbone['block0'], target['params']['backbone']['block0'])


def test_graft_lists_every_problem():
    source = init(VisionTransformer(num_classes=1000, depth=3, **SMALL), 1)
    target = init(Wrapper(depth=2), 2)
    with pytest.raises(ValueError) as error:
        pretrained.graft(target, source, dst='backbone', origin='ckpt/vit')
    message = str(error.value)
    assert 'cannot initialise backbone from the root of ckpt/vit' in message
    assert 'unused source variables (' in message and 'params/block2/attn/qkv/kernel' in message
    assert 'shape mismatches (2): params/head/bias: (1000,) vs model (3,), params/head/kernel' in message
    del source['params']['block1']['norm1']
    with pytest.raises(ValueError, match=r'missing from the source \(2\): params/block1/norm1/bias'):
        pretrained.graft(target, source, dst='backbone', fresh=['head'], ignore=['head', 'block2'])
