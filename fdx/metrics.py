"""Evaluation metrics for binary detection and multi-class attribution.

Pure numpy at run time, vectorised (sort/bincount based) so it scales to
millions of frames; bootstrap intervals evaluate all resamples as weight
matrices. Binary convention: label 1 = positive = fake, and a score is the
probability of fake. Plots use matplotlib's Agg canvas, imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdx import storage

__all__ = [
    "binary_metrics",
    "bootstrap_binary",
    "bootstrap_multiclass",
    "format_mean_std",
    "format_table",
    "mean_std",
    "multiclass_metrics",
    "per_class_binary",
    "per_video",
    "roc_curve",
    "save_confusion_matrix_png",
    "save_image_grid_png",
    "save_roc_png",
    "video_level",
    "video_level_multiclass",
]


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #


def _as_labels(labels: Any, num_classes: int, name: str = "labels") -> np.ndarray:
    """Return `labels` as a 1-D int64 array, checking values lie in [0, num_classes)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    bad = ~np.isin(arr, np.arange(num_classes))
    if bad.any():
        allowed = "0 or 1" if num_classes == 2 else f"integers in [0, {num_classes - 1}]"
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"{name} must be {allowed}; found {int(bad.sum())} invalid values, e.g. {examples}")
    return arr.astype(np.int64)


def _as_finite(name: str, values: Any, ndim: int) -> np.ndarray:
    """Return `values` as a float64 array of rank `ndim`, rejecting NaN/inf."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    n_bad = arr.size - np.count_nonzero(np.isfinite(arr))
    if n_bad:
        raise ValueError(f"{name} contain {n_bad} non-finite values")
    return arr


def _check_lengths(**arrays: np.ndarray) -> None:
    """Raise if the given arrays do not share their first dimension."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"inputs have mismatched lengths: {detail}")


def _binary_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate binary labels and scores: equal length, labels 0/1, finite scores."""
    labels, scores = _as_labels(labels, 2), _as_finite("scores", scores, ndim=1)
    _check_lengths(labels=labels, scores=scores)
    return labels, scores


def _multiclass_inputs(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate multi-class labels [N] and probabilities [N, K]."""
    probs = _as_finite("probs", probs, ndim=2)
    labels = _as_labels(labels, probs.shape[1])
    _check_lengths(labels=labels, probs=probs)
    return labels, probs


# --------------------------------------------------------------------------- #
# Binary metrics
# --------------------------------------------------------------------------- #


def _clf_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tps, fps, thresholds) at each distinct score, highest first.

    Predicting positive iff `score >= threshold`; tied scores form one point.
    """
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    # Last index of each run of equal scores (plus the final sample).
    ends = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels[order])[ends].astype(np.float64)
    fps = (ends + 1) - tps
    return tps, fps, scores[ends]


def _rates(counts: np.ndarray) -> np.ndarray:
    """Normalise cumulative counts to rates; all-NaN when the class is absent."""
    total = counts[-1]
    return counts / total if total > 0 else np.full(counts.shape, np.nan)


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve as (fpr, tpr, thresholds), decreasing thresholds starting at +inf.

    Identical to `sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)`;
    rates of an absent class are NaN.
    """
    tps, fps, thresholds = _clf_curve(*_binary_inputs(labels, scores))
    return _rates(np.r_[0.0, fps]), _rates(np.r_[0.0, tps]), np.r_[np.inf, thresholds]


def _eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: where the ROC polyline crosses FPR = FNR (= 1 - TPR).

    `fpr - fnr` is strictly increasing along the curve from -1 to 1, so exactly one
    segment brackets zero; the crossing is linearly interpolated on that segment.
    """
    diff = fpr - (1.0 - tpr)
    i = int(np.searchsorted(diff, 0.0))  # first point with fpr >= fnr; i >= 1
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def binary_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, ROC AUC, average precision and EER of fake-probability scores.

    A sample is predicted fake iff `score >= threshold` (the same rule as the ROC
    thresholds). `auc` and `ap` match sklearn's `roc_auc_score` and
    `average_precision_score` (ties included); `eer` is the FPR where the ROC
    curve, linearly interpolated between its points, crosses FPR = 1 - TPR.
    With a single class present `auc`/`ap`/`eer` are NaN and a `warning` is added.
    """
    labels, scores = _binary_inputs(labels, scores)
    n, n_pos = labels.size, int(labels.sum())
    nan = float("nan")
    out: dict[str, Any] = {
        "acc": float(np.mean((scores >= threshold) == labels)),
        "auc": nan,
        "ap": nan,
        "eer": nan,
        "n": n,
        "n_pos": n_pos,
    }
    if n_pos in (0, n):
        present = "positive (fake)" if n_pos else "negative (real)"
        out["warning"] = f"only {present} labels present; auc, ap and eer are undefined"
        return out

    tps, fps, _ = _clf_curve(labels, scores)
    fpr, tpr = np.r_[0.0, fps] / fps[-1], np.r_[0.0, tps] / tps[-1]
    out["auc"] = float(np.trapezoid(tpr, fpr))
    # Step-wise AP: sum over thresholds of (recall increment) * precision.
    out["ap"] = float(np.sum(np.diff(tpr) * tps / (tps + fps)))
    out["eer"] = _eer(fpr, tpr)
    return out


def per_class_binary(
    labels: Any, scores: Any, class_ids: Any, class_names: Sequence[str], threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """`binary_metrics` of each fake class (class id of a label-1 sample) against all real samples.

    `class_ids` index `class_names`; classes with no fake sample are omitted. Keys follow class id order.
    """
    labels, scores = _binary_inputs(labels, scores)
    class_ids = _as_labels(class_ids, len(class_names), name="class_ids")
    _check_lengths(labels=labels, class_ids=class_ids)
    real, fake = labels == 0, labels == 1
    out = {}
    for c in np.unique(class_ids[fake]):
        keep = real | (fake & (class_ids == c))
        out[class_names[c]] = binary_metrics(labels[keep], scores[keep], threshold)
    return out


# --------------------------------------------------------------------------- #
# Video-level aggregation
# --------------------------------------------------------------------------- #


_AGGREGATIONS = ("mean", "max", "logit_mean")
_EPS = 1e-7  # probability clip before taking logs


def _index_videos(video_ids: Any, name: str = "video_ids", **arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """(sorted unique ids, first frame of each, video index of each frame), checking lengths against `arrays`."""
    video_ids = np.asarray(video_ids)
    if video_ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {video_ids.shape}")
    _check_lengths(**arrays, **{name: video_ids})
    return np.unique(video_ids, return_index=True, return_inverse=True)


def _constant_per_video(
    values: np.ndarray, ids: np.ndarray, first: np.ndarray, inverse: np.ndarray, what: str
) -> np.ndarray:
    """Each video's value of `values`, raising ValueError naming videos whose frames disagree."""
    value = values[first]
    mixed = (values != value[inverse]).reshape(len(values), -1).any(axis=1)
    if mixed.any():
        bad = ids[np.unique(inverse[mixed])].tolist()
        raise ValueError(f"{len(bad)} video(s) have frames with mixed {what}: {bad[:5]}")
    return value


def _video_mean(values: np.ndarray, inverse: np.ndarray, n_videos: int) -> np.ndarray:
    """Per-video mean of `values` ([N] or [N, K])."""
    counts = np.bincount(inverse, minlength=n_videos)
    cols = values.reshape(len(values), -1).T
    sums = np.stack([np.bincount(inverse, weights=c, minlength=n_videos) for c in cols], axis=-1)
    return (sums / counts[:, None]).reshape((n_videos,) + values.shape[1:])


def _aggregate(values: np.ndarray, inverse: np.ndarray, n_videos: int, aggregation: str) -> np.ndarray:
    """Per-video probability from frame probabilities: binary scores [N] or class probabilities [N, K]."""
    if aggregation == "mean":
        return _video_mean(values, inverse, n_videos)
    if aggregation == "max":
        order = np.argsort(inverse, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
        peak = np.maximum.reduceat(values[order], starts, axis=0)
        return peak if values.ndim == 1 else peak / peak.sum(axis=1, keepdims=True)
    if aggregation == "logit_mean":
        if values.ndim == 1:
            p = np.clip(values, _EPS, 1.0 - _EPS)
            return 1.0 / (1.0 + np.exp(-_video_mean(np.log(p) - np.log1p(-p), inverse, n_videos)))
        z = _video_mean(np.log(np.maximum(values, _EPS)), inverse, n_videos)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")


def _group_by_video(
    labels: np.ndarray, values: np.ndarray, video_ids: Any, aggregation: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video (sorted ids): its label and the aggregate of `values` ([N] or [N, K])."""
    ids, first, inverse = _index_videos(video_ids, labels=labels, values=values)
    video_labels = _constant_per_video(labels, ids, first, inverse, "labels")
    return video_labels, _aggregate(values, inverse, ids.size, aggregation), ids


def video_level(
    labels: Any, scores: Any, video_ids: Any, aggregation: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate frame scores to (video_labels, video_scores, sorted video_ids).

    `aggregation`: "mean" frame probability, "max" frame probability, or "logit_mean" =
    sigmoid of the mean frame logit (probabilities clipped to [1e-7, 1 - 1e-7]).
    Raises ValueError naming a video whose frames carry different labels.
    """
    return _group_by_video(*_binary_inputs(labels, scores), video_ids, aggregation)


def video_level_multiclass(
    labels: Any, probs: Any, video_ids: Any, aggregation: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate frame class probabilities [N, K] per video; see `video_level`.

    "max" takes each class's max over frames, renormalised to sum 1; "logit_mean" is
    softmax of the mean log-probability (probabilities floored at 1e-7).
    """
    return _group_by_video(*_multiclass_inputs(labels, probs), video_ids, aggregation)


FACE_AGGREGATIONS = ("track_max", "frame_max")


def multi_face_video_level(
    labels: Any,
    scores: Any,
    track_ids: Any,
    video_ids: Any,
    frame_ids: Any,
    rule: str = "track_max",
    aggregation: str = "mean",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(video_labels, video_scores, sorted video_ids) of videos with several face tracks (DFDC, FFIW).

    `rule` "track_max": each track's score is the `aggregation` of its frames (as `video_level`), a video's the max
    over its tracks (a video is fake if any face is). "frame_max": SBI's evaluation (src/inference/
    inference_dataset.py): each frame's score is the max over its faces, a video's the `aggregation` of its frames.
    """
    labels, scores = _binary_inputs(labels, scores)
    track_ids, video_ids, frame_ids = (np.asarray(a) for a in (track_ids, video_ids, frame_ids))
    if rule == "track_max":
        track_labels, track_scores, _ = video_level(labels, scores, track_ids, aggregation)
        parents = per_video(video_ids, track_ids)
        return video_level(track_labels, track_scores, parents, "max")
    if rule == "frame_max":
        _, frames = np.unique(np.stack([video_ids, frame_ids], 1), axis=0, return_inverse=True)
        frame_labels, frame_scores, _ = video_level(labels, scores, frames.ravel(), "max")
        parents = per_video(video_ids, frames.ravel())
        return video_level(frame_labels, frame_scores, parents, aggregation)
    raise ValueError(f"face aggregation must be one of {FACE_AGGREGATIONS}, got {rule!r}")


def per_video(values: Any, video_ids: Any) -> np.ndarray:
    """Per video (sorted ids, as `video_level`) the value of a frame attribute constant within a video, e.g. a class id.

    Raises ValueError naming videos whose frames carry different values.
    """
    values = np.asarray(values)
    ids, first, inverse = _index_videos(video_ids, values=values)
    return _constant_per_video(values, ids, first, inverse, "values")


# --------------------------------------------------------------------------- #
# Multi-class metrics
# --------------------------------------------------------------------------- #


def multiclass_metrics(labels: Any, probs: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class recall and confusion matrix of argmax predictions.

    `confusion_matrix[i][j]` counts samples of true class i predicted as j;
    `per_class_acc[name]` is NaN for a class absent from `labels`.
    """
    labels, probs = _multiclass_inputs(labels, probs)
    k = probs.shape[1]
    if len(class_names) != k:
        raise ValueError(f"got {len(class_names)} class_names for probs with {k} columns")
    preds = np.argmax(probs, axis=1)
    confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    support = confusion.sum(axis=1)
    recall = np.divide(np.diag(confusion), support, out=np.full(k, np.nan), where=support > 0)
    return {
        "acc": float(np.trace(confusion) / labels.size),
        "per_class_acc": {name: float(r) for name, r in zip(class_names, recall)},
        "confusion_matrix": confusion.tolist(),
        "n": int(labels.size),
    }


# --------------------------------------------------------------------------- #
# Bootstrap confidence intervals and repeated-run summaries
# --------------------------------------------------------------------------- #

_CHUNK = 1 << 18  # resample-weight elements per chunk: a few [r, N] float arrays of ~2 MB each stay in cache


class _SortedAUC:
    """ROC AUC under each row of a weight matrix [R, N], ties counted half as in sklearn.

    Examples must be sorted by (label, score): the negatives come first, by score, so each positive's tied
    negatives span [lo, hi) and, with cumulative negative weights `cum`, it beats `cum[lo]` and ties
    `cum[hi] - cum[lo]`. Integer weights keep every sum exact.
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray):
        self.n_neg = int(np.count_nonzero(labels == 0))
        neg, pos = scores[: self.n_neg], scores[self.n_neg :]
        self.lo = np.searchsorted(neg, pos, side="left")
        self.hi = np.searchsorted(neg, pos, side="right")

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """AUC per row of `weights`; NaN for a row with zero total positive or negative weight."""
        cum = np.zeros((len(weights), self.n_neg + 1))
        np.cumsum(weights[:, : self.n_neg], axis=1, out=cum[:, 1:])
        w_pos = weights[:, self.n_neg :]
        wins = np.einsum("ij,ij->i", w_pos, np.take(cum, self.lo, axis=1) + np.take(cum, self.hi, axis=1))
        total = 2.0 * w_pos.sum(axis=1) * cum[:, -1]
        return np.divide(wins, total, out=np.full(len(weights), np.nan), where=total > 0)


def _units(groups: Any, labels: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(group index of each example, "video"), or (None, "example") without groups."""
    if groups is None:
        return None, "example"
    return _index_videos(groups, "groups", labels=labels)[2], "video"


def _resample_weights(unit_of: np.ndarray | None, n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of bootstrap weights [r, n]: each example's multiplicity when drawing units with replacement.

    `unit_of` maps each example to its unit (original example or group index); None: the examples in order.
    """
    units = n if unit_of is None else int(unit_of.max()) + 1
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(n, units))
    for start in range(0, resamples, rows):
        r = min(rows, resamples - start)
        draws = rng.integers(0, units, size=(r, units))
        draws += units * np.arange(r)[:, None]
        counts = np.bincount(draws.ravel(), minlength=r * units).reshape(r, units).astype(np.float64)
        yield counts if unit_of is None else np.take(counts, unit_of, axis=1)


def _interval(values: np.ndarray, level: float) -> list[float]:
    """Percentile interval [lo, hi] covering `level` of `values`; NaNs when empty."""
    if values.size == 0:
        return [float("nan")] * 2
    tail = 50.0 * (1.0 - level)
    return np.percentile(values, [tail, 100.0 - tail]).tolist()


def _bootstrap(
    correct: np.ndarray,
    unit_of: np.ndarray | None,
    unit: str,
    resamples: int,
    seed: int,
    level: float,
    auc: _SortedAUC | None = None,
) -> dict[str, Any]:
    """Percentile intervals of accuracy (and `auc`) over resamples; see `bootstrap_binary`."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    hits_and_totals = np.column_stack([correct, np.ones(correct.size)])
    accs, aucs = [], []
    for weights in _resample_weights(unit_of, correct.size, resamples, seed):
        hits, totals = (weights @ hits_and_totals).T
        accs.append(hits / totals)
        if auc is not None:
            aucs.append(auc(weights))
    out: dict[str, Any] = {}
    if auc is not None:
        aucs = np.concatenate(aucs)
        aucs = aucs[~np.isnan(aucs)]
        out["auc"] = _interval(aucs, level)
        if aucs.size < resamples:
            out["resamples_auc"] = int(aucs.size)
    out["acc"] = _interval(np.concatenate(accs), level)
    out.update(resamples=resamples, level=level, seed=seed, unit=unit)
    return out


def bootstrap_binary(
    labels: Any,
    scores: Any,
    groups: Any = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Percentile bootstrap intervals of AUC and accuracy (`binary_metrics` definitions).

    Resamples examples, or with `groups` (e.g. video id per frame) whole groups, with replacement; the
    resamples depend only on `seed` and the examples (or groups), so models scored on the same data are
    compared on paired resamples. Resamples missing a class are dropped for AUC; then `resamples_auc`
    gives how many were used.
    Returns {"auc": [lo, hi], "acc": [lo, hi], "resamples", "level", "seed", "unit": "video"|"example"}.
    """
    labels, scores = _binary_inputs(labels, scores)
    unit_of, unit = _units(groups, labels)
    order = np.lexsort((scores, labels))  # the layout `_SortedAUC` needs; units keep their original identity
    unit_of = order if unit_of is None else unit_of[order]
    labels, scores = labels[order], scores[order]
    correct = ((scores >= threshold) == labels).astype(np.float64)
    return _bootstrap(correct, unit_of, unit, resamples, seed, level, _SortedAUC(labels, scores))


def bootstrap_multiclass(
    labels: Any, probs: Any, groups: Any = None, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Percentile bootstrap interval of argmax accuracy; see `bootstrap_binary`."""
    labels, probs = _multiclass_inputs(labels, probs)
    correct = (np.argmax(probs, axis=1) == labels).astype(np.float64)
    return _bootstrap(correct, *_units(groups, labels), resamples, seed, level)


def mean_std(values: Any) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value), e.g. over seeds."""
    values = _as_finite("values", values, ndim=1)
    if values.size == 0:
        raise ValueError("values is empty")
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return float(np.mean(values)), std


def format_mean_std(mean: float, std: float, scale: float = 100, digits: int = 2) -> str:
    """Format as "mean ± std" after multiplying by `scale`, e.g. "97.12 ± 0.35"."""
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


# --------------------------------------------------------------------------- #
# Plots and tables
# --------------------------------------------------------------------------- #


def _new_figure(figsize: tuple[float, float]):
    """A matplotlib Figure bound to an Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> None:
    """Write `fig` as PNG, creating parent directories."""
    storage.save_figure(fig, path, dpi=120)


def save_confusion_matrix_png(
    confusion: Any, class_names: Sequence[str], path: str | Path, title: str | None = None
) -> None:
    """Plot a confusion matrix: counts in cells, colour = row-normalised fraction."""
    counts = np.asarray(confusion)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion must be {k}x{k} for {k} class_names, got {counts.shape}")
    rows = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)

    side = 2.0 + 0.6 * k
    fig = _new_figure((side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    for (i, j), c in np.ndenumerate(counts):
        ax.text(j, i, str(c), ha="center", va="center", color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    if title:
        ax.set_title(title)
    _save(fig, path)


def save_roc_png(fpr: Any, tpr: Any, auc: float, path: str | Path, title: str | None = None) -> None:
    """Plot a ROC curve with its AUC and the chance diagonal."""
    fig = _new_figure((5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, lw=2, label=f"ROC (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", xlabel="False positive rate", ylabel="True positive rate")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    _save(fig, path)


def save_image_grid_png(
    rows: dict[str, Any], path: str | Path, column_titles: Sequence[str] = (), title: str | None = None
) -> None:
    """One row per entry of `rows` (name -> uint8 RGB images [N, H, W, 3]), the row name on its left."""
    rows = {name: np.asarray(images) for name, images in rows.items()}
    count = max(len(images) for images in rows.values())
    fig = _new_figure((1.6 * count + 0.6, 1.7 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), count, squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for c in range(count):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c])
            if c == 0:
                ax.set_ylabel(name)
            if r == 0 and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=8)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _cell(value: Any) -> str:
    """Format one table cell: floats to 4 significant digits, missing as empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Render `rows` as a GitHub-markdown table with the given column order."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
