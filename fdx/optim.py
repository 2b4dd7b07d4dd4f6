"""Optimizers, learning-rate schedules and parameter groups from the `optim` sub-config.

Matches the PyTorch reference code: `weight_decay` of 'sgd' and 'adam' is coupled L2 as in torch.optim.SGD/Adam
(g ← g + wd·p before momentum / Adam moments), of 'adamw' decoupled as in torch.optim.AdamW (p ← p − lr·wd·p), and
`grad_clip_norm` is torch.nn.utils.clip_grad_norm_ on the raw gradients of the trainable parameters.

Parameter groups select parameters by a regex searched in the '/'-joined path (`params/backbone/conv1/kernel`); the
first matching group wins and unmatched parameters form the group 'default'. The learning rate is not injected into
the optimizer state: `make_optimizer` returns each group's schedule, and `schedules[name](step)` is the learning rate
of the update with 0-based index `step` (the optimizer's update count), which is what the trainer logs.
"""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

DEFAULT_GROUP = 'default'
OPTIMIZERS = ('sgd', 'adam', 'adamw')
SCHEDULES = ('constant', 'step', 'cosine')
GROUP_FIELDS = ('pattern', 'name', 'frozen', 'lr_mult', 'weight_decay')


def default_config() -> ml_collections.ConfigDict:
    """The `optim` sub-config with every field; experiment configs start from it."""
    return ml_collections.ConfigDict(
        {
            'name': 'sgd',  # sgd | adam | adamw
            'lr': 0.01,
            'momentum': 0.9,  # sgd; 0 = none
            'nesterov': False,  # sgd
            'beta1': 0.9,  # adam / adamw
            'beta2': 0.999,
            'eps': 1e-8,
            'weight_decay': 0.0,  # coupled L2 for sgd / adam, decoupled for adamw (as in torch.optim)
            'grad_clip_norm': 0.0,  # global norm of the trainable gradients; 0 = off
            'schedule': 'constant',  # constant | step | cosine
            'factor': 0.1,  # step: lr × factor^floor(step / every)
            'every_epochs': 0.0,  # step: decay period in epochs; takes precedence over every_steps when > 0
            'every_steps': 0,
            'min_lr': 0.0,  # step: floor (0 = none); cosine: final value
            'warmup_epochs': 0.0,  # linear warm-up from 0; takes precedence over warmup_steps when > 0
            'warmup_steps': 0,
            'total_steps': 0,  # cosine: end of the decay, filled in by the trainer
            'groups': (),  # dicts with pattern, and optional name, frozen, lr_mult, weight_decay
        }
    )


def _field(config: ml_collections.ConfigDict, key: str) -> Any:
    """`config[key]`, or the default when the config lacks the field."""
    return config.get(key, default_config()[key])


def _steps(config: ml_collections.ConfigDict, epochs_key: str, steps_key: str, steps_per_epoch: int) -> int:
    """Steps given by `epochs_key` (× steps_per_epoch) when > 0, else by `steps_key`."""
    epochs, steps = _field(config, epochs_key), _field(config, steps_key)
    if epochs < 0 or steps < 0:
        raise ValueError(f'optim.{epochs_key} / optim.{steps_key}: must be >= 0, got {epochs} / {steps}')
    if epochs > 0:
        if steps_per_epoch < 1:
            raise ValueError(f'optim.{epochs_key}: needs steps_per_epoch >= 1, got {steps_per_epoch}')
        return round(epochs * steps_per_epoch)
    return int(steps)


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate as a function of the 0-based update step, from the `optim` sub-config."""
    name, lr, min_lr = _field(config, 'schedule'), _field(config, 'lr'), _field(config, 'min_lr')
    if name not in SCHEDULES:
        raise ValueError(f"optim.schedule: unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    if lr <= 0:
        raise ValueError(f'optim.lr: must be > 0, got {lr}')
    if not 0 <= min_lr <= lr:
        raise ValueError(f'optim.min_lr: must be in [0, optim.lr = {lr}], got {min_lr}')
    warmup = _steps(config, 'warmup_epochs', 'warmup_steps', steps_per_epoch)

    if name == 'constant':

        def schedule(step):
            return jnp.full((), lr, jnp.float32)

    elif name == 'step':
        factor, every = _field(config, 'factor'), _steps(config, 'every_epochs', 'every_steps', steps_per_epoch)
        if not 0 < factor <= 1:
            raise ValueError(f'optim.factor: must be in (0, 1], got {factor}')
        if every < 1:
            raise ValueError("optim.every_steps: the 'step' schedule needs optim.every_epochs or optim.every_steps > 0")

        def schedule(step):
            return jnp.maximum(lr * jnp.float32(factor) ** (jnp.asarray(step) // every), min_lr)

    else:
        total = _field(config, 'total_steps')
        if total <= warmup:
            raise ValueError(f'optim.total_steps: cosine needs total_steps > {warmup} (the warm-up steps), got {total}')

        def schedule(step):
            progress = jnp.clip((jnp.asarray(step) - warmup) / (total - warmup), 0.0, 1.0)
            return min_lr + (lr - min_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

    if warmup == 0:
        return schedule
    return lambda step: schedule(step) * jnp.minimum(1.0, jnp.asarray(step) / warmup)


@dataclasses.dataclass(frozen=True)
class Group:
    """A parameter group: parameters whose path `pattern` finds, unless an earlier group took them."""

    name: str
    pattern: re.Pattern | None  # None for the default group
    frozen: bool = False
    lr_mult: float = 1.0
    weight_decay: float | None = None  # None: optim.weight_decay


def parse_groups(groups: Sequence[Mapping[str, Any]]) -> list[Group]:
    """Validates `optim.groups` entries (dicts or ConfigDicts) into `Group`s, in order."""
    parsed = []
    for i, entry in enumerate(groups):
        key = f'optim.groups[{i}]'
        if not isinstance(entry, (Mapping, ml_collections.ConfigDict)):
            raise TypeError(f'{key}: expected a dict with a pattern, got {entry!r}')
        entry = dict(entry.items())
        unknown = sorted(set(entry) - set(GROUP_FIELDS))
        if unknown:
            raise ValueError(f"{key}: unknown fields {unknown}; choose from {', '.join(GROUP_FIELDS)}")
        if 'pattern' not in entry:
            raise ValueError(f'{key}.pattern: every group needs a pattern')
        if not isinstance(entry['pattern'], str):
            raise TypeError(f"{key}.pattern: expected a regex string, got {entry['pattern']!r}")
        try:
            pattern = re.compile(entry['pattern'])
        except re.error as e:
            raise ValueError(f"{key}.pattern: invalid regex {entry['pattern']!r}: {e}") from e
        name = entry.get('name') or entry['pattern']
        if name == DEFAULT_GROUP or name in [g.name for g in parsed]:
            raise ValueError(f'{key}.name: group name {name!r} is reserved or already used')
        lr_mult, weight_decay = entry.get('lr_mult', 1.0), entry.get('weight_decay')
        if lr_mult <= 0:
            raise ValueError(f'{key}.lr_mult: must be > 0 (freeze the group instead), got {lr_mult}')
        if weight_decay is not None and weight_decay < 0:
            raise ValueError(f'{key}.weight_decay: must be >= 0, got {weight_decay}')
        parsed.append(Group(name, pattern, bool(entry.get('frozen', False)), float(lr_mult), weight_decay))
    return parsed


def _path(key_path) -> str:
    """'/'-joined parameter path, e.g. `params/backbone/conv1/kernel`."""
    return jax.tree_util.keystr(key_path, simple=True, separator='/')


def param_labels(params, groups: Sequence[Mapping[str, Any]]):
    """Pytree like `params` holding each parameter's group name; a pattern that matches nothing is a ValueError."""
    parsed = parse_groups(groups)
    used = set()

    def label(key_path, _):
        path = _path(key_path)
        for group in parsed:
            if group.pattern.search(path):
                used.add(group.name)
                return group.name
        return DEFAULT_GROUP

    labels = jax.tree_util.tree_map_with_path(label, params)
    unused = [g.pattern.pattern for g in parsed if g.name not in used]
    if unused:
        paths = [_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        raise ValueError(
            f'optim.groups: pattern(s) {unused} match no parameter not taken by an earlier group; '
            f'parameter paths look like {paths[:4]}'
        )
    return labels


def _present_groups(params, groups: Sequence[Mapping[str, Any]]) -> tuple[list[Group], Any]:
    """The groups holding at least one parameter (the configured ones, then 'default' if any), and the labels."""
    labels = param_labels(params, groups)
    present = parse_groups(groups)
    if DEFAULT_GROUP in jax.tree.leaves(labels):
        present.append(Group(DEFAULT_GROUP, None))
    return present, labels


def group_summary(params, groups: Sequence[Mapping[str, Any]]) -> list[tuple[str, int, int, bool]]:
    """(name, number of tensors, number of parameters, frozen) per group, for the trainer's parameter overview."""
    present, labels = _present_groups(params, groups)
    label_leaves, param_leaves = jax.tree.leaves(labels), jax.tree.leaves(params)
    rows = []
    for group in present:
        sizes = [int(p.size) for label, p in zip(label_leaves, param_leaves) if label == group.name]
        rows.append((group.name, len(sizes), sum(sizes), group.frozen))
    return rows


def clip_by_global_norm(max_norm: float, trainable) -> optax.GradientTransformation:
    """Scales all updates by min(1, max_norm / (norm + 1e-6)), norm over the `trainable` leaves (torch's formula)."""

    def update_fn(updates, state, params=None):
        del params
        kept = [u for u, keep in zip(jax.tree.leaves(updates), jax.tree.leaves(trainable)) if keep]
        scale = jnp.minimum(1.0, max_norm / (optax.tree.norm(kept) + 1e-6))
        return jax.tree.map(lambda u: (u * scale).astype(u.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def scale_by_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Adam scaling as torch.optim.Adam: m̂ / (√v̂ + eps), with the bias corrections 1 − β^t accurate in float32.

    optax.scale_by_adam computes β^t in float32 from the rounded β, so 1 − 0.999^1 is off by 1.3e-5 relative; torch
    uses float64. Here 1 − β^t = −expm1(t·log β) with log β taken in float64. State: `optax.ScaleByAdamState`.
    """
    log_b1, log_b2 = (math.log(b) if b > 0 else -math.inf for b in (b1, b2))

    def init_fn(params):
        return optax.ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        correction1, correction2 = -jnp.expm1(count * log_b1), -jnp.expm1(count * log_b2)
        updates = jax.tree.map(lambda m, v: (m / correction1) / (jnp.sqrt(v) / jnp.sqrt(correction2) + eps), mu, nu)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def _scaled(schedule: optax.Schedule, mult: float) -> optax.Schedule:
    """`schedule` times `mult`."""
    return schedule if mult == 1.0 else lambda step: mult * schedule(step)


def _group_transform(config: ml_collections.ConfigDict, schedule: optax.Schedule, weight_decay: float):
    """The optimizer of one trainable group: torch.optim semantics, learning rate from `schedule`."""
    name = _field(config, 'name')
    decay = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    if name == 'sgd':
        momentum, nesterov = _field(config, 'momentum'), _field(config, 'nesterov')
        trace = [optax.trace(decay=momentum, nesterov=nesterov)] if momentum else []
        return optax.chain(*decay, *trace, optax.scale_by_learning_rate(schedule))
    adam = scale_by_adam(_field(config, 'beta1'), _field(config, 'beta2'), _field(config, 'eps'))
    if name == 'adam':
        return optax.chain(*decay, adam, optax.scale_by_learning_rate(schedule))
    return optax.chain(adam, *decay, optax.scale_by_learning_rate(schedule))


def _check_optimizer(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the key of an invalid optimizer setting."""
    name = _field(config, 'name')
    if name not in OPTIMIZERS:
        raise ValueError(f"optim.name: unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    momentum = _field(config, 'momentum')
    if name == 'sgd' and not 0 <= momentum < 1:
        raise ValueError(f'optim.momentum: must be in [0, 1), got {momentum}')
    if name == 'sgd' and _field(config, 'nesterov') and momentum == 0:
        raise ValueError('optim.nesterov: Nesterov momentum needs optim.momentum > 0')
    for key in ('beta1', 'beta2'):
        if name != 'sgd' and not 0 <= _field(config, key) < 1:
            raise ValueError(f'optim.{key}: must be in [0, 1), got {_field(config, key)}')
    for key in ('eps', 'weight_decay', 'grad_clip_norm'):
        if _field(config, key) < 0:
            raise ValueError(f'optim.{key}: must be >= 0, got {_field(config, key)}')


def make_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int, params
) -> tuple[optax.GradientTransformation, dict[str, optax.Schedule]]:
    """The optimizer for `params` (arrays or shapes) and the learning-rate schedule of each group, by group name.

    Frozen groups get `optax.set_to_zero()` (no state, parameters unchanged) and a zero schedule.
    """
    _check_optimizer(config)
    schedule = make_schedule(config, steps_per_epoch)
    present, labels = _present_groups(params, _field(config, 'groups'))
    transforms, schedules = {}, {}
    for group in present:
        if group.frozen:
            transforms[group.name], schedules[group.name] = optax.set_to_zero(), optax.constant_schedule(0.0)
            continue
        schedules[group.name] = _scaled(schedule, group.lr_mult)
        weight_decay = _field(config, 'weight_decay') if group.weight_decay is None else group.weight_decay
        transforms[group.name] = _group_transform(config, schedules[group.name], weight_decay)
    tx = optax.multi_transform(transforms, labels)
    max_norm = _field(config, 'grad_clip_norm')
    if max_norm:
        frozen = {g.name for g in present if g.frozen}
        tx = optax.chain(clip_by_global_norm(max_norm, jax.tree.map(lambda label: label not in frozen, labels)), tx)
    return tx, schedules
