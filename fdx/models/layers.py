"""Layers shared by the backbones, with PyTorch's defaults so converted weights give the same numbers.

Some layers avoid slow XLA CPU lowerings (measured with `fdx bench step --profile`, see the README's performance
section). On the CPU backend (`matmul_conv`), 1x1 convolutions run as matmuls, whose gradients are matmuls too (XLA's
kernel gradient of a 1x1 convolution is several times slower than its forward pass); depthwise convolutions run as one
elementwise fusion of the kernel taps with a custom gradient (XLA's CPU grouped convolution is a naive loop nest, ~0.1
GFLOP/s), their kernel gradient a C++ kernel (`cpu_kernels`) where one builds; kxk convolutions take their kernel
gradient as one matmul of the input's tap columns (XLA's runs at a few GFLOP/s), and stride-1 3x3 ones with no more
input than output channels run by Winograd's F(2x2, 3x3) (`winograd_conv`), the others by XLA's; batch norm (and the
ReLU after it) is `BatchNorm`, whose gradient keeps fewer activations and makes fewer passes than autodiff of flax's.
Each of these gradients has its own custom gradient, so second-order gradients (a gradient penalty) keep the same
forms. Other backends keep `lax.conv_general_dilated` (cuDNN, TPU) and flax's `nn.BatchNorm`, and `CONV_IMPL`
overrides the choice. On every backend, max-pooling is the maximum of its window taps with PyTorch's gradient (to the
first maximum) as one fusion instead of select-and-scatter. All compute the same values as their `lax` counterparts
(up to float rounding).
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from fdx.models import cpu_kernels

Dtype = Any

# 'auto' (matmul_conv on CPU, lax.conv_general_dilated elsewhere) | 'matmul' | 'lax'; read when a model is traced.
CONV_IMPL = 'auto'
CPU_KERNELS = True  # the depthwise kernel gradient through `cpu_kernels` (C++ via jax.ffi) where it builds

# Convolution kernel initialisers (`conv(init=...)`):
# - 'lecun_normal': flax's `nn.Conv` default and every fdx model's: a truncated normal of variance 1 / fan_in
#   (PyTorch's own `Conv2d` default, kaiming_uniform_(a=√5), is U(±1/√fan_in): variance 1 / (3 fan_in));
# - 'he_normal_fan_out': kaiming_normal_(mode='fan_out', nonlinearity='relu'), N(0, 2 / fan_out) with
#   fan_out = out_channels · kh · kw (torchvision's ResNet and the DMA-STA code).
CONV_INITS = {
    'lecun_normal': nn.initializers.lecun_normal(),
    'he_normal_fan_out': nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
}


def batch_norm(
    train: bool, dtype: Dtype, name: str | None = None, torch_momentum: float = 0.1, relu: bool = False
) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """`torch.nn.BatchNorm2d` defaults: eps 1e-5, momentum 0.1 (flax: 1 - 0.1 = 0.9 on the running average); with
    `relu`, followed by a ReLU.

    Under `jax.jit` over a data-parallel mesh the batch axis is global, so the statistics are the global-batch ones.
    Running variance is updated with the biased batch variance (PyTorch uses the unbiased one; the difference is a
    factor n/(n-1) in the running estimate only, never in the training forward pass). On the CPU backend
    (`conv_impl()` is `matmul_conv`) it is `BatchNorm`, elsewhere flax's `nn.BatchNorm`: the same variables, values
    and gradients (up to float rounding).
    """
    kwargs = dict(use_running_average=not train, momentum=1 - torch_momentum, epsilon=1e-5, dtype=dtype, name=name)
    if conv_impl() is matmul_conv:
        return BatchNorm(relu=relu, **kwargs)
    norm = nn.BatchNorm(param_dtype=jnp.float32, **kwargs)
    return (lambda x: nn.relu(norm(x))) if relu else norm


class BatchNorm(nn.Module):
    """Batch norm (and ReLU) with flax `nn.BatchNorm`'s variables and statistics (Σx and Σx², the variance
    E[x²] − E[x]² clipped at 0), whose training gradient is `batch_norm_train`'s."""

    use_running_average: bool
    momentum: float = 0.9
    epsilon: float = 1e-5
    relu: bool = False
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        scale = self.param('scale', nn.initializers.ones, (features,), jnp.float32)
        bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
        running_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((features,), jnp.float32))
        running_var = self.variable('batch_stats', 'var', lambda: jnp.ones((features,), jnp.float32))
        dtype = self.dtype or x.dtype
        if self.use_running_average:
            y = (x - running_mean.value) * (lax.rsqrt(running_var.value + self.epsilon) * scale) + bias
            return (jnp.maximum(y, 0) if self.relu else y).astype(dtype)
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon, self.relu)
        if not self.is_initializing():
            running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * lax.stop_gradient(mean)
            running_var.value = self.momentum * running_var.value + (1 - self.momentum) * lax.stop_gradient(var)
        return y.astype(dtype)


def _batch_norm_forward(x, scale, bias, epsilon, relu):
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = xf.mean(axes)
    var = jnp.maximum((xf * xf).mean(axes) - mean * mean, 0.0)
    inv = lax.rsqrt(var + epsilon)
    y = (xf - mean) * (inv * scale) + bias
    return (jnp.maximum(y, 0) if relu else y), mean, var, inv


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x, scale, bias, epsilon: float, relu: bool):
    """Training-mode batch norm over all axes but the last (and ReLU): (y, batch mean, batch variance).

    Its gradient keeps only x and the [C] statistics and recomputes the ReLU's mask from x, so the backward pass
    reads x and the output gradient twice (the sums, then the input gradient) and writes the input gradient once;
    autodiff of the same forward also stores x − mean and the ReLU's output and writes the scaled output gradient
    (ResNet-50's train step: 53 batch norms, 33 with a ReLU)."""
    return _batch_norm_forward(x, scale, bias, epsilon, relu)[:3]


def _batch_norm_train_fwd(x, scale, bias, epsilon, relu):
    y, mean, var, inv = _batch_norm_forward(x, scale, bias, epsilon, relu)
    return (y, mean, var), (x, mean, inv, scale, bias)


def _batch_norm_train_bwd(epsilon, relu, residuals, cotangents):
    x, mean, inv, scale, bias = residuals
    g = cotangents[0].astype(jnp.float32)  # the statistics only feed the running averages: no gradient
    axes, n = tuple(range(x.ndim - 1)), x.size // x.shape[-1]
    centred = x.astype(jnp.float32) - mean
    if relu:
        g = jnp.where(centred * (inv * scale) + bias > 0, g, 0.0)
    g_sum = g.sum(axes)
    g_xhat = (g * centred).sum(axes) * inv
    dx = (inv * scale) * (g - g_sum / n - centred * (inv * g_xhat / n))
    return dx.astype(x.dtype), g_xhat, g_sum


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


def torch_padding(padding: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric PyTorch-style padding (flax 'SAME' pads asymmetrically for stride 2 and even inputs)."""
    return ((padding, padding), (padding, padding))


def _taps(
    x: jnp.ndarray, kernel: tuple[int, int], strides: Sequence[int], padding, fill: float = 0.0, spatial=(1, 2)
) -> list:
    """The kh·kw shifted (strided) windows of `x` (NHWC, or any layout with the image's rows and columns on the
    `spatial` axes) padded with `fill` that the kernel taps see, row-major."""
    pads = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi) in zip(spatial, padding):
        pads[axis] = (lo, hi, 0)
    x = lax.pad(x, jnp.asarray(fill, x.dtype), pads)
    (kh, kw), (sh, sw), (rows, cols) = kernel, strides, spatial
    ho, wo = (x.shape[rows] - kh) // sh + 1, (x.shape[cols] - kw) // sw + 1
    taps = []
    for i in range(kh):
        for j in range(kw):
            start, limit, step = [0] * x.ndim, list(x.shape), [1] * x.ndim
            start[rows], limit[rows], step[rows] = i, i + (ho - 1) * sh + 1, sh
            start[cols], limit[cols], step[cols] = j, j + (wo - 1) * sw + 1, sw
            taps.append(lax.slice(x, start, limit, step))
    return taps


def _depthwise(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
    """Stride-1 depthwise convolution ([kh, kw, 1, C] kernel) as a sum of tap products: one elementwise fusion."""
    kh, kw, _, c = kernel.shape
    taps = _taps(x, (kh, kw), (1, 1), padding)
    weights = kernel.reshape(kh * kw, c)
    out = taps[0] * weights[0]
    for tap, weight in zip(taps[1:], weights[1:]):
        out = out + tap * weight
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def pointwise_matmul(x: jnp.ndarray, kernel: jnp.ndarray, precision: Any = None) -> jnp.ndarray:
    """x [..., C] @ kernel [C, O]. The kernel gradient contracts the flattened [P, C] input with the [P, O] output
    gradient: autodiff's contraction over the batch and spatial axes makes XLA CPU transpose the input first (on a
    147²x128 map at batch 8: 111 ms vs 63 ms)."""
    return jnp.einsum('...c,co->...o', x, kernel, precision=precision)


def _pointwise_fwd(x, kernel, precision):
    return pointwise_matmul(x, kernel, precision), (x, kernel)


def _pointwise_bwd(precision, residuals, g):
    x, kernel = residuals
    dx = jnp.einsum('...o,co->...c', g, kernel, precision=precision)
    dkernel = jnp.einsum('pc,po->co', x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1]), precision=precision)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


pointwise_matmul.defvjp(_pointwise_fwd, _pointwise_bwd)


def _flipped(padding, kernel_size) -> tuple:
    """The padding of the stride-1 convolution with the flipped kernel that transposes one with `padding`."""
    return tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel_size, padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
    """`_depthwise` with fused gradients: the input's is a depthwise convolution of the output gradient with the
    flipped kernel, the kernel's `depthwise_kernel_grad` (autodiff would materialise every tap)."""
    return _depthwise(x, kernel, padding)


def _depthwise_fwd(x, kernel, padding):
    return _depthwise(x, kernel, padding), (x, kernel)


def _depthwise_bwd(padding, residuals, g):
    x, kernel = residuals
    kernel_size = kernel.shape[:2]
    dx = depthwise_conv(g, kernel[::-1, ::-1], _flipped(padding, kernel_size))
    dkernel = depthwise_kernel_grad(x, g, kernel_size, padding)
    return dx.astype(x.dtype), dkernel.reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_kernel_grad(x: jnp.ndarray, g: jnp.ndarray, kernel_size, padding) -> jnp.ndarray:
    """The [kh, kw, C] kernel gradient of a stride-1 depthwise convolution of `x` with output gradient `g`: the C++
    kernel of `cpu_kernels` (f32, one device, CPU) or else `_depthwise_kernel_grad`. Bilinear in (x, g), its own
    gradients are two depthwise convolutions, so second-order gradients (a gradient penalty) keep the fast forms."""
    xla_form = functools.partial(_depthwise_kernel_grad, kernel_size=kernel_size, padding=padding)
    # the C++ kernel is not partitioned by XLA's SPMD pass: used where the process sees one device (a CPU host)
    if CPU_KERNELS and x.dtype == g.dtype == jnp.float32 and jax.device_count() == 1 and cpu_kernels.load() is None:
        cpu_form = functools.partial(cpu_kernels.depthwise_kernel_grad, kernel_size=kernel_size, padding=padding)
        return lax.platform_dependent(x, g, cpu=cpu_form, default=xla_form)
    return xla_form(x, g)


def _depthwise_kernel_grad_fwd(x, g, kernel_size, padding):
    return depthwise_kernel_grad(x, g, kernel_size, padding), (x, g)


def _depthwise_kernel_grad_bwd(kernel_size, padding, residuals, h):
    x, g = residuals
    h = h.reshape(*kernel_size, 1, -1)
    dx = depthwise_conv(g, h[::-1, ::-1], _flipped(padding, kernel_size))
    return dx.astype(x.dtype), depthwise_conv(x, h, padding).astype(g.dtype)


depthwise_kernel_grad.defvjp(_depthwise_kernel_grad_fwd, _depthwise_kernel_grad_bwd)


def _depthwise_kernel_grad(x, g, kernel_size, padding):
    """[kh, kw, C] kernel gradient as one variadic reduction of the tap products: its inputs fuse into it (per-tap
    reductions go to YNNPACK, which needs every tap written to memory first: on Xception at batch 8 they are faster
    but raise XLA's peak memory estimate from 3.0 to 6.5 GB). ~35x slower than memory speed on XLA CPU 0.10, hence
    `cpu_kernels.depthwise_kernel_grad` where it loads."""
    products = [tap * g for tap in _taps(x, kernel_size, (1, 1), padding)]
    zeros = [jnp.zeros((), g.dtype)] * len(products)
    sums = lax.reduce(products, zeros, lambda a, b: [u + v for u, v in zip(a, b)], (0, 1, 2))
    return jnp.stack(sums).reshape(*kernel_size, -1)


def _lax_conv(x, kernel, strides, padding, precision):
    return lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'), precision=precision
    )


WINOGRAD_MIN_TILES = 32  # 2x2 output tiles per kernel (batch included) below which the kernel's transform dominates


def _winograd_suits(x, kernel, strides, padding) -> bool:
    """Whether `dense_conv` runs by `winograd_conv`: stride-1 3x3, f32, no more input than output channels (the
    layers whose YNNPACK convolution runs far below its matmul speed; with more input channels, as in 149² × 64 → 32,
    XLA's is faster: 22 ms vs 36 ms at batch 8) and at least `WINOGRAD_MIN_TILES` output tiles (ResNet-50's 7² × 512
    at batch 1, 16 tiles: 1.7 ms vs 2.0 ms; its 14² × 256, 49 tiles: 1.1 vs 0.9 ms)."""
    if kernel.shape[:2] != (3, 3) or tuple(strides) != (1, 1) or not x.dtype == kernel.dtype == jnp.float32:
        return False
    if kernel.shape[2] > kernel.shape[3] or not all(isinstance(d, int) for d in x.shape[1:]):
        return False  # narrowing, or symbolic image sizes
    batch = x.shape[0] if isinstance(x.shape[0], int) else WINOGRAD_MIN_TILES  # a symbolic batch (`fdx export`)
    _, _, tile_rows, tile_cols = _winograd_tiles(x.shape, padding)
    return batch * tile_rows * tile_cols >= WINOGRAD_MIN_TILES


def _dense_conv(x, kernel, strides, padding, precision):
    if _winograd_suits(x, kernel, strides, padding):
        return winograd_conv(x, kernel, padding, precision)
    return _lax_conv(x, kernel, strides, padding, precision)


# Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016,
# eq. 8): Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for a 4x4 input tile d, a 3x3 kernel g and a 2x2 output tile Y.
_WINOGRAD_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINOGRAD_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_WINOGRAD_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def _winograd_tiles(shape, padding) -> tuple[int, int, int, int]:
    """The output's height and width and its rows and columns of 2x2 tiles (the last may reach past the output)."""
    (top, bottom), (left, right) = padding
    ho, wo = shape[1] + top + bottom - 2, shape[2] + left + right - 2
    return ho, wo, -(-ho // 2), -(-wo // 2)


def _combine(coefficients, arrays):
    """Σ coefficient · array over the nonzero coefficients (one elementwise fusion once traced)."""
    terms = [a if c == 1 else -a if c == -1 else c * a for c, a in zip(coefficients, arrays) if c]
    return functools.reduce(lambda u, v: u + v, terms)


def winograd_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding, precision: Any = None) -> jnp.ndarray:
    """A stride-1 3x3 convolution (NHWC, HWIO, `padding` ((top, bottom), (left, right))) by Winograd F(2x2, 3x3):
    the padded input cut into 4x4 tiles two pixels apart, each transformed (Bᵀ d B), 16 matmuls [tiles, C] @ [C, O]
    with the transformed kernel (G g Gᵀ), each 2x2 output tile transformed back (Aᵀ m A). 16 products per output
    tile and channel pair instead of 36. On XLA CPU, whose YNNPACK convolution runs the layers with few channels far
    below its matmul speed, it is 1.4-2x faster on ResNet-50's and Xception's stride-1 3x3 layers at batch 32
    (Xception's conv2, 147² × 32 → 64: 193 ms vs 100 ms) but ResNet-50's 28² × 128 (even). Values within float
    rounding of the direct form (relative error ~1e-6)."""
    n, h, w, c = x.shape
    (top, _), (left, _) = padding
    ho, wo, th, tw = _winograd_tiles(x.shape, padding)
    x = jnp.pad(x, ((0, 0), (top, 2 * th + 2 - h - top), (left, 2 * tw + 2 - w - left), (0, 0)))
    # pixel (i, j) of tile (a, b) is pairs[:, a + i // 2, i % 2, b + j // 2, j % 2]
    pairs = x.reshape(n, th + 1, 2, tw + 1, 2, c)
    d = [[pairs[:, i // 2 : i // 2 + th, i % 2, j // 2 : j // 2 + tw, j % 2] for j in range(4)] for i in range(4)]
    rows = [[_combine(_WINOGRAD_BT[u], [d[i][j] for i in range(4)]) for j in range(4)] for u in range(4)]
    tiles = jnp.stack([_combine(_WINOGRAD_BT[v], rows[u]) for u in range(4) for v in range(4)]).reshape(16, -1, c)
    kernel_rows = [_combine(_WINOGRAD_G[u], [kernel[i] for i in range(3)]) for u in range(4)]  # each [3, C, O]
    transformed = jnp.stack(
        [_combine(_WINOGRAD_G[v], [kernel_rows[u][j] for j in range(3)]) for u in range(4) for v in range(4)]
    )
    products = jnp.einsum('knc,kco->kno', tiles, transformed, precision=precision).reshape(4, 4, n, th, tw, -1)
    out = [
        [
            _combine(_WINOGRAD_AT[r], [_combine(_WINOGRAD_AT[s], [products[u, v] for v in range(4)]) for u in range(4)])
            for s in range(2)
        ]
        for r in range(2)
    ]
    out = jnp.stack([jnp.stack(row, axis=3) for row in out], axis=2)  # [N, th, 2, tw, 2, O]
    return out.reshape(n, 2 * th, 2 * tw, -1)[:, :ho, :wo]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def dense_conv(x: jnp.ndarray, kernel: jnp.ndarray, strides, padding, precision: Any = None) -> jnp.ndarray:
    """A kxk convolution (NHWC, HWIO) whose kernel gradient is `dense_kernel_grad` and input gradient
    `dense_input_grad` (XLA's transposed convolution); the forward pass is `winograd_conv` where that suits it, else
    XLA's convolution. The three are each other's gradients, so second-order gradients (a gradient penalty) keep
    these forms (differentiating XLA's input gradient by its kernel would give XLA's slow kernel-gradient
    convolution: WGAN-GP's critic update at 14 GFLOP/s)."""
    return _dense_conv(x, kernel, strides, padding, precision)


def _dense_conv_fwd(x, kernel, strides, padding, precision):
    return _dense_conv(x, kernel, strides, padding, precision), (x, kernel)


def _dense_conv_bwd(strides, padding, precision, residuals, g):
    x, kernel = residuals
    dx = dense_input_grad(g, kernel, x.shape, strides, padding, precision)
    dkernel = dense_kernel_grad(x, g, kernel.shape[:2], strides, padding, precision)
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


dense_conv.defvjp(_dense_conv_fwd, _dense_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def dense_input_grad(g, kernel, x_shape, strides, padding, precision: Any = None) -> jnp.ndarray:
    """The input gradient of `dense_conv` (an input of shape `x_shape`) for output gradient `g`: XLA's transposed
    convolution (as `winograd_conv` of `g` with the flipped kernel, ResNet-50's train step was 5 % slower: 765 vs 733
    ms at batch 8, though each layer alone is faster)."""
    conv_x = functools.partial(_lax_conv, kernel=kernel, strides=strides, padding=padding, precision=precision)
    (dx,) = jax.linear_transpose(conv_x, jax.ShapeDtypeStruct(x_shape, jnp.result_type(g, kernel)))(g)
    return dx


def _dense_input_grad_fwd(g, kernel, x_shape, strides, padding, precision):
    return dense_input_grad(g, kernel, x_shape, strides, padding, precision), (g, kernel)


def _dense_input_grad_bwd(x_shape, strides, padding, precision, residuals, h):
    g, kernel = residuals
    dg = dense_conv(h, kernel, strides, padding, precision)
    dkernel = dense_kernel_grad(h, g, kernel.shape[:2], strides, padding, precision)
    return dg.astype(g.dtype), dkernel.astype(kernel.dtype)


dense_input_grad.defvjp(_dense_input_grad_fwd, _dense_input_grad_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def dense_kernel_grad(x, g, kernel_size, strides, padding, precision: Any = None) -> jnp.ndarray:
    """The [kh, kw, C, O] kernel gradient of `dense_conv`: one matmul of the input's kernel-tap rows ([kh·kw·C, P],
    im2col) with the [P, O] output gradient. XLA CPU computes it as a convolution with a window the size of the
    output, which YNNPACK runs at a few GFLOP/s (Xception's conv2 at batch 8: 1031 ms vs 131 ms). The rows are cut
    from the channel-major input, so every copy moves whole image rows (the channel-last columns [P, kh·kw·C]
    interleave C values at a time: ResNet-50's 7x7 stem, 3 channels, 24 ms vs 14 ms at batch 8)."""
    c, o = x.shape[-1], g.shape[-1]
    taps = _taps(jnp.moveaxis(x, -1, 0), kernel_size, strides, padding, spatial=(2, 3))  # each [C, B, Ho, Wo]
    rows = jnp.stack(taps).reshape(kernel_size[0] * kernel_size[1] * c, -1)
    return jnp.matmul(rows, g.reshape(-1, o), precision=precision).reshape(*kernel_size, c, o)


def _dense_kernel_grad_fwd(x, g, kernel_size, strides, padding, precision):
    return dense_kernel_grad(x, g, kernel_size, strides, padding, precision), (x, g)


def _dense_kernel_grad_bwd(kernel_size, strides, padding, precision, residuals, h):
    x, g = residuals
    dx = dense_input_grad(g, h, x.shape, strides, padding, precision)
    return dx.astype(x.dtype), dense_conv(x, h, strides, padding, precision).astype(g.dtype)


dense_kernel_grad.defvjp(_dense_kernel_grad_fwd, _dense_kernel_grad_bwd)


def matmul_conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    window_strides: Sequence[int],
    padding,
    *,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs,
) -> jnp.ndarray:
    """`lax.conv_general_dilated` (NHWC, HWIO) with 1x1 convolutions as matmuls of the (strided) input, stride-1
    depthwise ones by `depthwise_conv` and other undilated ungrouped ones by `dense_conv`. The rest (dilated, other
    grouped convolutions) stay `lax.conv_general_dilated`."""
    kh, kw, in_per_group, out_features = kernel.shape
    undilated = all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    plain = x.ndim == 4 and undilated and not isinstance(padding, str)
    if plain and (kh, kw) == (1, 1) and feature_group_count == 1:
        (strided,) = _taps(x, (1, 1), window_strides, padding)
        return pointwise_matmul(strided, kernel[0, 0], precision)
    depthwise = in_per_group == 1 and feature_group_count == x.shape[-1] == out_features
    if plain and depthwise and tuple(window_strides) == (1, 1):
        return depthwise_conv(x, kernel, tuple(map(tuple, padding)))
    if plain and feature_group_count == 1 and set(kwargs) <= {'dimension_numbers'}:
        return dense_conv(x, kernel, tuple(window_strides), tuple(map(tuple, padding)), precision)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )


def conv_impl() -> Any:
    """The convolution of `conv` layers under `CONV_IMPL` on the default backend."""
    use_matmul = CONV_IMPL == 'matmul' or (CONV_IMPL == 'auto' and jax.default_backend() == 'cpu')
    return matmul_conv if use_matmul else lax.conv_general_dilated


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    groups: int = 1,
    bias: bool = False,
    init: str = 'lecun_normal',
    dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """A `torch.nn.Conv2d` equivalent in NHWC; `init` names its kernel initialiser in `CONV_INITS`."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=torch_padding(padding),
        feature_group_count=groups,
        use_bias=bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=CONV_INITS[init],
        conv_general_dilated=conv_impl(),
        name=name,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jnp.ndarray, kernel: int, stride: int, padding: int) -> jnp.ndarray:
    """`torch.nn.MaxPool2d(kernel, stride, padding)`: padding with -inf; the gradient goes to the first maximum of
    each window (row-major), as in PyTorch.

    The maximum over the window's taps is one elementwise fusion, and so is the gradient; XLA's own max-pool gradient
    (select-and-scatter, lowered on CPU to an arg-max reduce-window over index arrays and a scatter) is several times
    slower.
    """
    return _max_pool(x, kernel, stride, padding)


def _max_pool(x, kernel, stride, padding):
    return functools.reduce(jnp.maximum, _taps(x, (kernel, kernel), (stride, stride), torch_padding(padding), -jnp.inf))


def _max_pool_fwd(x, kernel, stride, padding):
    y = _max_pool(x, kernel, stride, padding)
    return y, (x, y)


def _max_pool_bwd(kernel, stride, padding, residuals, g):
    x, y = residuals
    taps, transpose = jax.vjp(lambda x: _taps(x, (kernel, kernel), (stride, stride), torch_padding(padding)), x)
    taken, grads = jnp.zeros(y.shape, bool), []
    for tap in _taps(x, (kernel, kernel), (stride, stride), torch_padding(padding), -jnp.inf):
        first = (tap == y) & ~taken
        grads.append(jnp.where(first, g, jnp.zeros((), g.dtype)))
        taken = taken | first
    return transpose(grads)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


dense = functools.partial(nn.Dense, param_dtype=jnp.float32)


def _align_corners_matrix(size_in: int, size_out: int) -> jnp.ndarray:
    """[size_out, size_in] linear-interpolation weights mapping the corner pixels onto each other."""
    positions = jnp.arange(size_out) * ((size_in - 1) / max(size_out - 1, 1))
    low = jnp.clip(jnp.floor(positions).astype(jnp.int32), 0, size_in - 1)
    high = jnp.minimum(low + 1, size_in - 1)
    frac = positions - low
    return jax.nn.one_hot(low, size_in) * (1 - frac)[:, None] + jax.nn.one_hot(high, size_in) * frac[:, None]


def resize_bilinear_align_corners(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """`F.interpolate(x, size, mode='bilinear', align_corners=True)` on [..., H, W, C] (RECCE's resizes)."""
    rows = _align_corners_matrix(x.shape[-3], size[0]).astype(x.dtype)
    cols = _align_corners_matrix(x.shape[-2], size[1]).astype(x.dtype)
    return jnp.einsum('oh,pw,...hwc->...opc', rows, cols, x)
