"""Anti-compression metric learning (Cao et al.): two Xception branches for the HQ and LQ crops of one frame.

Each branch is a head (Xception conv1 … block7: the mid-level features V, 19x19x728 at 299), an attention layer AT
(eq. 3-4: a 3x3 separable convolution 728 → 1 and a sigmoid give M; V' = V ⊙ M, Sec. 3.4, after Dang et al.'s
direct regression) and a tail (block8 … conv4 + global average pooling: the embedding C ∈ R^2048) with its
classifier FC (2048 → 2). The tails are separate (the paper, Fig. 1) or one shared tail (`shared_tail`, the
released code). Parameters keep timm's Xception names under `hq`, `lq` (heads and attention layers) and `tail_hq`,
`tail_lq` or `tail` (tails, with `fc`), so a converted ImageNet Xception initialises every head and tail.

`OrderCritic` is D of eq. 2: it scores concat(V_H, V_L) against concat(V_L, V_H) (2 × 728 channels): a conv of
`first_kernel` (1x1, Sec. 4.2; 3x3 in the code) keeping the channels, two 4x4 stride-2 convs to `width` (2048),
a final unpadded conv over the whole remaining map (4x4 at 299) to `width`, LeakyReLU 0.2 after each, no
normalisation, and a linear layer to one score. 184,059,521 parameters at 299.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fdx.models.layers import conv, dense
from fdx.models.xception import LAYERS, SeparableConv, apply_layer

HEAD_LAYERS = LAYERS[: LAYERS.index('block7') + 1]  # conv1 … block7
TAIL_LAYERS = LAYERS[LAYERS.index('block8') : LAYERS.index('head')]  # block8 … conv4
BRANCHES = ('hq', 'lq')


class AttentionLayer(nn.Module):
    """AT (eq. 3-4): M = sigmoid(SepConv3x3(V)) [B, h, w]; returns (V ⊙ M, M)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features):
        attention = nn.sigmoid(SeparableConv(1, dtype=self.dtype, name='conv')(features).astype(jnp.float32))
        return features * attention.astype(features.dtype), attention[..., 0]


class Head(nn.Module):
    """One branch's head and attention layer: image → (V, V', M)."""

    width: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, train: bool = False):
        x = images.astype(self.dtype)
        for name in HEAD_LAYERS:
            x = apply_layer(name, x, train, self.width, self.dtype)
        attended, attention = AttentionLayer(self.dtype, name='attention')(x)
        return x, attended, attention


class Tail(nn.Module):
    """block8 … conv4, global average pooling → C; `fc` → logits (2 classes). One tail may serve both branches: its
    classifiers are then per branch (`fc_hq`, `fc_lq`), as the paper's FC_H, FC_L; none without `classifiers`."""

    classifiers: tuple[str, ...] = ('fc',)
    num_classes: int = 2
    width: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, features, classifier: str | None = 'fc', train: bool = False):
        x = features
        for name in TAIL_LAYERS:
            x = apply_layer(name, x, train, self.width, self.dtype)
        embedding = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
        fcs = {name: dense(self.num_classes, dtype=self.dtype, name=name) for name in self.classifiers}
        logits = None if classifier is None else fcs[classifier](embedding).astype(jnp.float32)
        return logits, embedding


class AntiCompressionNet(nn.Module):
    """The two branches (Fig. 1). `__call__(images_hq, images_lq)` runs the branches given (None skips one) and returns
    `(logits, features)`: logits {branch: [B, 2]}; features {branch: {'v': V, 'attention': M, 'embedding': C}}.
    `branches` limits the model to some of them (('lq',): Table 2's first row, the LQ branch alone)."""

    branches: tuple[str, ...] = BRANCHES
    shared_tail: bool = False
    classifier: bool = True  # False: no FC (the code decides on ‖C‖); logits are then None
    width: float = 1.0
    dtype: Any = jnp.float32

    def setup(self):
        unknown = set(self.branches) - set(BRANCHES)
        if unknown or not self.branches:
            raise ValueError(f'model.branches: {tuple(self.branches)}; choose from {BRANCHES}')
        self.heads = {b: Head(self.width, self.dtype, name=b) for b in self.branches}
        if self.shared_tail:
            fcs = tuple(f'fc_{b}' for b in self.branches) if self.classifier else ()
            tail = Tail(fcs, width=self.width, dtype=self.dtype, name='tail')
            self.tails = {b: tail for b in self.branches}
        else:
            fcs = ('fc',) if self.classifier else ()
            self.tails = {b: Tail(fcs, width=self.width, dtype=self.dtype, name=f'tail_{b}') for b in self.branches}

    def branch(self, branch: str, images, train: bool = False):
        v, attended, attention = self.heads[branch](images, train)
        classifier = (f'fc_{branch}' if self.shared_tail else 'fc') if self.classifier else None
        logits, embedding = self.tails[branch](attended, classifier, train)
        return logits, {'v': v, 'attention': attention, 'embedding': embedding}

    def lq_branch(self, images):
        """Test time (Sec. 3.1): the LQ branch alone, in eval mode."""
        return self.branch('lq', images, False)

    def head_features(self, branch: str, images):
        """V of one branch's head (eval mode): the critic's input shape."""
        return self.heads[branch](images, False)[0]

    def __call__(self, images_hq=None, images_lq=None, train: bool = False):
        logits, features = {}, {}
        for branch, images in (('hq', images_hq), ('lq', images_lq)):
            if images is not None:
                if branch not in self.branches:
                    raise ValueError(f'the model has no {branch} branch (model.branches = {tuple(self.branches)})')
                logits[branch], features[branch] = self.branch(branch, images, train)
        return logits, features


def attention_size(image_size: int) -> int:
    """The side of V and M for square inputs of `image_size` (19 at 299): conv1 (3x3, stride 2), conv2 (3x3), then
    block1-3's stride-2 max-pools (3x3, padding 1)."""
    side = (image_size - 3) // 2 + 1 - 2
    for _ in range(3):
        side = (side - 1) // 2 + 1
    return side


class OrderCritic(nn.Module):
    """D of eq. 2 on channel-concatenated mid-level features [B, h, w, 2C] → one score per example."""

    width: int = 2048
    first_kernel: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pairs):
        x = pairs.astype(self.dtype)
        x = nn.leaky_relu(
            conv(
                x.shape[-1], self.first_kernel, padding=self.first_kernel // 2, bias=True, dtype=self.dtype, name='fuse'
            )(x),
            0.2,
        )
        for i in (1, 2):
            x = nn.leaky_relu(conv(self.width, 4, 2, 1, bias=True, dtype=self.dtype, name=f'down{i}')(x), 0.2)
        if x.shape[1] != x.shape[2]:
            raise ValueError(f'OrderCritic: square feature maps only, got {x.shape[1]}x{x.shape[2]}')
        x = nn.leaky_relu(conv(self.width, x.shape[1], bias=True, dtype=self.dtype, name='reduce')(x), 0.2)
        return dense(1, dtype=self.dtype, name='score')(x.reshape(x.shape[0], -1)).astype(jnp.float32)[:, 0]
