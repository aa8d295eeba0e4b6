"""A plain catalogue: a tab-separated table with a header and the columns `track_id`,
`artist_id`, `path` (relative to the audio root) and `tags` (joined by ';', empty when none);
other columns are ignored. The vocabulary defaults to every tag seen, most frequent first.
"""
from pathlib import Path

import numpy as np

from mtt.datasets import DatasetError
from mtt.datasets.table import (TrackTable, check_unique_ids, choose_vocabulary, label_matrix,
                                read_tab_table, split_tag_strings)

COLUMNS = ["track_id", "artist_id", "path", "tags"]


def load_tsv(metadata, tags=None, top_tags=None) -> TrackTable:
    metadata = Path(metadata)
    table = read_tab_table(metadata)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(metadata, f"missing column(s) {', '.join(missing)} (need {COLUMNS})")
    empty_ids = table["track_id"] == ""
    if empty_ids.any():
        raise DatasetError(metadata, f"line {int(np.argmax(empty_ids)) + 2}: empty track_id")
    tag_lists = split_tag_strings(table["tags"], metadata)
    vocab = choose_vocabulary(tag_lists, metadata, tags, top_tags)
    track_id = table["track_id"].to_numpy(dtype=object)
    check_unique_ids(track_id, metadata)
    return TrackTable(track_id, table["artist_id"].to_numpy(dtype=object),
                      table["path"].to_numpy(dtype=object), label_matrix(tag_lists, vocab), vocab)
