"""AUNet (Bai et al., CVPR 2023): L = λc·L_cls + λt·L_token + λa·L_att (eq. 20), λ = (1, 30, 0.5).

The model is `fdx.models.aunet.AUNet`. Training batches come from the `self_blended` view
(`fdx.input.self_blended`: each real frame and its self-blended fake side by side, the partial face mask M_p, the AU
maps Y_Att and the token labels) for the reals-only protocol of Tables 2-5, or from the `au` view (real and fake
frames, AU maps) for Table 1's in-dataset training without TAP. Test batches come from the `frame` view.

- L_cls: two-class softmax cross-entropy of the class token's classifier.
- L_token (eq. 18-19): the shared token classifier's cross-entropy against M_p on the token grid (threshold 0.5,
  zeros for reals), averaged over tokens and examples.
- L_att (eq. 1): Huber loss (δ = 0.5) between every encoder's M_AU and Y_Att at the feature grid, averaged.
- Feature-level mixing (eq. 10-17, `tap.feature_mixing`): at one backbone layer drawn uniformly per step from
  `tap.mixing_layers`, each fake's features inside its mask take statistics mixed with its real's, with
  λ1, λ2, λ3 ~ Beta(α, α) per pair.

Where the paper is silent (each a named option, `experiments/aunet_ffpp.py` lists them with the model's):
- `tap.mixing_alpha` 0.1: MixStyle's Beta(0.1, 0.1) (Zhou et al. 2021), whose statistics mixing eq. 13-14 follow;
- `tap.mixing_layers`: every backbone layer's output, conv1 … block11 ("a randomly chosen layer");
- `loss.att_encoders` 'all': M_AU of each of the three encoders is supervised ('last': only the last one's);
- the inference rule ("based on the output class token and patch tokens", details in a supplement we do not have):
  `predict.combine` 'class_and_max_token' scores ½ (P_cls(fake) + max_i P_i(tampered)): a tampered region shows in
  some tokens, not on average; 'class_token', 'max_token' and 'class_and_mean_token' are the alternatives.

`fdx eval --save-maps` draws `tamper_map` (each token's P(tampered) on the grid, Fig. 5) and `au_attention` (the
last encoder's M_AU, maximum over the AUs).
"""

import jax
import jax.numpy as jnp
import optax

import fdx.input.self_blended  # noqa: F401  (registers the `self_blended` view)
from fdx.input import registry
from fdx.methods.base import LossOutput, Method
from fdx.models.aunet import BACKBONE_LAYERS, MixingDraw, resize_mask
from fdx.models.aunet import AUNet as AUNetModel

COMBINES = ('class_and_max_token', 'class_token', 'max_token', 'class_and_mean_token')
ATT_ENCODERS = ('all', 'last')


def token_scores(token_logits: jax.Array) -> jax.Array:
    """[B, n, 2] → P(tampered) per token [B, n]."""
    return jax.nn.softmax(token_logits, axis=-1)[..., 1]


def combine_scores(class_logits: jax.Array, token_logits: jax.Array, rule: str) -> jax.Array:
    """The per-example P(fake) of `rule` (one of `COMBINES`) from the class and token classifiers."""
    p_class = jax.nn.softmax(class_logits, axis=-1)[:, 1]
    p_tokens = token_scores(token_logits)
    return {
        'class_token': lambda: p_class,
        'max_token': lambda: p_tokens.max(-1),
        'class_and_max_token': lambda: (p_class + p_tokens.max(-1)) / 2,
        'class_and_mean_token': lambda: (p_class + p_tokens.mean(-1)) / 2,
    }[rule]()


def attention_loss(maps: list[jax.Array], target: jax.Array, delta: float) -> jax.Array:
    """Eq. 1: the Huber loss of each [B, h, w, K] map against Y_Att (resized to the maps' grid), averaged."""
    if target.shape[1:3] != maps[0].shape[1:3]:
        channels = jnp.moveaxis(target, -1, 1).reshape(-1, *target.shape[1:3])
        resized = resize_mask(channels, maps[0].shape[1:3])[..., 0]
        target = jnp.moveaxis(resized.reshape(target.shape[0], target.shape[-1], *maps[0].shape[1:3]), 1, -1)
    return jnp.mean(jnp.stack([optax.huber_loss(m, target, delta=delta).mean() for m in maps]))


class AUNet(Method):
    """config.model: `variant`-derived `encoders`, `au_specific`, `au_agnostic`, `specific` (num_aus,
    attention_width), `agnostic` (token_dim, num_heads, mlp_dim, position_embedding, dropout_rate),
    `backbone_kwargs` (`width`), `dtype`. config.loss: `cls_weight` (λc), `token_weight` (λt), `att_weight` (λa),
    `huber_delta`, `att_encoders`. config.tap: `feature_mixing`, `mixing_alpha`, `mixing_layers`.
    config.predict: `combine`."""

    rng_streams = ('dropout', 'mixing')

    def __init__(self, config):
        super().__init__(config)
        model, loss, tap = config.model, config.loss, config.tap
        for key, value, valid in (
            ('predict.combine', config.predict.combine, COMBINES),
            ('loss.att_encoders', loss.att_encoders, ATT_ENCODERS),
        ):
            if value not in valid:
                raise ValueError(f'config.{key}: unknown {value!r}; choose from {", ".join(valid)}')
        unknown = sorted(set(tap.mixing_layers) - set(BACKBONE_LAYERS))
        if unknown:
            raise ValueError(
                f'config.tap.mixing_layers: {unknown} are not backbone layers ({", ".join(BACKBONE_LAYERS)})'
            )
        if len(config.data.class_names) != 2:
            raise ValueError(f'config.data.class_names: a binary detector, got {tuple(config.data.class_names)}')
        self.mixing = tap.feature_mixing
        self.maps = {'tamper_map': 'heat', **({'au_attention': 'heat'} if model.au_specific and model.encoders else {})}
        if self.mixing and registry.view_class(config.data.train_view).examples_per_item != 2:
            raise ValueError(
                f'config.tap.feature_mixing needs (real, fake) pairs in every batch, which the train view '
                f'{config.data.train_view!r} does not give: use the `self_blended` view or set it to False'
            )
        self.layer_indices = jnp.array([BACKBONE_LAYERS.index(name) for name in tap.mixing_layers])
        self.model = AUNetModel(
            encoders=model.encoders,
            au_specific=model.au_specific,
            au_agnostic=model.au_agnostic,
            specific=model.specific.to_dict(),
            agnostic=model.agnostic.to_dict(),
            width=dict(model.backbone_kwargs).get('width', 1.0),
            dtype=jnp.dtype(model.dtype),
        )

    def init(self, rng, batch):
        return self.model.init({'params': rng, 'dropout': rng}, batch['image'][:1], False)

    def _mixing_draw(self, batch, rng) -> MixingDraw:
        layer_rng, lambda_rng = jax.random.split(rng)
        alpha = self.config.tap.mixing_alpha
        pairs = batch['image'].shape[0] // 2
        return MixingDraw(
            layer=jax.random.choice(layer_rng, self.layer_indices),
            lambdas=jax.random.beta(lambda_rng, alpha, alpha, (pairs, 3)),
            masks=batch['tamper_mask'],
        )

    def losses(self, variables, batch, rngs, step, critic_params=None):
        loss, labels = self.config.loss, batch['label']
        mixing = self._mixing_draw(batch, rngs['mixing']) if self.mixing else None
        (logits, features), state = self.model.apply(
            variables, batch['image'], True, mixing, rngs={'dropout': rngs['dropout']}, mutable=['batch_stats']
        )
        terms = {'cls': loss.cls_weight * optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()}
        aux = {'accuracy': (logits.argmax(-1) == labels).mean()}
        token_logits = features['token_logits']
        if loss.token_weight > 0:
            grid = features['backbone'].shape[1:3]
            if 'token_labels' not in batch or batch['token_labels'].shape[1:] != grid:
                raise ValueError(
                    f'loss.token_weight > 0 needs `token_labels` of the {grid[0]}x{grid[1]} token grid in the batch: '
                    f'use the `self_blended` view at a size giving that grid, or set loss.token_weight = 0'
                )
            targets = batch['token_labels'].reshape(labels.shape[0], -1).astype(jnp.int32)
            token_ce = optax.softmax_cross_entropy_with_integer_labels(token_logits, targets)
            terms['token'] = loss.token_weight * token_ce.mean()
            aux['token_accuracy'] = (token_logits.argmax(-1) == targets).mean()
        maps = features['au_maps'] if loss.att_encoders == 'all' else features['au_maps'][-1:]
        if loss.att_weight > 0 and maps:
            terms['attention'] = loss.att_weight * attention_loss(maps, batch['au_maps'], loss.huber_delta)
        return LossOutput(terms, state, aux)

    def predict(self, variables, batch):
        logits, features = self.model.apply(variables, batch['image'], False)
        grid = features['backbone'].shape[1:3]
        token_logits = features['token_logits']
        out = {
            'score': combine_scores(logits, token_logits, self.config.predict.combine),
            'tamper_map': token_scores(token_logits).reshape(-1, *grid),
        }
        if features['au_maps']:
            out['au_attention'] = features['au_maps'][-1].max(-1)
        return out
