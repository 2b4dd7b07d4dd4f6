"""Tests for fdx.metrics: cross-checked against scikit-learn and hand-worked examples."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from fdx import metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _random_binary(seed: int, n: int, pos_frac: float, decimals: int | None):
    """Random labels with the given positive fraction and noisy informative scores."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < pos_frac).astype(int)
    labels[:2] = [0, 1]  # both classes always present
    scores = np.clip(0.5 + 0.25 * (labels - 0.5) + 0.3 * rng.standard_normal(n), 0.0, 1.0)
    if decimals is not None:
        scores = np.round(scores, decimals)  # heavy ties
    return labels, scores


BINARY_CASES = [
    (seed, n, pos_frac, decimals)
    for seed in range(4)
    for n, pos_frac in [(500, 0.5), (800, 0.05), (300, 0.95), (7, 0.5)]
    for decimals in (None, 1)
]


# --------------------------------------------------------------------------- #
# Binary metrics vs scikit-learn
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("seed,n,pos_frac,decimals", BINARY_CASES)
def test_roc_curve_matches_sklearn(seed, n, pos_frac, decimals):
    labels, scores = _random_binary(seed, n, pos_frac, decimals)
    fpr, tpr, thr = metrics.roc_curve(labels, scores)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(thr, sk_thr)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed,n,pos_frac,decimals", BINARY_CASES)
def test_binary_metrics_match_sklearn(seed, n, pos_frac, decimals):
    labels, scores = _random_binary(seed, n, pos_frac, decimals)
    threshold = 0.5
    out = metrics.binary_metrics(labels, scores, threshold=threshold)
    assert out["n"] == n and out["n_pos"] == labels.sum()
    assert "warning" not in out
    assert out["acc"] == pytest.approx(skm.accuracy_score(labels, scores >= threshold), abs=1e-12)
    assert out["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert out["ap"] == pytest.approx(skm.average_precision_score(labels, scores), abs=1e-12)


def test_ties_are_counted_as_half_in_auc():
    # One positive and one negative with the same score: AUC = 0.5, not 0 or 1.
    assert metrics.binary_metrics([0, 1], [0.3, 0.3])["auc"] == 0.5
    # Positive ties with one of two negatives: pairs (P>N1)=1, (P=N2)=0.5 -> 0.75.
    assert metrics.binary_metrics([1, 0, 0], [0.5, 0.2, 0.5])["auc"] == pytest.approx(0.75)


def test_accuracy_uses_greater_or_equal_threshold():
    # A score exactly at the threshold is predicted fake (label 1).
    assert metrics.binary_metrics([1, 0], [0.5, 0.4], threshold=0.5)["acc"] == 1.0
    assert metrics.binary_metrics([0, 1], [0.5, 0.9], threshold=0.5)["acc"] == 0.5


# --------------------------------------------------------------------------- #
# EER
# --------------------------------------------------------------------------- #


def _brute_force_eer(labels, scores, steps=20001):
    """EER by explicit counting at every threshold and dense sampling of the ROC segments."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=float)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    points = []
    for t in [np.inf] + sorted(set(scores.tolist()), reverse=True):
        tp = sum(1 for y, s in zip(labels, scores) if s >= t and y == 1)
        fp = sum(1 for y, s in zip(labels, scores) if s >= t and y == 0)
        points.append((fp / n_neg, 1.0 - tp / n_pos))  # (fpr, fnr)
    best_gap, best_fpr = np.inf, None
    w = np.linspace(0.0, 1.0, steps)
    for (f0, m0), (f1, m1) in zip(points[:-1], points[1:]):
        f, m = f0 + w * (f1 - f0), m0 + w * (m1 - m0)
        j = int(np.argmin(np.abs(f - m)))
        if abs(f[j] - m[j]) < best_gap:
            best_gap, best_fpr = abs(f[j] - m[j]), f[j]
    return best_fpr


def test_eer_hand_example():
    # Sorted by score (desc): 0.9 P | 0.6 P, 0.6 N, 0.6 N (tie) | 0.2 P | 0.1 N.
    # 3 positives, 3 negatives. ROC points (fpr, tpr) from thresholds inf, 0.9, 0.6, 0.2, 0.1:
    #   (0, 0), (0, 1/3), (2/3, 2/3), (2/3, 1), (1, 1);  fnr = 1 - tpr: 1, 2/3, 1/3, 0, 0.
    # fpr - fnr goes -2/3 -> +1/3 between (0, 1/3) and (2/3, 2/3), so the crossing is on
    # that (tie-induced, diagonal) segment: fpr = 2w/3, fnr = 2/3 - w/3 for w in [0, 1].
    # fpr = fnr  =>  2w/3 = 2/3 - w/3  =>  w = 2/3  =>  EER = 4/9.
    labels = [1, 1, 0, 0, 1, 0]
    scores = [0.9, 0.6, 0.6, 0.6, 0.2, 0.1]
    eer = metrics.binary_metrics(labels, scores)["eer"]
    assert eer == pytest.approx(4 / 9, abs=1e-12)
    assert _brute_force_eer(labels, scores) == pytest.approx(4 / 9, abs=1e-4)


def test_eer_perfect_and_inverted():
    assert metrics.binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])["eer"] == 0.0
    assert metrics.binary_metrics([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])["eer"] == 1.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1])
def test_eer_matches_brute_force(seed, decimals):
    labels, scores = _random_binary(seed, 40, 0.3, decimals)
    eer = metrics.binary_metrics(labels, scores)["eer"]
    assert eer == pytest.approx(_brute_force_eer(labels, scores), abs=1e-4)


# --------------------------------------------------------------------------- #
# Degenerate and invalid inputs
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_and_warning(label):
    labels = np.full(5, label)
    scores = np.array([0.1, 0.4, 0.5, 0.7, 0.9])
    out = metrics.binary_metrics(labels, scores)
    assert np.isnan(out["auc"]) and np.isnan(out["ap"]) and np.isnan(out["eer"])
    assert isinstance(out["warning"], str) and "undefined" in out["warning"]
    assert out["n"] == 5 and out["n_pos"] == 5 * label
    assert out["acc"] == pytest.approx(np.mean((scores >= 0.5) == label))

    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_fpr, sk_tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(fpr, sk_fpr)
    np.testing.assert_array_equal(tpr, sk_tpr)


@pytest.mark.parametrize(
    "labels,scores,fragment",
    [
        ([0, 1, 1], [0.1, 0.2], "mismatched lengths"),
        ([0, 1, 1, 0], [0.1, np.nan, np.inf, 0.2], "scores contain 2 non-finite values"),
        ([0, 1, 2, -1], [0.1, 0.2, 0.3, 0.4], "labels must be 0 or 1; found 2 invalid values"),
        ([0, 0.5], [0.1, 0.2], "labels must be 0 or 1"),
        ([], [], "labels is empty"),
        ([0, 1], [[0.1], [0.2]], "scores must be 1-D"),
    ],
)
def test_binary_invalid_inputs(labels, scores, fragment):
    with pytest.raises(ValueError, match=fragment):
        metrics.binary_metrics(labels, scores)
    with pytest.raises(ValueError, match=fragment):
        metrics.roc_curve(labels, scores)


# --------------------------------------------------------------------------- #
# Video-level aggregation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ids", [["b", "a", "b", "c", "a"], [20, 10, 20, 30, 10]])
def test_video_level_hand_example(ids):
    labels = [1, 0, 1, 0, 0]
    scores = [0.8, 0.2, 0.6, 0.5, 0.4]
    # a/10: frames 0.2, 0.4 -> 0.3 (real); b/20: 0.8, 0.6 -> 0.7 (fake); c/30: 0.5 (real).
    v_labels, v_scores, v_ids = metrics.video_level(labels, scores, ids)
    assert v_ids.tolist() == sorted(set(ids))
    assert v_labels.tolist() == [0, 1, 0]
    np.testing.assert_allclose(v_scores, [0.3, 0.7, 0.5])


def test_video_level_mixed_labels_names_video():
    with pytest.raises(ValueError, match="mixed labels.*'vid_7'"):
        metrics.video_level([0, 1, 0], [0.1, 0.2, 0.3], ["vid_7", "vid_7", "vid_3"])


def test_video_level_length_mismatch():
    with pytest.raises(ValueError, match="mismatched lengths"):
        metrics.video_level([0, 1], [0.1, 0.2], ["a"])


def test_video_level_multiclass_hand_example():
    labels = [2, 0, 2]
    probs = [[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.3, 0.2, 0.5]]
    v_labels, v_probs, v_ids = metrics.video_level_multiclass(labels, probs, [5, 1, 5])
    assert v_ids.tolist() == [1, 5]
    assert v_labels.tolist() == [0, 2]
    np.testing.assert_allclose(v_probs, [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    with pytest.raises(ValueError, match=r"mixed labels: \[5\]"):
        metrics.video_level_multiclass([2, 0, 1], probs, [5, 1, 5])


def test_video_level_random_matches_loop():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, size=2000)
    video_label = rng.integers(0, 2, size=50)
    labels, scores = video_label[ids], rng.random(2000)
    v_labels, v_scores, v_ids = metrics.video_level(labels, scores, ids)
    for vid, lab, score in zip(v_ids, v_labels, v_scores):
        assert lab == video_label[vid]
        assert score == pytest.approx(scores[ids == vid].mean())


# --------------------------------------------------------------------------- #
# Multi-class metrics
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 5])
def test_multiclass_matches_sklearn(seed, k):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=600)
    labels[labels == k - 1] = 0  # last class absent from labels (still predicted)
    logits = rng.standard_normal((600, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(k)]
    out = metrics.multiclass_metrics(labels, probs, names)
    preds = probs.argmax(axis=1)

    assert out["n"] == 600
    assert out["acc"] == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-12)
    assert out["confusion_matrix"] == skm.confusion_matrix(labels, preds, labels=range(k)).tolist()
    sk_recall = skm.recall_score(labels, preds, labels=range(k), average=None, zero_division=np.nan)
    np.testing.assert_allclose([out["per_class_acc"][n] for n in names], sk_recall)
    assert np.isnan(out["per_class_acc"][names[-1]])


@pytest.mark.parametrize(
    "labels,probs,names,fragment",
    [
        ([0, 1], [0.2, 0.8], ["a", "b"], "probs must be 2-D"),
        ([0, 1, 1], [[0.2, 0.8], [0.5, 0.5]], ["a", "b"], "mismatched lengths"),
        ([0, 1], [[0.2, 0.8], [0.5, 0.5]], ["a", "b", "c"], "3 class_names for probs with 2 columns"),
        ([0, 3], [[0.2, 0.3, 0.5], [0.5, 0.4, 0.1]], ["a", "b", "c"], r"integers in \[0, 2\]"),
        ([0, 1], [[0.2, np.nan], [0.5, 0.5]], ["a", "b"], "probs contain 1 non-finite values"),
    ],
)
def test_multiclass_invalid_inputs(labels, probs, names, fragment):
    with pytest.raises(ValueError, match=fragment):
        metrics.multiclass_metrics(labels, probs, names)


# --------------------------------------------------------------------------- #
# Plots and table
# --------------------------------------------------------------------------- #


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE


def test_save_confusion_matrix_png(tmp_path):
    path = tmp_path / "sub" / "cm.png"
    metrics.save_confusion_matrix_png([[5, 1, 0], [2, 7, 1], [0, 0, 0]], ["a", "b", "c"], path, title="cm")
    _assert_png(path)
    with pytest.raises(ValueError, match="3x3"):
        metrics.save_confusion_matrix_png([[1, 2], [3, 4]], ["a", "b", "c"], tmp_path / "x.png")


def test_save_roc_png(tmp_path):
    labels, scores = _random_binary(0, 200, 0.5, None)
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    auc = metrics.binary_metrics(labels, scores)["auc"]
    path = tmp_path / "roc.png"
    metrics.save_roc_png(fpr, tpr, auc, str(path), title="ROC")
    _assert_png(path)


def test_format_table():
    rows = [
        {"split": "c23", "acc": 0.912345, "n": 100, "auc": float("nan")},
        {"split": "raw", "acc": np.float32(1.0), "n": 7},
    ]
    expected = "| split | n | acc | auc |\n| --- | --- | --- | --- |\n| c23 | 100 | 0.9123 | nan |\n| raw | 7 | 1 |  |"
    assert metrics.format_table(rows, ["split", "n", "acc", "auc"]) == expected
