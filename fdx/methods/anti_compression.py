"""Anti-compression metric learning (Cao et al.): L = L_cls + λ1·L_gan + λ2·L_AT + λ3·L_dis (eq. 1).

The model is `fdx.models.anti_compression.AntiCompressionNet`; training batches come from the `pair` view (the c23
and c40 crops of one frame, pixel-aligned, and its mask binarised at 0.1 and resized to the attention map), test
batches from the `masked_frame` view (the c40 crop alone and its mask): `predict` runs the LQ branch only (Sec. 3.1).

- L_cls: the two-class cross-entropy of FC_H and FC_L (summed over the branches).
- L_gan (eq. 2, WGAN-GP): `OrderCritic` scores concat(V_H, V_L) against concat(V_L, V_H); it maximises the gap
  D(V_H‖V_L) − D(V_L‖V_H) minus `gp_weight` × the gradient penalty on random interpolates, on the V_H, V_L the heads
  computed in the same step (`Critic.takes_activations`: no second forward pass), `model.critic.steps` updates per
  step with its own optimizer (`config.critic_optim`). The heads minimise the same gap (critic fixed).
- L_AT (eq. 5): ‖M_H − M_L‖1 + ‖M_H − M_gt‖1, zeros as M_gt for reals; fakes without a mask get no M_gt term.
- L_dis (eq. 6): per branch, real embeddings pulled inside r− (max(0, ‖C‖ − r−)) and fake ones pushed beyond r+
  (max(0, r+ − ‖C‖)), plus `pair_weight` · ‖C_h − C_l‖2.

Where the paper is silent (config.loss / config.model, each a named option):
- `reduction` 'mean': every per-example term is averaged over the batch (eq. 6 writes sums; 'sum' sums them) and
  ‖·‖1 of a map is averaged over its pixels (`map_reduction` 'mean'; 'sum' is the literal norm), so that λ2 weighs
  a mean absolute error as the cross-entropy's mean;
- `transfer_stop_gradient` True: the transfer term ‖M_H − M_L‖1 moves M_L only ("we transfer location information
  from M_H to M_L"; M_H learns from M_gt); False lets it pull M_H towards M_L too;
- the critic: WGAN-GP's defaults (Gulrajani et al., Algorithm 1): 5 critic updates per step, gradient penalty 10,
  Adam lr 1e-4, β = (0, 0.9); the heads' term is the gap itself;
- the decision: `predict` gives P(fake) of FC_L's softmax (`score` 'softmax').

The released code (reference notes) differs: `code` in the config switches every difference on: a shared tail
without classifier (`model.shared_tail`, `model.classifier` False, `loss.cls_weight` 0), no critic (defined, never
trained: `loss.gan_weight` 0), a 3x3 first critic convolution (`model.critic.first_kernel`), radii 0.01 / 18,
`metric_weight` 1 and `pair_weight` 0.2, attention transfer as the L2 distance of the L2-normalised flattened maps
(`transfer` 'normalised_l2', Zagoruyko & Komodakis), a binary cross-entropy of both maps against the mask
(`mask_loss` 'bce', `mask_branches` ('hq', 'lq'), masks binarised at 0.2), and the embedding norm as the score
(`score` 'norm': fake when ‖C_l‖ > `decision_radius` 9; reported as ‖C_l‖ / (‖C_l‖ + 9), 0.5 at the radius).

`eval_metrics` adds PBCA (Sec. 4.1, after Dang et al.): the share of attention-map cells whose M_L > 0.5 agrees with
the binary mask at the map's size; NaN (left out of the split mean) for fakes without a mask.
"""

import jax
import jax.numpy as jnp
import optax

from fdx.methods.base import Critic, LossOutput, Method
from fdx.models.anti_compression import BRANCHES, AntiCompressionNet, OrderCritic

TRANSFERS = ('l1', 'normalised_l2')
MASK_LOSSES = ('l1', 'bce')
SCORES = ('softmax', 'norm')
REDUCTIONS = ('mean', 'sum')


def _reduce(per_example: jax.Array, reduction: str) -> jax.Array:
    return per_example.sum() if reduction == 'sum' else per_example.mean()


def _map_norm(difference: jax.Array, map_reduction: str) -> jax.Array:
    """Per-example ‖·‖1 of [B, h, w] maps: the sum over cells, or their mean."""
    absolute = jnp.abs(difference).reshape(difference.shape[0], -1)
    return absolute.sum(-1) if map_reduction == 'sum' else absolute.mean(-1)


def attention_transfer(m_hq, m_lq, form: str = 'l1', map_reduction: str = 'mean', stop_gradient: bool = True):
    """Per-example transfer term of eq. 5, ‖M_H − M_L‖1 ('l1'), or the code's ‖M_H/‖M_H‖2 − M_L/‖M_L‖2‖2
    ('normalised_l2'); with `stop_gradient` M_H is the fixed teacher."""
    if stop_gradient:
        m_hq = jax.lax.stop_gradient(m_hq)
    if form == 'l1':
        return _map_norm(m_hq - m_lq, map_reduction)
    flat_hq, flat_lq = (m.reshape(m.shape[0], -1) for m in (m_hq, m_lq))
    unit_hq, unit_lq = (f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12) for f in (flat_hq, flat_lq))
    return jnp.linalg.norm(unit_hq - unit_lq, axis=-1)


def mask_supervision(attention, mask, known, form: str = 'l1', map_reduction: str = 'mean'):
    """Per-example ‖M − M_gt‖1 ('l1', eq. 5) or the binary cross-entropy of M against M_gt averaged over cells
    ('bce', the code); zero where the mask is not known."""
    if form == 'l1':
        per_example = _map_norm(attention - mask, map_reduction)
    else:
        p = jnp.clip(attention, 1e-7, 1 - 1e-7)
        per_example = -(mask * jnp.log(p) + (1 - mask) * jnp.log1p(-p)).reshape(p.shape[0], -1).mean(-1)
    return per_example * known


def metric_terms(c_hq, c_lq, is_real, radius_real: float, radius_fake: float, pair_weight: float):
    """Per-example L_dis (eq. 6): for each branch max(0, ‖C‖ − r−) on reals and max(0, r+ − ‖C‖) on fakes, plus
    `pair_weight` · ‖C_h − C_l‖2. `c_hq` may be None (one branch: its terms only)."""

    def hinge(c):
        norm = jnp.linalg.norm(c, axis=-1)
        return jnp.where(is_real, jax.nn.relu(norm - radius_real), jax.nn.relu(radius_fake - norm))

    if c_hq is None:
        return hinge(c_lq)
    return hinge(c_hq) + hinge(c_lq) + pair_weight * jnp.linalg.norm(c_hq - c_lq, axis=-1)


def order_pairs(v_hq, v_lq) -> tuple[jax.Array, jax.Array]:
    """The critic's two inputs: concat(V_H, V_L) and concat(V_L, V_H) along channels."""
    return jnp.concatenate([v_hq, v_lq], -1), jnp.concatenate([v_lq, v_hq], -1)


def gradient_penalty(score_fn, first, second, rng) -> jax.Array:
    """WGAN-GP: mean over examples of (‖∇_x D(x)‖2 − 1)² at x = ε·first + (1 − ε)·second, ε ~ U(0, 1) per example.
    `score_fn` scores each example on its own (no batch statistics), so the gradient of the summed scores holds the
    per-example gradients (per-example `vmap` would make its second-order gradient per-example: 3x slower)."""
    eps = jax.random.uniform(rng, (first.shape[0],) + (1,) * (first.ndim - 1))
    between = eps * first + (1 - eps) * second
    grads = jax.grad(lambda x: score_fn(x).sum())(between)
    norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1))
    return jnp.mean((norms - 1) ** 2)


class OrderCriticTrainer(Critic):
    """The critic of eq. 2 trained on the heads' features of the same step (WGAN-GP)."""

    takes_activations = True

    def __init__(self, network: OrderCritic, steps: int, gp_weight: float, head_features):
        self.network, self.steps, self.gp_weight = network, steps, gp_weight
        self.head_features = head_features  # (variables, batch) -> (V_H, V_L) of one example

    def init(self, rng, batch, variables):
        return self.network.init(rng, order_pairs(*self.head_features(variables, batch))[0])

    def loss(self, critic_params, variables, batch, rngs, activations):
        v_hq, v_lq = activations
        ordered, swapped = order_pairs(v_hq, v_lq)
        score = lambda x: self.network.apply({'params': critic_params}, x)
        gap = score(ordered).mean() - score(swapped).mean()
        penalty = gradient_penalty(score, ordered, swapped, rngs['critic'])
        return -gap + self.gp_weight * penalty, {'wasserstein': gap, 'gradient_penalty': penalty}


class AntiCompression(Method):
    """config.model: `branches`, `shared_tail`, `classifier`, `backbone_kwargs` (`width`), `dtype`, `critic` (`width`,
    `first_kernel`, `steps`). config.loss: `cls_weight`, `gan_weight` (λ1), `transfer_weight` (λ2), `metric_weight`
    (λ3), `radius_real`, `radius_fake`, `pair_weight`, `transfer`, `transfer_stop_gradient`, `mask_loss`,
    `mask_branches`, `gp_weight`, `reduction`, `map_reduction`. config.predict: `score`, `decision_radius`."""

    rng_streams = ('critic',)
    maps = {'attention_lq': 'heat', 'mask': 'heat'}  # M_L and the ground truth at its size
    label_maps = ('mask',)

    def __init__(self, config):
        super().__init__(config)
        model, loss = config.model, config.loss
        for key, value, valid in (
            ('loss.transfer', loss.transfer, TRANSFERS),
            ('loss.mask_loss', loss.mask_loss, MASK_LOSSES),
            ('loss.reduction', loss.reduction, REDUCTIONS),
            ('loss.map_reduction', loss.map_reduction, REDUCTIONS),
            ('predict.score', config.predict.score, SCORES),
        ):
            if value not in valid:
                raise ValueError(f'config.{key}: unknown {value!r}; choose from {", ".join(valid)}')
        self.branches = tuple(model.branches)
        if set(self.branches) - set(BRANCHES) or not self.branches:
            raise ValueError(f'config.model.branches: {self.branches}; choose from {BRANCHES}')
        if set(loss.mask_branches) - set(BRANCHES):
            raise ValueError(f'config.loss.mask_branches: {tuple(loss.mask_branches)}; choose from {BRANCHES}')
        if config.predict.score == 'softmax' and not model.classifier:
            raise ValueError("config.predict.score: 'softmax' needs model.classifier; use 'norm' without classifiers")
        if len(config.data.class_names) != 2:
            raise ValueError(f'config.data.class_names: a binary detector, got {tuple(config.data.class_names)}')
        self.two_branch = self.branches == BRANCHES
        self.width = dict(model.backbone_kwargs).get('width', 1.0)
        self.model = AntiCompressionNet(
            self.branches, model.shared_tail, model.classifier, self.width, dtype=jnp.dtype(model.dtype)
        )
        self.critic = None
        if self.two_branch and loss.gan_weight > 0:
            network = OrderCritic(model.critic.width, model.critic.first_kernel, dtype=jnp.dtype(model.dtype))
            self.critic = OrderCriticTrainer(network, model.critic.steps, loss.gp_weight, self._head_features)

    def _head_features(self, variables, batch):
        head = self.model.head_features
        return tuple(self.model.apply(variables, b, x[:1], method=head) for b, x in zip(BRANCHES, self._images(batch)))

    def _images(self, batch):
        """(HQ, LQ) training inputs: the pair view's two crops, or one branch's `image`."""
        if self.two_branch:
            return batch['image_hq'], batch['image_lq']
        images = batch['image_lq'] if 'image_lq' in batch else batch['image']
        return (images, None) if self.branches == ('hq',) else (None, images)

    def init(self, rng, batch):
        return self.model.init(rng, *(None if x is None else x[:1] for x in self._images(batch)), False)

    def losses(self, variables, batch, rngs, step, critic_params=None):
        loss, labels = self.config.loss, batch['label']
        (logits, features), state = self.model.apply(variables, *self._images(batch), True, mutable=['batch_stats'])
        is_real = labels == 0
        terms, aux = {}, {}
        if self.config.model.classifier:
            ce = sum(optax.softmax_cross_entropy_with_integer_labels(logits[b], labels) for b in logits)
            terms['cls'] = loss.cls_weight * _reduce(ce, loss.reduction)
            aux.update({f'accuracy_{b}': (logits[b].argmax(-1) == labels).mean() for b in logits})
        maps = {b: features[b]['attention'] for b in features}
        size = next(iter(maps.values())).shape[1]
        mask, known = batch.get(f'mask_{size}'), batch.get('mask_known', jnp.ones(labels.shape, jnp.float32))
        if loss.transfer_weight > 0:
            if mask is None:
                raise ValueError(
                    f'the batch has no mask_{size} (the attention maps are {size}x{size}): add {size} to '
                    f'config.data.{self.config.data.train_view}.mask_sizes'
                )
            at = sum(
                mask_supervision(maps[b], mask, known, loss.mask_loss, loss.map_reduction)
                for b in loss.mask_branches
                if b in maps
            )
            if self.two_branch:
                at = at + attention_transfer(
                    maps['hq'], maps['lq'], loss.transfer, loss.map_reduction, loss.transfer_stop_gradient
                )
            terms['attention'] = loss.transfer_weight * _reduce(at, loss.reduction)
        embeddings = {b: features[b]['embedding'] for b in features}
        if loss.metric_weight > 0:
            dis = metric_terms(
                embeddings.get('hq'), embeddings['lq'], is_real, loss.radius_real, loss.radius_fake, loss.pair_weight
            )
            terms['metric'] = loss.metric_weight * _reduce(dis, loss.reduction)
        norms = jnp.linalg.norm(embeddings['lq'], axis=-1)
        count = lambda m: jnp.maximum(m.sum(), 1)
        aux['norm_lq_real'] = jnp.sum(norms * is_real) / count(is_real)
        aux['norm_lq_fake'] = jnp.sum(norms * ~is_real) / count(~is_real)
        if self.two_branch:
            aux['pair_distance'] = jnp.linalg.norm(embeddings['hq'] - embeddings['lq'], axis=-1).mean()
        critic_inputs = None
        if self.critic is not None:
            ordered, swapped = order_pairs(features['hq']['v'], features['lq']['v'])
            score = lambda x: self.critic.network.apply({'params': critic_params}, x)
            gap = score(ordered).mean() - score(swapped).mean()
            terms['gan'] = loss.gan_weight * gap
            aux['gap'] = gap
            critic_inputs = (features['hq']['v'], features['lq']['v'])
        if mask is not None:
            aux['pbca_lq'] = pbca(maps['lq'], mask).mean()
        return LossOutput(terms, state, aux, critic_inputs)

    def predict(self, variables, batch):
        """The LQ branch alone on `image`: `score`, its attention map `attention_lq` and, for `--save-maps`, the
        batch's binary `mask` at the map's size (zeros without one)."""
        logits, features = self.model.apply(variables, batch['image'], method=self.model.lq_branch)
        if self.config.predict.score == 'softmax':
            score = jax.nn.softmax(logits, -1)[:, 1]
        else:
            norm = jnp.linalg.norm(features['embedding'], axis=-1)
            score = norm / (norm + self.config.predict.decision_radius)
        attention = features['attention']
        mask = batch.get(f'mask_{attention.shape[1]}', jnp.zeros_like(attention))  # drawn beside M_L
        return {'score': score, 'attention_lq': attention, 'mask': mask}

    def eval_metrics(self, outputs, batch):
        size = outputs['attention_lq'].shape[1]
        mask = batch.get(f'mask_{size}')
        if mask is None:
            return {}
        accuracy = pbca(outputs['attention_lq'], mask)
        return {'pbca': jnp.where(batch['mask_known'] > 0, accuracy, jnp.nan) if 'mask_known' in batch else accuracy}


def pbca(attention, mask) -> jax.Array:
    """Per-example pixel-wise binary classification accuracy: the share of cells where (M > 0.5) equals the mask."""
    return ((attention > 0.5) == (mask > 0.5)).reshape(attention.shape[0], -1).mean(-1)
