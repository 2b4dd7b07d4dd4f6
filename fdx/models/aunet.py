"""AUNet (Bai et al., CVPR 2023): the Action Units Relation Transformer over an Xception backbone, NHWC.

The backbone is ImageNet Xception conv1 … block11 (728 channels, stride 16: 14x14 at 224; Sec. 4.1) with timm's
names, so a converted `legacy_xception` checkpoint initialises it as is. Three ART encoders follow (Sec. 3.2, Fig. 3):

- AU-specific branch: an attention module (two 3x3 convolutions, each with batch norm and ReLU — ours, the paper
  names the convolutions only — then a 1x1 convolution with K = 15 filters and a sigmoid) gives M_AU (eq. 1);
  E_i = GAP(Conv3x3(F ⊙ M_i + F)) (eq. 2; `au_embeddings` computes it exactly without the K convolutions);
  a_ij = E_i · E_j (eq. 3), W_i = Σ_j a_ij / Σ_i Σ_j a_ij (eq. 4, `importance_weights`), M_I = max_i W_i M_i and
  F_S = M_I ⊙ F (eq. 5, `important_region`).
- AU-agnostic branch: a 1x1 projection to `token_dim` tokens, a learnable class token (and, ours, a learnable
  position embedding as in ViT, `position_embedding`), one post-norm transformer block (eq. 6) and a 1x1
  back-projection to the backbone's channels: F_A.
- Integration: F_out = two 3x3 convolutions (batch norm and ReLU after each, ours) of F_S + F_A (eq. 7).

Heads: `head` classifies the last encoder's class token; `token_head`, shared by all patch tokens, gives each token's
tampered/untouched logits (eq. 19). The last encoder's F_out would feed nothing, so it is not computed. Without the
AU-agnostic branch (Table 4, w/o AGB) there are no tokens: `head` reads the global average of the last F_out and
`token_head` its positions; without ART (Table 4's backbone) the same on the backbone's features.

`feature_mixing` is the feature-level mixing of eq. 10-17 (training only; the method draws the layer and λ, a
`MixingDraw`). Every backbone layer's output passes a `lax.cond` on the drawn layer: one compiled step for all
layers, and only the drawn layer computes the mixing.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdx.models.layers import batch_norm, conv, dense
from fdx.models.vit import Attention, Mlp, layer_norm
from fdx.models.xception import LAYERS, apply_layer

BACKBONE_LAYERS = LAYERS[: LAYERS.index('block11') + 1]  # conv1 … block11
NUM_AUS = 15
STRIDE = 16  # of the backbone's features


def importance_weights(embeddings: jax.Array, eps: float = 1e-6) -> jax.Array:
    """W (eq. 3-4) of AU embeddings [B, K, C] → [B, K]: W_i = Σ_j a_ij / Σ_i Σ_j a_ij with a_ij = E_i · E_j.

    The denominator is ‖Σ_i E_i‖² ≥ 0; it is floored at `eps` so that embeddings summing to zero give finite
    weights. The numerators may be negative (an AU anti-correlated with the others)."""
    correlations = jnp.einsum('bic,bjc->bij', embeddings, embeddings)
    return correlations.sum(-1) / jnp.maximum(correlations.sum((1, 2)), eps)[:, None]


def important_region(weights: jax.Array, maps: jax.Array) -> jax.Array:
    """M_I (eq. 5) = max_i W_i M_i: weights [B, K], maps [B, H, W, K] → [B, H, W, 1]."""
    return jnp.max(maps * weights[:, None, None, :], axis=-1, keepdims=True)


def au_embeddings_naive(features: jax.Array, maps: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Eq. 2 literally: K convolutions of F ⊙ M_i + F, each averaged. features [B, H, W, C], maps [B, H, W, K],
    kernel [k, k, C, D] (zero padding k // 2), bias [D] → [B, K, D]. About 14 GMAC per image at 224."""
    batch, height, width, channels = features.shape
    inputs = features[:, None] * (1 + jnp.moveaxis(maps, -1, 1)[..., None])  # [B, K, H, W, C]
    pad = kernel.shape[0] // 2
    out = jax.lax.conv_general_dilated(
        inputs.reshape(-1, height, width, channels),
        kernel,
        (1, 1),
        ((pad, pad), (pad, pad)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out.mean((1, 2)).reshape(batch, maps.shape[-1], -1) + bias


def au_embeddings(features: jax.Array, maps: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """Eq. 2 exactly and cheaply (same arguments as `au_embeddings_naive`).

    The convolution has no activation, so its spatial mean is Σ_taps W_tap · (mean over the outputs of the input
    that tap reads): with zero padding, tap (dy, dx) reads the input window that drops the rows and columns it would
    read outside the map. Per AU and tap that mean is one contraction of F with (1 + M_i) over the window:
    9·K·H·W·C multiply-adds for the means and K·9·C·D for the projection (≈ 0.1 GMAC at 224 instead of ≈ 14)."""
    _, height, width, channels = features.shape
    weights = 1 + maps
    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    window_means = []
    for dy in range(kernel.shape[0]):
        rows = slice(max(dy - pad_y, 0), height + min(dy - pad_y, 0))
        for dx in range(kernel.shape[1]):
            cols = slice(max(dx - pad_x, 0), width + min(dx - pad_x, 0))
            window_means.append(jnp.einsum('bhwc,bhwk->bkc', features[:, rows, cols], weights[:, rows, cols]))
    means = jnp.stack(window_means, axis=2) / (height * width)  # [B, K, taps, C]
    taps = kernel.reshape(-1, channels, kernel.shape[-1])
    return jnp.einsum('bktc,tcd->bkd', means, taps, precision=jax.lax.Precision.HIGHEST) + bias


def conv_bn_relu(features: int, kernel: int, train: bool, dtype: Any, name: str):
    """A kxk convolution (same padding), batch norm and ReLU, as one callable."""

    def apply(x):
        x = conv(features, kernel, padding=kernel // 2, dtype=dtype, name=f'{name}_conv')(x)
        return batch_norm(train, dtype, name=f'{name}_bn', relu=True)(x)

    return apply


class AUSpecificBranch(nn.Module):
    """F → (F_S, M_AU [B, H, W, K], W [B, K]) (eq. 1-5)."""

    num_aus: int = NUM_AUS
    attention_width: int = 256
    naive_embeddings: bool = False  # eq. 2 by K convolutions (tests)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False):
        x = conv_bn_relu(self.attention_width, 3, train, self.dtype, 'attention1')(features)
        x = conv_bn_relu(self.attention_width, 3, train, self.dtype, 'attention2')(x)
        maps = nn.sigmoid(conv(self.num_aus, 1, bias=True, dtype=self.dtype, name='au_maps')(x).astype(jnp.float32))
        channels = features.shape[-1]
        kernel = self.param('embedding_kernel', nn.initializers.lecun_normal(), (3, 3, channels, channels))
        bias = self.param('embedding_bias', nn.initializers.zeros, (channels,))
        embed = au_embeddings_naive if self.naive_embeddings else au_embeddings
        embeddings = embed(features.astype(jnp.float32), maps, kernel, bias)
        weights = importance_weights(embeddings)
        region = important_region(weights, maps)
        return (region * features).astype(features.dtype), maps, weights


class PostNormBlock(nn.Module):
    """Eq. 6: x' = LN(x + MSA(x)), x_o = LN(x' + FFN(x')) (the original Transformer's post-norm order)."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = layer_norm(self.dtype, 'norm1')(
            x + Attention(self.num_heads, 0.0, self.dropout_rate, self.dtype, name='attn')(x, train)
        )
        return layer_norm(self.dtype, 'norm2')(
            x + Mlp(self.mlp_dim, self.dropout_rate, self.dtype, name='mlp')(x, train)
        )


class AUAgnosticBranch(nn.Module):
    """F → (F_A, class token [B, D], patch tokens [B, H·W, D]) (Sec. 3.2, eq. 6)."""

    token_dim: int = 384
    num_heads: int = 6
    mlp_dim: int = 1536
    position_embedding: bool = True
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False):
        batch, height, width, channels = features.shape
        tokens = conv(self.token_dim, 1, bias=True, dtype=self.dtype, name='project')(features)
        tokens = tokens.reshape(batch, height * width, self.token_dim)
        cls = self.param('cls_token', nn.initializers.zeros, (1, 1, self.token_dim))
        x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, self.token_dim)).astype(tokens.dtype), tokens], 1)
        if self.position_embedding:
            init = nn.initializers.normal(0.02)
            x = x + self.param('pos_embed', init, (1, 1 + height * width, self.token_dim)).astype(x.dtype)
        x = PostNormBlock(self.num_heads, self.mlp_dim, self.dropout_rate, self.dtype, name='block')(x, train)
        patches = x[:, 1:]
        grid = patches.reshape(batch, height, width, self.token_dim)
        out = conv(channels, 1, bias=True, dtype=self.dtype, name='back_project')(grid)
        return out, x[:, 0], patches


class ARTEncoder(nn.Module):
    """One ART encoder (Fig. 3): F → (F_out or None, outputs of its branches)."""

    au_specific: bool = True
    au_agnostic: bool = True
    integrate: bool = True
    specific: dict[str, Any] | None = None  # AUSpecificBranch fields
    agnostic: dict[str, Any] | None = None  # AUAgnosticBranch fields
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, train: bool = False):
        outputs, combined = {}, 0
        if self.au_specific:
            branch = AUSpecificBranch(**(self.specific or {}), dtype=self.dtype, name='au_specific')
            specific, outputs['au_maps'], outputs['importance'] = branch(features, train)
            combined = combined + specific
        if self.au_agnostic:
            branch = AUAgnosticBranch(**(self.agnostic or {}), dtype=self.dtype, name='au_agnostic')
            agnostic, outputs['class_token'], outputs['patch_tokens'] = branch(features, train)
            combined = combined + agnostic
        if not self.integrate:
            return None, outputs
        if not (self.au_specific or self.au_agnostic):
            combined = features
        channels = features.shape[-1]
        x = conv_bn_relu(channels, 3, train, self.dtype, 'integrate1')(combined)
        return conv_bn_relu(channels, 3, train, self.dtype, 'integrate2')(x), outputs


class MixingDraw(NamedTuple):
    """One step's feature-mixing draw: the backbone layer (index into `BACKBONE_LAYERS`), λ1..λ3 per pair
    [B / 2, 3], and the fakes' partial face masks M_p [B, S, S] (the reals' rows are ignored)."""

    layer: jax.Array
    lambdas: jax.Array
    masks: jax.Array


def resize_mask(masks: jax.Array, size: tuple[int, int]) -> jax.Array:
    """[B, S, S] → [B, h, w, 1], antialiased (an area average when shrinking by an integer factor)."""
    resized = jax.image.resize(masks.astype(jnp.float32), (masks.shape[0], *size), 'linear', antialias=True)
    return resized[..., None]


def feature_mixing(features: jax.Array, masks: jax.Array, lambdas: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Eq. 10-17 on a batch of (real, fake) pairs [r0, f0, r1, f1, …]: features [B, h, w, C], masks M'_p at the
    features' size [B, h, w, 1] (the fakes' rows are used for both examples of a pair), lambdas [B / 2, 3].

    Within the mask, the fake's masked channel statistics become λ1 μ^f + (1 − λ1) μ^r and λ2 σ^f + (1 − λ2) σ^r
    and its normalised features λ3 F̄^f + (1 − λ3) F̄^r; outside the mask and for the reals nothing changes. σ of
    eq. 11 is sqrt(masked variance + ε); an empty mask leaves the fake as it is."""
    batch, height, width, channels = features.shape
    pairs = features.astype(jnp.float32).reshape(batch // 2, 2, height, width, channels)
    real, fake = pairs[:, 0], pairs[:, 1]
    mask = masks.reshape(batch // 2, 2, height, width, 1)[:, 1]
    area = jnp.maximum(mask.sum((1, 2), keepdims=True), eps)

    def statistics(x):  # eq. 10-11
        mean = (x * mask).sum((1, 2), keepdims=True) / area
        std = jnp.sqrt(((x - mean) ** 2 * mask).sum((1, 2), keepdims=True) / area + eps)
        return mean, std

    (mean_r, std_r), (mean_f, std_f) = statistics(real), statistics(fake)
    norm_r, norm_f = (real - mean_r) * mask / std_r, (fake - mean_f) * mask / std_f  # eq. 12
    lam1, lam2, lam3 = (lambdas[:, i, None, None, None] for i in range(3))
    mean_s = lam1 * mean_f + (1 - lam1) * mean_r  # eq. 13
    std_s = lam2 * std_f + (1 - lam2) * std_r  # eq. 14
    norm_s = lam3 * norm_f + (1 - lam3) * norm_r  # eq. 15
    region = std_s * norm_s + mean_s * mask  # eq. 16
    mixed = fake * (1 - mask) + region  # eq. 17
    return jnp.stack([real, mixed], 1).reshape(features.shape).astype(features.dtype)


class AUNet(nn.Module):
    """Backbone + `encoders` ART encoders + heads. `__call__(images, train, mixing)` returns `(logits [B, 2],
    features)`: `token_logits` [B, n, 2] (n = h·w), `au_maps` (one [B, h, w, K] per encoder with the AU-specific
    branch), `importance` (W per encoder), `backbone` (F). `mixing` (a `MixingDraw`, training only) mixes the
    features after the drawn backbone layer."""

    encoders: int = 3
    au_specific: bool = True
    au_agnostic: bool = True
    specific: dict[str, Any] | None = None
    agnostic: dict[str, Any] | None = None
    num_classes: int = 2
    width: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False, mixing: MixingDraw | None = None):
        x = images.astype(self.dtype)
        for i, name in enumerate(BACKBONE_LAYERS):
            x = apply_layer(name, x, train, self.width, self.dtype)
            if mixing is not None:  # only the drawn layer computes the mixing (`lax.cond` runs one branch)
                mix = lambda x, masks, lambdas: feature_mixing(x, resize_mask(masks, x.shape[1:3]), lambdas)  # noqa: E731
                x = jax.lax.cond(mixing.layer == i, mix, lambda x, *_: x, x, mixing.masks, mixing.lambdas)
        features = {'backbone': x, 'au_maps': [], 'importance': []}
        tokens = None
        for e in range(self.encoders):
            last = e == self.encoders - 1
            encoder = ARTEncoder(
                self.au_specific,
                self.au_agnostic,
                integrate=not (last and self.au_agnostic),
                specific=self.specific,
                agnostic=self.agnostic,
                dtype=self.dtype,
                name=f'encoder{e + 1}',
            )
            out, outputs = encoder(x, train)
            if self.au_specific:
                features['au_maps'].append(outputs['au_maps'])
                features['importance'].append(outputs['importance'])
            if last and self.au_agnostic:
                summary, tokens = outputs['class_token'], outputs['patch_tokens']
            else:
                x = out
        if tokens is None:
            summary, tokens = jnp.mean(x, axis=(1, 2)), x.reshape(x.shape[0], -1, x.shape[-1])
        logits = dense(self.num_classes, dtype=self.dtype, name='head')(summary)
        features['token_logits'] = dense(2, dtype=self.dtype, name='token_head')(tokens).astype(jnp.float32)
        return logits.astype(jnp.float32), features
