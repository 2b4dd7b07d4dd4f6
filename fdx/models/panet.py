"""RECCE (Cao et al., CVPR 2022) and PANet (Guo et al.): reconstruction-classification learning with progressive attention.

RECCE, as its official code builds it (reference notes): the Xception encoder (conv1 … block4) feeds a reconstruction
decoder (→ 152x152 at 299, resized to the input) and the classification path block5-7; multi-scale graph reasoning
fuses the block7 map with two decoder scales; block8; reconstruction-guided attention; block9-12, conv3-4, pooling,
dropout and a binary `head`. Layer names are timm's, so a converted ImageNet Xception initialises the trunk as is.

PANet (Sec. III) inserts EMAM (`EfficientMultiScaleAttention`, coarse) and SCAM (`CBAM`, fine) progressively. The paper
does not say where; the sites are options (`ema_after`, `scam_after`: any of `SITES`) and the default places EMAM on the
encoder output (the common features of eq. 1, read by both branches) and SCAM after the reconstruction-guided
attention, before the rest of the middle and the exit flow. With both sites empty the model is RECCE.
`scam_spatial_batch_norm` adds the official CBAM code's BN to SCAM's spatial gate (PANet has no public code; off).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdx.models.attention import CBAM, EfficientMultiScaleAttention
from fdx.models.layers import batch_norm, conv, dense, resize_bilinear_align_corners
from fdx.models.xception import Block, SeparableConv, apply_layer, scaled

ENCODER = ('conv1', 'conv2', 'block1', 'block2', 'block3', 'block4')
# Where PANet's attention modules may sit: after these stages of the classification path (block4 = encoder output).
SITES = (
    'block4',
    'block5',
    'block6',
    'block7',
    'graph_reasoning',
    'block8',
    'guided_attention',
    'block9',
    'block10',
    'block11',
    'block12',
    'conv4',
)


class DecoderUp(nn.Module):
    """RECCE decoder stage: nearest ×2 upsampling, SeparableConv 3x3, BN, ReLU."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)
        x = SeparableConv(self.features, dtype=self.dtype, name='sepconv')(x)
        return batch_norm(train, self.dtype, name='bn', relu=True)(x)


class GraphReasoning(nn.Module):
    """RECCE's multi-scale graph reasoning: the block7 map (vertices a) aggregates the decoder maps at 2× (b) and 4×
    (c) resolution patch by patch.

    Per position of a: each of the r×r patch vectors of b (c) is embedded by a 2-layer linear map, scored by
    softmax_patches(ReLU(Linear([emb_a; emb_patch]))), summed with these weights and gated by 1 − σ(1x1(a)); then
    1x1 → ReLU → 1x1 → dropout maps σ([agg_b; agg_c; emb_a]) back to a's channels.
    """

    embed: int = 256
    dropout_rate: float = 0.2
    dtype: Any = jnp.float32

    def _patches(self, x, ratio):
        """[B, rh, rw, C] -> [B, h, w, r·r, C], patch elements in row-major order (torch's Unfold)."""
        b, height, width, c = x.shape
        x = x.reshape(b, height // ratio, ratio, width // ratio, ratio, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, height // ratio, width // ratio, ratio * ratio, c)

    def _aggregate(self, emb_a, gate, vertices, name):
        def linear(n, f):
            return nn.Dense(f, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32, name=f'{name}_{n}')

        emb = linear('embed2', self.embed)(nn.relu(linear('embed1', self.embed)(vertices)))  # [B, h, w, r², E]
        pair = jnp.concatenate([jnp.broadcast_to(emb_a[..., None, :], emb.shape), emb], axis=-1)
        weights = jax.nn.softmax(nn.relu(linear('score', 1)(pair)), axis=-2)  # over the r² patch elements
        return (weights * emb).sum(axis=-2) * gate

    @nn.compact
    def __call__(self, vert_a, vert_b, vert_c, train: bool = False):
        def a_conv(n, f):
            return conv(f, 1, dtype=self.dtype, name=n)

        emb_a = a_conv('a_embed2', self.embed)(nn.relu(a_conv('a_embed1', self.embed)(vert_a)))
        gate_b = 1 - nn.sigmoid(a_conv('b_gate', self.embed)(vert_a))
        gate_c = 1 - nn.sigmoid(a_conv('c_gate', self.embed)(vert_a))
        height = vert_a.shape[-3]
        agg_b = self._aggregate(emb_a, gate_b, self._patches(vert_b, vert_b.shape[-3] // height), 'b')
        agg_c = self._aggregate(emb_a, gate_c, self._patches(vert_c, vert_c.shape[-3] // height), 'c')
        out = nn.sigmoid(jnp.concatenate([agg_b, agg_c, emb_a], axis=-1))
        channels = vert_a.shape[-1]
        out = a_conv('reproject2', channels)(nn.relu(a_conv('reproject1', channels)(out)))
        return nn.Dropout(self.dropout_rate, deterministic=not train)(out)


class GuidedAttention(nn.Module):
    """RECCE's reconstruction-guided attention: gate = σ(1x1(ReLU(3x3(|x − x̂|)))) at the feature map's size;
    out = gate · ReLU(BN(1x1(f))) + dropout(f)."""

    dropout_rate: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, reconstruction, features, train: bool = False):
        residual = resize_bilinear_align_corners(jnp.abs(images - reconstruction), features.shape[-3:-1])
        gate = conv(3, 3, padding=1, dtype=self.dtype, name='gate_conv3x3')(residual.astype(self.dtype))
        gate = nn.sigmoid(conv(1, 1, dtype=self.dtype, name='gate_conv1x1')(nn.relu(gate)))
        h = conv(features.shape[-1], 1, dtype=self.dtype, name='conv')(features)
        h = batch_norm(train, self.dtype, name='bn', relu=True)(h)
        return gate * h + nn.Dropout(self.dropout_rate, deterministic=not train)(features)


class Recce(nn.Module):
    """RECCE, or PANet when `ema_after` / `scam_after` name sites. Returns `(logits, features)`; `features` holds
    `reconstruction` (the decoder's image at the input size, float32), the metric-loss maps `block4`, `decoder2`,
    `decoder4`, and `pre_logits`.

    Training-time input noise (RECCE's white noise, PANet eq. 1): N(0, noise_std²) added to a random `noise_fraction`
    of the batch, clipped to [-1, 1]; it needs the `noise` rng when noise_std > 0. The decoder reconstructs, and the
    guided attention compares against, the clean input.
    """

    num_classes: int = 1
    width: float = 1.0
    dropout_rate: float = 0.2
    noise_std: float = 0.0
    noise_fraction: float = 0.5
    ema_after: str = ''
    scam_after: str = ''
    ema_groups: int = 8
    scam_reduction: int = 16
    scam_spatial_batch_norm: bool = False
    dtype: Any = jnp.float32

    def _attend(self, site: str, x, train: bool):
        for kind, where in (('ema', self.ema_after), ('scam', self.scam_after)):
            if where and where not in SITES:
                raise ValueError(f'{kind}_after: unknown site {where!r}; choose from {", ".join(SITES)} or empty')
            if where == site:
                if kind == 'ema':
                    x = EfficientMultiScaleAttention(self.ema_groups, dtype=self.dtype, name='ema')(x)
                else:
                    scam = CBAM(
                        self.scam_reduction,
                        dtype=self.dtype,
                        spatial_batch_norm=self.scam_spatial_batch_norm,
                        name='scam',
                    )
                    x = scam(x, train)
        return x

    @nn.compact
    def __call__(self, images, train: bool = False):
        images = images.astype(jnp.float32)
        x = images
        if train and self.noise_std > 0:
            key_select, key_noise = jax.random.split(self.make_rng('noise'))
            selected = jax.random.bernoulli(key_select, self.noise_fraction, (x.shape[0], 1, 1, 1))
            x = jnp.clip(x + self.noise_std * jax.random.normal(key_noise, x.shape) * selected, -1.0, 1.0)
        x = x.astype(self.dtype)

        def layer(name, y):
            return apply_layer(name, y, train, self.width, self.dtype)

        for name in ENCODER:
            x = layer(name, x)
        embedding = self._attend('block4', x, train)
        features = {'block4': embedding}

        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)

        def width(channels):
            return scaled(channels, self.width)

        out = DecoderUp(width(256), self.dtype, name='decoder1')(dropout(embedding), train)
        out_d2 = features['decoder2'] = Block(width(256), 3, dtype=self.dtype, name='decoder2')(out, train)
        out = DecoderUp(width(128), self.dtype, name='decoder3')(out_d2, train)
        out_d4 = features['decoder4'] = Block(width(128), 3, dtype=self.dtype, name='decoder4')(out, train)
        out = DecoderUp(width(64), self.dtype, name='decoder5')(out_d4, train)
        out = jnp.tanh(conv(3, 1, dtype=self.dtype, name='decoder6')(out)).astype(jnp.float32)
        reconstruction = features['reconstruction'] = resize_bilinear_align_corners(out, images.shape[-3:-1])

        x = embedding
        for name in ('block5', 'block6', 'block7'):
            x = self._attend(name, layer(name, x), train)
        fused = GraphReasoning(width(256), self.dropout_rate, self.dtype, name='graph_reasoning')(
            x, out_d2, out_d4, train
        )
        x = self._attend('graph_reasoning', fused + x, train)
        x = self._attend('block8', layer('block8', x), train)
        x = GuidedAttention(self.dropout_rate, self.dtype, name='guided_attention')(images, reconstruction, x, train)
        x = self._attend('guided_attention', x, train)
        for name in ('block9', 'block10', 'block11', 'block12', 'conv3', 'conv4'):
            x = self._attend(name, layer(name, x), train)
        x = features['pre_logits'] = x.mean(axis=(-3, -2))
        logits = dense(self.num_classes, dtype=self.dtype, name='head')(dropout(x))
        return logits.astype(jnp.float32), features
