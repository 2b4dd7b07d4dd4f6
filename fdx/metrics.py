"""Evaluation metrics for binary detection and multi-class attribution.

Pure numpy at run time, vectorised (sort/bincount based) so it scales to
millions of frames. Binary convention: label 1 = positive = fake, and a score
is the probability of fake. Plots use matplotlib's Agg canvas, imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "roc_curve",
    "binary_metrics",
    "video_level",
    "multiclass_metrics",
    "video_level_multiclass",
    "save_confusion_matrix_png",
    "save_roc_png",
    "save_image_grid_png",
    "format_table",
]


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #


def _as_labels(labels: Any, num_classes: int) -> np.ndarray:
    """Return `labels` as a 1-D int64 array, checking values lie in [0, num_classes)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("labels is empty")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"labels must be numeric, got dtype {arr.dtype}")
    bad = ~np.isin(arr, np.arange(num_classes))
    if bad.any():
        allowed = "0 or 1" if num_classes == 2 else f"integers in [0, {num_classes - 1}]"
        examples = np.unique(arr[bad])[:5].tolist()
        raise ValueError(f"labels must be {allowed}; found {int(bad.sum())} invalid values, e.g. {examples}")
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


# --------------------------------------------------------------------------- #
# Video-level aggregation
# --------------------------------------------------------------------------- #


def _group_by_video(
    labels: np.ndarray, values: np.ndarray, video_ids: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video (sorted ids): its label and the mean of `values` ([N] or [N, K])."""
    video_ids = np.asarray(video_ids)
    if video_ids.ndim != 1:
        raise ValueError(f"video_ids must be 1-D, got shape {video_ids.shape}")
    _check_lengths(labels=labels, values=values, video_ids=video_ids)
    ids, first, inverse = np.unique(video_ids, return_index=True, return_inverse=True)
    video_labels = labels[first]
    mixed = labels != video_labels[inverse]
    if mixed.any():
        bad = ids[np.unique(inverse[mixed])].tolist()
        raise ValueError(f"{len(bad)} video(s) have frames with mixed labels: {bad[:5]}")
    counts = np.bincount(inverse, minlength=ids.size)
    cols = values.reshape(len(values), -1).T
    sums = np.stack([np.bincount(inverse, weights=c, minlength=ids.size) for c in cols], axis=-1)
    means = (sums / counts[:, None]).reshape((ids.size,) + values.shape[1:])
    return video_labels, means, ids


def video_level(labels: Any, scores: Any, video_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate frame scores to (video_labels, mean video_scores, sorted video_ids).

    Raises ValueError naming a video whose frames carry different labels.
    """
    return _group_by_video(*_binary_inputs(labels, scores), video_ids)


def video_level_multiclass(labels: Any, probs: Any, video_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aggregate frame class probabilities [N, K] to per-video means; see `video_level`."""
    return _group_by_video(*_multiclass_inputs(labels, probs), video_ids)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)


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
