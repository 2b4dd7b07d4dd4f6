"""`fdx bench` on tiny models, matrices and prepared sets (figures as a table and as JSON), and the fast CPU layers
the benchmarked step uses: same values and gradients as XLA's convolutions and PyTorch's max-pooling."""

import functools
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax
from test_prepare import celebdf_tree, run_prepare

from fdx import bench, cli
from fdx.models import layers

CONFIGS = Path(__file__).parent / 'configs'
AUNET_MINI = f'{Path(__file__).parent.parent}/experiments/aunet_ffpp.py:mini'


def run(capsys, tmp_path, *argv) -> tuple[dict, str]:
    out = tmp_path / 'bench.json'
    assert cli.main(['bench', *argv, '--json', str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_step_of_a_method_config_and_profile(capsys, tmp_path):
    argv = ['step', '--arch', str(CONFIGS / 'tiny.py'), '--warmup', '1', '--repeats', '3', '--profile', str(tmp_path)]
    result, table = run(capsys, tmp_path, *argv)
    assert (result['batch'], result['size'], result['dtype']) == (8, 32, 'float32')
    assert result['fdx']['runs'] == 3 and len(result['fdx']['times_s']) == 3
    assert result['fdx']['min_s'] <= result['fdx']['median_s'] <= result['fdx']['max_s']
    assert result['fdx']['images_per_s'] == pytest.approx(8 / result['fdx']['median_s'])
    assert result['flops'] > 0.5 * result['xla']['flops'] > 0 and result['xla']['peak_bytes'] > 0
    assert result['compile_s'] > 0
    assert 'torch' not in result and 'images/s' in table and 'GFLOP' in table
    profile = result['profile']
    assert profile['op_seconds_per_step'] > 0 and profile['ops'] and Path(profile['trace']).is_file()
    assert sum(profile['kinds'].values()) == pytest.approx(profile['op_seconds_per_step'])


@pytest.mark.parametrize(('command', 'setups', 'calls'), [('step', None, 1), ('predict', 'eager,amp+channels_last', 3)])
def test_vs_torch(command, setups, calls, capsys, tmp_path, monkeypatch):
    """A narrow one-bottleneck-per-stage ResNet against timm's, with the same layers: the train step (PyTorch eager),
    or the eval-mode forward (torch under inference_mode, eager and bf16 autocast in channels-last, each in its own
    child process) with the fraction of matmul peak and each timed run 3 calls back to back."""
    timm_kwargs = {'layers': (1, 1, 1, 1), 'channels': (16, 32, 64, 128), 'stem_width': 16}
    tiny = ('resnet', {'stage_sizes': (1, 1, 1, 1), 'width': 16}, 'resnet50', timm_kwargs)
    monkeypatch.setitem(bench.ARCHS, 'tiny_resnet', tiny)
    waits = []
    block_until_ready = jax.block_until_ready
    monkeypatch.setattr(jax, 'block_until_ready', lambda x: waits.append(1) or block_until_ready(x))
    result, table = run(
        capsys, tmp_path, command, '--arch', 'tiny_resnet', '--batch', '2', '--size', '32', '--warmup', '1',
        '--repeats', '2', '--calls', str(calls), '--vs-torch', *([setups] if setups else []),
        *(['--peak'] if command == 'predict' else []),
    )  # fmt: skip
    assert len(waits) == 1 + 2 * calls and result['calls'] == calls  # the warmup call, then 2 runs of `calls`
    assert f'{calls} call(s) back to back, after 0.5 s idle' in table
    labels = setups.split(',') if setups else ['eager']
    assert list(result['torch']) == list(result['speedup_vs_torch']) == labels and result['torch_device'] == 'cpu'
    for label in labels:
        assert result['torch'][label]['runs'] == result['fdx']['runs'] == 2
        ratio = result['fdx']['images_per_s'] / result['torch'][label]['images_per_s']
        assert result['speedup_vs_torch'][label] == pytest.approx(ratio)
        assert f'fdx / torch ({label})' in table and f'torch {command} ({label})' in table
    assert f'fdx {command}' in table
    if command == 'predict':
        fraction = result['fdx']['flops_per_s'] / result['peak']['peak_flops_per_s']
        assert result['fdx']['fraction_of_peak'] == pytest.approx(fraction) and 'of matmul peak' in table


def test_traced_flops_count_convolutions_and_matmuls_by_hand_and_as_xla_does_on_cpu():
    """2 per multiply-add: a grouped convolution, its gradients (the kernel's is a convolution whose kernel is the
    batch), a matmul inside a scan, and a cond's costlier branch."""

    x, w = jnp.ones((2, 8, 8, 6)), jnp.ones((3, 3, 3, 4))  # 2 groups of 3 input features, 4 outputs, 'SAME'

    def conv(x, w):
        spec = ('NHWC', 'HWIO', 'NHWC')
        return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=spec, feature_group_count=2)

    forward = 2 * (2 * 8 * 8 * 4) * (3 * 3 * 3)
    assert bench.traced_flops(jax.make_jaxpr(conv)(x, w)) == forward
    grads = jax.make_jaxpr(jax.grad(lambda x, w: jnp.square(conv(x, w)).sum(), argnums=(0, 1)))(x, w)
    assert bench.traced_flops(grads) == 3 * forward  # forward, input gradient, kernel gradient
    kernel_grad = jax.make_jaxpr(jax.grad(lambda x, w: jnp.square(conv(x, w)).sum(), argnums=1))(x, w)
    assert bench.traced_flops(kernel_grad) == 2 * forward  # the input's gradient is dead code
    strided = functools.partial(jax.lax.conv_general_dilated, window_strides=(2, 2), padding='SAME')
    x, w = jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))  # NCHW, OIHW; the input gradient dilates by 2
    grads = jax.make_jaxpr(jax.grad(lambda x, w: jnp.square(strided(x, w)).sum(), argnums=(0, 1)))(x, w)
    assert bench.traced_flops(grads) == 3 * 2 * (2 * 4 * 4 * 4) * 27

    def scanned(a, b):
        product = jax.lax.scan(lambda c, _: (c @ b, None), a, None, length=5)[0]
        return jax.lax.cond(product.sum() > 0, lambda: product @ b, lambda: product)

    a, b = jnp.ones((4, 16)), jnp.ones((16, 16))
    assert bench.traced_flops(jax.make_jaxpr(scanned)(a, b)) == 6 * 2 * 4 * 16 * 16
    # XLA leaves out the taps that fall on padding ('SAME': 22 of 24 per row here); without padding both agree
    valid = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID', feature_group_count=2))
    x, w = jnp.ones((2, 6, 8, 8)), jnp.ones((4, 3, 3, 3))  # NCHW, OIHW
    xla = valid.lower(x, w).compile().cost_analysis()
    assert bench.traced_flops(valid.trace(x, w).jaxpr) == float(xla['flops']) == 2 * (2 * 4 * 6 * 6) * 27


def test_torch_setups_parse_and_name_themselves():
    setup = bench.TorchSetup.parse('compile+amp')
    assert setup == bench.TorchSetup(amp=True, compile=True) and setup.label == 'amp+compile'
    assert bench.TorchSetup.parse('eager') == bench.TorchSetup() and bench.TorchSetup().label == 'eager'
    with pytest.raises(ValueError, match="unknown setup 'amp\\+fast'"):
        bench.TorchSetup.parse('amp+fast')


def test_torch_process_reports_a_step_it_cannot_build():
    batch = {'image': np.zeros((1, 8, 8, 3), np.float32), 'label': np.zeros(1, np.int32)}
    with pytest.raises(RuntimeError, match='PyTorch step could not be built: .*no_such_model'):
        bench.TorchProcess('step', bench.TorchSetup(), 'no_such_model', {}, batch, 1, 0.01, 0.9)


def test_peak(capsys, tmp_path):
    result, table = run(capsys, tmp_path, 'peak', '--n', '128', '--repeats', '3')
    assert result['runs'] == 3 and result['peak_flops_per_s'] >= result['median_flops_per_s'] > 0
    assert 'GFLOP/s' in table


@pytest.fixture(scope='module')
def celebdf(tmp_path_factory):
    root = tmp_path_factory.mktemp('celebdf')
    raw = celebdf_tree(root / 'raw')
    return raw, run_prepare('celebdf', raw, root / 'data')


def test_input_pipeline(capsys, tmp_path, celebdf):
    _, manifest = celebdf
    data_dir = str(Path(manifest['directory']).parents[2])
    argv = ['input', '--dir', data_dir, '--name', 'celebdf', '--quality', 'raw', '--size', '32', '--batch', '2']
    result, table = run(capsys, tmp_path, *argv, '--workers', '0', '--batches', '3', '--feed', '1e9')
    assert (result['workers'], result['batches']) == (0, 3)
    assert result['images_per_s'] == pytest.approx(result['examples_per_s']) and result['images_per_s'] > 0
    assert result['cores'] == 1 and result['images_per_s_per_core'] == result['images_per_s']
    # the cores that feed 1e9 images/s at the measured rate per core: rounded up, enough, and not one too many
    needed = result['cores_needed']
    assert needed * result['images_per_s_per_core'] >= 1e9 > (needed - 1) * result['images_per_s_per_core']
    assert f'1e+09 images/s: {needed} cores' in table


def test_input_pipeline_of_a_config_view(capsys, tmp_path, synth):
    """`--config`: the experiment's own train view (AUNet's self-blended pairs from the reals of a prepared FF++)."""
    prepare = ['--src', str(synth / 'ffpp'), '--out', str(tmp_path), '--frames', '2', '--crop-size', '64']
    assert cli.main(['prepare', 'ffpp', *prepare, '--workers', '1']) == 0
    argv = ['input', '--dir', str(tmp_path), '--config', AUNET_MINI, '--size', '64']
    result, table = run(capsys, tmp_path, *argv, '--batch', '4', '--workers', '0', '--batches', '2')
    assert (result['view'], result['size'], result['batch']) == ('self_blended', 64, 4)
    assert result['images_per_s'] == pytest.approx(result['examples_per_s']) and result['images_per_s'] > 0
    assert 'self_blended, batch 4, 64px' in table


def test_prepare(capsys, tmp_path, celebdf):
    raw, manifest = celebdf
    argv = ['prepare', 'celebdf', '--src', str(raw), '--workers', '1', '--frames', '4', '--crop-size', '96']
    result, table = run(capsys, tmp_path, *argv)
    assert result['records'] == manifest['records'] > 0 and result['frames_per_s'] > 0
    assert not list(Path(manifest['directory']).parents[3].glob('fdx-bench-prepare-*'))
    assert 'frames/s' in table


@pytest.mark.parametrize(
    'kernel,stride,groups,pad',
    [(1, 1, 1, 0), (1, 2, 1, 0), (3, 1, 6, 1), (5, 1, 6, 2), (3, 2, 1, 1), (3, 1, 1, 0), (7, 2, 1, 3)],
)
@pytest.mark.parametrize('cpu_kernels', [True, False], ids=['cpu_kernels', 'xla_only'])
def test_fast_convolutions_match_lax(kernel, stride, groups, pad, cpu_kernels, monkeypatch):
    """The CPU convolutions the benchmarked step uses give XLA's values and gradients, the depthwise kernel gradient
    both through the C++ kernel (built here: the machine has a compiler) and in its pure-XLA form."""
    monkeypatch.setattr(layers, 'CPU_KERNELS', cpu_kernels)
    assert layers.cpu_kernels.load() is None
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 9, 8, 6)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 6 // groups, 6)), jnp.float32)
    padding = ((pad, pad),) * 2
    kwargs = dict(dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)
    ref, ref_vjp = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, (stride,) * 2, padding, **kwargs), x, w)
    out, out_vjp = jax.vjp(lambda x, w: layers.matmul_conv(x, w, (stride,) * 2, padding, **kwargs), x, w)
    g = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    for got, want in zip(out_vjp(g), ref_vjp(g)):
        np.testing.assert_allclose(got, want, atol=1e-4)
    lowered = jax.jit(out_vjp).lower(g).as_text()
    assert (layers.cpu_kernels.DEPTHWISE_KERNEL_GRAD in lowered) == (cpu_kernels and groups == 6 and stride == 1)


@pytest.mark.parametrize(
    'shape,features,padding',
    [((2, 11, 8, 5), 7, ((1, 1), (1, 1))), ((1, 6, 13, 4), 4, ((0, 2), (2, 0))), ((3, 5, 5, 16), 16, ((0, 0),) * 2)],
)
def test_winograd_convolution_matches_lax(shape, features, padding):
    """`winograd_conv` (odd and even sizes, a last tile past the output, asymmetric padding) gives XLA's values."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, shape[-1], features)) / np.sqrt(9 * shape[-1]), jnp.float32)
    ref = lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    out = layers.winograd_conv(x, w, padding)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=2e-6 * float(jnp.abs(ref).max()))


def test_cpu_convolution_takes_winograd_only_where_it_suits():
    """Stride-1 3x3 layers run by Winograd with no more input than output channels and at least
    `WINOGRAD_MIN_TILES` 2x2 output tiles; the kernel gradient is a matmul, the input gradient XLA's convolution."""

    def xla_convolutions(shape, out_channels, stride=1):
        x, kernel = jnp.ones(shape, jnp.float32), jnp.ones((3, 3, shape[-1], out_channels), jnp.float32)
        conv = functools.partial(layers.matmul_conv, window_strides=(stride,) * 2, padding=((1, 1), (1, 1)))
        fn = jax.grad(lambda x: jnp.sum(conv(x, kernel, dimension_numbers=('NHWC', 'HWIO', 'NHWC')) ** 2))
        return jax.jit(fn).lower(x).as_text().count('stablehlo.convolution')

    enough = (2, 12, 11, 6)  # 2 · 6 · 6 = 72 tiles
    assert layers.WINOGRAD_MIN_TILES <= 72
    assert xla_convolutions(enough, 6) == 1 and xla_convolutions(enough, 7) == 1  # the input gradient only
    assert xla_convolutions(enough, 5) == 2  # more input than output channels
    assert xla_convolutions(enough, 6, stride=2) == 2
    few = (1, 7, 7, 6)  # 16 tiles
    assert layers.WINOGRAD_MIN_TILES > 16 and xla_convolutions(few, 6) == 2


@pytest.mark.parametrize('kernel,stride,groups,pad', [(3, 1, 1, 1), (4, 2, 1, 1), (3, 2, 1, 0), (3, 1, 6, 1)])
@pytest.mark.parametrize('cpu_kernels', [True, False], ids=['cpu_kernels', 'xla_only'])
def test_fast_convolutions_second_order_gradients_match_lax(kernel, stride, groups, pad, cpu_kernels, monkeypatch):
    """Gradients of gradients (a gradient penalty) through the CPU convolutions: each of a convolution, its input
    gradient and its kernel gradient differentiated again, against `lax.conv_general_dilated`'s autodiff."""
    monkeypatch.setattr(layers, 'CPU_KERNELS', cpu_kernels)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 9, 8, 6)), jnp.float32)
    w = jnp.asarray(0.3 * rng.standard_normal((kernel, kernel, 6 // groups, 6)), jnp.float32)
    padding = ((pad, pad),) * 2
    kwargs = dict(dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)

    def penalty(conv):
        def inner(x, w):
            y = conv(x, w, (stride,) * 2, padding, **kwargs)
            return jnp.sum(jnp.tanh(y) * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape)))

        return lambda x, w: sum(jnp.sum(jnp.sin(d) ** 2) for d in jax.grad(inner, (0, 1))(x, w))

    want = jax.grad(penalty(lax.conv_general_dilated), (0, 1))(x, w)
    got = jax.grad(penalty(layers.matmul_conv), (0, 1))(x, w)
    for g, r in zip(got, want):
        assert float(jnp.abs(r).max()) > 1e-2
        np.testing.assert_allclose(g, r, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize('relu', [False, True], ids=['bn', 'bn_relu'])
def test_cpu_batch_norm_matches_flax(relu):
    """`layers.BatchNorm` (the CPU backend's, with `batch_norm_train`'s gradient) against flax's `nn.BatchNorm` (+ ReLU):
    the same variables, training outputs, running statistics, input/scale/bias gradients, gradients of gradients
    (a gradient penalty through it) and eval-mode outputs."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(3 * rng.standard_normal((4, 5, 6, 8)) + 1, jnp.float32)
    w = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    cpu_bn = layers.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, relu=relu)

    def reference(variables, x, **kwargs):
        y, updates = flax_bn.apply(variables, x, **kwargs)
        return (nn.relu(y) if relu else y), updates

    variables = flax_bn.init(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(cpu_bn.init(jax.random.PRNGKey(0), x)) == jax.tree.structure(variables)
    params = {'scale': jnp.linspace(0.5, 1.5, 8), 'bias': jnp.linspace(-1, 1, 8)}
    stats = {'mean': jnp.linspace(0, 1, 8), 'var': jnp.linspace(1, 2, 8)}

    def loss(apply):
        def f(params, x):
            y, updates = apply({'params': params, 'batch_stats': stats}, x, mutable=['batch_stats'])
            return jnp.sum(jnp.tanh(y) * w), (y, updates['batch_stats'])

        return f

    for got, want in zip(
        jax.value_and_grad(loss(cpu_bn.apply), (0, 1), has_aux=True)(params, x),
        jax.value_and_grad(loss(reference), (0, 1), has_aux=True)(params, x),
    ):
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(g, r, atol=2e-5, rtol=1e-5)

    def penalty(apply):
        return lambda params, x: sum(
            jnp.sum(d**2) for d in jax.tree.leaves(jax.grad(lambda *a: loss(apply)(*a)[0], (0, 1))(params, x))
        )

    for g, r in zip(
        jax.tree.leaves(jax.grad(penalty(cpu_bn.apply), (0, 1))(params, x)),
        jax.tree.leaves(jax.grad(penalty(reference), (0, 1))(params, x)),
    ):
        assert float(jnp.abs(r).max()) > 1e-2
        np.testing.assert_allclose(g, r, atol=2e-4, rtol=1e-4)
    frozen = {'params': params, 'batch_stats': stats}
    eval_flax = nn.BatchNorm(use_running_average=True, epsilon=1e-5).apply(frozen, x)
    eval_cpu = layers.BatchNorm(use_running_average=True, epsilon=1e-5, relu=relu).apply(frozen, x)
    np.testing.assert_allclose(eval_cpu, nn.relu(eval_flax) if relu else eval_flax, atol=1e-6, rtol=1e-6)


def test_batch_norm_is_the_cpu_form_only_on_cpu(monkeypatch):
    assert isinstance(layers.batch_norm(True, jnp.float32), layers.BatchNorm)
    monkeypatch.setattr(layers, 'CONV_IMPL', 'lax')
    assert isinstance(layers.batch_norm(True, jnp.float32), nn.BatchNorm)


def test_max_pool_matches_torch_with_ties():
    x = np.maximum(np.random.default_rng(0).standard_normal((2, 9, 9, 5)), 0).astype(np.float32)  # ReLU: many ties
    y, vjp = jax.vjp(lambda x: layers.max_pool(x, 3, 2, 1), jnp.asarray(x))
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(vjp(jnp.asarray(g))[0]), xt.grad.numpy().transpose(0, 2, 3, 1))


def test_bad_inputs_get_one_line_errors_naming_them(tmp_path, capsys):
    other = tmp_path / 'other.json'
    other.write_text('{"x": 1}')
    with pytest.raises(ValueError, match='other.json: no command, arch, .*not written by `fdx bench step'):
        bench.main(['summary', str(other)])
    with pytest.raises(ValueError, match='missing.json: not a readable JSON file'):
        bench.main(['summary', str(tmp_path / 'missing.json')])
    with pytest.raises(ValueError, match='--calls must be >= 1 .*got 0'):
        bench.main(['predict', '--arch', 'resnet50', '--calls', '0'])
    with pytest.raises(SystemExit):
        bench.main(['step', '--arch', 'resnet50', '--vs-torch', 'amp+fast'])
    assert "--vs-torch: unknown setup 'amp+fast': 'eager' or any of" in capsys.readouterr().err


def test_cpu_kernels_fall_back_with_the_reason(tmp_path, monkeypatch):
    """No usable compiler: `load()` says why (so `fdx bench` can print it) and the layers keep the pure-XLA form."""
    from fdx.models import cpu_kernels

    monkeypatch.setenv('FDX_CACHE', str(tmp_path))
    monkeypatch.setenv('CXX', 'false')
    cpu_kernels.load.cache_clear()
    try:
        assert cpu_kernels.load() == 'false depthwise_kernel_grad.cc failed (exit 1): no output'
        monkeypatch.setenv('FDX_CPU_KERNELS', '0')
        cpu_kernels.load.cache_clear()
        assert cpu_kernels.load() == 'FDX_CPU_KERNELS=0'
    finally:
        cpu_kernels.load.cache_clear()
    assert not list(tmp_path.rglob('*.so'))
