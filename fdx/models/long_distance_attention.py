"""Spatial-temporal long-distance attention (Lu et al., TNNLS 2023): Xception guided by patch attention maps.

`LongDistanceAttention` (Sec. IV-B, Fig. 5) cuts a 224x224 image into 16x16 patches (N = 196), embeds each patch
linearly (D = 768) and adds a learned position embedding, both in the layout of timm's `vit_base_patch16_224` so that
`config.init` loads them from a converted ImageNet ViT. Each of `heads` = 12 attention modules h maps every patch
feature z_n to a representation x_n = U_h z_n of its latent forgery space and consults it with the global forgery
template t_h, giving one activation per patch, i.e. 12 maps of 14x14; a 1x1 convolution combines them into m maps
(m = 4, Table IX).

The paper leaves open (fdx's choices, each an attribute):
    head_dim = 5           U_h: D → 5, the width that reproduces Table VII's spatial parameter delta (patch embedding
                           590,592 + position embedding 151,296 + 12 U_h 46,080 + t_h 60 + 1x1 52 = 0.79 M;
                           64 would give 1.33 M)
    score = 'dot'          s_hn = x_n·t_h / √5 (scaled dot product) | 'additive': t_h·tanh(U_h z_n + b_h), the
                           context-vector attention of hierarchical attention networks
    normalise = 'softmax'  softmax over the patches, times N (a map of mean 1, so an untrained module leaves the
                           features as they are) | 'sigmoid': σ(s_hn) per patch
    template_std = 0       t_h starts at zero, so every map starts uniform and the untrained model is its Xception
                           (with `normalise='softmax'`); > 0: normal with this std
    combine init           the 1x1 convolution starts as the mean of the 12 maps (weights 1/12, bias 0)

Spatial model (Sec. IV-C): the maps of the 224 frame multiply a shallow Xception feature map (default after conv2,
196x196 at 398 = 14x the patch grid). Temporal model (Sec. IV-D, Fig. 6): the frame and its n motion residuals
r_t = I_{t+1} − I_t form one token sequence, each image with its own patch embedding (the frame's is the ViT one)
plus a learned time embedding (`tokens='sequence'`; or `'stacked'`: the images as channels of one image, one patch
embedding); the softmax runs over all (1 + n)·N tokens and a patch's activation is the sum over its 1 + n tokens
(ours; with 'sigmoid' the mean). Its maps multiply a mid-level map (default after block3, 25x25 at 398).

Maps reach a feature map by `projection_matrix` (patch grid → feature grid): 'adaptive_pool' (default) repeats each
patch k = ⌈size / grid⌉ times ("patch-form" nearest upsampling, exact when size is a multiple of the grid: 14 → 196)
and average-pools adaptively to the size (14 → 28 → 25 for block3; Table XI's adaptive pooling for other inputs),
'patch' allows exact multiples only, 'bilinear' interpolates. The m maps multiply m contiguous groups of channels
(`map_channels='groups'`, ours: channel c gets map ⌊c·m / C⌋) or their mean multiplies every channel ('mean').
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fdx.models.layers import dense
from fdx.models.vit import resample_position_embedding
from fdx.models.xception import LAYERS, apply_layer

SCORES = ('dot', 'additive')
NORMALISATIONS = ('softmax', 'sigmoid')
TOKENS = ('sequence', 'stacked')
RESIZES = ('adaptive_pool', 'patch', 'bilinear')
MAP_CHANNELS = ('groups', 'mean')


def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in]: adaptive average pooling along one axis (PyTorch's bins ⌊i·in/out⌋ … ⌈(i+1)·in/out⌉)."""
    matrix = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start, stop = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def projection_matrix(grid: int, size: int, mode: str = 'adaptive_pool') -> np.ndarray:
    """[size, grid]: how a patch-grid axis of `grid` cells reaches a feature-map axis of `size` pixels."""
    if mode not in RESIZES:
        raise ValueError(f'model.resize: unknown {mode!r}; choose from {", ".join(RESIZES)}')
    if mode == 'bilinear':
        return np.asarray(jax.image.resize(np.eye(grid, dtype=np.float32), (size, grid), 'linear', antialias=False))
    if mode == 'patch' and size % grid:
        raise ValueError(
            f"model.resize='patch': a {grid}x{grid} patch grid does not divide a {size}x{size} feature map; "
            "use 'adaptive_pool' or 'bilinear'"
        )
    repeats = math.ceil(size / grid)
    repeat = np.repeat(np.eye(grid, dtype=np.float32), repeats, axis=0)  # [grid·k, grid]
    return adaptive_pool_matrix(grid * repeats, size) @ repeat


def project_maps(maps: jax.Array, size: tuple[int, int], mode: str = 'adaptive_pool') -> jax.Array:
    """Maps [B, g, g, m] → [B, H, W, m] on a feature map's grid."""
    rows = jnp.asarray(projection_matrix(maps.shape[1], size[0], mode), maps.dtype)
    cols = jnp.asarray(projection_matrix(maps.shape[2], size[1], mode), maps.dtype)
    return jnp.einsum('ih,bhwm,jw->bijm', rows, maps, cols)


def apply_maps(features: jax.Array, maps: jax.Array, resize: str, map_channels: str) -> jax.Array:
    """Features [B, H, W, C] multiplied element-wise by the m maps brought to (H, W) (Sec. IV-C, IV-D)."""
    maps = project_maps(maps.astype(features.dtype), features.shape[1:3], resize)
    channels, count = features.shape[-1], maps.shape[-1]
    if map_channels == 'mean':
        return features * maps.mean(axis=-1, keepdims=True)
    if count > channels:
        raise ValueError(f'model.num_maps: {count} maps cannot share {channels} channels')
    groups = (np.arange(channels) * count) // channels  # channel c → map ⌊c·m / C⌋
    return features * maps[..., groups]


class LongDistanceAttention(nn.Module):
    """Images [B, T, S, S, 3] (T = 1: spatial; 1 + n: frame and residuals) → (maps [B, g, g, m], head maps
    [B, g, g, heads]) with g = S / patch_size. See the module docstring for the choices."""

    patch_size: int = 16
    embed_dim: int = 768
    heads: int = 12
    head_dim: int = 5
    num_maps: int = 4
    score: str = 'dot'
    normalise: str = 'softmax'
    tokens: str = 'sequence'
    image_size: int = 224  # the position embedding's stored grid (resampled for other inputs)
    template_std: float = 0.0  # t_h's initial normal std; 0: zeros
    dtype: Any = jnp.float32

    def _patch_embed(self, images: jax.Array, name: str) -> jax.Array:
        """[B, S, S, C] → [B, N, D]; a ViT `patch_embed` (a conv of patch-size stride)."""
        p = self.patch_size
        x = nn.Conv(self.embed_dim, (p, p), (p, p), 'VALID', dtype=self.dtype, param_dtype=jnp.float32, name=name)(
            images.astype(self.dtype)
        )
        return x.reshape(x.shape[0], -1, self.embed_dim)

    @nn.compact
    def __call__(self, images: jax.Array):
        for name, value, choices in (
            ('score', self.score, SCORES),
            ('normalise', self.normalise, NORMALISATIONS),
            ('tokens', self.tokens, TOKENS),
        ):
            if value not in choices:
                raise ValueError(f'model.attention.{name}: unknown {value!r}; choose from {", ".join(choices)}')
        batch, steps, size = images.shape[0], images.shape[1], images.shape[2]
        if size % self.patch_size:
            raise ValueError(f'attention input {size}x{size} is not a multiple of patch_size {self.patch_size}')
        grid = size // self.patch_size
        if self.tokens == 'stacked':
            stacked = jnp.moveaxis(images, 1, -2).reshape(batch, size, size, steps * images.shape[-1])
            z = self._patch_embed(stacked, 'patch_embed')[:, None]  # [B, 1, N, D]
        else:  # the frame keeps the ViT's patch embedding, each residual has its own
            z = jnp.stack(
                [
                    self._patch_embed(images[:, t], 'patch_embed' if t == 0 else f'residual_embed{t}')
                    for t in range(steps)
                ],
                axis=1,
            )
        stored = self.image_size // self.patch_size
        # timm's layout [1, 1 + N, D]: the class-token row is kept (unused) so that a ViT checkpoint loads as is
        pos_embed = self.param(
            'pos_embed', nn.initializers.truncated_normal(0.02), (1, 1 + stored * stored, self.embed_dim), jnp.float32
        )
        z = z + resample_position_embedding(pos_embed, (grid, grid))[:, None, 1:].astype(self.dtype)
        if z.shape[1] > 1:
            time_embed = self.param(
                'time_embed', nn.initializers.truncated_normal(0.02), (1, z.shape[1], 1, self.embed_dim), jnp.float32
            )
            z = z + time_embed.astype(self.dtype)
        transform = self.param(
            'transform', nn.initializers.lecun_normal(), (self.heads, self.embed_dim, self.head_dim), jnp.float32
        )
        template_init = nn.initializers.normal(self.template_std) if self.template_std else nn.initializers.zeros
        template = self.param('template', template_init, (self.heads, self.head_dim), jnp.float32)
        x = jnp.einsum('btnd,hde->bhtne', z, transform.astype(self.dtype))  # representations x_n = U_h z_n
        if self.score == 'additive':
            bias = self.param('transform_bias', nn.initializers.zeros, (self.heads, 1, 1, self.head_dim), jnp.float32)
            x = jnp.tanh(x + bias.astype(self.dtype))
            scores = jnp.einsum('bhtne,he->bhtn', x, template.astype(self.dtype))
        else:
            scores = jnp.einsum('bhtne,he->bhtn', x, template.astype(self.dtype)) * self.head_dim**-0.5
        scores = scores.astype(jnp.float32)
        tokens = scores.shape[2] * scores.shape[3]
        if self.normalise == 'softmax':
            weights = jax.nn.softmax(scores.reshape(batch, self.heads, tokens), axis=-1).reshape(scores.shape)
            activation = weights.sum(axis=2) * (grid * grid)  # per patch, mean 1 over the patches
        else:
            activation = jax.nn.sigmoid(scores).mean(axis=2)
        head_maps = activation.reshape(batch, self.heads, grid, grid).transpose(0, 2, 3, 1)
        maps = nn.Conv(
            self.num_maps,
            (1, 1),
            kernel_init=nn.initializers.constant(1.0 / self.heads),
            param_dtype=jnp.float32,
            name='combine',
        )(head_maps)
        return maps, head_maps


class LongDistanceXception(nn.Module):
    """Xception (timm layer names) with the spatial and/or temporal attention maps multiplied in; GAP → fc (Sec.
    IV-A). Returns `(logits, features)`; features hold every Xception layer, `pre_logits`, and `spatial_maps`,
    `temporal_maps` ([B, g, g, m]) of the components that run. With neither component it is Xception itself."""

    num_classes: int = 1
    spatial: bool = True
    temporal: bool = True
    spatial_site: str = 'conv2'
    temporal_site: str = 'block3'
    resize: str = 'adaptive_pool'
    map_channels: str = 'groups'
    attention: dict = None  # LongDistanceAttention fields
    width: float = 1.0
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, image_small=None, residuals=None, train: bool = False):
        for key, value in (('spatial_site', self.spatial_site), ('temporal_site', self.temporal_site)):
            if value not in LAYERS[:-1]:
                raise ValueError(f'model.{key}: Xception has no layer {value!r}; layers are {", ".join(LAYERS[:-1])}')
        if self.map_channels not in MAP_CHANNELS:
            raise ValueError(f'model.map_channels: unknown {self.map_channels!r}; choose from {MAP_CHANNELS}')
        attention = dict(self.attention or {})
        features, maps = {}, {}
        if self.spatial:
            maps[self.spatial_site] = features['spatial_maps'] = LongDistanceAttention(
                **attention, dtype=self.dtype, name='spatial_attention'
            )(image_small[:, None])[0]
        if self.temporal:
            sequence = jnp.concatenate([image_small[:, None], residuals.astype(image_small.dtype)], axis=1)
            temporal_maps = LongDistanceAttention(**attention, dtype=self.dtype, name='temporal_attention')(sequence)[0]
            features['temporal_maps'] = temporal_maps
            if self.temporal_site in maps:  # both at one site: both products
                maps[self.temporal_site] = maps[self.temporal_site] * temporal_maps
            else:
                maps[self.temporal_site] = temporal_maps
        x = image.astype(self.dtype)
        for name in LAYERS[:-1]:
            x = apply_layer(name, x, train, self.width, self.dtype)
            if name in maps:
                x = apply_maps(x, maps[name], self.resize, self.map_channels)
            features[name] = x
        x = features['pre_logits'] = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = dense(self.num_classes, dtype=self.dtype, name='head')(x)
        return x.astype(jnp.float32), features
