"""Layers shared by the backbones, with PyTorch's defaults so converted weights give the same numbers.

Convolutions on the CPU backend run as matrix products (`matmul_conv`): XLA's CPU convolution is fast only for the
forward pass of dense convolutions, while its kernel and strided-input gradients and every grouped (depthwise)
convolution fall back to slow loops (`fdx bench step` and the profile in the README's performance section). Other
backends keep `lax.conv_general_dilated` (cuDNN, TPU convolutions). `CONV_IMPL` overrides the choice.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any

# 'auto' (matmul_conv on CPU, lax.conv_general_dilated elsewhere) | 'matmul' | 'lax'; read when a model is traced.
CONV_IMPL = 'auto'


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> nn.BatchNorm:
    """`torch.nn.BatchNorm2d` defaults: eps 1e-5, momentum 0.1 (flax: 0.9 on the running average).

    Under `jax.jit` over a data-parallel mesh the batch axis is global, so the statistics are the global-batch ones.
    Running variance is updated with the biased batch variance (PyTorch uses the unbiased one; the difference is a factor
    n/(n-1) in the running estimate only, never in the training forward pass).
    """
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name
    )


def torch_padding(padding: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric PyTorch-style padding (flax 'SAME' pads asymmetrically for stride 2 and even inputs)."""
    return ((padding, padding), (padding, padding))


def _taps(x: jnp.ndarray, kernel: tuple[int, int], strides: Sequence[int], padding) -> list[jnp.ndarray]:
    """The kh·kw shifted (strided) windows of padded NHWC `x` that a kernel tap multiplies, row-major over the taps."""
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0)))
    (kh, kw), (sh, sw) = kernel, strides
    b, h, w, c = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    return [
        lax.slice(x, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c), (1, sh, sw, 1))
        for i in range(kh)
        for j in range(kw)
    ]


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
def depthwise_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
    """`_depthwise` whose gradients are one fusion each: the input's a depthwise convolution with the flipped kernel,
    the kernel's one reduction per tap (autodiff would materialise a padded copy per tap)."""
    return _depthwise(x, kernel, padding)


def _depthwise_fwd(x, kernel, padding):
    return _depthwise(x, kernel, padding), (x, kernel)


def _depthwise_bwd(padding, residuals, g):
    x, kernel = residuals
    kh, kw, _, c = kernel.shape
    flipped = ((kh - 1 - padding[0][0], kh - 1 - padding[0][1]), (kw - 1 - padding[1][0], kw - 1 - padding[1][1]))
    dx = _depthwise(g, kernel[::-1, ::-1], flipped)
    dkernel = jnp.stack([jnp.sum(tap * g, axis=(0, 1, 2)) for tap in _taps(x, (kh, kw), (1, 1), padding)])
    return dx, dkernel.reshape(kernel.shape).astype(kernel.dtype)


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


def matmul_conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    window_strides: Sequence[int],
    padding,
    *,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs,
) -> jnp.ndarray:
    """`lax.conv_general_dilated` (NHWC, HWIO) as matrix products: dense convolutions as one matmul of the stacked taps
    (im2col; a 1x1 convolution is a plain matmul), stride-1 depthwise ones by `depthwise_conv`. Dilated or other
    grouped convolutions fall back to `lax.conv_general_dilated`."""
    kh, kw, in_per_group, out_features = kernel.shape
    dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    depthwise = feature_group_count == x.shape[-1] == out_features and in_per_group == 1
    if x.ndim != 4 or dilated or isinstance(padding, str) or not (feature_group_count == 1 or depthwise):
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
            **kwargs,
        )
    if depthwise and tuple(window_strides) == (1, 1):
        return depthwise_conv(x, kernel, tuple(map(tuple, padding)))
    if depthwise:
        return lax.conv_general_dilated(
            x,
            kernel,
            window_strides,
            padding,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
        )
    if CONV_IMPL == 'hybrid' and kh * kw > 1:
        return lax.conv_general_dilated(x, kernel, window_strides, padding, dimension_numbers=dimension_numbers)
    taps = _taps(x, (kh, kw), window_strides, padding)
    columns = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    return jnp.einsum('bhwk,ko->bhwo', columns, kernel.reshape(-1, out_features), precision=precision)


def conv_impl() -> Any:
    """The convolution of `conv` layers under `CONV_IMPL` on the default backend."""
    use_matmul = CONV_IMPL in ('matmul', 'hybrid') or (CONV_IMPL == 'auto' and jax.default_backend() == 'cpu')
    return matmul_conv if use_matmul else lax.conv_general_dilated


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    groups: int = 1,
    bias: bool = False,
    dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """A `torch.nn.Conv2d` equivalent in NHWC."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=torch_padding(padding),
        feature_group_count=groups,
        use_bias=bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        conv_general_dilated=conv_impl(),
        name=name,
    )


def max_pool(x: jnp.ndarray, kernel: int, stride: int, padding: int) -> jnp.ndarray:
    """`torch.nn.MaxPool2d(kernel, stride, padding)`: padding with -inf."""
    return nn.max_pool(x, (kernel, kernel), strides=(stride, stride), padding=torch_padding(padding))


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
