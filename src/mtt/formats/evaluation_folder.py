"""The evaluation folder of `mtt evaluate --out DIR`: `metrics.json`, `per_tag.tsv` and
`predictions.h5`, written together (each atomically) and read by `mtt summarize` and `mtt plots`.

- `metrics.json`: `mtt.metrics.tagging_report` (macro ROC-AUC / PR-AUC with `ci_low` /
  `ci_high`, per-tag scores and positives, the tags left out) plus `n_tags`, `checkpoint`,
  `tracks`, `prediction`, `precision`;
- `per_tag.tsv`: columns `tag roc_auc pr_auc positives`, scores with 6 decimals, `NA` where a tag
  has no positive or no negative song;
- `predictions.h5`: datasets `track_id` (N,) UTF-8, `probs` float32 (N, n_tags), `labels` uint8
  (N, n_tags); attributes `tags` (JSON list) and `checkpoint`.
"""
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mtt.atomic import atomic_path
from mtt.formats.hdf5 import checked_dataset
from mtt.formats.tsv_dialect import read_tsv

PER_TAG_COLUMNS = ["tag", "roc_auc", "pr_auc", "positives"]
MACRO_METRICS = ("roc_auc", "pr_auc")


def write_evaluation(out: Path, report, track_ids, probs, labels, tags) -> None:
    """The three files into the folder `out` (made if missing); `report` is metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"tag": tag, **values} for tag, values in report["per_tag"].items()]
    with atomic_path(out / "per_tag.tsv") as tmp:
        pd.DataFrame(rows, columns=PER_TAG_COLUMNS).to_csv(
            tmp, sep="\t", index=False, float_format="%.6f", na_rep="NA")
    with atomic_path(out / "predictions.h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("track_id", data=np.array(track_ids, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("probs", data=probs.astype(np.float32))
            f.create_dataset("labels", data=labels.astype(np.uint8))
            f.attrs["tags"] = json.dumps(list(tags))
            f.attrs["checkpoint"] = report["checkpoint"]
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def read_metrics(path) -> dict:
    """metrics.json, checked to hold the macro scores."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    for metric in MACRO_METRICS:
        if metric not in metrics or "macro" not in metrics[metric]:
            raise ValueError(f"{path}: no macro {metric} (is it a `mtt evaluate` output?)")
    return metrics


def read_per_tag(path) -> pd.DataFrame:
    """per_tag.tsv: `tag` as text, the scores as floats (NaN for NA), `positives` as integers."""
    table = read_tsv(path)
    missing = set(PER_TAG_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    try:
        for column in MACRO_METRICS:
            table[column] = [np.nan if value == "NA" else float(value) for value in table[column]]
        table["positives"] = table["positives"].astype(np.int64)
    except ValueError as err:
        raise ValueError(f"{path}: not a per-tag table of `mtt evaluate` ({err})") from None
    return table


def read_predictions(path: Path) -> dict:
    """The track IDs, probs and labels of one model's `predictions.h5` (and its path), checked
    to agree in shape."""
    try:
        with h5py.File(path, "r") as f:
            # in the file itself and as large as declared (mtt.formats.hdf5), shapes agreeing,
            # before anything is read
            found = {key: checked_dataset(f, key, path) for key in ("track_id", "probs", "labels")}
            missing = [key for key, dataset in found.items() if dataset is None]
            if missing:
                raise KeyError(f"no {missing[0]!r} dataset")
            shapes = {key: dataset.shape for key, dataset in found.items()}
            if shapes["probs"] != shapes["labels"] or len(shapes["probs"]) != 2 or \
                    shapes["track_id"] != shapes["probs"][:1]:
                raise ValueError(f"{path}: track_id {shapes['track_id']}, probs "
                                 f"{shapes['probs']} and labels {shapes['labels']} disagree")
            tracks = [t.decode() if isinstance(t, bytes) else str(t) for t in found["track_id"][:]]
            probs, labels = found["probs"][:], found["labels"][:]
    except (OSError, KeyError) as err:
        raise ValueError(f"{path}: not a predictions file of `mtt evaluate` ({err})") from None
    if probs.shape != labels.shape or probs.ndim != 2 or len(tracks) != len(probs):
        raise ValueError(f"{path}: track_id, probs {probs.shape} and labels {labels.shape} "
                         "disagree")
    if probs.dtype.kind != "f" or not np.isfinite(probs).all() or \
            (probs.size and (probs.min() < 0 or probs.max() > 1)):
        raise ValueError(f"{path}: probs must be finite probabilities in [0, 1] (some are NaN, "
                         "infinite or out of range)")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{path}: labels must be 0 or 1")
    return {"path": path, "tracks": tracks, "probs": probs, "labels": labels}
