"""Methods used only by the trainer tests (loaded through `config.method = 'toy_methods:<Class>'`)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdx.methods.base import Critic, LossOutput, Method
from fdx.methods.classifier import Classifier


class NanAfter(Classifier):
    """The classifier whose loss becomes NaN from step `config.loss.nan_step` on."""

    def losses(self, variables, batch, rngs, step, critic_params=None):
        out = super().losses(variables, batch, rngs, step)
        poison = jnp.where(step >= self.config.loss.nan_step, jnp.nan, 1.0)
        return out._replace(terms={k: v * poison for k, v in out.terms.items()})


class MeanCritic(Critic):
    """WGAN-GP critic telling real feature vectors (image channel means) from generated ones."""

    steps = 3

    def __init__(self, gp_weight: float):
        self.gp_weight = gp_weight
        self.net = nn.Sequential([nn.Dense(16), nn.tanh, nn.Dense(1)])

    def init(self, rng, batch, variables):
        return self.net.init(rng, jnp.zeros((1, 3)))

    def loss(self, critic_params, variables, batch, rngs, activations):
        real = batch['image'].mean(axis=(1, 2)) + 1.0  # real vectors sit around (1, 1, 1)
        if activations is None:  # re-run the generator
            fake = MeanGenerator.sample(variables['params'], real.shape[0], rngs['noise'])
        else:  # the vectors the generator's losses made in this step
            fake = activations
        score = lambda x: self.net.apply({'params': critic_params}, x)[:, 0]  # noqa: E731
        mix = jax.random.uniform(rngs['mix'], (real.shape[0], 1))
        between = mix * real + (1 - mix) * fake
        grads = jax.vmap(jax.grad(lambda x: score(x[None])[0]))(between)
        penalty = ((jnp.linalg.norm(grads, axis=-1) - 1) ** 2).mean()
        wasserstein = score(real).mean() - score(fake).mean()
        return -wasserstein + self.gp_weight * penalty, {'wasserstein': wasserstein, 'gradient_penalty': penalty}


class MeanGenerator(Method):
    """Learns a 3-d mean so that generated vectors fool the critic (a toy adversarial setting)."""

    rng_streams = ('noise', 'mix')
    samples = 0  # calls of `sample` (while tracing)

    def __init__(self, config):
        super().__init__(config)
        self.critic = MeanCritic(config.loss.gp_weight)

    @staticmethod
    def sample(params, n, rng):
        MeanGenerator.samples += 1
        return params['mean'] + 0.1 * jax.random.normal(rng, (n, 3))

    def init(self, rng, batch):
        return {'params': {'mean': jnp.zeros(3)}}

    def losses(self, variables, batch, rngs, step, critic_params=None):
        fake = self.sample(variables['params'], batch['image'].shape[0], rngs['noise'])
        score = self.critic.net.apply({'params': critic_params}, fake)[:, 0]
        return LossOutput({'adversarial': -score.mean()}, {}, {})

    def predict(self, variables, batch):
        return {'score': jnp.full(batch['image'].shape[:1], 0.5)}


class ActivationsCritic(MeanCritic):
    """`MeanCritic` on the generated vectors the generator's losses computed in the same step."""

    takes_activations = True


class SharedActivations(MeanGenerator):
    """`MeanGenerator` whose critic trains on the vectors its losses generated."""

    def __init__(self, config):
        super().__init__(config)
        self.critic = ActivationsCritic(config.loss.gp_weight)

    def losses(self, variables, batch, rngs, step, critic_params=None):
        fake = self.sample(variables['params'], batch['image'].shape[0], rngs['noise'])
        score = self.critic.net.apply({'params': critic_params}, fake)[:, 0]
        return LossOutput({'adversarial': -score.mean()}, {}, {}, critic_inputs=fake)
