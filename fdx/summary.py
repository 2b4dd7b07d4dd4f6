"""`fdx summary CONFIG_SPEC [--config.k=v …] [--json PATH]`: parameters and XLA-counted GFLOPs per top-level module.

Works for any method: its `predict` runs abstractly (`jax.eval_shape`, nothing is computed) on one example of the
config's input size (the train view's `spec`, or one real batch when the view has none), while every call of a
module directly under a model root is recorded; each recorded call is then lowered on its own and XLA's cost
analysis counts its FLOPs. `other` is what the root does outside its sub-modules (pooling, the attention products).
FLOPs count a multiply-add as 2; papers' "FLOPs" are usually multiply-adds (MACs = FLOPs / 2), printed beside.
"""

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, 'shape') else x, tree)


def _flops(fn, *args) -> float:
    """XLA's FLOP count of `fn(*args)` (args abstract)."""
    arrays, treedef = jax.tree.flatten(args, is_leaf=lambda x: isinstance(x, jax.ShapeDtypeStruct))
    positions = [i for i, x in enumerate(arrays) if isinstance(x, jax.ShapeDtypeStruct)]

    def call(*values):
        leaves = list(arrays)
        for i, value in zip(positions, values):
            leaves[i] = value
        return fn(*jax.tree.unflatten(treedef, leaves))

    cost = jax.jit(call).lower(*(arrays[i] for i in positions)).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get('flops', 0.0))


def module_calls(method, variables: dict, batch: dict) -> list[tuple[tuple[str, ...], Any, tuple, dict]]:
    """(scope path, module, abstract args, kwargs) of every `__call__` of a root module or of a module directly
    under a root, in call order, while `method.predict` runs abstractly."""
    calls = []

    def record(next_fun, args, kwargs, context):
        path = tuple(context.module.scope.path) if context.module.scope is not None else ()
        if context.method_name == '__call__' and len(path) <= 1:
            calls.append((path, context.module, _abstract(args), _abstract(kwargs)))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(method.predict, variables, batch)
    return calls


def _subtree(variables: dict, name: str) -> dict:
    return {collection: tree[name] for collection, tree in variables.items() if name in tree}


def summarise(config) -> dict[str, Any]:
    """Per top-level module: parameters and forward GFLOPs for one example; totals; the input shapes."""
    from fdx import bench, methods
    from fdx.state import prng_key

    method = methods.build(config)
    batch = {k: v[:1] for k, v in bench.example_batch(config, 1).items()}
    variables = jax.eval_shape(method.init, prng_key(0), batch)
    params = variables.get('params', {})
    rows: dict[str, dict[str, float]] = defaultdict(lambda: {'params': 0, 'flops': 0.0, 'calls': 0})
    children_flops = 0.0
    for path, module, args, kwargs in module_calls(method, variables, batch):  # rows in call order
        if not path:
            continue
        unbound = module.clone(parent=None)
        flops = _flops(lambda v, a, k, m=unbound: m.apply(v, *a, **k), _subtree(variables, path[0]), args, kwargs)
        rows[path[0]]['flops'] += flops
        rows[path[0]]['calls'] += 1
        children_flops += flops
    for name, tree in params.items():
        rows[name]['params'] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
    rows = {name: row for name, row in rows.items() if row['params'] or row['flops']}  # not parameter-free no-ops
    total_flops = _flops(method.predict, variables, batch)
    if total_flops - children_flops > 0.5:
        rows['other'] = {'params': 0, 'flops': total_flops - children_flops, 'calls': 0}
    return {
        'modules': dict(rows),
        'params': sum(r['params'] for r in rows.values()),
        'flops': total_flops,
        'inputs': {k: list(v.shape[1:]) for k, v in batch.items() if np.asarray(v).dtype.kind == 'f'},
    }


def format_summary(result: dict[str, Any]) -> str:
    width = max(len(name) for name in [*result['modules'], 'module', 'total'])
    lines = [f'{"module":<{width}}  {"params":>12}  {"GFLOPs":>9}  {"GMACs":>8}']
    for name, row in result['modules'].items():
        lines.append(f'{name:<{width}}  {row["params"]:>12,}  {row["flops"] / 1e9:>9.3f}  {row["flops"] / 2e9:>8.3f}')
    lines.append(
        f'{"total":<{width}}  {result["params"]:>12,}  {result["flops"] / 1e9:>9.3f}  {result["flops"] / 2e9:>8.3f}'
    )
    inputs = ', '.join(f'{k} {"x".join(map(str, v))}' for k, v in result['inputs'].items())
    lines.append(
        f'per example ({inputs}); {result["params"] / 1e6:.2f} M parameters, {result["flops"] / 2e9:.2f} GMACs'
    )
    return '\n'.join(lines)


def main(argv: Sequence[str]) -> int:
    """`fdx summary CONFIG_SPEC [--config.KEY=VALUE …] [--json PATH]`."""
    from fdx import config as config_lib

    parser = argparse.ArgumentParser(prog='fdx summary', description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='experiment config FILE.py[:ARG]')
    parser.add_argument('--json', help='also write the figures here')
    args, overrides = parser.parse_known_args(argv)
    config = config_lib.apply_overrides(config_lib.load_config(args.config), overrides)
    result = summarise(config)
    print(format_summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
