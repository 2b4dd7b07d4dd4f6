"""Evaluation of a split: `fdx eval --workdir W [--step S|best] [--split test] [--config.data.k=v …] [--save-maps N]`.

An `Evaluator` compiles its predict step once and runs it on every split (eval view, no augmentation). Predictions are
gathered from every process (the step returns replicated arrays), padding is dropped, and `fdx.metrics` computes
per level — frames and, where records carry a `video_index`, videos (`config.eval.video_aggregation` of the frame
probabilities: mean, max or mean logit) — ACC/AUC/EER/AP (binary) or accuracy and the confusion matrix (attribution),
bootstrap 95% intervals (`config.eval.bootstrap_resamples`, resampling videos), the AUC/ACC of each manipulation
against all reals (binary tasks on datasets with several fake classes) and the method's own `eval_metrics`.

`fdx eval` builds everything from the checkpoint (its variables' shapes) and the evaluated split, so it runs on any
prepared dataset (`--config.data.name=celebdf`), with or without a train split. Outputs: `metrics_<split>.json`, ROC
curves (PNG, and `roc_<split>_<level>.npz` for `fdx results --plots`) or confusion PNGs, and with `--save-maps N` a
grid of N inputs of each split with every map the method returns (`Method.maps`; `--reconstructions N` is the same).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import jax
import numpy as np

from fdx import config as config_lib
from fdx import input as input_lib
from fdx import methods, metrics, sharding, state, storage, writers
from fdx.input import pipeline

PASSTHROUGH = ('label', 'class_id', 'valid', 'index', 'video_index', 'face_index', 'frame_index')
METRIC_PREFIX = 'metric/'


def eval_config_defaults():
    """`config.eval`: how predictions become metrics."""
    import ml_collections

    return ml_collections.ConfigDict(
        {
            'video_aggregation': 'mean',  # mean | max | logit_mean of the frame probabilities of a video
            # records with several face tracks per video (`fdx prepare --faces all`): track_max | frame_max
            'face_aggregation': 'track_max',
            'bootstrap_resamples': 1000,  # 0: no confidence intervals
            'bootstrap_seed': 0,
            'threshold': 0.5,  # binary: predicted fake iff score >= threshold
        }
    )


class Evaluator:
    """Predicts splits of `config.data` with `method` on `mesh`, compiling each predict step once per run."""

    def __init__(self, config, method, mesh):
        self.config, self.method, self.mesh = config, method, mesh
        self.eval_config = config.get('eval') or eval_config_defaults()
        self.binary = method.task == 'binary'
        self.key = 'score' if self.binary else 'probs'
        batch_sharding = sharding.batch_sharding(mesh)
        jit = lambda fn: jax.jit(  # noqa: E731
            fn, in_shardings=(None, batch_sharding), out_shardings=sharding.replicated(mesh)
        )
        self.predict_step = jit(lambda variables, batch: self._outputs(variables, batch, with_maps=False))
        self.maps_step = jit(lambda variables, batch: self._outputs(variables, batch, with_maps=True))

    def _outputs(self, variables, batch, with_maps: bool):
        outputs = self.method.predict(variables, batch)
        out = {self.key: outputs[self.key]}
        out.update({METRIC_PREFIX + k: v for k, v in self.method.eval_metrics(outputs, batch).items()})
        if with_maps:
            out.update({k: outputs[k] for k in self.method.maps})
        return {**out, **{k: batch[k] for k in PASSTHROUGH if k in batch}}

    def predict_split(self, variables: dict, split: str) -> dict[str, np.ndarray]:
        """Eval-mode predictions, labels and per-example method metrics of every example of `split`, in order."""
        data = self.config.data
        return self.predict(variables, input_lib.build_source(data, split), input_lib.build_transform(data, split))

    def predict(self, variables: dict, source, transform, with_maps: bool = False) -> dict[str, np.ndarray]:
        """The same for any source of items and its view (`fdx detect` scores videos this way); with `with_maps`,
        the method's maps too."""
        dataset = pipeline.eval_dataset(
            source,
            global_batch_size=self.config.eval_batch_size or self.config.batch_size,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            transform=transform,
        )
        step = self.maps_step if with_maps else self.predict_step
        chunks = []
        with pipeline.make_loader(dataset, workers=self.config.data.workers) as loader:
            for local_batch in loader:
                batch = sharding.global_batch(local_batch, self.mesh)
                chunks.append(jax.device_get(step(variables, batch)))
        out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        valid = out.pop('valid')
        order = np.argsort(out['index'][valid], kind='stable')
        return {k: v[valid][order] for k, v in out.items()}

    def evaluate(
        self, variables: dict, split: str, out_dir: str | Path | None = None, checkpoint: dict | None = None
    ) -> dict[str, Any]:
        """Metrics of `split` per level (and `checkpoint`, what was evaluated); with `out_dir`, process 0 writes
        metrics_<split>.json and ROC/confusion PNGs."""
        predictions = self.predict_split(variables, split)
        results = self.metrics(predictions, self._fake_class_names())
        if checkpoint is not None:
            results['checkpoint'] = checkpoint
        if out_dir is not None and jax.process_index() == 0:
            self.write(results, predictions, split, storage.path(out_dir))
        return results

    def _fake_class_names(self) -> tuple[str, ...] | None:
        """The dataset's class names when a binary task's fakes come in named manipulations to report one by one."""
        if not self.binary:
            return None
        names = input_lib.dataset_class_names(self.config.data)
        return None if tuple(names) == ('real', 'fake') else names

    def metrics(self, predictions: dict[str, np.ndarray], class_names: Sequence[str] | None) -> dict[str, Any]:
        eval_config = self.eval_config
        results = {}
        for level, (labels, values, groups, class_ids) in self.levels(predictions).items():
            if self.binary:
                result = metrics.binary_metrics(labels, values, threshold=eval_config.threshold)
                if class_names is not None and class_ids is not None:
                    result['per_manipulation'] = metrics.per_class_binary(
                        labels, values, class_ids, class_names, threshold=eval_config.threshold
                    )
            else:
                result = metrics.multiclass_metrics(labels, values, self.method.class_names)
            if eval_config.bootstrap_resamples:
                bootstrap = metrics.bootstrap_binary if self.binary else metrics.bootstrap_multiclass
                kwargs = {'threshold': eval_config.threshold} if self.binary else {}
                result['ci'] = bootstrap(
                    labels,
                    values,
                    groups,
                    resamples=eval_config.bootstrap_resamples,
                    seed=eval_config.bootstrap_seed,
                    **kwargs,
                )
            if level == 'video':
                result['aggregation'] = eval_config.video_aggregation
            results[level] = result
        for key in predictions:
            if key.startswith(METRIC_PREFIX):
                # NaN where a metric is undefined for an example (no ground truth): left out of the mean
                results['frame'][key[len(METRIC_PREFIX) :]] = float(np.nanmean(predictions[key]))
        return results

    def levels(self, predictions: dict[str, np.ndarray]) -> dict[str, tuple]:
        """(labels, scores or probs, bootstrap groups, class ids) per level: frames, and videos when records carry a
        `video_index` (frames are then resampled by video). Videos with several face tracks score by
        `eval.face_aggregation` (`metrics.multi_face_video_level`)."""
        labels, values = predictions['label'], predictions[self.key]
        class_ids = predictions.get('class_id')
        tracks = predictions.get('video_index')
        if tracks is None:
            return {'frame': (labels, values, None, class_ids)}
        faces = predictions.get('face_index', np.zeros_like(tracks))
        videos = tracks - faces  # one value per video for all its face tracks (`tfds_builders.track_indices`)
        levels = {'frame': (labels, values, videos, class_ids)}
        aggregation = self.eval_config.video_aggregation
        if faces.any() and self.binary:
            rule = self.eval_config.get('face_aggregation', 'track_max')
            frames = predictions['frame_index']
            video_labels, video_values, _ = metrics.multi_face_video_level(
                labels, values, tracks, videos, frames, rule, aggregation
            )
        else:  # one face per video, or attribution (a video's probabilities average over all its faces' frames)
            aggregate = metrics.video_level if self.binary else metrics.video_level_multiclass
            video_labels, video_values, _ = aggregate(labels, values, videos, aggregation)
        video_classes = None if class_ids is None else metrics.per_video(class_ids, videos)
        levels['video'] = (video_labels, video_values, None, video_classes)
        return levels

    def write(self, results, predictions, split: str, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f'metrics_{split}.json').write_text(json.dumps(results, indent=2, default=float))
        for level, (labels, values, _, _) in self.levels(predictions).items():
            title = f'{split}, {level} level'
            if self.binary:
                fpr, tpr, _ = metrics.roc_curve(labels, values)
                metrics.save_roc_png(fpr, tpr, results[level]['auc'], out_dir / f'roc_{split}_{level}.png', title=title)
                storage.save_npz(out_dir / f'roc_{split}_{level}.npz', fpr=fpr, tpr=tpr)  # for `fdx results --plots`
            else:
                metrics.save_confusion_matrix_png(
                    results[level]['confusion_matrix'],
                    self.method.class_names,
                    out_dir / f'confusion_{split}_{level}.png',
                    title=title,
                )

    def save_maps(self, variables: dict, split: str, count: int, path: str | Path) -> None:
        """A PNG grid: `count` eval-mode inputs spread over `split` (first row) and every map of `Method.maps` below
        (heat maps over the input, images as they are)."""
        data = self.config.data
        source = input_lib.build_source(data, split)
        transform = input_lib.build_transform(data, split)
        view = transform.view
        picks = np.linspace(0, len(source) - 1, min(count, len(source))).astype(int)  # spread over the split
        examples = []
        for i in picks:
            out = transform(source[int(i)], np.random.default_rng(int(i)))
            examples.append(out[0] if isinstance(out, list) else out)
        batch = {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}
        replicated = sharding.replicated(self.mesh)
        outputs = jax.device_get(
            jax.jit(lambda v, b: self._outputs(v, b, with_maps=True), out_shardings=replicated)(variables, batch)
        )
        inputs = np.stack([view.display(e) for e in examples])
        rows = {'input': inputs}
        for name, kind in self.method.maps.items():
            values = np.asarray(outputs[name], np.float32)
            if kind == 'image':
                rows[name] = np.stack([view.display({view.display_key: v}) for v in values])
            else:
                rows[name] = np.stack([heat_overlay(image, heat) for image, heat in zip(inputs, values)])
        if self.binary:
            titles = [f'{data.class_names[int(e["label"])]} {float(s):.2f}' for e, s in zip(examples, outputs['score'])]
        else:
            titles = [self.method.class_names[int(e['label'])] for e in examples]
        metrics.save_image_grid_png(rows, path, titles, title=f'{split}: inputs and maps')


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A heat map [h, w] (or [h, w, C]: its maximum over channels) in [0, 1], resized to the uint8 RGB `image` and
    blended over it with the jet colour map."""
    import cv2
    from matplotlib import colormaps

    heat = np.asarray(heat, np.float32)
    if heat.ndim == 3:
        heat = heat.max(axis=-1)
    heat = cv2.resize(np.clip(heat, 0.0, 1.0), image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    colours = colormaps['jet'](heat)[..., :3] * 255
    return np.clip(np.rint((1 - alpha) * image + alpha * colours), 0, 255).astype(np.uint8)


def scalars(results: dict[str, Any], split: str) -> dict[str, float]:
    """`<split>/<level>/<metric>` for every scalar metric; nested dicts (per class, per manipulation, intervals)
    add their keys (`test/frame/ci/auc/low`)."""
    out = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f'{prefix}/{k}', v)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and prefix.rsplit('/', 2)[-2] == 'ci':
            out[f'{prefix}/low'], out[f'{prefix}/high'] = float(value[0]), float(value[1])
        elif isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
            if prefix.rsplit('/', 1)[-1] not in ('n', 'n_pos', 'resamples', 'resamples_auc', 'seed', 'level'):
                out[prefix] = float(value)

    for level, result in results.items():
        if level != 'checkpoint':
            walk(f'{split}/{level}', result)
    return out


def summary(results: dict[str, Any], split: str) -> str:
    """One line: each level's headline metrics with their 95% intervals (and the checkpoint's selection)."""
    parts = []
    for level, result in results.items():
        if level not in ('frame', 'video'):
            continue
        cells = []
        for name in ('acc', 'auc', 'eer'):
            if name in result:
                ci = result.get('ci', {}).get(name)
                cells.append(f'{name}={result[name]:.4f}' + (f' [{ci[0]:.4f}, {ci[1]:.4f}]' if ci else ''))
        parts.append(f'{split}/{level} ' + ' '.join(cells) + f' (n={result["n"]})')
    selection = results.get('checkpoint', {})
    if selection.get('selected_on_test'):
        parts.append('selected on test')
    return '; '.join(parts)


def resolve_step(workdir: Path, config, step: str | None):
    """(orbax manager, step, checkpoint description) for `--step`: a number, `best` or the latest (default).

    A latest checkpoint that does not restore is skipped for the previous one with a warning (`restore_latest`).
    """
    if step == 'best':
        manager = state.checkpoint_manager(workdir, config, state.BEST)
        best = manager.latest_step()
        if best is None:
            manager.close()
            raise ValueError(f'{workdir / state.BEST}: no best checkpoint; the run selects none (config.select)')
        return manager, best, state.read_best(workdir) or {'step': best}
    manager = state.checkpoint_manager(workdir, config)
    steps = sorted(manager.all_steps())
    if step is not None and int(step) not in steps:
        manager.close()
        raise ValueError(f'{workdir / state.CHECKPOINTS} has no checkpoint for step {step} (available: {steps})')
    if not steps:
        manager.close()
        raise ValueError(f'{workdir / state.CHECKPOINTS} has no checkpoint yet')
    return manager, (int(step) if step is not None else None), None


class Restored(NamedTuple):
    """A workdir's checkpoint ready to predict: its config (with overrides), method, mesh, variables, step, and
    `checkpoint` (what was restored: the step, and for `best` the selection it was chosen by)."""

    config: Any
    method: Any
    mesh: Any
    variables: dict
    step: int
    checkpoint: dict


def serving_step(workdir: str | Path, step: str | int | None) -> str | None:
    """`restore`'s step for a command that serves a model (`fdx detect`, `fdx export`): a number, 'best', 'latest'
    (None), or by default the best checkpoint when the run selected one, else the latest."""
    if step is None:
        return 'best' if state.read_best(workdir) else None
    return None if step == 'latest' else str(step)


def restore(workdir: str | Path, step: str | None = None, overrides: Sequence[str] = ()) -> Restored:
    """The checkpoint of `workdir` at `step` (a number, 'best', or None: the latest that restores), built from the
    saved config and the checkpoint's own metadata (no dataset or optimizer is needed)."""
    workdir = storage.path(workdir)
    config = config_lib.apply_overrides(config_lib.load_saved_config(workdir), overrides)
    method = methods.build(config)  # registers the method's own views
    mesh = sharding.make_mesh(config.mesh)
    manager, step, best = resolve_step(workdir, config, step)
    try:
        with jax.set_mesh(mesh):
            step, variables, _ = state.restore_with_fallback(
                manager, step, lambda s: state.restore_variables(manager, s, mesh, config)
            )
    finally:
        manager.close()
    checkpoint = {'step': step}
    if best is not None:
        checkpoint.update({'selected_by': best, 'selected_on_test': best.get('split') == 'test'})
    return Restored(config, method, mesh, variables, step, checkpoint)


def main(argv: Sequence[str]) -> int:
    """`fdx eval --workdir DIR [--step S|best] [--split NAME …] [--config.KEY=VALUE …] [--out DIR] [--save-maps N]`."""
    _, overrides, rest = config_lib.parse_cli(argv)
    parser = argparse.ArgumentParser(prog='fdx eval', description=main.__doc__)
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--step', help="checkpoint step, or 'best' (config.select); default: the latest")
    parser.add_argument('--split', action='append', help='split(s) to evaluate (default: config.eval_splits)')
    parser.add_argument('--out', help='output directory (default: <workdir>/eval/step_<S>)')
    parser.add_argument('--save-maps', type=int, default=0, metavar='N', help="save N inputs with the method's maps")
    parser.add_argument('--reconstructions', type=int, default=0, metavar='N', help='the same as --save-maps N')
    args = parser.parse_args(rest)
    if args.step not in (None, 'best') and not args.step.isdigit():
        parser.error(f"--step: a step number or 'best', got {args.step!r}")
    workdir = storage.path(args.workdir)
    maps = max(args.save_maps, args.reconstructions)
    restored = restore(workdir, args.step, overrides)
    config, method, step = restored.config, restored.method, restored.step
    if maps and not method.maps:
        raise ValueError(f'--save-maps: method {config.method!r} returns no maps (Method.maps)')
    with jax.set_mesh(restored.mesh):
        evaluator = Evaluator(config, method, restored.mesh)
        best = 'selected_by' in restored.checkpoint
        out_dir = (
            storage.path(args.out) if args.out else workdir / 'eval' / (f'best_{step}' if best else f'step_{step}')
        )
        for split in args.split or config.eval_splits:
            results = evaluator.evaluate(restored.variables, split, out_dir, restored.checkpoint)
            writers.log(f'step {step}: ' + summary(results, split))
            if maps and jax.process_index() == 0:
                path = out_dir / f'maps_{split}.png'
                evaluator.save_maps(restored.variables, split, maps, path)
                writers.log(f'wrote {path}')
    writers.log(f'wrote {out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
