"""Layers shared by the backbones, with PyTorch's defaults so converted weights give the same numbers."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


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
