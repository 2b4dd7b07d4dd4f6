"""The train state, everything derived from a config that training shares (`Setup`), and checkpoints on disk.

`fdx.train` drives the loop, `fdx.evaluate` restores variables; both import this module, never each other's internals.
Checkpoints: `<workdir>/checkpoints/<step>` (the latest `checkpoint.keep`, with the data-iterator position) and, when
`config.select` names a validation metric, `<workdir>/best/<step>` with `best.json` (the best step so far).
"""

import json
import math
import zlib
from pathlib import Path
from typing import Any, Sequence

import flax
import grain
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from jax.extend import random as jax_random

from fdx import methods, optim, sharding, storage, writers
from fdx.models import pretrained

CHECKPOINTS, BEST, BEST_FILE = 'checkpoints', 'best', 'best.json'


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any  # non-parameter collections (batch_stats, …)
    opt_state: Any
    critic_params: Any = None
    critic_opt_state: Any = None

    def variables(self) -> dict:
        return {'params': self.params, **self.model_state}


_THREEFRY = jax_random.threefry_prng_impl


def _flat_threefry_bits(key: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """Threefry's random bits of `shape`, drawn as one flat vector and reshaped: the same numbers (each element's
    threefry counter is its flat index either way), but XLA CPU compiles the hash over a 1-D array in a fraction of the
    time it takes over a small 3-D or 4-D one (on the 2-core machine of the README: one 3x3x4x8 kernel's initialiser
    0.4 s instead of 3.6 s; the init of the tests' tiny ResNet 5 s instead of 15 s, of the PANet test's 1/8-width
    Xception 17 s instead of 25 s)."""
    return _THREEFRY.random_bits(key, bit_width, (math.prod(shape),)).reshape(shape)


# Threefry with flat bit generation: keys, splits, fold-ins and every random number as `jax.random.key`'s default.
PRNG_IMPL = jax_random.define_prng_impl(
    key_shape=_THREEFRY.key_shape,
    seed=_THREEFRY.seed,
    split=_THREEFRY.split,
    random_bits=_flat_threefry_bits,
    fold_in=_THREEFRY.fold_in,
    name='threefry2x32_flat',
    tag='fry_flat',
)


def prng_key(seed: int) -> jax.Array:
    """`jax.random.key(seed)` (same numbers) with threefry's bits drawn flat (`_flat_threefry_bits`): the key of model
    initialisation, dropout and noise."""
    return jax.random.key(seed, impl=PRNG_IMPL)


def stream_key(rng: jax.Array, name: str) -> jax.Array:
    """The key of the RNG stream `name`, derived from the name alone (adding a stream leaves the others unchanged)."""
    return jax.random.fold_in(rng, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def stream_keys(rng: jax.Array, streams: Sequence[str]) -> dict[str, jax.Array]:
    return {name: stream_key(rng, name) for name in streams}


class Setup:
    """Mesh, method, optimizers and the state layout of a config; the sharded train step.

    `example_batch` gives the per-process batch shapes the variables are initialised with. A critic's optimizer
    counts critic updates (`critic.steps` per method step): its epochs, steps and total are in critic updates.
    """

    def __init__(self, config: ml_collections.ConfigDict, steps_per_epoch: int, example_batch: dict[str, Any]):
        self.config = config
        self.mesh = sharding.make_mesh(config.mesh)
        self.method = methods.build(config)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = config.total_steps or config.num_epochs * steps_per_epoch
        # Global shapes of a batch: the leading axis gathers all processes.
        self.batch_shapes = {
            k: jax.ShapeDtypeStruct(
                (v.shape[0] * jax.process_count(), *v.shape[1:]), jax.dtypes.canonicalize_dtype(v.dtype)
            )
            for k, v in example_batch.items()
        }
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        abstract_variables = jax.eval_shape(self._init_variables, prng_key(0))
        self.tx, self.schedules = optim.make_optimizer(
            _with_total_steps(config.optim, self.total_steps), steps_per_epoch, abstract_variables['params']
        )
        self.critic_tx = None
        critic = self.method.critic
        if critic is not None:
            abstract_critic = jax.eval_shape(self._init_critic, prng_key(0), abstract_variables)
            self.critic_tx, critic_schedules = optim.make_optimizer(
                _with_total_steps(config.critic_optim, self.total_steps * critic.steps),
                steps_per_epoch * critic.steps,
                abstract_critic['params'],
            )
            self.critic_schedules = critic_schedules
        self.abstract_state = jax.eval_shape(self._create_state, abstract_variables, prng_key(0))
        self.state_sharding = sharding.state_shardings(
            self.abstract_state, self.mesh, config.sharding.fsdp, config.sharding.min_fsdp_size
        )
        self.variables_sharding = {'params': self.state_sharding.params, **self.state_sharding.model_state}

    def _zeros_batch(self):
        return {k: jnp.zeros(v.shape, v.dtype) for k, v in self.batch_shapes.items()}

    def _init_variables(self, rng):
        return self.method.init(rng, self._zeros_batch())

    def _init_critic(self, rng, variables):
        return self.method.critic.init(rng, self._zeros_batch(), variables)

    def _create_state(self, variables, rng):
        variables = dict(variables)
        params = variables.pop('params')
        state = TrainState(
            step=jnp.zeros((), jnp.int32), params=params, model_state=variables, opt_state=self.tx.init(params)
        )
        if self.method.critic is not None:
            critic_params = self._init_critic(jax.random.fold_in(rng, 1), {'params': params, **variables})['params']
            state = state.replace(critic_params=critic_params, critic_opt_state=self.critic_tx.init(critic_params))
        return state

    def initial_state(self) -> TrainState:
        """Fresh variables (with `config.init` checkpoints grafted on), placed with the state shardings."""
        rng = prng_key(self.config.seed)
        abstract = jax.eval_shape(self._init_variables, rng)
        shardings = sharding.state_shardings(
            abstract, self.mesh, self.config.sharding.fsdp, self.config.sharding.min_fsdp_size
        )
        variables = jax.jit(self._init_variables, out_shardings=shardings)(rng)
        for spec in self.config.init:
            spec = dict(spec)
            checkpoint = spec.pop('checkpoint')
            source, _ = pretrained.load_variables(checkpoint)
            variables = pretrained.graft(variables, source, origin=str(checkpoint), **spec)
            writers.log(f'initialised {spec.get("dst") or "the model"} from {checkpoint}')
        variables = jax.device_put(variables, shardings)
        create = jax.jit(self._create_state, out_shardings=self.state_sharding)
        return create(variables, jax.random.fold_in(rng, 1))

    def _critic_updates(self, state: TrainState, batch, rng, activations) -> tuple[TrainState, dict[str, jax.Array]]:
        critic = self.method.critic
        critic_params, critic_opt_state = state.critic_params, state.critic_opt_state
        for i in range(critic.steps):
            rngs = stream_keys(jax.random.fold_in(rng, 1000 + i), self.method.rng_streams)
            (critic_loss, critic_aux), grads = jax.value_and_grad(critic.loss, has_aux=True)(
                critic_params, state.variables(), batch, rngs, activations
            )
            updates, critic_opt_state = self.critic_tx.update(grads, critic_opt_state, critic_params)
            critic_params = optax.apply_updates(critic_params, updates)
        state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
        last_update = state.step * critic.steps + critic.steps - 1  # 0-based index of this step's last critic update
        metrics = {'critic/loss': critic_loss, **{f'critic/{k}': v for k, v in critic_aux.items()}}
        metrics.update({f'lr/critic/{k}': s(last_update) for k, s in self.critic_schedules.items()})
        return state, metrics

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimisation step; returns the new state and scalars to log.

        A critic is updated first (re-running what it needs), or, when it takes `activations`, after the method's
        loss on the activations that loss computed (`LossOutput.critic_inputs`, held constant); the method's loss
        sees the critic parameters of the start of the step either way.
        """
        method, metrics = self.method, {}
        rng = jax.random.fold_in(prng_key(self.config.seed), state.step)
        critic = method.critic
        if critic is not None and not critic.takes_activations:
            state, metrics = self._critic_updates(state, batch, rng, None)

        def loss_fn(params):
            out = method.losses(
                {'params': params, **state.model_state},
                batch,
                stream_keys(rng, method.rng_streams),
                state.step,
                critic_params=None if critic is None else jax.lax.stop_gradient(state.critic_params),
            )
            return sum(out.terms.values()), out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if critic is not None and critic.takes_activations:
            if out.critic_inputs is None:
                raise ValueError(f'{type(critic).__name__} takes activations but the losses return no critic_inputs')
            state, metrics = self._critic_updates(state, batch, rng, jax.lax.stop_gradient(out.critic_inputs))
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            model_state={**state.model_state, **out.state},
            opt_state=opt_state,
        )
        metrics.update({'loss': loss, 'grad_norm': optax.tree.norm(grads)})
        metrics.update({f'loss/{k}': v for k, v in out.terms.items()})
        metrics.update({f'train/{k}': v for k, v in out.aux.items()})
        metrics.update({f'lr/{k}': schedule(state.step - 1) for k, schedule in self.schedules.items()})
        return state, metrics

    def compiled_train_step(self):
        return jax.jit(
            self.train_step,
            in_shardings=(self.state_sharding, self.batch_sharding),
            out_shardings=(self.state_sharding, sharding.replicated(self.mesh)),
            donate_argnums=(0,),
        )


def _with_total_steps(optim_config, total_steps: int):
    optim_config = ml_collections.ConfigDict(optim_config.to_dict())
    optim_config.total_steps = total_steps
    return optim_config


# --------------------------------------------------------------------------- #
# Checkpoints
# --------------------------------------------------------------------------- #


def checkpoint_manager(workdir: Path, config, folder: str = CHECKPOINTS) -> ocp.CheckpointManager:
    """The latest checkpoints (`checkpoints/`, `checkpoint.keep` of them) or the best one (`best/`)."""
    keep = 1 if folder == BEST else config.checkpoint.keep
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(storage.path(workdir) / folder, options=options)


def restore_state(manager: ocp.CheckpointManager, setup: Setup, step: int, iterator=None) -> TrainState:
    """Restores the train state (and the data iterator's position, if given) saved at `step`."""
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), setup.abstract_state, setup.state_sharding
    )
    items = {'state': ocp.args.StandardRestore(abstract)}
    if iterator is not None:
        items['data'] = grain.checkpoint.CheckpointRestore(iterator)
    return manager.restore(step, args=ocp.args.Composite(**items))['state']


def restore_variables(manager: ocp.CheckpointManager, step: int, mesh, config) -> dict[str, Any]:
    """The model variables (`params` and the other collections) saved at `step`, laid out from the checkpoint's own
    metadata: no training batch, dataset or optimizer is needed (evaluation on any dataset)."""
    path = manager.directory / str(step) / 'state'
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(path).item_metadata
    wanted = {key: metadata[key] for key in ('params', 'model_state')}
    shardings = sharding.state_shardings(wanted, mesh, config.sharding.fsdp, config.sharding.min_fsdp_size)
    abstract = jax.tree.map(lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s), wanted, shardings)
    restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s), shardings)
    restored = checkpointer.restore(
        path, args=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args, partial_restore=True)
    )
    return {'params': restored['params'], **restored['model_state']}


def _reason(error: BaseException) -> str:
    """The first line of an error, shortened (TensorStore/orbax errors run to hundreds of lines)."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 200 else text[:197] + '...'


def restore_with_fallback(manager: ocp.CheckpointManager, step: int | None, restore) -> tuple[int, Any, list[int]]:
    """(step, `restore(step)`, broken steps): `step` itself (a broken one is an error naming it), or by default the
    newest checkpoint that restores, each broken newer one skipped with a warning naming it."""
    directory = manager.directory
    if step is not None:
        try:
            return step, restore(step), []
        except Exception as e:  # noqa: BLE001 (any failure to read a checkpoint means it is broken)
            raise ValueError(f'{directory / str(step)}: checkpoint step {step} is broken ({_reason(e)})') from e
    broken = []
    for candidate in sorted(manager.all_steps(), reverse=True):
        try:
            return candidate, restore(candidate), broken
        except Exception as e:  # noqa: BLE001
            writers.log(
                f'warning: checkpoint step {candidate} in {directory} is broken ({_reason(e)}); trying the previous one'
            )
            broken.append(candidate)
    raise ValueError(f'{directory}: no checkpoint restores (broken steps: {broken})')


def set_aside(manager: ocp.CheckpointManager, steps: Sequence[int]) -> None:
    """Renames broken step folders to `broken_<step>` (kept for inspection) so that those steps can be saved again."""
    if jax.process_index() == 0:
        for step in steps:
            folder = manager.directory / str(step)
            folder.rename(folder.with_name(f'broken_{step}'))
            writers.log(f'moved the broken checkpoint {folder} to {folder.with_name(f"broken_{step}")}')
    if steps and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices('fdx: broken checkpoints set aside')


def read_best(workdir: Path) -> dict[str, Any] | None:
    """`best.json` of a workdir (step, split, metric, value, mode), or None before the first selection."""
    path = storage.path(workdir) / BEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None
