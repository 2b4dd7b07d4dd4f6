"""The one trainer: `fdx train --config experiments/x.py:arg [--config.k=v …] --workdir W`.

Every method runs through this loop (see `fdx.methods.base`): a jit-compiled, sharded train step with explicit
in/out shardings and a donated state, global batches built from per-process grain pipelines, an optional critic
updated alternately with its own optimizer, orbax checkpoints holding the state and the data-iterator position (exact
resume), periodic evaluation, and logs on process 0 (TensorBoard, `metrics.jsonl`, a progress bar).

Pre-emption: SIGTERM or SIGUSR1 (what SLURM sends before a time limit with `--signal`, and on pre-emption or
`scontrol requeue`) makes the loop save a checkpoint after the current step (with several processes, after the next
step that is a multiple of `log_every`, where they agree) and exit with `EXIT_PREEMPTED` (75, sysexits'
EX_TEMPFAIL: run again); re-running resumes from that checkpoint with the losses of an uninterrupted run.
"""

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from tqdm import tqdm

from fdx import config as config_lib
from fdx import evaluate, methods, optim, sharding, slurm, storage, writers
from fdx import input as input_lib
from fdx import state as state_lib
from fdx.input import pipeline

DONE_FILE = 'done.json'
EXIT_PREEMPTED = slurm.EXIT_PREEMPTED  # saved and stopped on SIGTERM / SIGUSR1: re-run (or requeue) to resume
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


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
    c.eval_every = 0  # steps; 0: evaluate at the end only (eval_every_epochs when > 0)
    c.eval_every_epochs = 0.0
    c.eval_splits = ('test',)
    c.eval = evaluate.eval_config_defaults()
    # Keep the best checkpoint by a validation metric (`fdx eval --step best`); split '' = none. Selecting on 'test'
    # needs allow_test and is then stated in every output.
    c.select = ml_collections.ConfigDict({'split': '', 'metric': 'video/auc', 'mode': 'max', 'allow_test': False})
    c.checkpoint = ml_collections.ConfigDict({'every': 1000, 'keep': 3})
    c.mesh = ml_collections.ConfigDict({'data': -1, 'model': 1})
    c.sharding = ml_collections.ConfigDict({'fsdp': False, 'min_fsdp_size': 2**18})
    c.optim = optim.default_config()
    c.critic_optim = optim.default_config()
    # Pretrained parts: dicts of fdx.models.pretrained.graft arguments plus `checkpoint` (a `fdx convert-weights` dir).
    c.init = ()
    c.model = ml_collections.ConfigDict()
    c.loss = ml_collections.ConfigDict()
    c.data = input_lib.data_config()
    # What a cluster job of this config asks for (`fdx grid --backend slurm`; the command's flags win).
    c.launch = ml_collections.ConfigDict(dataclasses.asdict(slurm.Resources()))
    return c


class NonFiniteLossError(RuntimeError):
    pass


class Preempted(Exception):
    """Training stopped on a pre-emption signal after saving a checkpoint at `step`."""

    def __init__(self, step: int, signal_name: str):
        super().__init__(f'{signal_name} received: checkpoint saved at step {step}; re-run to resume')
        self.step = step


class PreemptionFlag:
    """Records `PREEMPTION_SIGNALS` (restoring the previous handlers on exit). With several processes `requested`
    is agreed by all (an all-gather of the flag, a host synchronisation) and so asked only every `every` steps: all
    stop and save at the same step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def __enter__(self):
        for sig in PREEMPTION_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name

    def requested(self, step: int, every: int) -> bool:
        if jax.process_count() == 1:
            return self.signal_name is not None
        if step % every:
            return False
        from jax.experimental import multihost_utils

        return bool(multihost_utils.process_allgather(self.signal_name is not None).any())


def check_select(config) -> None:
    """`config.select`: a metric of an evaluated split by which the best checkpoint is kept; never the test split
    unless `allow_test` (then every output says "selected on test")."""
    select = config.get('select')
    if not select or not select.split:
        return
    if select.mode not in ('max', 'min'):
        raise ValueError(f"config.select.mode: 'max' or 'min', got {select.mode!r}")
    if select.split == 'test' and not select.allow_test:
        raise ValueError(
            "config.select.split='test': choosing a checkpoint on the test split biases every test figure; select on "
            "'val' (config.data.val_from_train makes one) or set config.select.allow_test=True"
        )


def selected_value(results: dict[str, Any], metric: str) -> float:
    """`results` at the path `metric` ('video/auc', 'frame/acc', …)."""
    value = results
    for part in metric.split('/'):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f'config.select.metric: no {metric!r} in the results (levels: {", ".join(results)})')
        value = value[part]
    return float(value)


def train_dataset(config) -> grain.IterDataset:
    """This process's share of the global training batches."""
    methods.method_class(config)  # a method's module may register the views it reads
    return pipeline.train_dataset(
        input_lib.build_source(config.data, 'train'),
        global_batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        transform=input_lib.build_transform(config.data, 'train'),
    )


def setup_for(config) -> state_lib.Setup:
    """The `Setup` of a config, with batch shapes taken from one training batch."""
    dataset = train_dataset(config)
    with pipeline.make_loader(dataset, workers=0, prefetch_buffer=0) as loader:
        example = next(loader)
    transform = input_lib.build_transform(config.data, 'train')
    steps_per_epoch = pipeline.steps_per_epoch(
        len(input_lib.build_source(config.data, 'train')), config.batch_size, transform.examples_per_item
    )
    return state_lib.Setup(config, steps_per_epoch, example)


def _check_finite(step: int, metrics: dict[str, Any]) -> dict[str, float]:
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    losses = {k: v for k, v in values.items() if k == 'loss' or k.startswith(('loss/', 'critic/loss'))}
    if not all(math.isfinite(v) for v in losses.values()):
        terms = ', '.join(f'{k}={v:.6g}' for k, v in losses.items())
        raise NonFiniteLossError(f'non-finite loss at step {step}: {terms}; the last good checkpoint is kept')
    return values


class Selection:
    """The best checkpoint by `config.select` (`<workdir>/best`, `best.json`), kept across resumes."""

    def __init__(self, workdir: Path, config):
        self.workdir, self.select = workdir, config.select
        self.manager = state_lib.checkpoint_manager(workdir, config, state_lib.BEST)
        best = state_lib.read_best(workdir)
        self.best = best if best is not None and best['step'] in self.manager.all_steps() else None

    def update(self, step: int, results: dict[str, Any], state) -> None:
        """Keeps `state` if its `select.split` metric beats the best so far."""
        value = selected_value(results, self.select.metric)
        better = self.best is None or (
            value > self.best['value'] if self.select.mode == 'max' else value < self.best['value']
        )
        if not better:
            return
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
        self.manager.wait_until_finished()
        self.best = {
            'step': step,
            'split': self.select.split,
            'metric': self.select.metric,
            'mode': self.select.mode,
            'value': value,
            'selected_on_test': self.select.split == 'test',
        }
        if jax.process_index() == 0:
            (self.workdir / state_lib.BEST_FILE).write_text(json.dumps(self.best, indent=2))
        writers.log(
            f'best checkpoint: step {step}, {self.select.split}/{self.select.metric} = {value:.4f}'
            + (' (selected on test)' if self.best['selected_on_test'] else '')
        )

    def close(self) -> None:
        self.manager.close()


def _resume(workdir: Path, config, setup, iterator):
    """(manager, start step, state): the newest checkpoint that restores (broken newer ones are set aside), or a fresh
    state at step 0."""
    manager = state_lib.checkpoint_manager(workdir, config)
    if manager.latest_step() is None:
        return manager, 0, None
    start, state, broken = state_lib.restore_with_fallback(
        manager, None, lambda step: state_lib.restore_state(manager, setup, step, iterator)
    )
    if broken:
        manager.close()
        state_lib.set_aside(manager, broken)
        manager = state_lib.checkpoint_manager(workdir, config)
    writers.log(f'resumed from step {start} in {workdir}')
    return manager, start, state


def _eval_every(config, steps_per_epoch: int) -> int:
    return config.eval_every or round(config.get('eval_every_epochs', 0) * steps_per_epoch)


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    """Trains (or resumes) in `workdir`; returns the final evaluation metrics. Raises `Preempted` after saving a
    checkpoint when a pre-emption signal arrives (from here on: during setup and compilation too)."""
    with PreemptionFlag() as preemption:
        return _train(config, workdir, preemption)


def _train(config: ml_collections.ConfigDict, workdir: str | Path, preemption: PreemptionFlag) -> dict[str, Any]:
    if jax.process_index() == 0:  # stdout: stderr carries nothing but the error when a run fails
        print(f'fdx train on {sharding.describe_devices()}', flush=True)
    check_select(config)
    eval_splits = tuple(dict.fromkeys((*config.eval_splits, *((config.select.split,) if config.select.split else ()))))
    available = input_lib.split_names(config.data)
    missing = [split for split in eval_splits if split not in available]
    if missing:  # said now, not after training
        raise ValueError(
            f'config.eval_splits / config.select.split: no split {", ".join(missing)} in {config.data.name} '
            f'(has {", ".join(available)}); config.data.val_from_train holds out train videos as val'
        )
    workdir = storage.path(workdir)  # a local folder (made absolute, for orbax) or gs://
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        config_lib.save_config(config, workdir)
        description = json.dumps(input_lib.preprocessing(config.data), indent=2)
        (workdir / input_lib.PREPROCESSING_FILE).write_text(description)
    dataset, setup = train_dataset(config), setup_for(config)
    iterator = pipeline.make_loader(dataset, workers=config.data.workers, prefetch_buffer=config.data.prefetch)
    writer = writers.MetricWriter(workdir)
    evaluator = evaluate.Evaluator(config, setup.method, setup.mesh)
    selection = Selection(workdir, config)
    eval_every = _eval_every(config, setup.steps_per_epoch)

    def evaluation(step: int, state, out_dir: Path | None = None) -> dict[str, Any]:
        results = {}
        for split in eval_splits:
            results[split] = evaluator.evaluate(state.variables(), split, out_dir, {'step': step})
            writer.write(step, evaluate.scalars(results[split], split))
        if config.select.split:
            selection.update(step, results[config.select.split], state)
        return results

    with jax.set_mesh(setup.mesh):
        manager, start, state = _resume(workdir, config, setup, iterator)
        if state is None:
            state = setup.initial_state()
            if jax.process_index() == 0:
                (workdir / 'parameters.txt').write_text(writers.parameter_overview(state.variables()) + '\n')
            for name, tensors, count, frozen in optim.group_summary(state.params, config.optim.groups):
                writers.log(
                    f'parameter group {name}: {tensors} tensors, {count:,} parameters' + (' (frozen)' if frozen else '')
                )
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
                stop = preemption.requested(done, max(config.log_every, 1))
                if done % config.checkpoint.every == 0 or done == total or stop:
                    _log_step(writer, config, bar, *pending)
                    pending = None
                    manager.save(
                        done,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)
                        ),
                        force=stop,
                    )
                if stop:
                    raise Preempted(done, preemption.signal_name)
                if eval_every and done % eval_every == 0 and done != total:
                    evaluation(done, state)
            if pending is not None:
                _log_step(writer, config, bar, *pending)
        finally:
            bar.close()
            manager.wait_until_finished()
            writer.flush()
            iterator.close()
        steps_per_second = (total - start) / max(time.perf_counter() - started, 1e-9)
        final = evaluation(total, state, workdir / 'eval' / f'step_{total}')
    writer.close()
    manager.close()
    selection.close()
    if jax.process_index() == 0:
        done_record = {'step': total, 'steps_per_second': steps_per_second, 'eval': final, 'best': selection.best}
        (workdir / DONE_FILE).write_text(json.dumps(done_record, indent=2, default=float))
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
    workdir = storage.path(args.workdir)
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
    except Preempted as e:
        print(f'fdx train: {e}', file=sys.stderr)
        return EXIT_PREEMPTED
    return 0
