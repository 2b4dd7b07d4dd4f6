"""The one trainer: `fdx train --config experiments/x.py:arg [--config.k=v …] --workdir W`.

Every method runs through this loop (see `fdx.methods.base`): a jit-compiled, sharded train step with explicit
in/out shardings and a donated state, global batches built from per-process grain pipelines, an optional critic
updated alternately with its own optimizer, orbax checkpoints holding the state and the data-iterator position (exact
resume), periodic evaluation, and logs on process 0 (TensorBoard, `metrics.jsonl`, a progress bar).
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import flax
import grain
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from fdx import config as config_lib
from fdx import evaluate, methods, optim, sharding, writers
from fdx import input as input_lib
from fdx.input import pipeline
from fdx.models import pretrained

DONE_FILE = 'done.json'


def base_config() -> ml_collections.ConfigDict:
    """Every trainer field with its default; experiment configs start from this and set what the paper states."""
    c = ml_collections.ConfigDict()
    c.method = 'classifier'
    c.seed = 0
    c.batch_size = 32  # global batch, split over processes and the `data` mesh axis
    c.eval_batch_size = 0  # 0: batch_size
    c.num_epochs = 1
    c.total_steps = 0  # > 0 overrides num_epochs
    c.log_every = 10
    c.eval_every = 0  # steps; 0: evaluate at the end only
    c.eval_splits = ('test',)
    c.checkpoint = ml_collections.ConfigDict({'every': 1000, 'keep': 3})
    c.mesh = ml_collections.ConfigDict({'data': -1, 'model': 1})
    c.sharding = ml_collections.ConfigDict({'fsdp': False, 'min_fsdp_size': 2**18})
    c.optim = optim.default_config()
    c.critic_optim = optim.default_config()
    # Pretrained parts: dicts of fdx.models.pretrained.graft arguments plus `checkpoint` (a `fdx convert-weights` dir).
    c.init = ()
    c.model = ml_collections.ConfigDict()
    c.loss = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict({'workers': 0, 'prefetch': 2})
    return c


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


class NonFiniteLossError(RuntimeError):
    pass


class Setup:
    """Everything derived from a config that training and evaluation share: mesh, method, optimizers, state layout."""

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
        abstract_variables = jax.eval_shape(self._init_variables, jax.random.key(0))
        self.tx, self.schedules = optim.make_optimizer(
            self._with_total_steps(config.optim), steps_per_epoch, abstract_variables['params']
        )
        self.critic_tx = None
        if self.method.critic is not None:
            abstract_critic = jax.eval_shape(self._init_critic, jax.random.key(0), abstract_variables)
            self.critic_tx, critic_schedules = optim.make_optimizer(
                self._with_total_steps(config.critic_optim), steps_per_epoch, abstract_critic['params']
            )
            self.schedules.update({f'critic/{k}': v for k, v in critic_schedules.items()})
        self.abstract_state = jax.eval_shape(self._create_state, abstract_variables, jax.random.key(0))
        self.state_sharding = sharding.state_shardings(
            self.abstract_state, self.mesh, config.sharding.fsdp, config.sharding.min_fsdp_size
        )
        self.variables_sharding = {'params': self.state_sharding.params, **self.state_sharding.model_state}

    def _with_total_steps(self, optim_config):
        optim_config = ml_collections.ConfigDict(optim_config.to_dict())
        optim_config.total_steps = self.total_steps
        return optim_config

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
        rng = jax.random.key(self.config.seed)
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

    def rngs(self, rng: jax.Array, streams: Sequence[str]) -> dict[str, jax.Array]:
        return {name: jax.random.fold_in(rng, i) for i, name in enumerate(streams)}

    def train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        """One optimisation step (critic steps first, if any); returns the new state and scalars to log."""
        method, metrics = self.method, {}
        rng = jax.random.fold_in(jax.random.key(self.config.seed), state.step)
        if method.critic is not None:
            critic_params, critic_opt_state = state.critic_params, state.critic_opt_state
            for i in range(method.critic.steps):
                rngs = self.rngs(jax.random.fold_in(rng, 1000 + i), method.rng_streams)
                (critic_loss, critic_aux), grads = jax.value_and_grad(method.critic.loss, has_aux=True)(
                    critic_params, state.variables(), batch, rngs
                )
                updates, critic_opt_state = self.critic_tx.update(grads, critic_opt_state, critic_params)
                critic_params = optax.apply_updates(critic_params, updates)
            state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
            metrics.update({'critic/loss': critic_loss, **{f'critic/{k}': v for k, v in critic_aux.items()}})

        def loss_fn(params):
            out = method.losses(
                {'params': params, **state.model_state},
                batch,
                self.rngs(rng, method.rng_streams),
                state.step,
                critic_params=None if method.critic is None else jax.lax.stop_gradient(state.critic_params),
            )
            return sum(out.terms.values()), out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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


def train_dataset(config) -> grain.IterDataset:
    """This process's share of the global training batches."""
    return pipeline.train_dataset(
        input_lib.build_source(config.data, 'train'),
        global_batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        transform=input_lib.build_transform(config.data, 'train'),
    )


def setup_for(config) -> Setup:
    """The `Setup` of a config, with batch shapes taken from one training batch."""
    example = next(iter(pipeline.make_loader(train_dataset(config), workers=0)))
    steps_per_epoch = pipeline.steps_per_epoch(len(input_lib.build_source(config.data, 'train')), config.batch_size)
    return Setup(config, steps_per_epoch, example)


def checkpoint_manager(workdir: Path, config) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.checkpoint.keep, create=True)
    return ocp.CheckpointManager(Path(workdir).absolute() / 'checkpoints', options=options)


def restore_state(manager: ocp.CheckpointManager, setup: Setup, step: int, iterator=None) -> TrainState:
    """Restores the train state (and the data iterator's position, if given) saved at `step`."""
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), setup.abstract_state, setup.state_sharding
    )
    items = {'state': ocp.args.StandardRestore(abstract)}
    if iterator is not None:
        items['data'] = grain.checkpoint.CheckpointRestore(iterator)
    return manager.restore(step, args=ocp.args.Composite(**items))['state']


def _check_finite(step: int, metrics: dict[str, Any]) -> dict[str, float]:
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    losses = {k: v for k, v in values.items() if k == 'loss' or k.startswith(('loss/', 'critic/loss'))}
    if not all(math.isfinite(v) for v in losses.values()):
        terms = ', '.join(f'{k}={v:.6g}' for k, v in losses.items())
        raise NonFiniteLossError(f'non-finite loss at step {step}: {terms}; the last good checkpoint is kept')
    return values


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Trains (or resumes) in `workdir`; returns the final evaluation metrics."""
    workdir = Path(workdir).absolute()  # orbax needs absolute paths
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        config_lib.save_config(config, workdir)
    dataset, setup = train_dataset(config), setup_for(config)
    iterator = pipeline.make_loader(dataset, workers=config.data.workers, prefetch_buffer=config.data.prefetch)
    manager = checkpoint_manager(workdir, config)
    writer = writers.MetricWriter(workdir)

    with jax.set_mesh(setup.mesh):
        start = manager.latest_step()
        if start is None:
            start = 0
            state = setup.initial_state()
            if jax.process_index() == 0:
                (workdir / 'parameters.txt').write_text(writers.parameter_overview(state.variables()) + '\n')
            for name, tensors, count, frozen in optim.group_summary(state.params, config.optim.groups):
                writers.log(
                    f'parameter group {name}: {tensors} tensors, {count:,} parameters' + (' (frozen)' if frozen else '')
                )
        else:
            state = restore_state(manager, setup, start, iterator)
            writers.log(f'resumed from step {start} in {workdir}')
        step_fn = setup.compiled_train_step()
        total = setup.total_steps
        leaves = jax.tree.leaves(setup.state_sharding)
        sharded = sum(not s.is_fully_replicated for s in leaves)
        writers.log(
            f'{total} steps ({setup.steps_per_epoch} per epoch), global batch {config.batch_size}, '
            f'mesh {dict(setup.mesh.shape)}, {jax.process_count()} process(es), '
            f'{sharded} of {len(leaves)} state arrays sharded'
        )
        bar = tqdm(total=total, initial=start, disable=jax.process_index() != 0, unit='step', dynamic_ncols=True)
        pending, started = None, time.perf_counter()
        try:
            for step in range(start, total):
                batch = sharding.global_batch(next(iterator), setup.mesh)
                state, metrics = step_fn(state, batch)
                if pending is not None:  # checked one step late, so the host does not stall the device
                    _log_step(writer, config, bar, *pending)
                pending = (step, metrics)
                done = step + 1
                if done % config.checkpoint.every == 0 or done == total:
                    _log_step(writer, config, bar, *pending)
                    pending = None
                    manager.save(
                        done,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)
                        ),
                    )
                if config.eval_every and done % config.eval_every == 0 and done != total:
                    for split in config.eval_splits:
                        results = evaluate.evaluate(setup, state.variables(), split)
                        writer.write(done, evaluate.scalars(results, split))
            if pending is not None:
                _log_step(writer, config, bar, *pending)
        finally:
            bar.close()
            manager.wait_until_finished()
            writer.flush()
        steps_per_second = (total - start) / max(time.perf_counter() - started, 1e-9)
        final = {}
        for split in config.eval_splits:
            final[split] = evaluate.evaluate(setup, state.variables(), split, workdir / 'eval' / f'step_{total}')
            writer.write(total, evaluate.scalars(final[split], split))
    writer.close()
    manager.close()
    if jax.process_index() == 0:
        (workdir / DONE_FILE).write_text(
            json.dumps({'step': total, 'steps_per_second': steps_per_second, 'eval': final}, indent=2, default=float)
        )
    return final


def _log_step(writer, config, bar, step: int, metrics) -> None:
    values = _check_finite(step, metrics)
    bar.update(step + 1 - bar.n)
    bar.set_postfix(loss=f'{values["loss"]:.4f}', refresh=False)
    if (step + 1) % config.log_every == 0 or step == 0:
        writer.write(step + 1, values)


def main(argv: Sequence[str]) -> int:
    """`fdx train --config FILE.py[:ARG] [--config.KEY=VALUE …] --workdir DIR` (re-running resumes)."""
    spec, overrides, rest = config_lib.parse_cli(argv)
    parser = argparse.ArgumentParser(prog='fdx train', description=main.__doc__)
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--coordinator', help='HOST:PORT of process 0 for multi-host runs')
    parser.add_argument('--num-processes', type=int)
    parser.add_argument('--process-id', type=int)
    args = parser.parse_args(rest)
    sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    workdir = Path(args.workdir)
    if spec is None:
        if not (workdir / 'config.json').is_file():
            parser.error('--config is required for a new workdir')
        config = config_lib.apply_overrides(config_lib.load_saved_config(workdir), overrides)
    else:
        config = config_lib.apply_overrides(config_lib.load_config(spec), overrides)
        saved = workdir / 'config.json'
        if saved.is_file() and json.loads(saved.read_text()) != json.loads(config.to_json_best_effort()):
            old = json.loads(saved.read_text())
            new = json.loads(config.to_json_best_effort())
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            print(
                f'fdx train: {workdir} holds a run of another config (differs in: {", ".join(changed)}); '
                'use a new --workdir',
                file=sys.stderr,
            )
            return 2
    try:
        train(config, workdir)
    except NonFiniteLossError as e:
        print(f'fdx train: {e}', file=sys.stderr)
        return 3
    return 0
