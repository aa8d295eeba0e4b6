"""`mtt plots`: the figures of the workflow report.

Writes into `--out-dir`:
- `per_tag_roc_auc.png`, `per_tag_pr_auc.png`: each tag's score on the test set, a bar per model
  (from each model's `per_tag.tsv`; PR-AUC also marks the tag's positive rate, a random guess);
- `pr_curves.png`: micro-averaged precision-recall curve per model (from `predictions.h5`);
- `training_curves.png`: train/valid loss and valid ROC-AUC per epoch (from `history.csv`);
- `split_statistics.png`: songs and artists per set, each tag's positive rate per labeled set
  against the whole labeled set (from the split folder's TSVs, read in chunks).

A model is named by the folder holding its file, as in `mtt summarize`.
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from ..checks import output_folder
from ..atomic import atomic_path  # noqa: E402
from ..formats.evaluation_folder import read_per_tag, read_predictions  # noqa: E402
from ..formats.split_folder import LABELED_SETS, SETS, read_tag_list  # noqa: E402
from ..formats.tsv_dialect import read_tsv_chunks  # noqa: E402

FIGURES = ["per_tag_roc_auc", "per_tag_pr_auc", "pr_curves", "training_curves",
           "split_statistics"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-tag", required=True, nargs="+", type=Path,
                        help="per_tag.tsv of each model (model name = its folder)")
    parser.add_argument("--predictions", required=True, nargs="+", type=Path,
                        help="predictions.h5 of each model")
    parser.add_argument("--histories", required=True, nargs="+", type=Path,
                        help="history.csv of each model")
    parser.add_argument("--split-dir", required=True, type=Path,
                        help="split folder: {train,valid,test,student,none}.tsv and tags.txt")
    parser.add_argument("--out-dir", required=True, type=output_folder)


def run(args) -> int:
    try:
        predictions = [read_predictions(path) for path in args.predictions]
        test_songs = len(predictions[0]["tracks"])
        figures = {
            "per_tag_roc_auc": per_tag_figure(args.per_tag, "roc_auc", "ROC-AUC"),
            "per_tag_pr_auc": per_tag_figure(args.per_tag, "pr_auc", "PR-AUC", test_songs),
            "pr_curves": pr_curve_figure(predictions),
            "training_curves": training_figure(args.histories),
            "split_statistics": split_figure(split_statistics(args.split_dir)),
        }
    except (ValueError, KeyError, FileNotFoundError, OSError) as err:
        print(f"mtt plots: error: {err}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, figure in figures.items():
        with atomic_path(args.out_dir / f"{name}.png") as tmp:
            figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
        plt.close(figure)
        print(f"wrote {args.out_dir / name}.png", file=sys.stderr)
    return 0


def model_name(path: Path) -> str:
    return Path(path).parent.name


def per_tag_figure(paths, metric: str, label: str, test_songs: int | None = None):
    """Horizontal bars: one group per tag, one bar per model; with `test_songs`, a mark at each
    tag's positive rate (the PR-AUC of a random guess)."""
    tables = {model_name(p): read_per_tag(p) for p in paths}
    tags = list(next(iter(tables.values()))["tag"])
    n_models = len(tables)
    height = 0.8 / n_models
    y = np.arange(len(tags))
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.12 * len(tags) * max(n_models, 2)))
    for i, (model, table) in enumerate(tables.items()):
        scores = table.set_index("tag").reindex(tags)[metric].to_numpy(dtype=float)
        ax.barh(y + (i - (n_models - 1) / 2) * height, scores, height=height, label=model)
    if test_songs:
        table = next(iter(tables.values())).set_index("tag").reindex(tags)
        rate = table["positives"].to_numpy(dtype=float) / test_songs
        ax.scatter(rate, y, marker="|", s=120, color="black", label="positive rate (chance)")
    ax.set_yticks(y, tags, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{label} on the test set")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def pr_curve_figure(predictions):
    """Micro-averaged precision-recall curves (of `read_predictions` outputs): every (song, tag)
    pair is one decision."""
    fig, ax = plt.subplots(figsize=(6, 5))
    prevalence = None
    for model in predictions:
        probs = model["probs"].astype(np.float32)
        labels = model["labels"].astype(bool)
        precision, recall, _ = precision_recall_curve(labels.ravel(), probs.ravel())
        ax.plot(recall, precision, label=model_name(model["path"]))
        prevalence = labels.mean()
    if prevalence is not None:
        ax.axhline(prevalence, color="gray", linestyle="--", label="chance")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Micro-averaged PR curves on the test set")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def training_figure(paths):
    panels = [("train_loss", "training loss"), ("valid_loss", "validation loss"),
              ("valid_roc_auc", "validation ROC-AUC")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for path in paths:
        history = pd.read_csv(path)
        missing = {"epoch"} | {column for column, _ in panels}
        missing -= set(history.columns)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for ax, (column, _) in zip(axes, panels):
            ax.plot(history["epoch"], history[column], marker=".", label=model_name(path))
    for ax, (_, title) in zip(axes, panels):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    return fig


def split_statistics(split_dir: Path, chunksize: int = 100_000) -> dict:
    """Songs, artists and per-tag positive counts of every set, reading the TSVs in chunks."""
    tags = read_tag_list(split_dir / "tags.txt")
    index = {tag: i for i, tag in enumerate(tags)}
    stats = {"tags": tags, "sets": {}}
    for name in SETS:
        path = split_dir / f"{name}.tsv"
        songs, artists, positives = 0, set(), np.zeros(len(tags), dtype=np.int64)
        for chunk in read_tsv_chunks(path, chunksize):
            songs += len(chunk)
            artists.update(chunk["artist_id"])
            for song_tags in chunk["tags"]:
                for tag in filter(None, song_tags.split(";")):
                    if tag in index:
                        positives[index[tag]] += 1
        stats["sets"][name] = {"songs": songs, "artists": len(artists), "positives": positives}
    return stats


def split_figure(stats: dict):
    sets, tags = stats["sets"], stats["tags"]
    fig, (ax_sizes, ax_rates) = plt.subplots(
        2, 1, figsize=(max(8, 0.22 * len(tags) + 2), 8), gridspec_kw={"height_ratios": [1, 2]})
    x = np.arange(len(SETS))
    songs = [sets[name]["songs"] for name in SETS]
    artists = [sets[name]["artists"] for name in SETS]
    ax_sizes.bar(x - 0.2, songs, width=0.4, label="songs")
    ax_sizes.bar(x + 0.2, artists, width=0.4, label="artists")
    for xi, (s, a) in enumerate(zip(songs, artists)):
        ax_sizes.annotate(f"{s:,}", (xi - 0.2, s), ha="center", va="bottom", fontsize=7)
        ax_sizes.annotate(f"{a:,}", (xi + 0.2, a), ha="center", va="bottom", fontsize=7)
    ax_sizes.set_xticks(x, SETS)
    ax_sizes.set_title("Songs and artists per set")
    ax_sizes.legend(fontsize=8)

    labeled_songs = sum(sets[name]["songs"] for name in LABELED_SETS)
    whole = sum(sets[name]["positives"] for name in LABELED_SETS) / max(labeled_songs, 1)
    order = np.argsort(-whole)
    xt = np.arange(len(tags))
    ax_rates.bar(xt, whole[order], color="lightgray", label="all labeled songs")
    for name, marker in zip(LABELED_SETS, ["o", "s", "^"]):
        rate = sets[name]["positives"] / max(sets[name]["songs"], 1)
        deviation = np.abs(rate - whole).mean()
        ax_rates.scatter(xt, rate[order], marker=marker, s=12,
                         label=f"{name} (mean |deviation| {deviation:.4f})")
    ax_rates.set_xticks(xt, [tags[i] for i in order], rotation=90, fontsize=7)
    ax_rates.set_ylabel("positive rate")
    ax_rates.set_title("Per-tag positive rate per labeled set")
    ax_rates.legend(fontsize=8)
    fig.tight_layout()
    return fig
