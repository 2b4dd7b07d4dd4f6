"""CBAM-style attention (Woo et al. 2018), NHWC: the spatial and channel branches and CBAM (channel, then spatial).

Each module maps a feature map `x` [..., H, W, C] to `x` reweighted by its attention map, so its constructor can be
passed as a ResNet's `block_attention` (DMA-STA's SAM in every bottleneck, the CBAM baseline) or placed in any
backbone (PANet's SCAM).

Choices where the CBAM paper and its official code differ (we follow the paper's equations where they are explicit):
- the spatial branch pools `[mean_c; max_c]` (CBAM eq. 3, DMA-STA eq. 1 and the DMA-STA code) and has no BatchNorm
  after its 7x7 convolution (the paper and the DMA-STA code; the CBAM code adds BN(1) and pools `[max; mean]`);
- the channel MLP has biases (the CBAM code's `nn.Linear` defaults; the paper's eq. 2 writes only weights W0, W1).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fdx.models.layers import conv, dense


class SpatialAttention(nn.Module):
    """SAM (DMA-STA eq. 1-2, CBAM eq. 3): x · σ(conv7x7([mean_c(x); max_c(x)])), a 2→1 conv with padding 3, no bias."""

    kernel: int = 7
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        pooled = jnp.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], axis=-1)
        logits = conv(1, self.kernel, padding=self.kernel // 2, dtype=self.dtype, name='conv')(pooled)
        return x * nn.sigmoid(logits)


class ChannelAttention(nn.Module):
    """CBAM eq. 2: x · σ(MLP(avgpool(x)) + MLP(maxpool(x))), MLP = C → C/r → ReLU → C shared by both pools.

    The hidden width is max(C // r, 1) so that reduced test models with C < r still work.
    """

    reduction: int = 16
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        channels = x.shape[-1]
        pooled = jnp.stack([x.mean(axis=(-3, -2)), x.max(axis=(-3, -2))])  # [2, ..., C]
        hidden = dense(max(channels // self.reduction, 1), use_bias=self.use_bias, dtype=self.dtype, name='fc1')
        out = dense(channels, use_bias=self.use_bias, dtype=self.dtype, name='fc2')
        logits = out(nn.relu(hidden(pooled))).sum(0)
        return x * nn.sigmoid(logits)[..., None, None, :]


class CBAM(nn.Module):
    """CBAM eq. 1: channel attention, then spatial attention on its output."""

    reduction: int = 16
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = ChannelAttention(self.reduction, self.use_bias, self.dtype, name='channel')(x)
        return SpatialAttention(dtype=self.dtype, name='spatial')(x)
