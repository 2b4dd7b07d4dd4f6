"""The method interface shared by the five papers; `fdx.train` drives it, never the other way round.

A method supplies its model(s), how to initialise all variable collections, its loss as named weighted terms, and its
prediction for evaluation. Batches are dicts of arrays whose leading axis is the example axis; a method reads the keys
it needs (clips `[B, T, H, W, 3]`, two resolutions, HQ/LQ pairs, masks, AU maps, …). Randomness comes in `rngs`, one
key per name in `rng_streams` (e.g. `dropout`, `noise`, `mixing`), fresh at every step. A second network trained
alternately with its own optimizer (the WGAN-GP critic of the anti-compression paper) is a `Critic`.
"""

import abc
from typing import Any, NamedTuple

import jax
import ml_collections

Variables = dict[str, Any]  # {'params': …, 'batch_stats': …, …}
Batch = dict[str, jax.Array]


class LossOutput(NamedTuple):
    terms: dict[str, jax.Array]  # named, already weighted scalar terms; the training loss is their sum
    state: dict[str, Any]  # updated non-parameter collections (e.g. batch_stats); {} if none
    aux: dict[str, jax.Array]  # extra scalars to log (accuracy, distances, …)


class Critic(abc.ABC):
    """A second network with its own optimizer (`config.critic_optim`), updated `steps` times per method step."""

    steps: int = 1

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Batch, variables: Variables) -> Variables:
        """Critic variables (at least `params`), given the method's variables."""

    @abc.abstractmethod
    def loss(
        self, critic_params: Any, variables: Variables, batch: Batch, rngs: dict[str, jax.Array]
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The critic's loss (e.g. WGAN-GP) with the method's variables held fixed, and scalars to log."""


class Method(abc.ABC):
    """One paper's model, losses and prediction."""

    task: str = 'binary'  # 'binary' (predict gives 'score' = P(fake)) or 'multiclass' (predict gives 'probs')
    class_names: tuple[str, ...] = ('real', 'fake')
    rng_streams: tuple[str, ...] = ('dropout',)
    critic: Critic | None = None

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Batch) -> Variables:
        """All variable collections, freshly initialised (the trainer grafts `config.init` checkpoints on top)."""

    @abc.abstractmethod
    def losses(
        self,
        variables: Variables,
        batch: Batch,
        rngs: dict[str, jax.Array],
        step: jax.Array,
        critic_params: Any = None,
    ) -> LossOutput:
        """Training losses in train mode; `critic_params` is given (as constants) when the method has a critic."""

    @abc.abstractmethod
    def predict(self, variables: Variables, batch: Batch) -> dict[str, jax.Array]:
        """Eval-mode outputs per example: `score` [B] (binary) or `probs` [B, K] (multiclass), optionally maps."""
