"""Tests for fdx.metrics: cross-checked against scikit-learn and hand-worked examples."""

import time
import warnings
from fractions import Fraction

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


def test_video_level_mean_default_is_bincount_mean():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 30, size=500)
    labels, scores = (ids % 2), rng.random(500)
    _, v_scores, _ = metrics.video_level(labels, scores, ids)
    _, v_mean, _ = metrics.video_level(labels, scores, ids, aggregation="mean")
    inverse = np.unique(ids, return_inverse=True)[1]
    np.testing.assert_array_equal(v_scores, np.bincount(inverse, weights=scores) / np.bincount(inverse))
    np.testing.assert_array_equal(v_scores, v_mean)


@pytest.mark.parametrize("ids", [["b", "a", "b", "c", "a"], [20, 10, 20, 30, 10]])
def test_video_level_max_and_logit_mean_hand_example(ids):
    labels = [1, 0, 1, 0, 0]
    scores = [0.8, 0.2, 0.6, 0.5, 0.4]
    _, v_max, v_ids = metrics.video_level(labels, scores, ids, aggregation="max")
    assert v_ids.tolist() == sorted(set(ids))
    np.testing.assert_array_equal(v_max, [0.4, 0.8, 0.5])
    # Mean logit = log of the geometric-mean odds: a: sqrt(1/4 * 2/3) = 1/sqrt(6); b: sqrt(4 * 3/2) = sqrt(6).
    _, v_logit, _ = metrics.video_level(labels, scores, ids, aggregation="logit_mean")
    r6 = np.sqrt(6.0)
    np.testing.assert_allclose(v_logit, [1 / (1 + r6), r6 / (1 + r6), 0.5], rtol=0, atol=1e-12)


def test_video_level_logit_mean_clips_extreme_scores():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, v_scores, _ = metrics.video_level([0, 0, 1, 1], [0.0, 1.0, 1.0, 1.0], [1, 1, 2, 2], "logit_mean")
    np.testing.assert_allclose(v_scores, [0.5, 1 - 1e-7], rtol=0, atol=1e-9)


def test_video_level_multiclass_max_and_logit_mean():
    labels = [2, 0, 2]
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.3, 0.2, 0.5]])
    _, v_max, _ = metrics.video_level_multiclass(labels, probs, [5, 1, 5], aggregation="max")
    np.testing.assert_allclose(v_max, [[0.6, 0.3, 0.1], [0.25, 0.2 / 1.2, 0.7 / 1.2]], rtol=0, atol=1e-12)
    # softmax of the mean log-probability = normalised geometric mean.
    _, v_logit, _ = metrics.video_level_multiclass(labels, probs, [5, 1, 5], aggregation="logit_mean")
    geo = np.sqrt(probs[0] * probs[2])
    np.testing.assert_allclose(v_logit, [probs[1], geo / geo.sum()], rtol=0, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a zero probability is floored before the log
        _, v_zero, _ = metrics.video_level_multiclass([0, 0], [[1.0, 0.0], [0.5, 0.5]], [1, 1], "logit_mean")
    assert np.isfinite(v_zero).all() and v_zero[0, 1] < 1e-3


@pytest.mark.parametrize("aggregation", ["mean", "logit_mean"])
def test_two_class_multiclass_aggregation_matches_binary(aggregation):
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 40, size=600)
    labels, scores = ids % 2, rng.uniform(0.01, 0.99, size=600)
    _, v_scores, _ = metrics.video_level(labels, scores, ids, aggregation)
    _, v_probs, _ = metrics.video_level_multiclass(labels, np.column_stack([1 - scores, scores]), ids, aggregation)
    np.testing.assert_allclose(v_probs[:, 1], v_scores, rtol=0, atol=1e-12)


def test_video_level_unknown_aggregation():
    fragment = r"aggregation must be one of \('mean', 'max', 'logit_mean'\), got 'median'"
    with pytest.raises(ValueError, match=fragment):
        metrics.video_level([0, 1], [0.1, 0.9], [1, 2], aggregation="median")
    with pytest.raises(ValueError, match=fragment):
        metrics.video_level_multiclass([0, 1], [[0.9, 0.1], [0.2, 0.8]], [1, 2], aggregation="median")


def test_per_video():
    ids = ["b", "a", "b", "c", "a"]
    np.testing.assert_array_equal(metrics.per_video([3, 1, 3, 0, 1], ids), [1, 3, 0])
    assert metrics.per_video(["x", "y", "x", "z", "y"], ids).tolist() == ["y", "x", "z"]
    with pytest.raises(ValueError, match=r"2 video\(s\) have frames with mixed values: \['a', 'c'\]"):
        metrics.per_video([3, 1, 3, 0, 2, 4], ids + ["c"])
    with pytest.raises(ValueError, match="mismatched lengths"):
        metrics.per_video([1, 2], ["a"])


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
# Per-manipulation binary metrics
# --------------------------------------------------------------------------- #

FF_CLASSES = ["real", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter"]


def test_per_class_binary_matches_sklearn():
    # Reals (class 0) and three fake classes; NeuralTextures and FaceShifter are absent. Ties across classes.
    real = [0.1, 0.2, 0.2, 0.4, 0.5, 0.5, 0.7, 0.3]
    fakes = {1: [0.9, 0.8, 0.5, 0.7], 2: [0.2, 0.6, 0.5], 3: [0.3, 0.4, 0.95, 0.2, 0.6, 0.5]}
    scores = np.concatenate([real, *fakes.values()])
    labels = np.r_[np.zeros(len(real), int), np.ones(len(scores) - len(real), int)]
    class_ids = np.r_[np.zeros(len(real), int), np.repeat(list(fakes), [len(v) for v in fakes.values()])]
    perm = np.random.default_rng(0).permutation(len(scores))
    out = metrics.per_class_binary(labels[perm], scores[perm], class_ids[perm], FF_CLASSES)

    assert list(out) == ["Deepfakes", "Face2Face", "FaceSwap"]
    for c, fake_scores in fakes.items():
        y = np.r_[np.zeros(len(real)), np.ones(len(fake_scores))]
        s = np.r_[real, fake_scores]
        res = out[FF_CLASSES[c]]
        assert res["n"] == len(s) and res["n_pos"] == len(fake_scores)
        assert res["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert res["acc"] == pytest.approx(skm.accuracy_score(y, s >= 0.5), abs=1e-12)
        assert res["ap"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert metrics.per_class_binary(labels, scores, class_ids, FF_CLASSES, threshold=0.75)["Face2Face"]["acc"] == (
        pytest.approx(skm.accuracy_score(np.r_[np.zeros(8), np.ones(3)], np.r_[real, fakes[2]] >= 0.75))
    )


def test_per_class_binary_ignores_class_of_reals_and_validates():
    # Fakes 0.7, 0.4 vs reals 0.2, 0.6: 3 of 4 pairs ranked correctly.
    out = metrics.per_class_binary([0, 0, 1, 1], [0.2, 0.6, 0.7, 0.4], [4, 2, 1, 1], FF_CLASSES)
    assert list(out) == ["Deepfakes"] and out["Deepfakes"]["auc"] == 0.75
    with pytest.raises(ValueError, match=r"class_ids must be integers in \[0, 5\]"):
        metrics.per_class_binary([0, 1], [0.2, 0.7], [0, 6], FF_CLASSES)
    with pytest.raises(ValueError, match="mismatched lengths"):
        metrics.per_class_binary([0, 1], [0.2, 0.7], [0], FF_CLASSES)


# --------------------------------------------------------------------------- #
# Bootstrap confidence intervals
# --------------------------------------------------------------------------- #


def _sorted_auc(labels, scores, weights):
    """metrics._SortedAUC on inputs in any order."""
    order = np.lexsort((scores, labels))
    return metrics._SortedAUC(labels[order], scores[order])(weights[:, order])


def test_weighted_auc_matches_sklearn_sample_weight():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, size=300), np.round(rng.random(300), 1)  # heavy ties
    weights = rng.integers(0, 5, size=(20, 300)).astype(float)
    weights[0, labels == 1] = 0  # no positive weight: undefined
    auc = _sorted_auc(labels, scores, weights)
    assert np.isnan(auc[0])
    expected = [skm.roc_auc_score(labels, scores, sample_weight=w) for w in weights[1:]]
    np.testing.assert_allclose(auc[1:], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed,n,pos_frac,decimals", BINARY_CASES[::3])
def test_weighted_auc_unit_weights_is_exact(seed, n, pos_frac, decimals):
    labels, scores = _random_binary(seed, n, pos_frac, decimals)
    auc = _sorted_auc(labels, scores, np.ones((1, n)))[0]
    pos, neg = scores[labels == 1], scores[labels == 0]
    twice_wins = int(2 * (pos[:, None] > neg).sum() + (pos[:, None] == neg).sum())
    assert auc == float(Fraction(twice_wins, 2 * pos.size * neg.size))  # correctly rounded
    assert auc == pytest.approx(metrics.binary_metrics(labels, scores)["auc"], rel=0, abs=1e-15)


def test_resample_weights_keep_whole_groups():
    unit_of = np.repeat(np.arange(7), [1, 5, 2, 9, 3, 3, 4])
    chunks = list(metrics._resample_weights(unit_of, unit_of.size, 50, seed=0))
    weights = np.concatenate(chunks)
    first = np.r_[0, np.flatnonzero(np.diff(unit_of)) + 1]
    assert weights.shape == (50, unit_of.size)
    np.testing.assert_array_equal(weights, weights[:, first][:, unit_of])  # constant within each group
    np.testing.assert_array_equal(weights[:, first].sum(axis=1), 7)  # 7 groups drawn per resample
    plain = np.concatenate(list(metrics._resample_weights(None, 30, 50, seed=0)))
    np.testing.assert_array_equal(plain.sum(axis=1), 30)
    assert (plain == np.round(plain)).all() and plain.min() >= 0


def test_bootstrap_reproducible_and_contains_point_estimate():
    labels, scores = _random_binary(0, 2000, 0.4, None)
    groups = np.arange(2000) // 10
    point = metrics.binary_metrics(labels, scores)
    for g, unit in [(None, "example"), (groups, "video")]:
        out = metrics.bootstrap_binary(labels, scores, g, resamples=300, seed=1)
        assert out == metrics.bootstrap_binary(labels, scores, g, resamples=300, seed=1)
        assert out != metrics.bootstrap_binary(labels, scores, g, resamples=300, seed=2)
        assert set(out) == {"auc", "acc", "resamples", "level", "seed", "unit"}
        assert (out["resamples"], out["level"], out["seed"], out["unit"]) == (300, 0.95, 1, unit)
        for key in ("auc", "acc"):
            lo, hi = out[key]
            assert lo < point[key] < hi and hi - lo < 0.1


def test_bootstrap_independent_of_chunking(monkeypatch):
    labels, scores = _random_binary(1, 500, 0.5, 1)
    groups = np.arange(500) % 37
    for g in (None, groups):
        out = metrics.bootstrap_binary(labels, scores, g, resamples=40)
        monkeypatch.setattr(metrics, "_CHUNK", 1)  # one resample per chunk
        assert metrics.bootstrap_binary(labels, scores, g, resamples=40) == out
        monkeypatch.undo()


def test_bootstrap_grouped_is_wider_on_correlated_frames():
    # 60 videos x 40 near-identical frames: 60 independent units, not 2400.
    rng = np.random.default_rng(4)
    video_labels = rng.integers(0, 2, size=60)
    video_scores = np.clip(0.5 + 0.2 * (video_labels - 0.5) + 0.25 * rng.standard_normal(60), 0, 1)
    groups = np.repeat(np.arange(60), 40)
    labels = video_labels[groups]
    scores = np.clip(video_scores[groups] + 0.01 * rng.standard_normal(groups.size), 0, 1)
    grouped = metrics.bootstrap_binary(labels, scores, groups, resamples=400)
    ungrouped = metrics.bootstrap_binary(labels, scores, resamples=400)
    for key in ("auc", "acc"):
        assert np.diff(grouped[key])[0] > 3 * np.diff(ungrouped[key])[0]


def test_bootstrap_drops_single_class_resamples_for_auc():
    labels, scores = [0, 1, 1, 1, 1, 1], [0.3, 0.6, 0.2, 0.9, 0.8, 0.7]
    out = metrics.bootstrap_binary(labels, scores, resamples=200)
    # P(no real drawn) = (5/6)^6 ~ 0.33
    assert 100 < out["resamples_auc"] < 170 and out["resamples"] == 200
    assert 0 <= out["auc"][0] <= out["auc"][1] <= 1
    single = metrics.bootstrap_binary([1, 1, 1], [0.2, 0.6, 0.9], resamples=20)
    assert single["resamples_auc"] == 0 and np.isnan(single["auc"]).all()
    assert single["acc"][0] <= 2 / 3 <= single["acc"][1]


def test_bootstrap_multiclass_pairs_with_binary():
    labels, scores = _random_binary(2, 1000, 0.5, None)
    scores = np.where(scores == 0.5, 0.51, scores)  # argmax and the >= 0.5 rule agree
    probs = np.column_stack([1 - scores, scores])
    groups = np.arange(1000) // 8
    for g in (None, groups):
        multi = metrics.bootstrap_multiclass(labels, probs, g, resamples=200, seed=5)
        binary = metrics.bootstrap_binary(labels, scores, g, resamples=200, seed=5)
        assert set(multi) == {"acc", "resamples", "level", "seed", "unit"}
        assert multi["unit"] == binary["unit"]
        np.testing.assert_allclose(multi["acc"], binary["acc"], rtol=0, atol=1e-12)  # same resamples


def test_bootstrap_level_and_validation():
    labels, scores = _random_binary(3, 400, 0.5, None)
    wide = metrics.bootstrap_binary(labels, scores, resamples=200, level=0.99)
    narrow = metrics.bootstrap_binary(labels, scores, resamples=200, level=0.5)
    assert wide["acc"][0] < narrow["acc"][0] < narrow["acc"][1] < wide["acc"][1]
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        metrics.bootstrap_binary(labels, scores, resamples=0)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        metrics.bootstrap_multiclass(labels, np.column_stack([1 - scores, scores]), level=95)
    with pytest.raises(ValueError, match="mismatched lengths: labels=400, groups=3"):
        metrics.bootstrap_binary(labels, scores, groups=[1, 2, 3])


def test_bootstrap_speed():
    labels, scores = _random_binary(4, 20_000, 0.5, 3)
    groups = np.arange(20_000) // 50
    for g in (None, groups):
        start = time.perf_counter()
        metrics.bootstrap_binary(labels, scores, g, resamples=1000)
        assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------- #
# Repeated runs
# --------------------------------------------------------------------------- #


def test_mean_std_and_format():
    values = [0.9712, 0.9677, 0.9748]
    mean, std = metrics.mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert metrics.mean_std([0.5]) == (0.5, 0.0)
    assert metrics.format_mean_std(0.97123, 0.00349) == "97.12 ± 0.35"
    assert metrics.format_mean_std(0.5, 0.0125, scale=1, digits=3) == "0.500 ± 0.013"
    with pytest.raises(ValueError, match="values is empty"):
        metrics.mean_std([])


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
