"""Spatial-temporal long-distance attention (Lu et al., TNNLS 2023): binary detection, cross-entropy (Sec. IV-A).

The model is `fdx.models.long_distance_attention.LongDistanceXception`; its inputs come from the `residual` view
(`fdx.input.views.ResidualView`): `image` (the backbone's 398 frame), `image_small` (the 224 frame of the attention
components) and `residuals` (n motion residuals r_t = I_{t+1} − I_t). The variants of Table VIII are the components
that run: `xception` (none: the same backbone, data and optimiser without attention), `spatial`, `temporal`,
`spatial_temporal`. The head has one logit with sigmoid cross-entropy (two-class softmax cross-entropy in another
parametrisation), as fdx's Xception baseline. `fdx eval --save-maps` draws the spatial and temporal maps (the mean
of the m maps, scaled to a maximum of 1 per example: Figs. 10–11).
"""

import jax
import jax.numpy as jnp
import optax

from fdx.methods.base import LossOutput, Method
from fdx.models.long_distance_attention import LongDistanceXception

VARIANTS = {
    'xception': (False, False),
    'spatial': (True, False),
    'temporal': (False, True),
    'spatial_temporal': (True, True),
}


def display_maps(maps: jax.Array) -> jax.Array:
    """[B, g, g, m] → [B, g, g] in [0, 1]: the mean map divided by its maximum."""
    mean = maps.mean(axis=-1)
    return mean / jnp.maximum(mean.max(axis=(1, 2), keepdims=True), 1e-12)


class LongDistanceAttention(Method):
    """config.model: `variant` (VARIANTS), `spatial_site`, `temporal_site`, `resize`, `map_channels`, `attention`
    (LongDistanceAttention fields: patch_size, embed_dim, heads, head_dim, num_maps, score, normalise, tokens,
    image_size), `backbone_kwargs` (`width`), `dropout_rate`, `dtype`. Batches from the `residual` view, `label`
    (1 = fake)."""

    def __init__(self, config):
        super().__init__(config)
        model = config.model
        if model.variant not in VARIANTS:
            raise ValueError(f'config.model.variant: unknown {model.variant!r}; choose from {", ".join(VARIANTS)}')
        if len(config.data.class_names) != 2:
            raise ValueError(f'config.data.class_names: a binary detector, got {tuple(config.data.class_names)}')
        self.spatial, self.temporal = VARIANTS[model.variant]
        self.maps = {
            **({'spatial_attention': 'heat'} if self.spatial else {}),
            **({'temporal_attention': 'heat'} if self.temporal else {}),
        }
        self.model = LongDistanceXception(
            num_classes=1,
            spatial=self.spatial,
            temporal=self.temporal,
            spatial_site=model.spatial_site,
            temporal_site=model.temporal_site,
            resize=model.resize,
            map_channels=model.map_channels,
            attention=model.attention.to_dict(),
            width=dict(model.backbone_kwargs).get('width', 1.0),
            dropout_rate=model.dropout_rate,
            dtype=jnp.dtype(model.dtype),
        )

    def _inputs(self, batch, count=None):
        keys = ('image', 'image_small', 'residuals')
        return tuple(batch[k][:count] if k in batch else None for k in keys)

    def init(self, rng, batch):
        return self.model.init({'params': rng, 'dropout': rng}, *self._inputs(batch, 1), False)

    def losses(self, variables, batch, rngs, step, critic_params=None):
        (logits, _), state = self.model.apply(variables, *self._inputs(batch), True, rngs=rngs, mutable=['batch_stats'])
        labels = batch['label']
        loss = optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(jnp.float32)).mean()
        accuracy = ((logits[:, 0] > 0) == (labels == 1)).mean()
        return LossOutput({'cls': loss}, state, {'accuracy': accuracy})

    def predict(self, variables, batch):
        logits, features = self.model.apply(variables, *self._inputs(batch), False)
        out = {'score': jax.nn.sigmoid(logits[:, 0])}
        for name, key in (('spatial_attention', 'spatial_maps'), ('temporal_attention', 'temporal_maps')):
            if key in features:
                out[name] = display_maps(features[key])
        return out
