"""MagnaTagATune: `annotations_final.csv`, tab-separated (fields may be double-quoted) with
`clip_id`, one 0/1 column per tag and `mp3_path` (relative to the audio root, e.g.
`f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3`).

There is no artist column: the artist is the file name's part before the first '-', which keeps
all clips of one artist (and so of one song) in the same set.
The vocabulary defaults to the tag columns in file order (`--top-tags 50` gives the usual top 50).
"""
from pathlib import Path

import numpy as np

from mtt.datasets import DatasetError, TrackTable, check_unique_ids, read_tab_table


def artist_of_mp3_path(mp3_path: str) -> str:
    return mp3_path.rsplit("/", 1)[-1].split("-", 1)[0]


def load_mtat(path, tags=None, top_tags=None) -> TrackTable:
    path = Path(path)
    table = read_tab_table(path)
    for column in ("clip_id", "mp3_path"):
        if column not in table.columns:
            raise DatasetError(path, f"no {column!r} column")
    tag_columns = [c for c in table.columns if c not in ("clip_id", "mp3_path")]
    values = table[tag_columns]
    bad = ~values.isin(["0", "1"])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DatasetError(path, f"line {row + 2}, column {tag_columns[col]!r}: "
                                 f"{values.iat[row, col]!r} is not 0 or 1")
    labels = values.to_numpy() == "1"
    if tags is not None:
        missing = [t for t in tags if t not in tag_columns]
        if missing:
            raise DatasetError(path, f"tag(s) not among the columns: {missing[:5]}")
        vocab = list(tags)
        labels = labels[:, [tag_columns.index(t) for t in vocab]]
    else:
        vocab = tag_columns
    if top_tags is not None:
        keep = np.sort(np.argsort(-labels.sum(0), kind="stable")[:top_tags])
        labels, vocab = labels[:, keep], [vocab[i] for i in keep]
    track_id = table["clip_id"].to_numpy(dtype=object)
    check_unique_ids(track_id, path)
    mp3_path = table["mp3_path"].to_numpy(dtype=object)
    artist_id = np.array([artist_of_mp3_path(p) for p in mp3_path], dtype=object)
    return TrackTable(track_id, artist_id, mp3_path, labels, vocab)
