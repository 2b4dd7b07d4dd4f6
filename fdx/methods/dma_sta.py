"""DMA-STA (Jia et al. 2022): deepfake model attribution from clips with spatial and temporal attention.

Multiclass over `config.data.class_names` (DFDM's generation models), trained with softmax cross-entropy (Sec. 3.2).
The ResNet-50 and Xception score-fusion baselines of Tables 3 and 4 are the `classifier` method on clips.
"""

import jax
import jax.numpy as jnp
import optax

from fdx.methods.base import LossOutput, Method
from fdx.models.dma_sta import DmaSta as DmaStaModel


class DmaSta(Method):
    """config.model: `backbone` ('resnet'), `backbone_kwargs` (stage_sizes, width), `backbone_attention`
    ('spatial' | 'cbam' | 'none'), `frame_fusion` ('temporal_attention' | 'average' | 'frame_attention'),
    `frame_batch_norm` ('clip' | 'per_frame'), `conv_init` ('lecun_normal' | 'he_normal_fan_out'),
    `cbam_spatial_batch_norm`, `dtype`, `remat` (see `fdx.models.dma_sta`). Batches: `image` [B, T, H, W, 3],
    `label` = the class index."""

    task = 'multiclass'
    rng_streams = ()

    def __init__(self, config):
        super().__init__(config)
        self.class_names = tuple(config.data.class_names)
        model = config.model
        if model.backbone != 'resnet':
            raise ValueError(f"config.model.backbone: DMA-STA uses 'resnet', got {model.backbone!r}")
        self.model = DmaStaModel(
            num_classes=len(self.class_names),
            frame_fusion=model.frame_fusion,
            backbone_attention=None if model.backbone_attention == 'none' else model.backbone_attention,
            remat=model.remat,
            dtype=jnp.dtype(model.dtype),
            frame_batch_norm=model.frame_batch_norm,
            conv_init=model.conv_init,
            cbam_spatial_batch_norm=model.cbam_spatial_batch_norm,
            **dict(model.backbone_kwargs),
        )

    def init(self, rng, batch):
        return self.model.init({'params': rng}, batch['image'][:1], False)

    def losses(self, variables, batch, rngs, step, critic_params=None):
        (logits, _), state = self.model.apply(variables, batch['image'], True, rngs=rngs, mutable=['batch_stats'])
        labels = batch['label']
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return LossOutput({'cls': loss}, state, {'accuracy': (logits.argmax(-1) == labels).mean()})

    def predict(self, variables, batch):
        logits, _ = self.model.apply(variables, batch['image'], False)
        return {'probs': jax.nn.softmax(logits, axis=-1)}
