"""How good are a teacher's pseudo-labels? Per tag, against the demo generator's true tags.

The demo's observed (Last.fm-like) labels leave out many true tags, so a model is scored on
noisy labels; the generator also writes every song's true tags (`raw/true_tags.tsv`), which
tell what a pseudo-label gets right whatever the observation noise. For each tag: the share of
student songs that truly carry it, ROC-AUC and average precision of the pseudo-labels against
the true tags, and the mean pseudo-label of the songs with and without the tag.

    python bench/pseudo_label_quality.py --true-tags DEMO/raw/true_tags.tsv \\
        --tags SPLIT/tags.txt --pseudo-labels PSEUDO.h5 [PSEUDO2.h5 ...]

Last line: roc_auc_vs_true=... pr_auc_vs_true=... songs=N tags=T (macro means over the tags).
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from mtt.formats.pseudo_label_shard import read_pseudo_labels
from mtt.formats.split_folder import read_tag_list
from mtt.formats.tsv_dialect import read_tsv


def quality(true_tags: Path, tags_path: Path, pseudo_labels: list[Path]) -> pd.DataFrame:
    tags = read_tag_list(tags_path)
    track_ids, probs = read_pseudo_labels(pseudo_labels, tags)
    truth = read_tsv(true_tags).set_index("track_id")["tags"]
    positives = np.array([[tag in set(truth[t].split(";")) for tag in tags] for t in track_ids])
    rows = []
    for j, tag in enumerate(tags):
        y, p = positives[:, j], probs[:, j]
        if 0 < y.sum() < len(y):
            rows.append({"tag": tag, "true_share": y.mean(), "roc_auc_vs_true": roc_auc_score(y, p),
                         "pr_auc_vs_true": average_precision_score(y, p),
                         "mean_with_tag": p[y].mean(), "mean_without": p[~y].mean()})
    return pd.DataFrame(rows), len(track_ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--true-tags", type=Path, required=True)
    parser.add_argument("--tags", type=Path, required=True, help="tag list (model output order)")
    parser.add_argument("--pseudo-labels", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    table, songs = quality(args.true_tags, args.tags, args.pseudo_labels)
    print(table.round(3).to_string(index=False))
    print(f"roc_auc_vs_true={table['roc_auc_vs_true'].mean():.4f} "
          f"pr_auc_vs_true={table['pr_auc_vs_true'].mean():.4f} songs={songs} tags={len(table)}")


if __name__ == "__main__":
    main()
