"""PANet (Guo et al.) and RECCE (Cao et al., CVPR 2022): binary detection with reconstruction and metric learning.

L = λ1·L_r + λ2·L_m + L_cls (PANet eq. 12): L_r is the L1 reconstruction error over the real samples only (eq. 9),
L_m the metric loss over the cosine distances of eq. 11 (real-real pairs pulled together, real-fake pairs pushed
apart, eq. 10) and L_cls the binary cross-entropy. Labels: 0 = real, 1 = fake.

Where the paper is silent, the defaults are RECCE's code (reference notes): λ1 = λ2 = 0.1; ‖·‖₁ in eq. 9 is averaged
over pixels (RECCE's `l1_loss`); the embeddings F of eq. 10 are the globally pooled encoder (block4) features; a pair
(i, i) is not a pair. RECCE's code variants are options: `loss.flooding` (b = 0.04: |L_cls − b| + b),
`loss.metric_features` (its three scales block4, decoder2, decoder4, summed) and `loss.metric_form='hinge'`
(max(0, 1 + d_RR − d_RF), i.e. its max(0, 1 − s_RR + s_RF) with similarity s = 1 − d).
"""

import jax
import jax.numpy as jnp
import optax

from fdx.methods.base import LossOutput, Method
from fdx.models.attention import ema_groups_error
from fdx.models.panet import SITES, Recce
from fdx.models.xception import scaled

METRIC_FEATURES = ('block4', 'decoder2', 'decoder4')
METRIC_FORMS = ('difference', 'hinge')


def reconstruction_loss(reconstruction: jax.Array, images: jax.Array, is_real: jax.Array) -> jax.Array:
    """Eq. 9: mean over the real samples of their mean absolute pixel error; fakes contribute nothing (0 if none)."""
    per_example = jnp.abs(reconstruction - images).mean(axis=tuple(range(1, images.ndim)))
    return jnp.sum(per_example * is_real) / jnp.maximum(is_real.sum(), 1)


def cosine_distances(embeddings: jax.Array) -> jax.Array:
    """Eq. 11 for every pair: (1 − a·b / (‖a‖‖b‖)) / 2, in [0, 1]."""
    unit = embeddings / jnp.maximum(jnp.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
    return (1 - unit @ unit.T) / 2


def metric_loss(embeddings: jax.Array, is_real: jax.Array, form: str = 'difference') -> jax.Array:
    """Eq. 10: mean distance over real-real pairs (i ≠ j) minus mean distance over real-fake pairs; `hinge` is
    RECCE's max(0, 1 + d_RR − d_RF). A batch without such pairs contributes 0 for the missing mean."""
    distances = cosine_distances(embeddings.astype(jnp.float32))
    real = is_real.astype(jnp.float32)
    real_real = real[:, None] * real[None, :] * (1 - jnp.eye(len(real)))
    real_fake = real[:, None] * (1 - real)[None, :]

    def mean(mask):
        count = mask.sum()
        return jnp.where(count > 0, (distances * mask).sum() / jnp.maximum(count, 1), 0.0)

    difference = mean(real_real) - mean(real_fake)
    return jnp.maximum(0.0, 1 + difference) if form == 'hinge' else difference


def site_channels(site: str, width: float) -> int:
    """Channels of the feature map after a PANet attention site."""
    return scaled({'block12': 1024, 'conv4': 2048}.get(site, 728), width)


class Panet(Method):
    """config.model: `backbone` ('xception'), `backbone_kwargs` (`width`), `dropout_rate`, `noise_std`,
    `noise_fraction`, `ema_after`, `scam_after` (sites of `fdx.models.panet.SITES`; both empty = RECCE),
    `ema_groups`, `scam_reduction`, `scam_spatial_batch_norm` (the CBAM code's BN in SCAM's spatial gate), `dtype`.
    config.loss: `reconstruction_weight` (λ1), `metric_weight` (λ2), `metric_features`, `metric_form`, `flooding`.
    Batches: `image` [B, H, W, 3] in [-1, 1], `label` (1 = fake)."""

    rng_streams = ('dropout', 'noise')
    maps = {'reconstruction': 'image'}

    def __init__(self, config):
        super().__init__(config)
        model, loss = config.model, config.loss
        if model.backbone != 'xception':
            raise ValueError(f"config.model.backbone: PANet/RECCE use 'xception', got {model.backbone!r}")
        width = dict(model.backbone_kwargs).get('width', 1.0)
        for key in ('ema_after', 'scam_after'):
            if model[key] and model[key] not in SITES:
                raise ValueError(f'config.model.{key}: unknown site {model[key]!r}; choose from {", ".join(SITES)}')
        if model.ema_after:
            error = ema_groups_error(site_channels(model.ema_after, width), model.ema_groups)
            if error:
                raise ValueError(f'config.model.ema_groups (EMAM after {model.ema_after}): {error}')
        unknown = set(loss.metric_features) - set(METRIC_FEATURES)
        if unknown or not loss.metric_features:
            raise ValueError(
                f'config.loss.metric_features: {tuple(loss.metric_features)}; choose from {METRIC_FEATURES}'
            )
        if loss.metric_form not in METRIC_FORMS:
            raise ValueError(f'config.loss.metric_form: unknown {loss.metric_form!r}; choose from {METRIC_FORMS}')
        self.model = Recce(
            num_classes=1,
            width=width,
            dropout_rate=model.dropout_rate,
            noise_std=model.noise_std,
            noise_fraction=model.noise_fraction,
            ema_after=model.ema_after,
            scam_after=model.scam_after,
            ema_groups=model.ema_groups,
            scam_reduction=model.scam_reduction,
            scam_spatial_batch_norm=model.scam_spatial_batch_norm,
            dtype=jnp.dtype(model.dtype),
        )

    def init(self, rng, batch):
        return self.model.init({'params': rng, 'dropout': rng, 'noise': rng}, batch['image'][:1], False)

    def losses(self, variables, batch, rngs, step, critic_params=None):
        loss_config = self.config.loss
        images, labels = batch['image'], batch['label']
        (logits, features), state = self.model.apply(variables, images, True, rngs=rngs, mutable=['batch_stats'])
        is_real = (labels == 0).astype(jnp.float32)
        classification = optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(jnp.float32)).mean()
        if loss_config.flooding > 0:
            classification = jnp.abs(classification - loss_config.flooding) + loss_config.flooding
        reconstruction = reconstruction_loss(features['reconstruction'], images, is_real)
        metric = sum(
            metric_loss(features[name].mean(axis=(1, 2)), is_real, loss_config.metric_form)
            for name in loss_config.metric_features
        )
        terms = {
            'cls': classification,
            'reconstruction': loss_config.reconstruction_weight * reconstruction,
            'metric': loss_config.metric_weight * metric,
        }
        aux = {'accuracy': ((logits[:, 0] > 0) == (labels == 1)).mean(), 'l1_real': reconstruction, 'l_m': metric}
        return LossOutput(terms, state, aux)

    def predict(self, variables, batch):
        """`score` and the `reconstruction` of the input (same normalisation; drawn by `fdx eval --save-maps`)."""
        logits, features = self.model.apply(variables, batch['image'], False)
        return {'score': jax.nn.sigmoid(logits[:, 0]), 'reconstruction': features['reconstruction']}
