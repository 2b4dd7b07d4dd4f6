"""ResNet-50 (He et al. 2016) in the torchvision/timm layout, NHWC, with an optional attention module per bottleneck.

Names follow torchvision: `conv1`/`bn1` stem, `layer1` … `layer4` of bottlenecks `block0`, `block1`, …, classifier
`head`. DMA-STA (and the CBAM baseline) insert an attention module in every bottleneck after `bn3` and before the
residual add: pass its constructor as `block_attention`; it is built with `name='attention'` and called as
`attention(y, train)`. `conv_init` names the initialiser of every convolution (`fdx.models.layers.CONV_INITS`; the
attention module's own convolutions take theirs from its constructor).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fdx.models.layers import batch_norm, conv, dense, max_pool


class Bottleneck(nn.Module):
    """1x1 → 3x3 (strided) → 1x1 (×4 channels), BN after each, [attention], residual add, ReLU."""

    width: int
    stride: int = 1
    block_attention: Callable[..., nn.Module] | None = None
    dtype: Any = jnp.float32
    conv_init: str = 'lecun_normal'

    @nn.compact
    def __call__(self, x, train: bool = False):
        def conv_bn(y, features, kernel, stride, padding, name, bn_name, relu=False):
            y = conv(features, kernel, stride, padding, init=self.conv_init, dtype=self.dtype, name=name)(y)
            return batch_norm(train, self.dtype, bn_name, relu=relu)(y)

        y = conv_bn(x, self.width, 1, 1, 0, 'conv1', 'bn1', relu=True)
        y = conv_bn(y, self.width, 3, self.stride, 1, 'conv2', 'bn2', relu=True)
        y = conv_bn(y, 4 * self.width, 1, 1, 0, 'conv3', 'bn3')
        if self.block_attention is not None:
            y = self.block_attention(name='attention')(y, train)
        if x.shape[-1] != 4 * self.width or self.stride != 1:
            x = conv_bn(x, 4 * self.width, 1, self.stride, 0, 'downsample_conv', 'downsample_bn')
        return nn.relu(y + x)


class Stage(nn.Module):
    """`depth` bottlenecks; the first one strides and projects the shortcut."""

    width: int
    depth: int
    stride: int
    block_attention: Callable[..., nn.Module] | None = None
    dtype: Any = jnp.float32
    conv_init: str = 'lecun_normal'

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i in range(self.depth):
            stride = self.stride if i == 0 else 1
            x = Bottleneck(self.width, stride, self.block_attention, self.dtype, self.conv_init, name=f'block{i}')(
                x, train
            )
        return x


class ResNet(nn.Module):
    """Bottleneck ResNet. Returns `(logits, features)` with features `stem`, `layer1` … `layer4`, `pre_logits`.

    With `num_classes == 0` there is no head and the first output is the pooled 2048-d `pre_logits`.
    """

    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64  # bottleneck width of layer1, doubled per stage (reduced only for tests)
    num_classes: int = 1000
    block_attention: Callable[..., nn.Module] | None = None
    dropout_rate: float = 0.0  # before the head; timm's `drop_rate`
    dtype: Any = jnp.float32
    conv_init: str = 'lecun_normal'

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv(self.width, 7, 2, 3, init=self.conv_init, dtype=self.dtype, name='conv1')(x.astype(self.dtype))
        x = batch_norm(train, self.dtype, 'bn1', relu=True)(x)
        features = {'stem': x}
        x = max_pool(x, 3, 2, 1)
        for i, depth in enumerate(self.stage_sizes):
            width, stride = self.width * 2**i, 1 if i == 0 else 2
            x = Stage(width, depth, stride, self.block_attention, self.dtype, self.conv_init, name=f'layer{i + 1}')(
                x, train
            )
            features[f'layer{i + 1}'] = x
        x = features['pre_logits'] = jnp.mean(x, axis=(1, 2))
        if self.num_classes:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = dense(self.num_classes, dtype=self.dtype, name='head')(x)
        return x.astype(jnp.float32), features


def resnet50(**kwargs) -> ResNet:
    return ResNet(stage_sizes=(3, 4, 6, 3), **kwargs)
