"""Pretrained variables on disk (orbax) and grafting them into a freshly initialised model.

A converted checkpoint directory holds `variables/` (an orbax checkpoint of the flax variable tree) and `meta.json`
(`arch`, `model_kwargs`, `source`). Configs initialise any part of a model from it with `graft`:

    variables = graft(init_variables, load_variables(ckpt)[0], dst='backbone', fresh=('head', '*/attention'))
"""

import fnmatch
import json
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import traverse_util


def save_variables(directory: str | Path, variables: dict, **meta: Any) -> None:
    """Writes `variables` and `meta` (JSON-serialisable) to a new directory."""
    directory = Path(directory).absolute()
    if directory.exists():
        raise FileExistsError(f'{directory} already exists; choose a new output directory')
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / 'variables', variables)
    checkpointer.wait_until_finished()
    (directory / 'meta.json').write_text(json.dumps(meta, indent=2, sort_keys=True))


def load_variables(directory: str | Path) -> tuple[dict, dict]:
    """Reads `(variables, meta)` written by `save_variables`."""
    directory = Path(directory).absolute()
    meta_file = directory / 'meta.json'
    if not meta_file.is_file():
        raise FileNotFoundError(f'{directory}: not a converted checkpoint (no meta.json); run `fdx convert-weights`')
    variables = ocp.StandardCheckpointer().restore(directory / 'variables')
    return variables, json.loads(meta_file.read_text())


def _matches(path: str, patterns: Sequence[str]) -> bool:
    """A pattern matches a '/'-joined module path or anything below it (fnmatch syntax)."""
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, f'{p}/*') for p in patterns)


def graft(
    init_variables: dict,
    source: dict,
    *,
    src: str = '',
    dst: str = '',
    fresh: Sequence[str] = (),
    ignore: Sequence[str] = (),
    origin: str = 'pretrained variables',
) -> dict:
    """Returns `init_variables` with the subtree `dst` replaced by the subtree `src` of `source`.

    Paths are '/'-joined within each collection (`params`, `batch_stats`, …), relative to `dst`/`src`. Variables of
    `dst` matching a `fresh` pattern keep their initial values; source variables matching an `ignore` pattern are left
    out. Anything else that is missing, unused or of another shape is an error listing every such path.
    """

    def subtree(variables: dict, prefix: str) -> dict[tuple[str, str], Any]:
        out = {}
        for (collection, *path), value in traverse_util.flatten_dict(variables).items():
            path = '/'.join(path)
            if not prefix or path.startswith(prefix + '/'):
                out[collection, path[len(prefix) + 1 :] if prefix else path] = value
        return out

    targets, sources = subtree(init_variables, dst), subtree(source, src)
    grafted, missing, mismatched = {}, [], []
    for key, target in targets.items():
        if _matches(key[1], fresh):
            continue
        if key not in sources:
            missing.append('/'.join(key))
        elif tuple(sources[key].shape) != tuple(target.shape):
            mismatched.append(f'{"/".join(key)}: {tuple(sources[key].shape)} vs model {tuple(target.shape)}')
        else:
            grafted[key] = jnp.asarray(sources[key], target.dtype)
    unused = ['/'.join(k) for k in sources if k not in targets and not _matches(k[1], ignore)]
    problems = [
        f'{title} ({len(items)}): ' + ', '.join(items)
        for title, items in (
            ('missing from the source', missing),
            ('unused source variables', unused),
            ('shape mismatches', mismatched),
        )
        if items
    ]
    if problems:
        raise ValueError(
            f'cannot initialise {dst or "the model"} from {src or "the root"} of {origin}:\n'
            + '\n'.join(problems)
            + '\n(mark model parts to keep fresh with `fresh`, source parts to drop '
            'with `ignore`)'
        )
    flat = traverse_util.flatten_dict(init_variables)
    for (collection, path), value in grafted.items():
        flat[(collection, *(dst.split('/') if dst else ()), *path.split('/'))] = value
    return traverse_util.unflatten_dict(flat)


def count_params(variables: dict) -> int:
    return sum(x.size for x in jax.tree.leaves(variables.get('params', {})))
