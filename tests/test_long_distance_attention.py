"""Long-distance attention (Lu et al.): patch grid → feature map projections, the temporal input, the attention
module against a numpy transcription, every variant's gradient step, the partial ViT initialisation, the config's
paper values and `fdx summary`'s parameter counts against a layer-by-layer formula."""

import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdx import cli, methods
from fdx.config import apply_overrides, import_config_file, load_config
from fdx.input import views
from fdx.input.records import encode_image
from fdx.models import pretrained
from fdx.models.long_distance_attention import (
    LongDistanceAttention,
    LongDistanceXception,
    adaptive_pool_matrix,
    project_maps,
    projection_matrix,
)
from fdx.models.vit import VisionTransformer
from fdx.models.xception import Xception
from fdx.state import Setup, prng_key

CONFIG = str(Path(__file__).resolve().parents[1] / 'experiments' / 'long_distance_attention_ffpp.py')
XCEPTION_BINARY = 22_855_952 - (2048 * 1000 + 1000) + (2048 + 1)  # timm legacy_xception with one logit


def feature_sizes(size: int) -> dict[str, int]:
    model = Xception(num_classes=1)
    image = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), image)
    _, features = jax.eval_shape(model.apply, variables, image)
    return {name: x.shape[1] for name, x in features.items() if x.ndim == 4}


def test_feature_map_sizes_and_projection_at_398_are_patch_form_upsampling():
    sizes = feature_sizes(398)
    assert (sizes['conv2'], sizes['block1'], sizes['block3'], sizes['block11'], sizes['block12']) == (
        196,
        98,
        25,
        25,
        13,
    )
    maps = np.random.default_rng(0).random((2, 14, 14, 4)).astype(np.float32)
    np.testing.assert_array_equal(projection_matrix(14, 196), np.repeat(np.eye(14), 14, axis=0))
    expected = np.repeat(np.repeat(maps, 14, axis=1), 14, axis=2)  # every patch covers a 14x14 block
    np.testing.assert_allclose(project_maps(jnp.asarray(maps), (196, 196)), expected, atol=1e-6)
    np.testing.assert_allclose(project_maps(jnp.asarray(maps), (196, 196), 'patch'), expected, atol=1e-6)
    with pytest.raises(ValueError, match="does not divide a 25x25 feature map; use 'adaptive_pool'"):
        projection_matrix(14, 25, 'patch')


def _adaptive_pool_loops(x: np.ndarray, size: int) -> np.ndarray:
    """PyTorch's adaptive_avg_pool2d on [H, W, C], by its definition."""
    height, width = x.shape[:2]
    out = np.zeros((size, size, x.shape[2]))
    for i in range(size):
        for j in range(size):
            r0, r1 = (i * height) // size, -(-((i + 1) * height) // size)
            c0, c1 = (j * width) // size, -(-((j + 1) * width) // size)
            out[i, j] = x[r0:r1, c0:c1].mean(axis=(0, 1))
    return out


@pytest.mark.parametrize('site', ['conv2', 'block3'])
def test_projection_at_299_pools_the_patch_form_upsampling(site):
    size = feature_sizes(299)[site]
    assert size == {'conv2': 147, 'block3': 19}[site]
    maps = np.random.default_rng(1).random((1, 14, 14, 3)).astype(np.float32)
    repeats = -(-size // 14)
    upsampled = np.repeat(np.repeat(maps[0], repeats, axis=0), repeats, axis=1)
    np.testing.assert_allclose(
        project_maps(jnp.asarray(maps), (size, size))[0], _adaptive_pool_loops(upsampled, size), atol=1e-5
    )
    assert adaptive_pool_matrix(28, 25).sum(axis=1) == pytest.approx(np.ones(25))  # 14 → 28 → 25 at 398's block3


def _frames(count: int, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def _item(frames: list[np.ndarray]) -> dict:
    return {
        'frames': [
            {'image_c23': encode_image(f), 'label': 1, 'class_id': 1, 'video_index': 0, 'frame_index': t}
            for t, f in enumerate(frames)
        ]
    }


def test_the_temporal_component_reads_the_frame_and_its_motion_residuals():
    frames = _frames(4)
    view = views.ResidualView('c23', backbone_size=40, attention_size=40, next_frames=3)
    example = view(_item(frames), np.random.default_rng(0))
    unit = np.stack(frames).astype(np.float32) / 255
    np.testing.assert_allclose(example['residuals'], unit[1:] - unit[:-1], atol=1e-6)  # r_t = I_{t+1} − I_t
    batch = {k: jnp.asarray(v)[None] for k, v in example.items() if k in ('image', 'image_small', 'residuals')}
    model = LongDistanceXception(
        spatial=False, attention={'patch_size': 8, 'embed_dim': 8, 'head_dim': 4, 'image_size': 40}, width=0.125
    )
    inputs = (batch['image'], batch['image_small'], batch['residuals'])
    variables = jax.jit(model.init)(prng_key(0), *inputs)

    def temporal_input(variables, *inputs):  # what the temporal component is called with
        seen = []

        def record(next_fun, args, kwargs, context):
            if isinstance(context.module, LongDistanceAttention) and context.method_name == '__call__':
                seen.append(args[0])
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            model.apply(variables, *inputs)
        (sequence,) = seen
        return sequence

    sequence = np.asarray(jax.jit(temporal_input)(variables, *inputs))
    assert sequence.shape == (1, 4, 40, 40, 3)
    np.testing.assert_allclose(sequence[0, 0], unit[0] * 2 - 1, atol=1e-6)  # the frame, in [-1, 1]
    np.testing.assert_allclose(sequence[0, 1:], unit[1:] - unit[:-1], atol=1e-6)


def attention_numpy(params: dict, images: np.ndarray, patch: int, score: str, normalise: str, tokens: str):
    """Sec. IV-B by hand: patches → z (+ position, + time), x = U_h z, s = x·t_h (/√d or additive), normalise."""
    batch, steps, size = images.shape[:3]
    grid = size // patch

    def embed(image, conv):  # [S, S, C] → [N, D]: the patch's flattened pixels times the conv kernel
        cells = image.reshape(grid, patch, grid, patch, -1).transpose(0, 2, 1, 3, 4).reshape(grid * grid, -1)
        return cells @ conv['kernel'].reshape(-1, conv['kernel'].shape[-1]) + conv['bias']

    out = []
    for b in range(batch):
        if tokens == 'stacked':
            z = embed(np.concatenate(list(images[b]), axis=-1), params['patch_embed'])[None]
        else:
            z = np.stack(
                [embed(images[b, t], params['patch_embed' if t == 0 else f'residual_embed{t}']) for t in range(steps)]
            )
        z = z + params['pos_embed'][0, 1:]
        if z.shape[0] > 1:
            z = z + params['time_embed'][0]
        heads = []
        for h in range(params['template'].shape[0]):
            x = z @ params['transform'][h]  # [T, N, d]
            if score == 'additive':
                s = np.tanh(x + params['transform_bias'][h, 0, 0]) @ params['template'][h]
            else:
                s = x @ params['template'][h] / np.sqrt(x.shape[-1])
            if normalise == 'softmax':
                w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                heads.append(w.sum(axis=0) * grid * grid)
            else:
                heads.append((1 / (1 + np.exp(-s))).mean(axis=0))
        head_maps = np.stack(heads, axis=-1).reshape(grid, grid, -1)
        out.append(head_maps @ params['combine']['kernel'][0, 0] + params['combine']['bias'])
    return np.stack(out)


@pytest.mark.parametrize(
    'score, normalise, tokens, steps',
    [('dot', 'softmax', 'sequence', 1), ('dot', 'softmax', 'sequence', 3), ('additive', 'sigmoid', 'sequence', 3),
     ('dot', 'sigmoid', 'stacked', 3)],
)  # fmt: skip
def test_attention_module_matches_a_numpy_transcription(score, normalise, tokens, steps):
    module = LongDistanceAttention(
        patch_size=4, embed_dim=8, heads=3, head_dim=5, num_maps=2, score=score, normalise=normalise,
        tokens=tokens, image_size=16, template_std=1.0,
    )  # fmt: skip
    images = np.random.default_rng(3).standard_normal((2, steps, 16, 16, 3)).astype(np.float32)
    variables = module.init(jax.random.key(1), images)
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), variables['params'])
    params['combine']['kernel'] = np.random.default_rng(4).standard_normal((1, 1, 3, 2))  # not the 1/12 start
    maps, head_maps = module.apply({'params': params}, images)
    assert maps.shape == (2, 4, 4, 2) and head_maps.shape == (2, 4, 4, 3)
    expected = attention_numpy(params, images.astype(np.float64), 4, score, normalise, tokens)
    np.testing.assert_allclose(maps, expected, rtol=2e-4, atol=2e-4)
    if normalise == 'softmax':
        np.testing.assert_allclose(np.asarray(head_maps).mean(axis=(1, 2)), 1.0, rtol=1e-5)  # mean-1 maps


def tiny(variant: str, **overrides):
    config = load_config(f'{CONFIG}:mini,variant={variant}')
    config.model.backbone_kwargs = {'width': 0.125}
    config.model.attention.update({'embed_dim': 16, 'image_size': 32})
    config.data.residual.update({'backbone_size': 61, 'attention_size': 32})
    config.batch_size = 2
    return apply_overrides(config, overrides)


def synthetic_batch(config) -> dict:
    fields = config.data.residual
    view = views.ResidualView(backbone_size=fields.backbone_size, attention_size=fields.attention_size)
    rng = np.random.default_rng(5)
    batch = {k: rng.uniform(-1, 1, (2, *shape)).astype(dtype) for k, (shape, dtype) in view.spec().items()}
    batch['label'] = np.array([0, 1], np.int32)
    return batch


VARIANT_COMPONENTS = {
    'xception': set(),
    'spatial': {'spatial_attention'},
    'temporal': {'temporal_attention'},
    'spatial_temporal': {'spatial_attention', 'temporal_attention'},
}


@pytest.mark.parametrize('variant', ['spatial', 'temporal'])
def test_single_branch_variants_trace_a_train_step_and_predict(variant):
    """Each one-branch variant builds, and its train step and predict trace with the branch's module and map (the
    compiled steps of the baseline and of both branches together are taken below)."""
    config = tiny(variant)
    batch = synthetic_batch(config)
    setup = Setup(config, steps_per_epoch=10, example_batch=batch)
    state = jax.eval_shape(setup.initial_state)
    _, metrics = jax.eval_shape(setup.train_step, state, batch)
    assert metrics['loss'].shape == ()
    assert {'spatial_attention', 'temporal_attention'} & set(state.params) == VARIANT_COMPONENTS[variant]
    variables = {'params': state.params, 'batch_stats': state.model_state['batch_stats']}
    outputs = jax.eval_shape(methods.build(config).predict, variables, batch)
    assert {k: v.shape for k, v in outputs.items()} == {
        'score': (2,),
        **{c: (2, 4, 4) for c in VARIANT_COMPONENTS[variant]},
    }


@pytest.mark.parametrize('variant', ['xception', 'spatial_temporal'])
def test_baseline_and_both_branches_take_a_gradient_step(variant):
    config = tiny(variant)
    batch = synthetic_batch(config)
    setup = Setup(config, steps_per_epoch=10, example_batch=batch)
    state = setup.initial_state()
    before = jax.device_get(state.params)
    state, metrics = setup.compiled_train_step()(state, batch)
    assert np.isfinite(float(metrics['loss']))
    after = jax.device_get(state.params)
    components = {'spatial_attention', 'temporal_attention'} & set(after)
    assert components == VARIANT_COMPONENTS[variant]
    for name in (*components, 'conv1', 'head'):
        changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), before[name], after[name])
        assert any(jax.tree.leaves(changed)), name
    predict = jax.jit(methods.build(config).predict)  # compiled: eagerly, op by op, it takes longer
    outputs = predict({'params': after, 'batch_stats': state.model_state['batch_stats']}, batch)
    assert set(outputs) == {'score', *components}  # the maps `fdx eval --save-maps` draws
    for name in components:
        assert outputs[name].shape == (2, 4, 4) and float(outputs[name].max()) == pytest.approx(1.0)


def test_vit_initialisation_loads_exactly_the_patch_and_position_embeddings(tmp_path):
    module, _ = import_config_file(CONFIG)
    config = tiny('spatial_temporal')
    method = methods.build(config)
    fresh = jax.jit(method.init)(prng_key(0), synthetic_batch(config))
    vit = VisionTransformer(num_classes=5, image_size=32, patch_size=8, width=16, depth=2, num_heads=2, mlp_dim=32)
    vit_variables = vit.init(jax.random.key(7), jnp.zeros((1, 32, 32, 3)))
    pretrained.save_variables(tmp_path / 'vit', vit_variables, arch='vit_base_patch16_224')
    variables = fresh
    for spec in module._init('spatial_temporal', str(tmp_path / 'vit')):
        spec = dict(spec)
        source, _ = pretrained.load_variables(spec.pop('checkpoint'))
        variables = pretrained.graft(variables, source, **spec)
    for component in ('spatial_attention', 'temporal_attention'):
        got, init = variables['params'][component], fresh['params'][component]
        for name in ('patch_embed', 'pos_embed'):
            jax.tree.map(np.testing.assert_array_equal, got[name], vit_variables['params'][name])
        for name in set(got) - {'patch_embed', 'pos_embed'}:  # residual embeddings, time embedding, U, t, combine
            jax.tree.map(np.testing.assert_array_equal, got[name], init[name])
    others = {k: v for k, v in variables['params'].items() if not k.endswith('_attention')}
    jax.tree.map(np.testing.assert_array_equal, others, {k: fresh['params'][k] for k in others})


def test_config_holds_the_paper_values_and_the_tables():
    config = load_config(CONFIG)
    assert (config.optim.name, config.optim.lr, config.optim.momentum) == ('sgd', 3e-4, 0.9)
    assert (config.optim.schedule, config.optim.factor, config.optim.every_epochs) == ('step', 0.5, 5)
    assert (config.num_epochs, config.batch_size, config.model.variant) == (20, 32, 'spatial_temporal')
    residual = config.data.residual
    assert (residual.backbone_size, residual.attention_size, residual.next_frames, residual.flip) == (398, 224, 3, 0.5)
    attention = config.model.attention
    assert (attention.patch_size, attention.embed_dim, attention.heads, attention.num_maps) == (16, 768, 12, 4)
    assert config.select.split == 'val' and config.init == ()
    module, _ = import_config_file(CONFIG)
    assert list(module.sweep('table=IX')) == [{'model.attention.num_maps': m} for m in range(1, 6)]
    assert list(module.sweep('table=I')) == [
        {'model.variant': v, 'data.residual.quality': q}
        for q in ('c23', 'c40')
        for v in ('xception', 'spatial_temporal')
    ]
    table6 = list(module.sweep('table=VI'))
    assert [p['data.residual.mix_qualities'] for p in table6] == [('c40',)] * 2
    both = load_config(f'{CONFIG}:quality=both')
    assert both.data.residual.quality == 'c23' and both.data.residual.mix_qualities == ('c40',)
    celeb = load_config(f'{CONFIG}:dataset=celebdf')
    assert (celeb.data.name, celeb.data.residual.quality, celeb.data.val_from_train) == ('celebdf', 'raw', 0.1)
    assert {p['data.name'] for p in module.sweep('table=XI')} == {'celebdf'}  # Table XI is on Celeb-DF
    one = load_config(f'{CONFIG}:manipulation=Face2Face')
    assert one.data.classes == ('real', 'Face2Face')
    with pytest.raises(ValueError, match="unknown maps '7'"):
        load_config(f'{CONFIG}:maps=7')


def attention_params(embed: int, patch: int, grid: int, heads: int, head_dim: int, maps: int, images: int) -> int:
    """One component, layer by layer: patch embeddings (one per image), position embedding (timm layout with the
    class-token row), time embedding, U_h, t_h, the 1x1 combination."""
    patch_embeds = images * (patch * patch * 3 * embed + embed)
    time = images * embed if images > 1 else 0
    return (
        patch_embeds
        + (1 + grid * grid) * embed
        + time
        + heads * embed * head_dim
        + heads * head_dim
        + heads * maps
        + maps
    )


def test_full_size_parameter_counts_follow_the_formula():
    spatial = attention_params(768, 16, 14, 12, 5, 4, 1)
    temporal = attention_params(768, 16, 14, 12, 5, 4, 4)
    expected = {'xception': 0, 'spatial': spatial, 'temporal': temporal, 'spatial_temporal': spatial + temporal}
    for variant, extra in expected.items():
        config = load_config(f'{CONFIG}:variant={variant}')
        method = methods.build(config)
        batch = {k: jax.ShapeDtypeStruct((1, *s), d) for k, (s, d) in views.ResidualView().spec().items()}
        variables = jax.eval_shape(method.init, prng_key(0), batch)
        assert pretrained.count_params(variables) == XCEPTION_BINARY + extra, variant


def test_summary_counts_parameters_per_module_and_flops(tmp_path, capsys):
    out = tmp_path / 'summary.json'
    assert cli.main(['summary', f'{CONFIG}:mini,variant=spatial_temporal', '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    modules = result['modules']
    mini = attention_params(192, 8, 8, 12, 5, 4, 1), attention_params(192, 8, 8, 12, 5, 4, 4)
    assert (modules['spatial_attention']['params'], modules['temporal_attention']['params']) == mini
    xception = load_config(f'{CONFIG}:mini,variant=xception')
    method = methods.build(xception)
    batch = {k: jax.ShapeDtypeStruct((1, *s), d) for k, (s, d) in views.ResidualView(backbone_size=117,
             attention_size=64).spec().items()}  # fmt: skip
    backbone = pretrained.count_params(jax.eval_shape(method.init, prng_key(0), batch))
    assert result['params'] == backbone + sum(mini)
    assert sum(m['flops'] for m in modules.values()) == pytest.approx(result['flops'])
    assert all(modules[name]['flops'] > 0 for name in ('conv1', 'block3', 'spatial_attention', 'temporal_attention'))
    # conv1 by hand: 3x3 conv, 3 → 8 channels, on the 58x58 output grid of a 117 input (2 FLOPs per multiply-add)
    assert modules['conv1']['flops'] == pytest.approx(2 * 58 * 58 * 8 * 27, rel=0.02)
    assert 'spatial_attention' in capsys.readouterr().out
