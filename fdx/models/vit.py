"""Vision Transformer (Dosovitskiy et al. 2021) in the timm `vit_base_patch16_224` layout, NHWC input.

Names: `patch_embed`, `cls_token`, `pos_embed`, pre-norm blocks `block0` … `block{depth-1}` (`norm1`, `attn/qkv`,
`attn/proj`, `norm2`, `mlp/fc1`, `mlp/fc2`), final `norm`, classifier `head`. Depth and width are attributes (the
long-distance attention paper keeps only the first blocks of a pretrained ViT). The position embedding is stored for
the `image_size` grid and resampled (bicubic) when the input gives another grid, like timm's `dynamic_img_size`.
Attention weights are sown into the `intermediates` collection as `attention` (apply with
`mutable=['intermediates']`), for methods that use patch attention maps.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdx.models.layers import dense


def resample_position_embedding(pos_embed: jnp.ndarray, grid: tuple[int, int], prefix_tokens: int = 1) -> jnp.ndarray:
    """Resample [1, prefix + h*w, D] position embeddings to a new (H, W) grid, bicubic, prefix tokens kept."""
    prefix, patches = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    old = int(round(patches.shape[1] ** 0.5))
    if old * old != patches.shape[1]:
        raise ValueError(f'position embedding with {patches.shape[1]} patch tokens is not a square grid')
    if (old, old) == tuple(grid):
        return pos_embed
    patches = patches.reshape(1, old, old, -1)
    patches = jax.image.resize(patches.astype(jnp.float32), (1, *grid, patches.shape[-1]), 'cubic', antialias=True)
    return jnp.concatenate([prefix, patches.reshape(1, grid[0] * grid[1], -1).astype(pos_embed.dtype)], axis=1)


def layer_norm(dtype: Any, name: str) -> nn.LayerNorm:
    """timm's LayerNorm (ε 1e-6), parameters in float32."""
    return nn.LayerNorm(epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, name=name)


class Attention(nn.Module):
    """Multi-head self-attention with a fused `qkv` projection and an output `proj`."""

    num_heads: int
    attention_dropout: float = 0.0
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        batch, tokens, width = x.shape
        head_dim = width // self.num_heads
        qkv = dense(3 * width, dtype=self.dtype, name='qkv')(x).reshape(batch, tokens, 3, self.num_heads, head_dim)
        q, k, v = (qkv[:, :, i] for i in range(3))  # [B, N, heads, head_dim]
        logits = jnp.einsum('bqhd,bkhd->bhqk', q * head_dim**-0.5, k)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        self.sow('intermediates', 'attention', weights)
        weights = nn.Dropout(self.attention_dropout, deterministic=not train)(weights)
        out = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(batch, tokens, width)
        out = dense(width, dtype=self.dtype, name='proj')(out)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(out)


class Mlp(nn.Module):
    hidden: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = nn.gelu(dense(self.hidden, dtype=self.dtype, name='fc1')(x), approximate=False)
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
        y = dense(x.shape[-1], dtype=self.dtype, name='fc2')(y)
        return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); stochastic depth per sample."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout: float = 0.0
    drop_path: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        drop_path = nn.Dropout(self.drop_path, broadcast_dims=(1, 2), deterministic=not train)
        y = Attention(self.num_heads, self.attention_dropout, self.dropout_rate, self.dtype, name='attn')(
            layer_norm(self.dtype, 'norm1')(x), train
        )
        x = x + drop_path(y)
        y = Mlp(self.mlp_dim, self.dropout_rate, self.dtype, name='mlp')(layer_norm(self.dtype, 'norm2')(x), train)
        return x + drop_path(y)


class VisionTransformer(nn.Module):
    """ViT with a class token. Returns `(logits, features)`.

    features: `tokens` (all tokens after the final norm, class token first), `block{i}` (tokens after block i),
    `pre_logits` (class token). With `num_classes == 0` the first output is `pre_logits`.
    """

    num_classes: int = 1000
    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    dropout_rate: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0  # linearly increasing over depth, as timm
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(
            self.width,
            (self.patch_size,) * 2,
            strides=(self.patch_size,) * 2,
            padding='VALID',
            dtype=self.dtype,
            param_dtype=jnp.float32,
            name='patch_embed',
        )(x.astype(self.dtype))
        batch, grid_h, grid_w, _ = x.shape
        x = x.reshape(batch, grid_h * grid_w, self.width)
        cls_token = self.param('cls_token', nn.initializers.normal(1e-6), (1, 1, self.width), jnp.float32)
        grid = self.image_size // self.patch_size
        pos_embed = self.param(
            'pos_embed', nn.initializers.truncated_normal(0.02), (1, 1 + grid * grid, self.width), jnp.float32
        )
        x = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.width)).astype(self.dtype), x], axis=1)
        x = x + resample_position_embedding(pos_embed, (grid_h, grid_w)).astype(self.dtype)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        features = {}
        for i in range(self.depth):
            drop_path = self.drop_path_rate * i / max(self.depth - 1, 1)
            x = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                self.dropout_rate,
                self.attention_dropout,
                drop_path,
                self.dtype,
                name=f'block{i}',
            )(x, train)
            features[f'block{i}'] = x
        x = features['tokens'] = layer_norm(self.dtype, 'norm')(x)
        x = features['pre_logits'] = x[:, 0]
        if self.num_classes:
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            x = dense(self.num_classes, dtype=self.dtype, name='head')(x)
        return x.astype(jnp.float32), features


def vit_base_patch16(**kwargs) -> VisionTransformer:
    return VisionTransformer(**kwargs)
