"""AUNet: W (eq. 4) and M_I (eq. 5) on hand-made embeddings, the cheap eq. 2 against the naive one, feature mixing
(eq. 10-17) only inside the fakes' masks, the full-size shapes, the ImageNet backbone initialisation, the inference
rules, and a train step of every Table 4 variant."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdx import input as input_lib
from fdx import methods
from fdx.config import import_config_file, load_config
from fdx.methods import aunet as aunet_method
from fdx.models import aunet, pretrained
from fdx.models.xception import Xception
from fdx.state import Setup

CONFIG = f'{Path(__file__).parent.parent}/experiments/aunet_ffpp.py'


def test_importance_weights_and_important_region_by_hand():
    embeddings = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])  # a = [[1,1,0],[1,1,0],[0,0,1]]
    weights = aunet.importance_weights(embeddings)
    np.testing.assert_allclose(weights, [[0.4, 0.4, 0.2]], rtol=1e-6)  # row sums 2, 2, 1 over 5
    maps = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0].set([1.0, 0.5, 1.0]).at[0, 1, 1, 2].set(1.0)
    region = aunet.important_region(weights, maps)
    assert region.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(region[0, ..., 0], [[0.4, 0.0], [0.0, 0.2]], rtol=1e-6)  # max_i W_i M_i
    opposite = jnp.array([[[1.0, 2.0], [-1.0, -2.0]]])  # Σ_i E_i = 0: the floored denominator keeps W finite
    assert np.isfinite(np.asarray(aunet.importance_weights(opposite))).all()


def test_cheap_au_embeddings_equal_the_naive_convolutions():
    rng = np.random.default_rng(0)
    features = jnp.asarray(rng.normal(size=(2, 5, 6, 8)), jnp.float32)
    maps = jnp.asarray(rng.uniform(size=(2, 5, 6, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(3, 3, 8, 4)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
    cheap = aunet.au_embeddings(features, maps, kernel, bias)
    naive = aunet.au_embeddings_naive(features, maps, kernel, bias)
    assert cheap.shape == (2, 3, 4)
    np.testing.assert_allclose(cheap, naive, rtol=1e-5, atol=1e-5)
    branch = aunet.AUSpecificBranch(num_aus=3, attention_width=8)
    variables = branch.init(jax.random.key(0), features)
    fast = branch.apply(variables, features)
    slow = aunet.AUSpecificBranch(num_aus=3, attention_width=8, naive_embeddings=True).apply(variables, features)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _pairs(seed=0):
    rng = np.random.default_rng(seed)
    features = jnp.asarray(rng.normal(size=(4, 6, 6, 3)) * [1.0, 2.0, 3.0] + [0.0, 5.0, -2.0], jnp.float32)
    masks = np.zeros((4, 6, 6, 1), np.float32)
    masks[1, 1:4, 2:5] = 1.0  # pair 0's fake
    masks[3, 3:6, 0:3] = 1.0  # pair 1's fake
    masks[0] = masks[2] = 1.0  # the reals' rows are not used
    return features, jnp.asarray(masks), masks


def test_feature_mixing_changes_only_the_fakes_masked_regions():
    features, masks, mask = _pairs()
    lambdas = jnp.array([[0.3, 0.6, 0.2], [0.9, 0.1, 0.5]])
    mixed = np.asarray(aunet.feature_mixing(features, masks, lambdas))
    x = np.asarray(features)
    np.testing.assert_array_equal(mixed[0::2], x[0::2])  # reals untouched
    outside = mask[1::2, ..., 0] == 0
    np.testing.assert_array_equal(mixed[1::2][outside], x[1::2][outside])  # fakes outside their masks untouched
    inside = ~outside
    assert np.abs(mixed[1::2][inside] - x[1::2][inside]).min() > 1e-4
    same = np.asarray(aunet.feature_mixing(features, masks, jnp.ones((2, 3))))  # λ = 1: the fake as it is
    np.testing.assert_allclose(same, x, atol=1e-5)
    real_stats = np.asarray(aunet.feature_mixing(features, masks, jnp.zeros((2, 3))))  # λ = 0: the real's region
    for pair in range(2):
        region = mask[2 * pair + 1, ..., 0] > 0
        np.testing.assert_allclose(real_stats[2 * pair + 1][region].mean(0), x[2 * pair][region].mean(0), atol=1e-4)
        np.testing.assert_allclose(real_stats[2 * pair + 1][region], x[2 * pair][region], atol=1e-3)


def test_full_size_shapes_and_imagenet_backbone():
    images = jnp.zeros((2, 224, 224, 3))
    model = aunet.AUNet()
    variables = jax.eval_shape(model.init, jax.random.key(0), images[:1])
    logits, features = jax.eval_shape(lambda v: model.apply(v, images), variables)
    assert logits.shape == (2, 2)
    assert features['backbone'].shape == (2, 14, 14, 728)  # conv1 … block11: stride 16
    assert features['token_logits'].shape == (2, 196, 2)
    assert [m.shape for m in features['au_maps']] == [(2, 14, 14, 15)] * 3
    params = variables['params']
    assert set(params) == {
        *aunet.BACKBONE_LAYERS,
        'bn1',
        'bn2',
        'encoder1',
        'encoder2',
        'encoder3',
        'head',
        'token_head',
    }
    assert 'integrate1_conv' not in params['encoder3']  # the last F_out feeds nothing
    config = load_config(f'{CONFIG}:init=/ckpt')
    source = jax.eval_shape(Xception(num_classes=1000).init, jax.random.key(0), images[:1])
    spec = {k: v for k, v in dict(config.init[0]).items() if k != 'checkpoint'}
    jax.eval_shape(lambda t, s: pretrained.graft(t, s, **spec), variables, source)  # all matched, else an error


def test_inference_rules():
    class_logits = jnp.log(jnp.array([[0.8, 0.2]]))
    token_logits = jnp.log(jnp.array([[[0.9, 0.1], [0.3, 0.7], [0.9, 0.1]]]))
    expected = {
        'class_token': 0.2,
        'max_token': 0.7,
        'class_and_max_token': 0.45,
        'class_and_mean_token': (0.2 + 0.3) / 2,
    }
    assert set(expected) == set(aunet_method.COMBINES)
    for rule, value in expected.items():
        np.testing.assert_allclose(aunet_method.combine_scores(class_logits, token_logits, rule), [value], rtol=1e-5)


def tiny_config(arg: str = 'mini'):
    config = load_config(f'{CONFIG}:{arg}')
    if config.model.encoders:
        config.model.encoders = 2  # an integrating encoder and the last one, at two thirds of the full model's compile
    config.model.backbone_kwargs = {'width': 0.125}
    config.model.specific.attention_width = 8
    config.model.agnostic.update({'token_dim': 16, 'num_heads': 2, 'mlp_dim': 32})
    config.batch_size = 4
    for view in ('self_blended', 'au', 'frame'):
        config.data[view].size = 64  # a 4x4 token grid
    return config


def tiny_batch(config) -> dict[str, np.ndarray]:
    """Two (real, fake) pairs: random images, the fakes' masks over the top half, the token labels they give."""
    rng = np.random.default_rng(0)
    size, grid = 64, 4
    mask = np.zeros((4, size, size), np.float32)
    mask[1::2, : size // 2] = 1.0
    batch = {
        'image': rng.uniform(-1, 1, (4, size, size, 3)).astype(np.float32),
        'label': np.array([0, 1, 0, 1], np.int32),
        'au_maps': rng.uniform(0, 1, (4, grid, grid, aunet.NUM_AUS)).astype(np.float32),
        'tamper_mask': mask,
        'token_labels': mask[:, ::16, ::16].copy(),
    }
    if config.data.train_view == 'au':  # full-size maps, no TAP keys
        batch['au_maps'] = rng.uniform(0, 1, (4, size, size, aunet.NUM_AUS)).astype(np.float32)
        del batch['tamper_mask'], batch['token_labels']
    return batch


VARIANT_TERMS = {
    'full': {'cls', 'token', 'attention'},
    'backbone': {'cls', 'token'},
    'no_au_specific': {'cls', 'token'},
    'no_au_agnostic': {'cls', 'token', 'attention'},
    'no_token': {'cls', 'attention'},
    'sbi': {'cls'},
    'in_dataset': {'cls', 'attention'},
}


def test_full_variant_takes_a_train_step_and_predicts():
    config = tiny_config()
    batch = tiny_batch(config)
    setup = Setup(config, steps_per_epoch=10, example_batch=batch)
    state, metrics = setup.compiled_train_step()(setup.initial_state(), batch)
    metrics = jax.device_get(metrics)
    assert all(np.isfinite(metrics[f'loss/{t}']) for t in VARIANT_TERMS['full'])
    predict = jax.jit(methods.build(config).predict)  # compiled: eagerly, op by op, it takes longer (24 s)
    outputs = predict(state.variables(), {'image': batch['image']})
    assert outputs['score'].shape == (4,) and outputs['tamper_map'].shape == (4, 4, 4)
    assert outputs['au_attention'].shape == (4, 4, 4)


@pytest.mark.parametrize('variant', [v for v in VARIANT_TERMS if v != 'full'])
def test_variants_build_and_trace_a_train_step(variant):
    """Every other variant's train step traced (shapes and loss terms) without compiling: the suite's budget."""
    config = tiny_config(f'mini,variant={variant}')
    batch = tiny_batch(config)
    setup = Setup(config, steps_per_epoch=10, example_batch=batch)
    state = jax.eval_shape(setup.initial_state)
    _, metrics = jax.eval_shape(setup.train_step, state, batch)
    terms = {key.split('/', 1)[1] for key in metrics if key.startswith('loss/') and key != 'loss/total'}
    assert terms == VARIANT_TERMS[variant]
    method = methods.build(config)
    outputs = jax.eval_shape(method.predict, state.variables(), {'image': batch['image']})
    assert outputs['score'].shape == (4,) and outputs['tamper_map'].shape == (4, 4, 4)
    assert ('au_attention' in outputs) == (config.model.au_specific and config.model.encoders > 0)


def test_table_4_data_variants_and_sweeps():
    full = load_config(CONFIG)
    assert (full.loss.cls_weight, full.loss.token_weight, full.loss.att_weight) == (1.0, 30.0, 0.5)  # eq. 20
    assert full.data.sampling == 'real_only' and full.data.train_view == 'self_blended'
    assert load_config(f'{CONFIG}:variant=face_mask').data.self_blended.mask == 'face'
    assert load_config(f'{CONFIG}:variant=no_tampering').data.self_blended.tampering is False
    assert load_config(f'{CONFIG}:variant=no_mixing').tap.feature_mixing is False
    assert full.model.encoders == 3 and load_config(f'{CONFIG}:mini').model.encoders == 1
    assert load_config(f'{CONFIG}:mini,variant=sbi').model.encoders == 0  # `mini` keeps the baselines without ART
    module, _ = import_config_file(CONFIG)
    assert len(list(module.sweep())) == 8
    assert [p['loss.token_weight'] for p in module.sweep('table=5')] == [0.0, 10.0, 30.0, 50.0, 100.0]
    with pytest.raises(ValueError, match='feature_mixing needs'):
        config = load_config(f'{CONFIG}:variant=in_dataset')
        config.tap.feature_mixing = True
        methods.build(config)
    view = input_lib.build_view(full.data, 'train')
    assert view.examples_per_item == 2
