"""A backbone classifier: the single-frame baselines of the papers (Xception, ResNet-50, ViT), and score fusion.

Binary tasks use one logit with sigmoid cross-entropy (`score` = P(fake)); attribution tasks use K logits with softmax
cross-entropy. Clips `[B, T, H, W, 3]` are classified frame by frame and fused by averaging the frame logits (the
"score fusion" rows of DMA-STA's Tables 3 and 4).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from fdx.methods.base import LossOutput, Method
from fdx.models.resnet import ResNet
from fdx.models.vit import VisionTransformer
from fdx.models.xception import Xception

BACKBONES = {'xception': Xception, 'resnet': ResNet, 'vit': VisionTransformer}


class Classifier(Method):
    """config.model: `backbone` (xception | resnet | vit), `backbone_kwargs`, `dtype`, `remat`, `dropout_rate`;
    config.data.class_names (two names → binary)."""

    def __init__(self, config):
        super().__init__(config)
        self.class_names = tuple(config.data.class_names)
        self.task = 'binary' if len(self.class_names) == 2 else 'multiclass'
        model = config.model
        if model.backbone not in BACKBONES:
            raise ValueError(f'config.model.backbone: unknown {model.backbone!r}; choose from {", ".join(BACKBONES)}')
        backbone = (
            nn.remat(BACKBONES[model.backbone], static_argnums=(2,)) if model.remat else BACKBONES[model.backbone]
        )
        self.model = backbone(
            num_classes=1 if self.task == 'binary' else len(self.class_names),
            dropout_rate=model.dropout_rate,
            dtype=jnp.dtype(model.dtype),
            **dict(model.backbone_kwargs),
        )

    def _logits(self, variables, images, train, rngs=None):
        """Per-example logits (frame logits averaged over a clip's T frames) and updated batch statistics."""
        frames = images.reshape(-1, *images.shape[-3:])
        if train:
            (logits, _), state = self.model.apply(variables, frames, True, rngs=rngs, mutable=['batch_stats'])
        else:
            (logits, _), state = self.model.apply(variables, frames, False), {}
        logits = logits.reshape(*images.shape[: images.ndim - 3], -1)
        if images.ndim == 5:
            logits = logits.mean(axis=1)
        return logits, state

    def init(self, rng, batch):
        frames = batch['image'].reshape(-1, *batch['image'].shape[-3:])
        return self.model.init({'params': rng, 'dropout': rng}, frames[:1], False)

    def losses(self, variables, batch, rngs, step, critic_params=None):
        logits, state = self._logits(variables, batch['image'], True, rngs)
        labels = batch['label']
        if self.task == 'binary':
            loss = optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(jnp.float32)).mean()
            accuracy = ((logits[:, 0] > 0) == (labels == 1)).mean()
        else:
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            accuracy = (logits.argmax(-1) == labels).mean()
        return LossOutput({'cls': loss}, state, {'accuracy': accuracy})

    def predict(self, variables, batch):
        logits, _ = self._logits(variables, batch['image'], False)
        if self.task == 'binary':
            return {'score': jax.nn.sigmoid(logits[:, 0])}
        return {'probs': jax.nn.softmax(logits, axis=-1)}
