"""Tagging metrics against hand-computed values and sklearn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mtt.metrics import bias_corrected_interval, bootstrap_macro, tagging_report, weighted_curves


def test_hand_checked_case():
    # tag a: positives ranked 1st and 3rd of 4 -> ROC-AUC 3/4, AP (1/1 + 2/3) / 2 = 5/6
    # tag b: a perfect ranking -> 1 and 1
    # tag c: no positive song -> excluded from the macro averages
    labels = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.4, 0.7, 0.5], [0.1, 0.6, 0.5]])
    report = tagging_report(labels, probs, ["a", "b", "c"], n_bootstrap=0)
    assert report["per_tag"]["a"]["roc_auc"] == pytest.approx(0.75)
    assert report["per_tag"]["a"]["pr_auc"] == pytest.approx(5 / 6)
    assert report["per_tag"]["b"]["roc_auc"] == pytest.approx(1.0)
    assert report["per_tag"]["c"]["roc_auc"] is None
    assert report["excluded_tags"] == ["c"]
    assert report["roc_auc"]["macro"] == pytest.approx((0.75 + 1.0) / 2)
    assert report["pr_auc"]["macro"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert report["n_songs"] == 4 and report["n_tags_evaluated"] == 2


def test_macro_equals_sklearn_on_random_data():
    rng = np.random.default_rng(1)
    labels = rng.random((200, 6)) < 0.3
    probs = np.round(rng.random((200, 6)) + 0.3 * labels, 2)  # rounding makes ties
    report = tagging_report(labels, probs, list("abcdef"), n_bootstrap=0)
    assert report["roc_auc"]["macro"] == pytest.approx(
        roc_auc_score(labels, probs, average="macro"), abs=1e-12)
    assert report["pr_auc"]["macro"] == pytest.approx(
        average_precision_score(labels, probs, average="macro"), abs=1e-12)


def expanded(scores, labels, counts):
    """The resample as a real list of songs: a song drawn k times is k songs, its copies just
    below one another unless its score is tied with another song's (then they stay tied)."""
    unique = np.unique(scores, return_counts=True)
    tied = set(unique[0][unique[1] > 1])
    out_scores, out_labels = [], []
    for score, label, count in zip(scores, labels, counts.astype(int)):
        for copy in range(count):
            out_scores.append(score if score in tied else score - 1e-9 * copy)
            out_labels.append(label)
    return np.array(out_scores), np.array(out_labels)


@pytest.mark.parametrize("decimals", [None, 1])  # distinct scores; many ties
def test_weighted_curves_equal_sklearn_on_the_resampled_songs(decimals):
    """A bootstrap resample is a vector of counts: ROC-AUC equals sklearn with the counts as
    sample weights, average precision equals sklearn on the resample written out song by song."""
    rng = np.random.default_rng(2)
    n = 150
    labels = rng.random(n) < 0.25
    scores = rng.random(n) + 0.4 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    weights = rng.multinomial(n, np.full(n, 1 / n), size=20).astype(float)
    roc, ap = weighted_curves(scores, labels, weights)
    for r in range(20):
        assert roc[r] == pytest.approx(roc_auc_score(labels, scores, sample_weight=weights[r]),
                                       abs=1e-12)
        assert ap[r] == pytest.approx(average_precision_score(*expanded(scores, labels,
                                                                        weights[r])[::-1]),
                                      abs=1e-9)


def test_copies_of_one_positive_song_are_consecutive_ranks():
    """Two copies of the second positive song give precisions 2/3 and 3/4 (sklearn's sample
    weights make them one tie: 3/4 twice)."""
    scores = np.array([0.9, 0.8, 0.7])
    labels = np.array([1, 0, 1])
    _, ap = weighted_curves(scores, labels, np.array([[1.0, 1.0, 2.0]]))
    assert ap[0] == pytest.approx((1.0 + 2 / 3 + 3 / 4) / 3)


def test_bias_corrected_interval_follows_a_shifted_bootstrap():
    rng = np.random.default_rng(0)
    resampled = 0.51 + rng.normal(0, 0.01, 20000)  # resamples biased upwards by one sd
    low, high = bias_corrected_interval(resampled, 0.50)
    assert low < 0.50 < high  # the plain percentile interval [0.490, 0.530] is lopsided
    assert high == pytest.approx(0.51, abs=0.002)
    centred = bias_corrected_interval(0.5 + rng.normal(0, 0.01, 20000), 0.50)
    assert centred == pytest.approx((0.5 - 0.0196, 0.5 + 0.0196), abs=0.001)


def test_weighting_without_positives_gives_nan():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.5, 0.4, 0.1])
    roc, ap = weighted_curves(scores, labels, np.array([[0, 2, 0, 2.0], [1, 1, 1, 1.0]]))
    assert np.isnan(roc[0]) and np.isnan(ap[0])
    assert roc[1] == pytest.approx(0.75)


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    labels = rng.random((300, 5)) < 0.3
    probs = rng.random((300, 5)) + 0.5 * labels
    report = tagging_report(labels, probs, list("abcde"), n_bootstrap=300, seed=7)
    for name in ("roc_auc", "pr_auc"):
        entry = report[name]
        assert entry["ci_low"] < entry["macro"] < entry["ci_high"]
        assert entry["ci_high"] - entry["ci_low"] < 0.2
    again = tagging_report(labels, probs, list("abcde"), n_bootstrap=300, seed=7)
    assert again["roc_auc"] == report["roc_auc"]
    boot_roc, _ = bootstrap_macro(labels, probs, 300, seed=7)
    assert np.std(boot_roc) > 0


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="disagree"):
        tagging_report(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="no tag"):
        tagging_report(np.zeros((3, 2)), np.zeros((3, 2)), ["a", "b"])
