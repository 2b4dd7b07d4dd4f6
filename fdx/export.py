"""`fdx export --workdir W --out DIR [--step best|latest|N] [--config.KEY=VALUE …]`: a workdir's eval-mode predict
function as a `jax.export` artifact that runs without fdx's config, methods or trainer; `load(DIR)` runs it.

DIR holds
    predict.jaxexport  the serialized `jax.export.Exported` (StableHLO) of `predict(variables, inputs) -> outputs`,
                       lowered for cpu, cuda, rocm and tpu (`--platforms`) with a symbolic batch dimension `b`
    variables.npz      the checkpoint's variables (every collection), one array per '/'-joined path
                       (`params/backbone/conv1/kernel`): arguments of the function, not constants inside it
    export.json        what to feed and what comes out: `inputs` (per-example shape and dtype), `outputs` (the
                       eval-mode `score` [B] or `probs` [B, K], then the method's maps but its `label_maps`),
                       `task`, `class_names`, `preprocessing` (how a video becomes the inputs: the workdir's
                       `preprocessing.json`, the eval view's name and fields, `config.eval`'s aggregation and
                       threshold), the step, the source workdir and the jax version

    predictor = fdx.export.load('exported')               # imports jax and numpy only
    outputs = predictor({'image': images})                # {'score': [B]} as numpy arrays; any batch size

Inputs are the array keys of an eval-view example that `method.predict` reads (see `input_keys`); the view's
pass-through metadata (label, indices, …) and what predict only reads when present (a ground-truth mask) are not
inputs. This module imports jax, numpy and the standard library only; `export_workdir` imports the rest of fdx when
called.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

EXPORT_FILE = 'predict.jaxexport'
VARIABLES_FILE = 'variables.npz'
DESCRIPTION_FILE = 'export.json'
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')
FORMAT = 1  # export.json's layout


class ExportedPredictor:
    """An `fdx export` directory, loaded: `predictor(batch)` maps `{input key: [B, …] array}` (extra keys are
    ignored) to `{output name: [B, …] numpy array}`."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        for name in (DESCRIPTION_FILE, EXPORT_FILE, VARIABLES_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f'{directory / name} is missing: not an `fdx export` directory '
                    '(`fdx export --workdir W --out DIR` makes one)'
                )
        self.description = json.loads((directory / DESCRIPTION_FILE).read_text())
        self.preprocessing: dict[str, Any] = self.description['preprocessing']
        self.input_spec = {k: (tuple(v['shape']), np.dtype(v['dtype'])) for k, v in self.description['inputs'].items()}
        self.output_names = tuple(self.description['outputs'])
        self.task: str = self.description['task']
        self.class_names = tuple(self.description['class_names'])
        self.exported = jax_export.deserialize(bytearray((directory / EXPORT_FILE).read_bytes()))
        (variable_avals, _), _ = jax.tree.unflatten(self.exported.in_tree, self.exported.in_avals)
        with np.load(directory / VARIABLES_FILE) as arrays:
            if set(arrays.files) != set(variable_avals):
                differing = sorted(set(variable_avals) ^ set(arrays.files))
                raise ValueError(
                    f'{directory / VARIABLES_FILE} does not match {directory / EXPORT_FILE} (e.g. {differing[0]!r}); '
                    'export the workdir again'
                )
            # .view: npz keeps bfloat16 as raw 2-byte values
            variables = {k: arrays[k].view(aval.dtype) for k, aval in variable_avals.items()}
        self.variables = jax.device_put(variables)
        self._predict = jax.jit(self.exported.call)

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        inputs = {}
        for key, (shape, dtype) in self.input_spec.items():
            if key not in batch:
                raise ValueError(f'batch has no {key!r}; the export reads {self._spec_text()} (export.json "inputs")')
            value = np.asarray(batch[key])
            if value.shape[1:] != shape or value.ndim != len(shape) + 1:
                raise ValueError(
                    f'batch[{key!r}]: shape {list(value.shape)}, the export reads [B, {", ".join(map(str, shape))}] '
                    '(export.json "inputs")'
                )
            if value.dtype.kind != dtype.kind:
                raise ValueError(
                    f'batch[{key!r}]: dtype {value.dtype}, the export reads {dtype} '
                    '(prepared as export.json "preprocessing" describes)'
                )
            inputs[key] = value.astype(dtype, copy=False)
        sizes = {key: len(value) for key, value in inputs.items()}
        if len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise ValueError(f'batch: the inputs need one batch size B >= 1, got {sizes}')
        return {k: np.asarray(v) for k, v in self._predict(self.variables, inputs).items()}

    def _spec_text(self) -> str:
        return ', '.join(f'{k} [B, {", ".join(map(str, s))}] {d}' for k, (s, d) in self.input_spec.items())


def load(directory: str | Path) -> ExportedPredictor:
    """The predictor exported into `directory` by `fdx export`."""
    return ExportedPredictor(directory)


def example_inputs(data_config, split: str) -> dict[str, np.ndarray]:
    """One example of `split`'s eval view: from the view's `spec()` (zeros; no dataset needed) when it has one, else
    the split's first item through the view."""
    from fdx import input as input_lib

    spec = input_lib.build_view(data_config, split).spec()
    if spec is not None:
        return {key: np.zeros(shape, dtype) for key, (shape, dtype) in spec.items()}
    source = input_lib.build_source(data_config, split)
    example = input_lib.build_transform(data_config, split)(source[0], np.random.default_rng(0))
    return example[0] if isinstance(example, list) else example


def input_keys(predict, variables: dict[str, np.ndarray], example: dict[str, Any]) -> tuple[str, ...]:
    """The keys of `example` that `predict(variables, batch)` needs: its numeric arrays outside the eval's
    pass-through metadata (`fdx.evaluate.PASSTHROUGH`) without which `predict` does not trace. Tracing finds them
    for any method without a list per method; a key predict only reads when present (`batch.get`, such as a
    ground-truth mask drawn beside a map) is left out, as a deployed detector has no such input."""
    from fdx import evaluate

    batch = {}
    for key, value in example.items():
        value = np.asarray(value)
        if key not in evaluate.PASSTHROUGH and value.dtype.kind in 'biuf':
            batch[key] = value[None]
    jax.eval_shape(predict, variables, batch)  # the whole example must trace
    needed = []
    for key in batch:
        try:
            jax.eval_shape(predict, variables, {k: v for k, v in batch.items() if k != key})
        except Exception:  # noqa: BLE001 (whatever fails without the key means predict reads it)
            needed.append(key)
    return tuple(needed)


def _aval_spec(aval) -> dict[str, Any]:
    """Per-example shape (the batch axis dropped) and dtype of a batched abstract value."""
    return {'shape': [int(d) for d in aval.shape[1:]], 'dtype': str(aval.dtype)}


def _preprocessing(workdir: Path, config, view, split: str) -> dict[str, Any]:
    """The workdir's `preprocessing.json` (or its dataset's, for runs older than the file), the eval view as
    evaluation builds it (`for_eval`: no training augmentation) and `config.eval`'s aggregation and threshold."""
    import dataclasses

    from fdx import evaluate
    from fdx import input as input_lib

    path = workdir / input_lib.PREPROCESSING_FILE
    described = json.loads(path.read_text()) if path.is_file() else input_lib.preprocessing(config.data)
    eval_config = config.get('eval') or evaluate.eval_config_defaults()
    return {
        **described,
        'view': {'name': input_lib.view_name(config.data, split), 'split': split, 'fields': dataclasses.asdict(view)},
        'eval': {k: eval_config.get(k) for k in ('video_aggregation', 'face_aggregation', 'threshold')},
    }


def export_workdir(
    workdir: str | Path,
    out: str | Path,
    step: str | int | None = None,
    overrides: Sequence[str] = (),
    platforms: Sequence[str] = PLATFORMS,
) -> Path:
    """Exports the checkpoint of `workdir` at `step` (a number, 'best', 'latest'; None: the best when the run
    selected one, else the latest) into the new or empty directory `out`; returns `out`."""
    from flax import traverse_util

    from fdx import evaluate, storage
    from fdx import input as input_lib

    workdir, out = storage.path(workdir), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f'--out {out} exists and is not an empty directory; give a new one')
    restored = evaluate.restore(workdir, evaluate.serving_step(workdir, step), overrides)
    config, method = restored.config, restored.method
    split = (tuple(config.eval_splits) or ('test',))[0]
    variables = {k: np.asarray(v) for k, v in traverse_util.flatten_dict(restored.variables, sep='/').items()}
    maps = tuple(m for m in method.maps if m not in method.label_maps)  # no ground truth in deployment
    output_names = ('score' if method.task == 'binary' else 'probs', *maps)

    def predict(flat_variables, inputs):
        outputs = method.predict(traverse_util.unflatten_dict(flat_variables, sep='/'), inputs)
        return {name: outputs[name] for name in output_names}

    example = example_inputs(config.data, split)
    keys = input_keys(predict, variables, example)
    (batch,) = jax_export.symbolic_shape('b')
    exported = jax_export.export(jax.jit(predict), platforms=tuple(platforms))(
        {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in variables.items()},
        {k: jax.ShapeDtypeStruct((batch, *np.shape(example[k])), np.asarray(example[k]).dtype) for k in keys},
    )
    (_, input_avals), _ = jax.tree.unflatten(exported.in_tree, exported.in_avals)
    output_avals = jax.tree.unflatten(exported.out_tree, exported.out_avals)
    description = {
        'format': FORMAT,
        'method': config.method,
        'task': method.task,
        'class_names': list(method.class_names),
        'inputs': {k: _aval_spec(aval) for k, aval in input_avals.items()},
        'outputs': {name: _aval_spec(output_avals[name]) for name in output_names},
        'preprocessing': _preprocessing(workdir, config, input_lib.build_view(config.data, split), split),
        'platforms': list(exported.platforms),
        'step': restored.step,
        'checkpoint': restored.checkpoint,
        'source_workdir': str(workdir.absolute()),
        'jax_version': jax.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_FILE).write_bytes(exported.serialize())
    np.savez(out / VARIABLES_FILE, **variables)
    (out / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2))
    return out


def main(argv: Sequence[str]) -> int:
    """`fdx export --workdir W --out DIR [--step best|latest|N] [--platforms cpu,cuda,…] [--config.KEY=VALUE …]`."""
    from fdx import config as config_lib
    from fdx import writers

    _, overrides, rest = config_lib.parse_cli(argv)
    parser = argparse.ArgumentParser(prog='fdx export', description=main.__doc__)
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--out', required=True, help='a new (or empty) directory')
    parser.add_argument('--step', help="a checkpoint step, 'best' or 'latest' (default: best if selected, else latest)")
    parser.add_argument('--platforms', default=','.join(PLATFORMS), help='comma-separated lowering platforms')
    args = parser.parse_args(rest)
    if args.step not in (None, 'best', 'latest') and not args.step.isdigit():
        parser.error(f"--step: a step number, 'best' or 'latest', got {args.step!r}")
    out = export_workdir(args.workdir, args.out, args.step, overrides, args.platforms.split(','))
    description = json.loads((out / DESCRIPTION_FILE).read_text())
    inputs = ', '.join(
        f'{k} {v["dtype"]}[B, {", ".join(map(str, v["shape"]))}]' for k, v in description['inputs'].items()
    )
    writers.log(f'wrote {out}: step {description["step"]}, inputs {inputs} -> {", ".join(description["outputs"])}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
