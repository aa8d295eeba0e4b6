"""The split folder of `mtt split --out DIR` (docs/FORMATS.md, docs/SPLITS.md):

    DIR/{train,valid,test,student,none}.tsv  columns track_id, artist_id, path, tags (';'-joined)
    DIR/tags.txt                             the vocabulary, one tag per line, model output order
    DIR/report.json                          sizes, per-tag positive rates, MAD (`mtt.prepare.split`)

The TSVs are in the one dialect of `mtt.formats.tsv_dialect` (no quoting: a value with a tab or line break is
refused when writing). `mtt preprocess` reads a set's TSV for its `track_id` and `path`,
`mtt train` / `mtt evaluate` its labels (`read_split`), and every command that takes `--tags`
reads tags.txt (`read_tag_list`, as `mtt split --tag-list` reads a vocabulary).
"""
import json

import numpy as np
import pandas as pd

from mtt.atomic import atomic_dir
from mtt.config import SPLIT_SETS
from mtt.datasets import DatasetError
from mtt.formats.tsv_dialect import read_tsv

SETS = SPLIT_SETS
LABELED_SETS = ("train", "valid", "test")
COLUMNS = ["track_id", "artist_id", "path", "tags"]


def write_split_folder(out, sets: dict, tags, report: dict) -> None:
    """Write the folder as one unit (a temporary folder swapped in when complete, so a kill
    never leaves a new train.tsv beside an old valid.tsv). `sets`: for every name of SETS, the
    set's rows as four columns in COLUMNS order, tags already joined by ';'."""
    with atomic_dir(out) as tmp:
        for name in SETS:
            columns = sets[name]
            _check_fields(columns)
            with open(tmp / f"{name}.tsv", "w", encoding="utf-8", newline="\n") as f:
                f.write("\t".join(COLUMNS) + "\n")
                f.writelines("\t".join(row) + "\n" for row in zip(*columns))
        (tmp / "tags.txt").write_text("".join(f"{t}\n" for t in tags), encoding="utf-8")
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def _check_fields(columns):
    for column, name in zip(columns, COLUMNS):
        if any(c in "\v".join(column) for c in "\t\n\r"):
            bad = next(v for v in column if any(c in v for c in "\t\n\r"))
            raise DatasetError(name, f"value {bad!r} contains a tab or line break")


def read_split_table(path) -> pd.DataFrame:
    """One split TSV as strings (empty tags stay '', IDs like 'NA' stay text)."""
    return read_tsv(path)


def read_split(tsv_path, tags: list[str]) -> tuple[list[str], np.ndarray]:
    """Track IDs and their (N, n_tags) float32 0/1 label matrix from a split TSV.

    The TSV has a header with at least `track_id` and `tags` (tags joined by ';'); tags outside
    the vocabulary are ignored.
    """
    try:
        table = read_tsv(tsv_path)  # strict: a row with too many or too few fields is an error
    except FileNotFoundError:
        raise FileNotFoundError(f"{tsv_path}: split table not found") from None
    missing = {"track_id", "tags"} - set(table.columns)
    if missing:
        raise ValueError(f"{tsv_path}: missing column(s) {sorted(missing)}; found {list(table.columns)}")
    if table["track_id"].duplicated().any():
        dup = table["track_id"][table["track_id"].duplicated()].iloc[0]
        raise ValueError(f"{tsv_path}: track {dup!r} appears more than once")
    column = {tag: i for i, tag in enumerate(tags)}
    labels = np.zeros((len(table), len(tags)), dtype=np.float32)
    for row, joined in enumerate(table["tags"]):
        for tag in joined.split(";"):
            i = column.get(tag.strip())
            if i is not None:
                labels[row, i] = 1.0
    return table["track_id"].tolist(), labels


def read_tag_list(path) -> list[str]:
    """One tag per line; blank lines and lines starting with '#' are ignored."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]
