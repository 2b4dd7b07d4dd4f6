"""DMA-STA (Jia et al., "Model attribution of face-swap deepfake videos", ICIP 2022): spatial and temporal attention.

Every frame of a clip goes through a ResNet-50 with a spatial attention map (SAM, eq. 1-2) in each bottleneck and
global average pooling (F_sa,i); a temporal attention map (TAM, eq. 3-4) weighs the frames and eq. 5 fuses them into
one video feature for a linear classifier over the generation models.

Frame fusions (the rows of Table 3):
- 'temporal_attention' (DMA-STA): as the official code, m = σ(W2 δ(W1 mean_c(F_sa))) with W1: T → T/2 and
  W2: T/2 → T, no biases (SE over frames); T/2 is max(T // 2, 1) so one-frame clips work.
- 'average' (SAM+Ave): the plain mean over frames. With a linear head this equals averaging the frame logits, i.e.
  the score fusion of the ResNet-50 and CBAM rows.
- 'frame_attention' (SAM+FA, ref. [37], Meng et al. 2019, FAN's self-attention): a weight α_i = σ(q·f_i + b) from each
  frame's own feature (Dense C → 1), fused as Σ α_i f_i / Σ α_i; as in FAN's official code (sigmoid weights
  normalised by their sum, not a softmax), without FAN's dropout and relation-attention stage, which DMA-STA
  does not mention.

Batch norm in training (`frame_batch_norm`; evaluation uses the running statistics either way):
- 'clip' (the paper is silent; fdx's default): the backbone sees the B·T frames of the batch as one BN batch, and each
  step updates the running statistics once;
- 'per_frame' (the official code, which loops over frame indices): the backbone runs once per frame index t on the B
  clips' frames t (`nn.scan` over frames: one traced backbone, parameters shared), so BN normalises each frame index
  over the B clips and the running statistics are updated T times in sequence, frame 1 first.

Convolution initialisation (`conv_init`, every convolution of the backbone and its SAM/CBAM): 'lecun_normal' (fdx's
default, flax's) or 'he_normal_fan_out' (the official code: N(0, 2 / (kh·kw·out_channels))); see
`fdx.models.layers.CONV_INITS`. `cbam_spatial_batch_norm`: the CBAM code's BN in CBAM's spatial gate (the 'cbam'
backbone attention only; DMA-STA's SAM never has one).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fdx.models.attention import CBAM, SpatialAttention
from fdx.models.layers import CONV_INITS, dense
from fdx.models.resnet import ResNet

BACKBONE_ATTENTIONS = {'spatial': SpatialAttention, 'cbam': CBAM}
FRAME_FUSIONS = ('temporal_attention', 'average', 'frame_attention')
FRAME_BATCH_NORMS = ('clip', 'per_frame')


def weighted_mean(features: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
    """Eq. 3 and 5: F_j = Σ_i m_i f_ij / Σ_i m_i over frames, for features [B, T, C] and weights [B, T]."""
    return (weights[..., None] * features).sum(1) / weights.sum(1)[..., None]


class TemporalAttention(nn.Module):
    """TAM, eq. 4: m = σ(f2(δ(f1(AvgPool(F_sa))))) with the average over channels, from [B, T, C] to [B, T]."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jnp.ndarray) -> jnp.ndarray:
        frames = features.shape[1]
        squeezed = features.mean(-1)
        hidden = nn.relu(dense(max(frames // 2, 1), use_bias=False, dtype=self.dtype, name='fc1')(squeezed))
        return nn.sigmoid(dense(frames, use_bias=False, dtype=self.dtype, name='fc2')(hidden))


class FrameAttention(nn.Module):
    """FAN's self-attention weights α_i = σ(q·f_i + b), from [B, T, C] to [B, T]."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features: jnp.ndarray) -> jnp.ndarray:
        return nn.sigmoid(dense(1, dtype=self.dtype, name='fc')(features))[..., 0]


class DmaSta(nn.Module):
    """Clips [B, T, H, W, 3] → `(logits [B, num_classes], features)`.

    `features`: `frame_features` [B, T, C] (F_sa), `temporal_weights` [B, T] (m; ones for 'average'), `fused` [B, C]
    (F). Modules: `backbone` (a ResNet without head; SAM/CBAM at `layerN/blockM/attention`), `temporal_attention` or
    `frame_attention`, `head`.
    """

    num_classes: int = 5
    frame_fusion: str = 'temporal_attention'
    backbone_attention: str | None = 'spatial'  # 'spatial' (SAM) | 'cbam' | None
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    remat: bool = False
    dtype: Any = jnp.float32
    frame_batch_norm: str = 'clip'  # 'clip' | 'per_frame'
    conv_init: str = 'lecun_normal'  # 'lecun_normal' | 'he_normal_fan_out'
    cbam_spatial_batch_norm: bool = False

    def _backbone(self) -> nn.Module:
        """The ResNet trunk without head, SAM or CBAM in every bottleneck; checks the options first."""
        for key, value, choices in (
            ('frame_fusion', self.frame_fusion, FRAME_FUSIONS),
            ('frame_batch_norm', self.frame_batch_norm, FRAME_BATCH_NORMS),
            ('conv_init', self.conv_init, tuple(CONV_INITS)),
        ):
            if value not in choices:
                raise ValueError(f'{key}: unknown {value!r}; choose from {", ".join(choices)}')
        if self.backbone_attention is not None and self.backbone_attention not in BACKBONE_ATTENTIONS:
            raise ValueError(
                f'backbone_attention: unknown {self.backbone_attention!r}; '
                f'choose from {", ".join(BACKBONE_ATTENTIONS)} or None'
            )
        attention = None
        if self.backbone_attention is not None:
            options = {'spatial_batch_norm': self.cbam_spatial_batch_norm} if self.backbone_attention == 'cbam' else {}
            attention = functools.partial(
                BACKBONE_ATTENTIONS[self.backbone_attention], dtype=self.dtype, conv_init=self.conv_init, **options
            )
        backbone = nn.remat(ResNet, static_argnums=(2,)) if self.remat else ResNet
        return backbone(
            self.stage_sizes,
            self.width,
            num_classes=0,
            block_attention=attention,
            dtype=self.dtype,
            conv_init=self.conv_init,
            name='backbone',
        )

    @nn.compact
    def __call__(self, clips: jnp.ndarray, train: bool = False):
        backbone = self._backbone()
        batch, frames = clips.shape[:2]
        if train and self.frame_batch_norm == 'per_frame' and not self.is_initializing():
            # frame t's BN statistics come from the B clips' frames t; batch_stats are carried from frame to frame
            # (init takes the flat path below: a scan carries existing variables only, and the shapes are the same)
            scan = nn.scan(
                lambda module, carry, frame: (carry, module(frame, True)[0]),
                variable_broadcast='params',
                variable_carry='batch_stats',
                split_rngs={'params': False},
                in_axes=1,
                out_axes=1,
            )
            _, frame_features = scan(backbone, None, clips)
        else:
            pooled, _ = backbone(clips.reshape(batch * frames, *clips.shape[2:]), train)
            frame_features = pooled.reshape(batch, frames, -1)
        if self.frame_fusion == 'temporal_attention':
            weights = TemporalAttention(self.dtype, name='temporal_attention')(frame_features)
        elif self.frame_fusion == 'frame_attention':
            weights = FrameAttention(self.dtype, name='frame_attention')(frame_features)
        else:
            weights = jnp.ones((batch, frames), frame_features.dtype)
        fused = weighted_mean(frame_features, weights)
        logits = dense(self.num_classes, dtype=self.dtype, name='head')(fused)
        features = {'frame_features': frame_features, 'temporal_weights': weights, 'fused': fused}
        return logits.astype(jnp.float32), features
