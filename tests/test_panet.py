"""PANet / RECCE: parameter counts and shapes at 299, the losses of eq. 9-11 by hand, RECCE's module details, the
config's paper values, and the `mini` config end to end on the tiny `fdx synth` FF++ tree (train, eval, grid PNG)."""

import functools
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_reference import filled, graph_reasoning_numpy, numpy_params

from fdx import cli, grid, methods
from fdx.config import apply_overrides, load_config
from fdx.methods.panet import cosine_distances, metric_loss, reconstruction_loss
from fdx.models import pretrained
from fdx.models.attention import CBAM
from fdx.models.layers import resize_bilinear_align_corners
from fdx.models.panet import GraphReasoning, Recce
from fdx.models.xception import Xception

CONFIG = str(Path(__file__).resolve().parents[1] / 'experiments' / 'panet_ffpp.py')


def count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


def sepconv(cin, cout):  # depthwise 3x3 + pointwise, no biases
    return 9 * cin + cin * cout


# RECCE at full size, module by module from its code (reference notes); BN = 2 parameters per channel.
XCEPTION_BINARY = 22_855_952 - (2048 * 1000 + 1000) + (2048 + 1)
DECODER = (
    (sepconv(728, 256) + 2 * 256)  # decoder1
    + 3 * (sepconv(256, 256) + 2 * 256)  # decoder2: Block(256, 256, reps 3), no skip conv
    + (sepconv(256, 128) + 2 * 128)  # decoder3
    + 3 * (sepconv(128, 128) + 2 * 128)  # decoder4
    + (sepconv(128, 64) + 2 * 64)  # decoder5
    + 64 * 3  # decoder6: 1x1 to RGB, no bias
)
GRAPH_REASONING = (
    (728 * 256 + 256 * 256)  # vertex a embedding (two 1x1)
    + 2 * 728 * 256  # gates for b and c
    + (256 * 256 + 256 * 256)  # b patches: Linear(256 → 256) → ReLU → Linear
    + (128 * 256 + 256 * 256)  # c patches
    + 2 * (256 + 256)  # scores: Linear(512 → 1) for b and c
    + (768 * 728 + 728 * 728)  # reprojection
)
GUIDED_ATTENTION = 3 * 3 * 3 * 3 + 3 + 728 * 728 + 2 * 728
EMA_728_8 = (91 * 91 + 91) + (9 * 91 * 91 + 91) + 2 * 91  # 1x1, 3x3 (with biases), GroupNorm
CBAM_728 = (728 * 45 + 45) + (45 * 728 + 728) + 7 * 7 * 2  # channel MLP (r = 16), spatial 7x7


@pytest.mark.parametrize(
    'sites, expected',
    [
        ({}, XCEPTION_BINARY + DECODER + GRAPH_REASONING + GUIDED_ATTENTION),
        (
            {'ema_after': 'block4', 'scam_after': 'guided_attention'},
            XCEPTION_BINARY + DECODER + GRAPH_REASONING + GUIDED_ATTENTION + EMA_728_8 + CBAM_728,
        ),
    ],
)
def test_full_size_parameter_counts_and_shapes(sites, expected):
    model = Recce(**sites)
    variables = jax.eval_shape(
        model.init, {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, jnp.zeros((1, 299, 299, 3))
    )
    assert count(variables['params']) == expected  # RECCE 23,781,509; PANet 23,931,074
    logits, features = jax.eval_shape(model.apply, variables, jnp.zeros((2, 299, 299, 3)))
    assert logits.shape == (2, 1)
    assert {k: v.shape for k, v in features.items()} == {
        'block4': (2, 19, 19, 728),
        'decoder2': (2, 38, 38, 256),
        'decoder4': (2, 76, 76, 128),
        'reconstruction': (2, 299, 299, 3),
        'pre_logits': (2, 2048),
    }
    names = set(variables['params'])
    assert {'conv1', 'block12', 'conv4', 'head', 'graph_reasoning', 'guided_attention'} <= names
    assert ({'ema', 'scam'} <= names) == bool(sites)


def test_attention_sites_move_the_modules():
    variables = jax.eval_shape(
        Recce(ema_after='block12', scam_after='conv4').init, jax.random.key(0), jnp.zeros((1, 299, 299, 3))
    )
    assert variables['params']['ema']['conv3x3']['kernel'].shape == (3, 3, 128, 128)  # 1024 / 8
    assert variables['params']['scam']['channel']['fc1']['kernel'].shape == (2048, 128)


def test_config_errors_name_the_key_and_numbers():
    with pytest.raises(ValueError, match=r'config.model.ema_groups .*728 channels are not divisible by 32 groups'):
        methods.build(apply_overrides(load_config(CONFIG), {'model.ema_groups': 32}))
    with pytest.raises(ValueError, match=r'config.model.scam_after: unknown site .block13'):
        methods.build(apply_overrides(load_config(CONFIG), {'model.scam_after': 'block13'}))
    with pytest.raises(ValueError, match=r'config.loss.metric_form'):
        methods.build(apply_overrides(load_config(CONFIG), {'loss.metric_form': 'triplet'}))


def test_reconstruction_loss_ignores_fakes():
    rng = np.random.default_rng(0)
    images, reconstruction = rng.uniform(-1, 1, (2, 4, 5, 5, 3)).astype(np.float32)
    labels = np.array([0, 1, 0, 1])
    is_real = jnp.asarray(labels == 0, jnp.float32)
    loss = reconstruction_loss(reconstruction, images, is_real)
    expected = np.abs(reconstruction[labels == 0] - images[labels == 0]).mean()  # eq. 9, averaged over pixels
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    changed = reconstruction.copy()
    changed[labels == 1] = 5.0
    np.testing.assert_allclose(reconstruction_loss(changed, images, is_real), loss, rtol=1e-6)
    grad = jax.grad(reconstruction_loss)(jnp.asarray(reconstruction), images, is_real)
    assert np.all(np.asarray(grad)[labels == 1] == 0) and np.all(np.asarray(grad)[labels == 0] != 0)
    assert reconstruction_loss(reconstruction, images, jnp.zeros(4)) == 0


def test_metric_loss_is_eq10_by_hand():
    # Reals r1 = (1, 0), r2 = (0, 2); fakes f1 = (3, 0), f2 = (-1, 0). Eq. 11: d(r1, r2) = 1/2; d(r1, f1) = 0,
    # d(r1, f2) = 1, d(r2, f1) = d(r2, f2) = 1/2. Eq. 10: mean RR (i ≠ j) = 1/2, mean RF = (0 + 1 + 1/2 + 1/2) / 4 = 1/2.
    embeddings = jnp.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    is_real = jnp.array([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(cosine_distances(embeddings)[0], [0, 0, 0.5, 1], atol=1e-7)
    np.testing.assert_allclose(metric_loss(embeddings, is_real), 0.5 - 0.5, atol=1e-7)
    # Move f2 onto r2's direction: d(r1, f2) = 1/2, d(r2, f2) = 0 → mean RF = 1/4, L = 1/2 − 1/4.
    moved = embeddings.at[3].set(jnp.array([0.0, 5.0]))
    np.testing.assert_allclose(metric_loss(moved, is_real), 0.25, atol=1e-7)
    np.testing.assert_allclose(metric_loss(moved, is_real, 'hinge'), 1.25, atol=1e-7)  # RECCE: max(0, 1 + L)
    # One real: no real-real pair, so L = −mean RF; all fakes: 0.
    np.testing.assert_allclose(metric_loss(moved, jnp.array([1.0, 0, 0, 0])), -(0 + 0.5 + 0.5) / 3, atol=1e-7)
    assert metric_loss(moved, jnp.zeros(4)) == 0


def test_graph_reasoning_patches_follow_torch_unfold():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)  # [B, 2h, 2w, C] for h = 2, w = 3
    patches = GraphReasoning()._patches(jnp.asarray(x), 2)
    assert patches.shape == (2, 2, 3, 4, 3)
    for i in range(2):
        for j in range(3):
            for k in range(4):  # Unfold's order within a patch: row-major (kh, kw)
                np.testing.assert_array_equal(patches[:, i, j, k], x[:, 2 * i + k // 2, 2 * j + k % 2])


def test_resize_matches_torch_align_corners():
    torch = pytest.importorskip('torch')
    x = np.random.default_rng(1).standard_normal((2, 7, 5, 3)).astype(np.float32)
    for size in ((19, 13), (3, 2), (7, 5)):
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), size=size, mode='bilinear', align_corners=True
        )
        out = resize_bilinear_align_corners(jnp.asarray(x), size)
        np.testing.assert_allclose(out, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def test_config_defaults_are_the_papers():
    c = load_config(CONFIG)
    assert (c.method, c.model.ema_after, c.model.scam_after, c.model.ema_groups) == (
        'panet',
        'block4',
        'guided_attention',
        8,
    )
    assert (c.optim.name, c.optim.lr, c.optim.weight_decay, c.optim.schedule) == ('adam', 2e-4, 1e-5, 'step')
    assert (c.batch_size, c.num_epochs, c.data.frame.size, c.data.frame.normalisation) == (32, 40, 299, 'xception')
    assert (c.data.name, c.data.frame.quality, c.data.train_view, c.data.frame.flip) == ('ffpp', 'c23', 'frame', 0.5)
    assert (c.select.split, c.select.metric, c.eval_every_epochs) == ('val', 'frame/auc', 1)
    assert (c.loss.reconstruction_weight, c.loss.metric_weight, c.loss.flooding) == (0.1, 0.1, 0.0)
    assert not c.model.scam_spatial_batch_norm  # the CBAM paper's spatial gate
    code = load_config(f'{CONFIG}:code,quality=c40,variant=recce')
    assert (code.loss.flooding, code.loss.metric_form, code.model.noise_std) == (0.04, 'hinge', 1e-6)
    assert not code.model.scam_spatial_batch_norm
    assert tuple(code.loss.metric_features) == ('block4', 'decoder2', 'decoder4')
    assert (code.total_steps, code.optim.every_steps, code.data.frame.quality, code.model.ema_after) == (
        90_000,
        22_500,
        'c40',
        '',
    )
    assert load_config(f'{CONFIG}:variant=xception').method == 'classifier'
    init = load_config(f'{CONFIG}:init=/ckpt').init[0]
    assert init['checkpoint'] == '/ckpt' and 'decoder*' in init['fresh']
    points = [p.overrides for p in grid.expand_sweep(CONFIG)]
    assert [(p['method'], p.get('model.ema_after'), p['data.frame.quality']) for p in points] == [
        ('panet', 'block4', 'c23'),
        ('panet', '', 'c23'),
        ('classifier', None, 'c23'),
        ('panet', 'block4', 'c40'),
        ('panet', '', 'c40'),
        ('classifier', None, 'c40'),
    ]


@pytest.fixture(scope='module')
def prepared_ffpp(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp('ffpp_data')
    args = ['--frames', '3', '--crop-size', '64', '--workers', '1', '--methods', 'Deepfakes,FaceSwap']
    assert cli.main(['prepare', 'ffpp', '--src', str(synth / 'ffpp'), '--out', str(out), *args]) == 0
    return out


def test_mini_trains_and_evaluates_on_synth_ffpp(prepared_ffpp, tmp_path):
    """The `mini` config's code path (noise and RECCE's loss variants on) on the tiny synth tree, then `fdx eval` with
    ACC/AUC per frame and video and the reconstruction grid."""
    workdir = tmp_path / 'run'
    overrides = [
        f'--config.data.dir={prepared_ffpp}',
        '--config.total_steps=2',
        '--config.batch_size=4',
        '--config.data.frame.size=64',
        '--config.model.backbone_kwargs.width=0.125',
        '--config.model.noise_std=0.01',
        "--config.loss.metric_features=('block4','decoder2','decoder4')",
        '--config.loss.metric_form=hinge',
        '--config.loss.flooding=0.04',
        '--config.eval_splits=()',  # evaluated by `fdx eval` below
        '--config.select.split=',  # the tiny tree has no val split
    ]
    assert cli.main(['train', '--config', f'{CONFIG}:mini', '--workdir', str(workdir), *overrides]) == 0
    logged = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
    train_rows = [row for row in logged if 'loss/reconstruction' in row]
    assert train_rows and all(np.isfinite(row['loss/metric']) for row in train_rows)
    out = tmp_path / 'eval'
    args = ['--workdir', str(workdir), '--split', 'test', '--out', str(out), '--reconstructions', '3']
    assert cli.main(['eval', *args]) == 0
    results = json.loads((out / 'metrics_test.json').read_text())
    assert {'acc', 'auc'} <= set(results['frame']) and {'acc', 'auc'} <= set(results['video'])
    grid = out / 'maps_test.png'
    assert grid.is_file() and grid.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_imagenet_xception_initialises_every_variant():
    """A converted ImageNet Xception (1000-class head) grafts into each Table I row; the trunk keeps timm's names."""
    images = jnp.zeros((1, 64, 64, 3))
    source = filled(Xception(num_classes=1000, width=0.125).init, images, seed=2)
    for variant in ('panet', 'recce', 'xception'):
        config = load_config(f'{CONFIG}:mini,variant={variant},init=/ckpt')
        config = apply_overrides(config, {'model.backbone_kwargs.width': 0.125})
        init = jax.eval_shape(methods.build(config).init, jax.random.key(0), {'image': images})
        spec = {k: v for k, v in config.init[0].items() if k != 'checkpoint'}
        grafted = pretrained.graft(init, source, **spec)
        for name in ('conv1', 'block4', 'block8', 'conv4'):
            same = jax.tree.map(np.array_equal, grafted['params'][name], source['params'][name])
            assert all(jax.tree.leaves(same)), (variant, name)
        assert grafted['params']['head']['kernel'].shape == (256, 1)  # fresh binary head


def test_scam_spatial_batch_norm_is_an_option():
    """`model.scam_spatial_batch_norm` puts the CBAM code's BN in SCAM's spatial gate, called in training mode when the
    model is (its numbers: test_attention.py). Off by default (`test_full_size_parameter_counts_and_shapes`)."""
    config = apply_overrides(
        load_config(f'{CONFIG}:mini'), {'model.scam_spatial_batch_norm': True, 'model.backbone_kwargs.width': 0.125}
    )
    model = methods.build(config).model
    modes = []

    def record(call, args, kwargs, context):
        if isinstance(context.module, CBAM) and context.method_name == '__call__':
            modes.append(args[1])
        return call(*args, **kwargs)

    rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
    with nn.intercept_methods(record):
        variables = jax.eval_shape(functools.partial(model.init, train=True), rngs, jnp.zeros((2, 64, 64, 3)))
    assert modes == [True]
    assert jax.tree.map(jnp.shape, variables['batch_stats']['scam']) == {'spatial': {'bn': {'mean': (1,), 'var': (1,)}}}
    assert jax.tree.map(jnp.shape, variables['params']['scam']['spatial']['bn']) == {'scale': (1,), 'bias': (1,)}


def test_graph_reasoning_matches_recce_loop():
    rng = np.random.default_rng(3)
    vert_a, vert_b, vert_c = (
        rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 2, 8), (2, 6, 4, 5), (2, 12, 8, 4))
    )
    module = GraphReasoning(embed=6)
    variables = filled(module.init, vert_a, vert_b, vert_c, seed=4)
    expected = graph_reasoning_numpy(*(v.astype(np.float64) for v in (vert_a, vert_b, vert_c)), numpy_params(variables))
    np.testing.assert_allclose(module.apply(variables, vert_a, vert_b, vert_c), expected, rtol=1e-5, atol=1e-5)
