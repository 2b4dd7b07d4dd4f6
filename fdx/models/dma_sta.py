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
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fdx.models.attention import CBAM, SpatialAttention
from fdx.models.layers import dense
from fdx.models.resnet import ResNet

BACKBONE_ATTENTIONS = {'spatial': SpatialAttention, 'cbam': CBAM}
FRAME_FUSIONS = ('temporal_attention', 'average', 'frame_attention')


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

    @nn.compact
    def __call__(self, clips: jnp.ndarray, train: bool = False):
        if self.frame_fusion not in FRAME_FUSIONS:
            raise ValueError(f'frame_fusion: unknown {self.frame_fusion!r}; choose from {", ".join(FRAME_FUSIONS)}')
        if self.backbone_attention is not None and self.backbone_attention not in BACKBONE_ATTENTIONS:
            raise ValueError(
                f'backbone_attention: unknown {self.backbone_attention!r}; '
                f'choose from {", ".join(BACKBONE_ATTENTIONS)} or None'
            )
        attention = None
        if self.backbone_attention is not None:
            attention = functools.partial(BACKBONE_ATTENTIONS[self.backbone_attention], dtype=self.dtype)
        backbone = nn.remat(ResNet, static_argnums=(2,)) if self.remat else ResNet
        batch, frames = clips.shape[:2]
        pooled, _ = backbone(
            self.stage_sizes, self.width, num_classes=0, block_attention=attention, dtype=self.dtype, name='backbone'
        )(clips.reshape(batch * frames, *clips.shape[2:]), train)
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
