"""Evaluation over a whole split: `fdx eval --workdir W [--step S] [--split test] [--config.data.k=v …]`.

Predictions are gathered from every process (the jitted predict step returns replicated arrays), padding is dropped,
and the metrics of `fdx.metrics` are computed once over the whole set: frame level and, where records carry a
`video_index`, video level (mean frame probability per video). Writes `metrics.json` and a ROC curve (binary) or a
confusion matrix (attribution) PNG; `--reconstructions N` also draws N inputs of each split above the
method's reconstructions (methods with a `reconstruct`, e.g. RECCE/PANet).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from fdx import config as config_lib
from fdx import input as input_lib
from fdx import metrics, sharding, writers
from fdx.input import pipeline, views

PASSTHROUGH = ('label', 'valid', 'index', 'video_index')


def predict_split(setup, variables: dict, split: str) -> dict[str, np.ndarray]:
    """Eval-mode predictions and labels for every record of `split`, in record order."""
    config = setup.config
    source = input_lib.build_source(config.data, split)
    dataset = pipeline.eval_dataset(
        source,
        global_batch_size=config.eval_batch_size or config.batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        transform=input_lib.build_transform(config.data, split),
    )

    def predict(variables, batch):
        return {**setup.method.predict(variables, batch), **{k: batch[k] for k in PASSTHROUGH if k in batch}}

    step = jax.jit(
        predict,
        in_shardings=(setup.variables_sharding, setup.batch_sharding),
        out_shardings=sharding.replicated(setup.mesh),
    )
    chunks = []
    for local_batch in pipeline.make_loader(dataset, workers=config.data.workers):
        chunks.append(jax.device_get(step(variables, sharding.global_batch(local_batch, setup.mesh))))
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    valid = out.pop('valid')
    order = np.argsort(out['index'][valid], kind='stable')
    return {k: v[valid][order] for k, v in out.items()}


def _levels(predictions: dict[str, np.ndarray], key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, scores or probs) per level: frames, and videos when records carry a `video_index`."""
    labels, values = predictions['label'], predictions[key]
    levels = {'frame': (labels, values)}
    if 'video_index' in predictions:
        aggregate = metrics.video_level if key == 'score' else metrics.video_level_multiclass
        levels['video'] = aggregate(labels, values, predictions['video_index'])[:2]
    return levels


def evaluate(setup, variables: dict, split: str, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Metrics of `split` per level; with `out_dir`, process 0 writes metrics_<split>.json and ROC/confusion PNGs."""
    method = setup.method
    binary = method.task == 'binary'
    levels = _levels(predict_split(setup, variables, split), 'score' if binary else 'probs')
    results = {
        level: metrics.binary_metrics(*values) if binary else metrics.multiclass_metrics(*values, method.class_names)
        for level, values in levels.items()
    }
    if out_dir is None or jax.process_index() != 0:
        return results
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f'metrics_{split}.json').write_text(json.dumps(results, indent=2, default=float))
    for level, (labels, values) in levels.items():
        title = f'{split}, {level} level'
        if binary:
            fpr, tpr, _ = metrics.roc_curve(labels, values)
            metrics.save_roc_png(fpr, tpr, results[level]['auc'], out_dir / f'roc_{split}_{level}.png', title=title)
        else:
            metrics.save_confusion_matrix_png(
                results[level]['confusion_matrix'],
                method.class_names,
                out_dir / f'confusion_{split}_{level}.png',
                title=title,
            )
    return results


def save_reconstructions(setup, variables: dict, split: str, count: int, path: str | Path) -> None:
    """A PNG grid: `count` eval-mode inputs spread over `split` (row 1) above the method's reconstructions (row 2)."""
    config, method = setup.config, setup.method
    source = input_lib.build_source(config.data, split)
    transform = input_lib.build_transform(config.data, split)
    picks = np.linspace(0, len(source) - 1, min(count, len(source))).astype(int)  # spread over the split
    items = [transform(source[int(i)], np.random.default_rng(int(i))) for i in picks]
    images = np.stack([item['image'] for item in items])
    reconstructions = jax.device_get(jax.jit(method.reconstruct)(variables, {'image': images}))
    titles = [method.class_names[int(item['label'])] for item in items]
    rows = {
        name: views.denormalise(x, config.data.normalisation)
        for name, x in (('input', images), ('reconstruction', reconstructions))
    }
    metrics.save_image_grid_png(rows, path, titles, title=f'{split}: inputs and reconstructions')


def scalars(results: dict[str, Any], split: str) -> dict[str, float]:
    """`<split>/<level>/<metric>` for every scalar metric (per-class accuracies included)."""
    out = {}
    for level, result in results.items():
        for name, value in result.items():
            if isinstance(value, dict):
                out.update({f'{split}/{level}/{name}/{k}': v for k, v in value.items()})
            elif isinstance(value, (int, float, np.floating)) and name not in ('n', 'n_pos'):
                out[f'{split}/{level}/{name}'] = float(value)
    return out


def main(argv: Sequence[str]) -> int:
    """`fdx eval --workdir DIR [--step S] [--split NAME …] [--config.KEY=VALUE …] [--out DIR]`."""
    from fdx import train  # train imports this module

    _, overrides, rest = config_lib.parse_cli(argv)
    parser = argparse.ArgumentParser(prog='fdx eval', description=main.__doc__)
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--step', type=int, help='checkpoint step (default: the latest)')
    parser.add_argument('--split', action='append', help='split(s) to evaluate (default: config.eval_splits)')
    parser.add_argument('--out', help='output directory (default: <workdir>/eval/step_<S>)')
    parser.add_argument(
        '--reconstructions', type=int, default=0, metavar='N', help='also save N inputs and their reconstructions'
    )
    args = parser.parse_args(rest)
    workdir = Path(args.workdir)
    try:
        config = config_lib.apply_overrides(config_lib.load_saved_config(workdir), overrides)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f'fdx eval: {e}', file=sys.stderr)
        return 2
    manager = train.checkpoint_manager(workdir, config)
    step = args.step if args.step is not None else manager.latest_step()
    if step is None or step not in manager.all_steps():
        print(
            f'fdx eval: {workdir / "checkpoints"} has no checkpoint for step {step} '
            f'(available: {sorted(manager.all_steps())})',
            file=sys.stderr,
        )
        return 2
    setup = train.setup_for(config)
    if args.reconstructions and not hasattr(setup.method, 'reconstruct'):
        print(f'fdx eval: --reconstructions: method {config.method!r} does not reconstruct its inputs', file=sys.stderr)
        return 2
    with jax.set_mesh(setup.mesh):
        state = train.restore_state(manager, setup, step)
        out_dir = Path(args.out) if args.out else workdir / 'eval' / f'step_{step}'
        for split in args.split or config.eval_splits:
            results = evaluate(setup, state.variables(), split, out_dir)
            headline = {k: v for k, v in scalars(results, split).items() if '/per_class_acc/' not in k}
            writers.log(f'step {step}: ' + ', '.join(f'{k}={v:.4f}' for k, v in headline.items()))
            if args.reconstructions > 0 and jax.process_index() == 0:
                path = out_dir / f'reconstructions_{split}.png'
                save_reconstructions(setup, state.variables(), split, args.reconstructions, path)
                writers.log(f'wrote {path}')
    writers.log(f'wrote {out_dir}')
    manager.close()
    return 0
