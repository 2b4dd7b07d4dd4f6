"""The method interface shared by the five papers; `fdx.train` drives it, never the other way round.

A method supplies its model(s), how to initialise all variable collections, its loss as named weighted terms, and its
prediction for evaluation. Batches are dicts of arrays whose leading axis is the example axis; a method reads the keys
it needs (clips `[B, T, H, W, 3]`, two resolutions, HQ/LQ pairs, masks, AU maps, …), which its data views produce
(`fdx.input.views`; a method may register views of its own). Randomness comes in `rngs`, one key per name in
`rng_streams` (e.g. `dropout`, `noise`, `mixing`), fresh at every step and derived from the name. A second network
trained alternately with its own optimizer (the WGAN-GP critic of the anti-compression paper) is a `Critic`.

Evaluation (`fdx.evaluate`) calls `predict` on eval-view batches: `score` (binary) or `probs` (multiclass) per example,
plus any maps or arrays the method wants (attention maps, tamper masks, reconstructions). `maps` names the outputs
`fdx eval --save-maps` draws, and `eval_metrics` adds per-example metrics averaged over a split.
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
    critic_inputs: Any = None  # activations a critic that `takes_activations` trains on (held constant)


class Critic(abc.ABC):
    """A second network with its own optimizer (`config.critic_optim`, whose schedule counts critic updates),
    updated `steps` times per method step. With `takes_activations`, `loss` gets the `critic_inputs` the method's
    losses computed in the same step instead of re-running the method's networks (then `activations` is None)."""

    steps: int = 1
    takes_activations: bool = False

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: Batch, variables: Variables) -> Variables:
        """Critic variables (at least `params`), given the method's variables."""

    @abc.abstractmethod
    def loss(
        self, critic_params: Any, variables: Variables, batch: Batch, rngs: dict[str, jax.Array], activations: Any
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The critic's loss (e.g. WGAN-GP) with the method's variables held fixed, and scalars to log."""


class Method(abc.ABC):
    """One paper's model, losses and prediction."""

    task: str = 'binary'  # 'binary' (predict gives 'score' = P(fake)) or 'multiclass' (predict gives 'probs')
    class_names: tuple[str, ...] = ('real', 'fake')
    rng_streams: tuple[str, ...] = ('dropout',)
    critic: Critic | None = None
    # predict outputs drawn by `fdx eval --save-maps`: name -> 'heat' ([B, h, w] or [B, h, w, C] in [0, 1], drawn over
    # the input) or 'image' ([B, H, W, 3] in the input's normalisation, drawn as a picture)
    maps: dict[str, str] = {}
    # maps drawn from the batch's ground truth beside the predicted ones (a manipulation mask): `fdx eval` shows them,
    # `fdx detect` and `fdx export`, which have no ground truth, leave them out
    label_maps: tuple[str, ...] = ()

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

    def eval_metrics(self, outputs: dict[str, jax.Array], batch: Batch) -> dict[str, jax.Array]:
        """Extra per-example metrics [B] from `predict`'s outputs and the batch, averaged over a split's examples
        (e.g. the pixel-wise accuracy of an attention map against the manipulation mask). None by default."""
        return {}
