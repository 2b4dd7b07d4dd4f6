"""Xception as in FaceForensics++ / timm `legacy_xception` (Chollet 2017), NHWC.

Layer names follow timm (`conv1`, `conv2`, `block1` … `block12`, `conv3`, `conv4`) and the classifier is `head`.
A module owns and runs the contiguous range of `LAYERS` from `first` to `last`, so methods that cut Xception at named
blocks (RECCE: input→block4; anti-compression: two input→block7 heads and one block8→end tail; AUNet: input→block11)
build the pieces they need, and a full model's variables apply to any sub-range.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fdx.models.layers import batch_norm, conv, dense, max_pool

LAYERS = ('conv1', 'conv2', *(f'block{i}' for i in range(1, 13)), 'conv3', 'conv4', 'head')

# Block name -> (output channels, repetitions, stride, start_with_relu, grow_first).
BLOCKS = {
    'block1': (128, 2, 2, False, True),
    'block2': (256, 2, 2, True, True),
    'block3': (728, 2, 2, True, True),
    **{f'block{i}': (728, 3, 1, True, True) for i in range(4, 12)},  # middle flow
    'block12': (1024, 2, 2, True, False),
}


class SeparableConv(nn.Module):
    """Depthwise kxk (no bias) followed by pointwise 1x1 (no bias)."""

    features: int
    kernel: int = 3
    padding: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = conv(
            x.shape[-1], self.kernel, padding=self.padding, groups=x.shape[-1], dtype=self.dtype, name='depthwise'
        )(x)
        return conv(self.features, 1, dtype=self.dtype, name='pointwise')(x)


class Block(nn.Module):
    """Residual block of separable convolutions (ReLU → SepConv → BN) × reps, max-pool if strided, 1x1 skip."""

    features: int
    reps: int
    stride: int = 1
    start_with_relu: bool = True
    grow_first: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_features = x.shape[-1]
        if self.grow_first:
            widths = [self.features] * self.reps
        else:
            widths = [in_features] * (self.reps - 1) + [self.features]
        y = x
        if self.start_with_relu:
            y = nn.relu(y)
        for i, width in enumerate(widths):  # ReLU → SepConv → BN, the next rep's ReLU fused into this BN
            y = SeparableConv(width, dtype=self.dtype, name=f'sepconv{i + 1}')(y)
            y = batch_norm(train, self.dtype, name=f'bn{i + 1}', relu=i + 1 < len(widths))(y)
        if self.stride != 1:
            y = max_pool(y, 3, self.stride, 1)
        if self.features != in_features or self.stride != 1:
            x = conv(self.features, 1, self.stride, dtype=self.dtype, name='skip')(x)
            x = batch_norm(train, self.dtype, name='skipbn')(x)
        return y + x


def scaled(channels: int, width: float) -> int:
    """A layer's width under the multiplier `width` (reduced test/mini models), rounded to a multiple of 8."""
    return channels if width == 1.0 else max(8, round(channels * width / 8) * 8)


def apply_layer(name: str, x, train: bool, width: float = 1.0, dtype: Any = jnp.float32):
    """Runs the Xception layer `name` (any of `LAYERS` but `head`) on `x`.

    Its parameters are created under `name` (and `bn1`…`bn4` for the convolutions) in the scope of the module whose
    compact method calls this, so a method model that interleaves its own modules with Xception's layers (RECCE,
    PANet) keeps timm's names and takes a converted ImageNet Xception checkpoint as is.
    """
    if name in ('conv1', 'conv2'):
        stride = 2 if name == 'conv1' else 1
        x = conv(scaled(32 if name == 'conv1' else 64, width), 3, stride, dtype=dtype, name=name)(x)
        return batch_norm(train, dtype, name=f'bn{name[-1]}', relu=True)(x)
    if name in BLOCKS:
        features, reps, stride, start_with_relu, grow_first = BLOCKS[name]
        return Block(scaled(features, width), reps, stride, start_with_relu, grow_first, dtype=dtype, name=name)(
            x, train
        )
    if name in ('conv3', 'conv4'):
        x = SeparableConv(scaled(1536 if name == 'conv3' else 2048, width), dtype=dtype, name=name)(x)
        return batch_norm(train, dtype, name=f'bn{name[-1]}', relu=True)(x)
    raise ValueError(f'Xception has no layer {name!r} with a feature map; layers are {", ".join(LAYERS[:-1])}')


class Xception(nn.Module):
    """Xception over the layer range [first, last] of `LAYERS`.

    Returns `(out, features)`: `out` is the logits when the range ends at `head` (the pooled 2048-d features if
    `num_classes == 0`), otherwise the last feature map; `features` maps every layer run to its output, plus
    `pre_logits` (pooled features) when the head runs. `width` scales every layer's channels (1.0: the paper's model).
    """

    num_classes: int = 1000
    first: str = 'conv1'
    last: str = 'head'
    dropout_rate: float = 0.0  # before the head; timm's `drop_rate`
    width: float = 1.0
    dtype: Any = jnp.float32

    def layer_range(self) -> tuple[str, ...]:
        for name in (self.first, self.last):
            if name not in LAYERS:
                raise ValueError(f'Xception has no layer {name!r}; layers are {", ".join(LAYERS)}')
        start, stop = LAYERS.index(self.first), LAYERS.index(self.last)
        if start > stop:
            raise ValueError(f'Xception layer range is empty: first={self.first!r} comes after last={self.last!r}')
        return LAYERS[start : stop + 1]

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = {}
        x = x.astype(self.dtype)
        for name in self.layer_range():
            if name == 'head':
                x = features['pre_logits'] = jnp.mean(x, axis=(1, 2))
                if self.num_classes:
                    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
                    x = dense(self.num_classes, dtype=self.dtype, name='head')(x)
            else:
                x = apply_layer(name, x, train, self.width, self.dtype)
            features[name] = x
        return x.astype(jnp.float32), features
