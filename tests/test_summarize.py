"""`mtt summarize`: the paired student - supervised intervals and each model's stop reason."""
import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mtt.cli import main
from mtt.metrics import bias_corrected_interval, bootstrap_macro, paired_difference

TAGS = ["rock", "jazz", "piano"]


def labels_and_two_models(n=30, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, len(TAGS))) < 0.4
    labels[0], labels[1] = True, False
    shared = rng.random(labels.shape)  # both models find the same songs hard, as real ones do
    teacher = np.clip(labels * 0.2 + shared * 0.8, 0, 1)
    student = np.clip(labels * 0.25 + shared * 0.7 + rng.random(labels.shape) * 0.05, 0, 1)
    return labels, student, teacher


def test_paired_interval_equals_one_computed_resample_by_resample():
    labels, student, teacher = labels_and_two_models()
    n, resamples, seed = len(labels), 60, 3
    diff = paired_difference(labels, student, teacher, n_resamples=resamples, seed=seed)

    # by hand: the same song counts for both models, sklearn's weighted ROC-AUC per tag
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=resamples)
    by_hand = []
    for weights in counts:
        per_tag = []
        for t in range(len(TAGS)):
            kept = weights > 0
            if labels[kept, t].all() or not labels[kept, t].any():
                per_tag.append((np.nan, np.nan))
                continue
            per_tag.append([roc_auc_score(labels[:, t], p[:, t], sample_weight=weights)
                            for p in (student, teacher)])
        per_tag = np.array(per_tag)
        by_hand.append(np.nanmean(per_tag[:, 0]) - np.nanmean(per_tag[:, 1]))
    estimate = np.mean([roc_auc_score(labels[:, t], student[:, t]) for t in range(3)]) - \
        np.mean([roc_auc_score(labels[:, t], teacher[:, t]) for t in range(3)])
    low, high = bias_corrected_interval(np.array(by_hand), estimate)

    assert diff["roc_auc"]["difference"] == pytest.approx(estimate, abs=1e-12)
    assert (diff["roc_auc"]["ci_low"], diff["roc_auc"]["ci_high"]) == pytest.approx((low, high))
    assert diff["roc_auc"]["ci_low"] <= estimate <= diff["roc_auc"]["ci_high"]
    # pairing cancels the songs' shared variation: narrower than resampling each model apart
    apart = (bootstrap_macro(labels, student, resamples, seed=seed)[0]
             - bootstrap_macro(labels, teacher, resamples, seed=seed + 1)[0])
    unpaired_low, unpaired_high = bias_corrected_interval(apart, estimate)
    assert high - low < unpaired_high - unpaired_low


def test_a_model_against_itself_differs_by_exactly_zero():
    labels, student, _ = labels_and_two_models(seed=1)
    diff = paired_difference(labels, student, student, n_resamples=50)
    for metric in ("roc_auc", "pr_auc"):
        assert diff[metric] == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def write_model(root, model, labels, probs, stopped, order):
    evaluation = root / "evaluation" / model
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.json").write_text(json.dumps({
        "n_songs": len(labels), "n_tags_evaluated": 3,
        "roc_auc": {"macro": float(np.mean([roc_auc_score(labels[:, t], probs[:, t])
                                            for t in range(3)])), "ci_low": 0.1, "ci_high": 0.9},
        "pr_auc": {"macro": 0.5, "ci_low": 0.4, "ci_high": 0.6}}))
    with h5py.File(evaluation / "predictions.h5", "w") as f:  # songs in another order per model
        f.create_dataset("track_id", data=np.array([f"t{i}" for i in order], dtype=object),
                         dtype=h5py.string_dtype())
        f["probs"] = probs[order].astype(np.float32)
        f["labels"] = labels[order].astype(np.uint8)
    training = root / "models" / model
    training.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "valid_loss": [0.5, 0.6], "seconds": [1.0, 1.0]}).to_csv(
        training / "history.csv", index=False)
    torch.save({"state_dict": {}, "meta": {"stopped": stopped}}, training / "best.ckpt")


# What the workflow passes as --models (mtt.config.WorkflowPlan.describe): family, method, round.
DESCRIPTIONS = {"teacher": ("transformer", "supervised", 0),
                "resnet_teacher": ("resnet", "supervised", 0),
                "student_kd": ("transformer", "noisy student KD", 1),
                "student_ke": ("transformer", "noisy student KE", 1),
                "student_resnet_kd": ("resnet", "noisy student KD", 1),
                "student_resnet_ke": ("resnet", "noisy student KE", 1)}


def models_option(names) -> list:
    return ["--models", json.dumps({name: dict(zip(("family", "method", "round"),
                                                   DESCRIPTIONS[name])) for name in names})]


def test_summarize_adds_stop_reasons_and_paired_differences(tmp_path):
    labels, student, teacher = labels_and_two_models()
    n = len(labels)
    write_model(tmp_path, "teacher", labels, teacher, "early stop: no lower validation loss "
                "for 4 epochs", np.arange(n))
    write_model(tmp_path, "student_ke", labels, student, "reached --max-epochs 2",
                np.arange(n)[::-1])
    models = ["teacher", "student_ke"]
    args = ["--metrics", *[tmp_path / "evaluation" / m / "metrics.json" for m in models],
            "--histories", *[tmp_path / "models" / m / "history.csv" for m in models],
            "--checkpoints", *[tmp_path / "models" / m / "best.ckpt" for m in models],
            "--predictions", *[tmp_path / "evaluation" / m / "predictions.h5" for m in models],
            *models_option(models), "--bootstrap", "200", "--out", tmp_path / "summary.tsv",
            "--comparison", tmp_path / "comparison.tsv"]
    assert main(["summarize", *map(str, args)]) == 0

    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("model")
    assert summary.loc["teacher", "stopped"].startswith("early stop")
    assert summary.loc["student_ke", "stopped"] == "reached --max-epochs 2"
    comparison = pd.read_csv(tmp_path / "comparison.tsv", sep="\t", keep_default_na=False)
    assert "noisy student KE - supervised" in comparison.columns
    roc = comparison.set_index("metric").loc["ROC-AUC", "noisy student KE - supervised"]
    expected = paired_difference(labels, student, teacher, n_resamples=200)["roc_auc"]
    assert roc == (f"{expected['difference']:+.4f} [{expected['ci_low']:+.4f}, "
                   f"{expected['ci_high']:+.4f}]")


def test_comparison_has_one_row_per_family_each_student_against_its_own_teacher(tmp_path):
    """The paper's table: a Music Tagging Transformer row and a ResNet row (per metric), each
    with supervised, KD and KE, and every student paired with its own family's teacher."""
    labels, student, teacher = labels_and_two_models()
    _, resnet_student, resnet_teacher = labels_and_two_models(seed=3)
    order = np.arange(len(labels))
    models = {"teacher": teacher, "resnet_teacher": resnet_teacher, "student_kd": student,
              "student_ke": teacher * 0.5 + student * 0.5, "student_resnet_kd": resnet_student,
              "student_resnet_ke": resnet_teacher}
    for model, probs in models.items():
        write_model(tmp_path, model, labels, probs, "x", order)
    args = ["--metrics", *[tmp_path / "evaluation" / m / "metrics.json" for m in models],
            "--predictions", *[tmp_path / "evaluation" / m / "predictions.h5" for m in models],
            *models_option(models), "--bootstrap", "100", "--out", tmp_path / "summary.tsv",
            "--comparison", tmp_path / "comparison.tsv"]
    assert main(["summarize", *map(str, args)]) == 0

    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("model")
    assert [m for m in models if summary.loc[m, "family"] == "resnet"] == [
        "resnet_teacher", "student_resnet_kd", "student_resnet_ke"]
    assert summary.loc["student_resnet_ke", "method"] == "noisy student KE"
    comparison = pd.read_csv(tmp_path / "comparison.tsv", sep="\t", keep_default_na=False)
    assert list(comparison["model"]) == ["Music Tagging Transformer"] * 2 + ["ResNet"] * 2
    assert list(comparison.columns[2:]) == [
        "supervised", "noisy student KD", "noisy student KE",
        "noisy student KD - supervised", "noisy student KE - supervised"]
    resnet = comparison[comparison["model"] == "ResNet"].set_index("metric")
    # the ResNet KE student predicts what its teacher does: exactly no difference
    assert resnet.loc["ROC-AUC", "noisy student KE - supervised"] == \
        "+0.0000 [+0.0000, +0.0000]"
    expected = paired_difference(labels, resnet_student, resnet_teacher,
                                 n_resamples=100)["roc_auc"]
    assert resnet.loc["ROC-AUC", "noisy student KD - supervised"] == (
        f"{expected['difference']:+.4f} [{expected['ci_low']:+.4f}, {expected['ci_high']:+.4f}]")
    assert (comparison.drop(columns=["model", "metric"]) != "").all().all()


def test_summarize_refuses_students_evaluated_on_other_songs(tmp_path, capsys):
    labels, student, teacher = labels_and_two_models()
    write_model(tmp_path, "teacher", labels, teacher, "x", np.arange(len(labels)))
    write_model(tmp_path, "student_kd", labels[:-1], student[:-1], "x", np.arange(len(labels) - 1))
    models = ["teacher", "student_kd"]
    args = ["--metrics", *[tmp_path / "evaluation" / m / "metrics.json" for m in models],
            "--predictions", *[tmp_path / "evaluation" / m / "predictions.h5" for m in models],
            *models_option(models), "--out", tmp_path / "summary.tsv",
            "--comparison", tmp_path / "comparison.tsv"]
    assert main(["summarize", *map(str, args)]) == 2
    assert "not the same test songs" in capsys.readouterr().err
    assert not (tmp_path / "summary.tsv").exists()


def test_summarize_writes_the_table_as_html_for_the_report(tmp_path):
    labels, student, teacher = labels_and_two_models()
    for model, probs in (("teacher", teacher), ("student_kd", student)):
        write_model(tmp_path, model, labels, probs, "x", np.arange(len(labels)))
    metrics = [tmp_path / "evaluation" / m / "metrics.json" for m in ("teacher", "student_kd")]
    args = ["--metrics", *metrics, "--out", tmp_path / "summary.tsv", "--html", tmp_path / "s.html"]
    assert main(["summarize", *map(str, args)]) == 0
    html = (tmp_path / "s.html").read_text()
    assert html.startswith("<!doctype html>") and "<th>roc_auc_ci_low</th>" in html
    assert re.findall(r"<tr>\s*<td>([^<]*)</td>", html) == ["teacher", "student_kd"]


def test_summary_shows_the_tags_evaluation_left_out(tmp_path):
    labels, student, teacher = labels_and_two_models()
    for model, probs in (("teacher", teacher), ("student_kd", student)):
        write_model(tmp_path, model, labels, probs, "x", np.arange(len(labels)))
    metrics = tmp_path / "evaluation" / "student_kd" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "n_tags_evaluated": 1,
                                   "excluded_tags": ["jazz", "piano"]}))
    args = ["--metrics", tmp_path / "evaluation" / "teacher" / "metrics.json", metrics,
            "--out", tmp_path / "summary.tsv"]
    assert main(["summarize", *map(str, args)]) == 0
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t", keep_default_na=False)
    assert summary[["n_tags", "n_tags_excluded", "excluded_tags"]].values.tolist() == [
        [3, 0, ""], [1, 2, "jazz;piano"]]
