"""`mtt summarize`: gather every model's evaluation into one table, and the paper's comparison.

Inputs are the `metrics.json` files of `mtt evaluate` and the `history.csv` files of `mtt train`,
one of each per model; a model is named by the folder that holds its file
(`results/evaluation/student_kd/metrics.json` -> `student_kd`). What each model is (its family,
training method and noisy-student round) comes from `--models`, which the workflow writes from
its config (`mtt.config.WorkflowPlan.describe`); a model it does not name is of family `other`.

`summary.tsv`: one row per model with macro ROC-AUC and PR-AUC, their bootstrap intervals, the
number of test songs, the tags evaluated and those left out (no positive or no negative test
song), and the length of training. `comparison.tsv` (optional): the comparison of
the paper, one row per model family (and noisy-student round) and metric, one column per training
method: supervised, noisy student KD, noisy student KE, ..., and per student the paired
difference student - supervised with its bootstrap interval over the same resampled test songs
(from the models' `predictions.h5`), so a gain can be told from test-set noise.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..checks import nonnegative_int, output_file
from ..atomic import atomic_path
from ..checkpoint import read_checkpoint_meta
from ..config import FAMILIES
from ..formats.evaluation_folder import read_metrics, read_predictions
from ..metrics import paired_difference

SUMMARY_COLUMNS = [
    "model", "family", "method", "round",
    "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high",
    "pr_auc", "pr_auc_ci_low", "pr_auc_ci_high",
    "n_songs", "n_tags", "n_tags_excluded", "excluded_tags", "prediction", "epochs", "best_epoch", "train_minutes", "stopped",
]
METRIC_NAMES = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", required=True, nargs="+", type=Path,
                        help="metrics.json of each model (model name = its folder)")
    parser.add_argument("--histories", nargs="*", type=Path, default=[],
                        help="history.csv of each model (model name = its folder)")
    parser.add_argument("--checkpoints", nargs="*", type=Path, default=[],
                        help="best.ckpt of each model, for why its training stopped")
    parser.add_argument("--predictions", nargs="*", type=Path, default=[],
                        help="predictions.h5 of each model (`mtt evaluate`), for the paired "
                        "student - supervised intervals of the comparison")
    parser.add_argument("--models", type=model_descriptions, default={},
                        help='each model\'s family, method and round as JSON, e.g. {"teacher": '
                        '{"family": "transformer", "method": "supervised", "round": 0}, '
                        '"student_kd": {"family": "transformer", "method": "noisy student KD", '
                        '"round": 1}}; the comparison groups the models by family and round')
    parser.add_argument("--bootstrap", type=nonnegative_int, default=1000,
                        help="resamples of the paired intervals (0: none)")
    parser.add_argument("--out", required=True, type=output_file, help="summary table (TSV)")
    parser.add_argument("--comparison", type=output_file,
                        help="also write the supervised vs noisy-student comparison (TSV)")
    parser.add_argument("--html", type=output_file,
                        help="also write the summary table as an HTML page (the report shows it)")


def run(args) -> int:
    try:
        summary = summarize(args.metrics, args.histories, args.checkpoints, args.models)
        predictions = {Path(p).parent.name: read_predictions(p) for p in args.predictions}
        comparison = comparison_table(summary, predictions, args.bootstrap)
    except (ValueError, KeyError, FileNotFoundError, OSError) as err:
        print(f"mtt summarize: error: {err}", file=sys.stderr)
        return 2
    with atomic_path(args.out) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, float_format="%.4f", na_rep="")
    print(summary[["model", "roc_auc", "pr_auc"]].to_string(index=False), file=sys.stderr)
    if args.comparison:
        with atomic_path(args.comparison) as tmp:
            comparison.to_csv(tmp, sep="\t", index=False)
    if args.html:
        with atomic_path(args.html) as tmp:
            tmp.write_text(summary_html(summary))
    return 0


def summary_html(summary: pd.DataFrame) -> str:
    """The summary table as a self-contained HTML page."""
    table = summary.to_html(index=False, float_format="%.4f", na_rep="", border=0)
    style = ("body{font:14px sans-serif;margin:1em}table{border-collapse:collapse}"
             "th,td{padding:.3em .6em;border-bottom:1px solid #ccc}th{background:#e8eef5}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>summary</title>"
            f"<style>{style}</style></head>\n<body>\n{table}\n</body></html>\n")


def model_descriptions(text: str) -> dict:
    """--models: model name -> {"family", "method", "round"}."""
    try:
        models = json.loads(text)
        for name, entry in models.items():
            if set(entry) != {"family", "method", "round"} or not isinstance(entry["round"], int):
                raise ValueError(f"{name}: {entry}")
    except (ValueError, TypeError, AttributeError) as err:
        raise argparse.ArgumentTypeError(
            f"not a JSON object of models with family, method and round ({err})") from None
    return models


def describe_model(name: str, models: dict) -> dict:
    """Family, training method and noisy-student round of a model (`--models`)."""
    return models.get(name, {"family": "other", "method": name, "round": 0})


def summarize(metrics_paths, history_paths, checkpoint_paths=(), models=None) -> pd.DataFrame:
    histories = {Path(p).parent.name: Path(p) for p in history_paths}
    checkpoints = {Path(p).parent.name: Path(p) for p in checkpoint_paths}
    rows = []
    for path in metrics_paths:
        path = Path(path)
        model = path.parent.name
        metrics = read_metrics(path)
        row = {"model": model, **describe_model(model, models or {})}
        for metric in METRIC_NAMES:
            row[metric] = metrics[metric]["macro"]
            row[f"{metric}_ci_low"] = metrics[metric].get("ci_low")
            row[f"{metric}_ci_high"] = metrics[metric].get("ci_high")
        row["n_songs"] = metrics.get("n_songs")
        row["n_tags"] = metrics.get("n_tags_evaluated")
        excluded = metrics.get("excluded_tags", [])  # no positive or no negative test song
        row["n_tags_excluded"] = len(excluded)
        row["excluded_tags"] = ";".join(excluded)
        row["prediction"] = metrics.get("prediction")
        if model in histories:
            row.update(training_length(histories[model]))
        if model in checkpoints:
            meta = read_checkpoint_meta(checkpoints[model])
            row["stopped"] = meta.get("stopped", "not recorded")
            if "best_epoch" in meta:
                row["best_epoch"] = int(meta["best_epoch"])
        rows.append(row)
    if len({row["model"] for row in rows}) != len(rows):
        raise ValueError("two metrics files belong to models of the same name")
    return pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)


def training_length(history_path: Path) -> dict:
    """Epochs run, the epoch of the lowest validation loss, and minutes of training (the kept
    epoch, which --select-by may choose by another score, comes from the checkpoint)."""
    history = pd.read_csv(history_path)
    missing = {"epoch", "valid_loss", "seconds"} - set(history.columns)
    if missing:
        raise ValueError(f"{history_path}: missing columns {sorted(missing)}")
    if history.empty:
        return {"epochs": 0}
    return {
        "epochs": int(history["epoch"].max()),
        "best_epoch": int(history.loc[history["valid_loss"].idxmin(), "epoch"]),
        "train_minutes": float(history["seconds"].sum() / 60.0),
    }


def paired_report(student: dict, supervised: dict, n_resamples: int) -> dict:
    """`metrics.paired_difference` of two `read_predictions` outputs: student - supervised on
    the same songs, aligned by track ID."""
    if sorted(student["tracks"]) != sorted(supervised["tracks"]):
        raise ValueError(f"{student['path']} and {supervised['path']}: not the same test songs")
    # the songs in the supervised model's order, so every student is resampled alike
    order = {t: i for i, t in enumerate(student["tracks"])}
    rows = np.array([order[t] for t in supervised["tracks"]])
    if not np.array_equal(student["labels"][rows], supervised["labels"]):
        raise ValueError(f"{student['path']} and {supervised['path']}: labels differ")
    return paired_difference(supervised["labels"], student["probs"][rows], supervised["probs"],
                             n_resamples=n_resamples)


def paired_cells(student: dict, supervised: dict, n_resamples: int) -> dict:
    """`+0.0123 [-0.0040, +0.0290]` per metric: student - supervised on the same songs."""
    cells = {}
    for metric, entry in paired_report(student, supervised, max(n_resamples, 1)).items():
        cells[metric] = (f"{entry['difference']:+.4f}" if n_resamples == 0 else
                         f"{entry['difference']:+.4f} [{entry['ci_low']:+.4f}, "
                         f"{entry['ci_high']:+.4f}]")
    return cells


def comparison_table(summary: pd.DataFrame, predictions: dict | None = None,
                     n_resamples: int = 1000) -> pd.DataFrame:
    """Rows: model family (and round beyond the first) x metric; columns: training methods,
    then `<method> - supervised` per student method where both models' predictions are given.

    Cells read `score [ci_low, ci_high]`; empty where a model was not trained.
    """
    predictions = predictions or {}
    methods = ["supervised"] + sorted(m for m in summary["method"].unique() if m != "supervised")
    paired = [f"{m} - supervised" for m in methods[1:]]
    rows = []
    known = summary[summary["family"] != "other"]
    for (family, round_), group in _family_rounds(known):
        label = FAMILIES[family].label if family in FAMILIES else family
        if round_ > 1:
            label = f"{label}, round {round_}"
        supervised = group[group["method"] == "supervised"]
        differences = {}
        if len(supervised) and supervised.iloc[0]["model"] in predictions:
            base = predictions[supervised.iloc[0]["model"]]
            for _, student in group[group["method"] != "supervised"].iterrows():
                if student["model"] in predictions:
                    differences[student["method"]] = paired_cells(
                        predictions[student["model"]], base, n_resamples)
        for metric, metric_name in METRIC_NAMES.items():
            row = {"model": label, "metric": metric_name}
            for method in methods:
                match = group[group["method"] == method]
                row[method] = _cell(match.iloc[0], metric) if len(match) else ""
            for method in methods[1:]:
                row[f"{method} - supervised"] = differences.get(method, {}).get(metric, "")
            rows.append(row)
    columns = ["model", "metric"] + methods + (paired if predictions else [])
    return pd.DataFrame(rows).reindex(columns=columns)


def _family_rounds(summary: pd.DataFrame):
    """Groups of (family, round): round 1 also holds the supervised model of the family."""
    for family in summary["family"].unique():
        models = summary[summary["family"] == family]
        rounds = sorted(set(models["round"]) - {0}) or [1]
        for round_ in rounds:
            keep = models["round"] == round_
            if round_ == 1:
                keep |= models["round"] == 0
            yield (family, round_), models[keep]


def _cell(row, metric: str) -> str:
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(low) or pd.isna(high):
        return f"{row[metric]:.4f}"
    return f"{row[metric]:.4f} [{low:.4f}, {high:.4f}]"
