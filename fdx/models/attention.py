"""Attention modules, NHWC: CBAM (Woo et al. 2018) and its branches, and EMA (Ouyang et al. 2023).

Each module maps a feature map `x` [..., H, W, C] to `x` reweighted by its attention map, so its constructor can be
passed as a ResNet's `block_attention` (DMA-STA's SAM in every bottleneck, the CBAM baseline; called as
`module(x, train)`) or placed in any backbone (PANet's EMAM and SCAM, the latter being `CBAM`).

Choices where the CBAM paper and its official code differ (we follow the paper's equations where they are explicit):
- the spatial branch pools `[mean_c; max_c]` (CBAM eq. 3, DMA-STA eq. 1 and the DMA-STA code; the CBAM code pools
  `[max; mean]`) and has no BatchNorm after its 7x7 convolution (the paper and the DMA-STA code's SAM); the CBAM
  code's BN(1) after it (eps 1e-5, PyTorch momentum 0.01) is `CBAM(spatial_batch_norm=True)`. Its scale starts at 1
  (PyTorch's default; the CBAM code's ImageNet ResNet zeroes it, which is not reproduced);
- the channel MLP has biases (the CBAM code's `nn.Linear` defaults; the paper's eq. 2 writes only weights W0, W1).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdx.models.layers import batch_norm, conv, dense

CBAM_CODE_BN_MOMENTUM = 0.01  # the CBAM code's BasicConv: BatchNorm2d(momentum=0.01)


class SpatialAttention(nn.Module):
    """SAM (DMA-STA eq. 1-2, CBAM eq. 3): x · σ(conv7x7([mean_c(x); max_c(x)])), a 2→1 conv with padding 3, no bias.

    `use_batch_norm`: the CBAM code's BN between the convolution and the sigmoid (`bn`; batch statistics when `train`).
    `conv_init`: the kernel initialiser (`fdx.models.layers.CONV_INITS`).
    """

    kernel: int = 7
    dtype: Any = jnp.float32
    use_batch_norm: bool = False
    conv_init: str = 'lecun_normal'

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        pooled = jnp.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], axis=-1)
        conv_layer = conv(1, self.kernel, padding=self.kernel // 2, init=self.conv_init, dtype=self.dtype, name='conv')
        logits = conv_layer(pooled)
        if self.use_batch_norm:
            logits = batch_norm(train, self.dtype, 'bn', CBAM_CODE_BN_MOMENTUM)(logits)
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
    """CBAM eq. 1: channel attention, then spatial attention on its output (`spatial_batch_norm`: the CBAM code's
    BN in the spatial gate; `conv_init`: its 7x7 convolution's initialiser)."""

    reduction: int = 16
    use_bias: bool = True
    dtype: Any = jnp.float32
    spatial_batch_norm: bool = False
    conv_init: str = 'lecun_normal'

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = ChannelAttention(self.reduction, self.use_bias, self.dtype, name='channel')(x)
        spatial = SpatialAttention(
            dtype=self.dtype, use_batch_norm=self.spatial_batch_norm, conv_init=self.conv_init, name='spatial'
        )
        return spatial(x, train)


def ema_groups_error(channels: int, groups: int) -> str | None:
    """Why EMA cannot split `channels` into `groups` groups, or None if it can."""
    if groups >= 1 and channels % groups == 0:
        return None
    valid = [g for g in range(2, channels) if channels % g == 0]
    return f'EMA groups: {channels} channels are not divisible by {groups} groups (divisors: {valid})'


class EfficientMultiScaleAttention(nn.Module):
    """EMA (PANet's EMAM, eq. 2-5): grouped channels, a 1x1 branch with 1-D pooling along H and W, a 3x3 branch, and
    cross-spatial aggregation, as the official EMA code computes it.

    Per group (cg = C / groups channels): x_h = mean over W, x_w = mean over H (eq. 3-4); one shared 1x1 conv (cg → cg,
    bias) over [x_h; x_w] concatenated along the spatial axis; x1 = GroupNorm(cg groups)(x · σ(x_h) · σ(x_w));
    x2 = conv3x3(x) (bias). Cross-spatial learning: a1 = softmax_c(GAP(x1)) (eq. 5), a2 = softmax_c(GAP(x2)),
    weights = a1 · x2 + a2 · x1 (a [H, W] map, the dot products over the group's channels); out = x · σ(weights).
    """

    groups: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        *batch, height, width, channels = x.shape
        error = ema_groups_error(channels, self.groups)
        if error:
            raise ValueError(error)
        cg = channels // self.groups
        # [..., H, W, g·cg] -> [N = prod(...)·g, H, W, cg]: group k holds channels k·cg … (k+1)·cg − 1.
        grouped = x.reshape(-1, height, width, self.groups, cg).transpose(0, 3, 1, 2, 4).reshape(-1, height, width, cg)
        x_h = grouped.mean(axis=2)  # [N, H, cg]
        x_w = grouped.mean(axis=1)  # [N, W, cg]
        pooled = jnp.concatenate([x_h, x_w], axis=1)[:, :, None, :]  # [N, H + W, 1, cg]
        pooled = nn.Conv(cg, (1, 1), dtype=self.dtype, param_dtype=jnp.float32, name='conv1x1')(pooled)[:, :, 0]
        gate_h, gate_w = jax.nn.sigmoid(pooled[:, :height]), jax.nn.sigmoid(pooled[:, height:])
        x1 = grouped * gate_h[:, :, None, :] * gate_w[:, None, :, :]
        x1 = nn.GroupNorm(num_groups=cg, epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32, name='norm')(x1)
        x2 = nn.Conv(cg, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32, name='conv3x3')(
            grouped
        )
        a1 = jax.nn.softmax(x1.mean(axis=(1, 2)), axis=-1)  # [N, cg]
        a2 = jax.nn.softmax(x2.mean(axis=(1, 2)), axis=-1)
        weights = jnp.einsum('nc,nhwc->nhw', a1, x2) + jnp.einsum('nc,nhwc->nhw', a2, x1)
        out = grouped * jax.nn.sigmoid(weights)[..., None]
        out = out.reshape(-1, self.groups, height, width, cg).transpose(0, 2, 3, 1, 4)
        return out.reshape(*batch, height, width, channels)
