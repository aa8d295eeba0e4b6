"""MTG-Jamendo: `autotagging*.tsv`, tab-separated `TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS...`
with one tag per trailing column (e.g. `genre---rock`, `mood/theme---happy`), read line by line
with `mtt.formats.tsv_dialect.tsv_lines` (rows are wider than the header). PATH is relative to the audio root.
The vocabulary defaults to every tag in the file, most frequent first.
"""
from pathlib import Path

import numpy as np

from mtt.datasets import DatasetError
from mtt.datasets.table import TrackTable, check_unique_ids, choose_vocabulary, label_matrix
from mtt.formats.tsv_dialect import TsvError, tsv_lines

HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION"]


def read_mtg_jamendo(path):
    """(track_ids, artist_ids, paths, tag lists) of an autotagging TSV."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    track_ids, artist_ids, paths, tag_lists = [], [], [], []
    try:
        lines = tsv_lines(path)
        _, header = next(lines, (1, [""]))
        if header[:5] != HEADER:
            raise DatasetError(path, f"header {header[:5]} is not {HEADER} + TAGS")
        for line_number, fields in lines:
            if len(fields) < 5:
                raise DatasetError(path, f"line {line_number}: {len(fields)} columns, expected "
                                         "at least 5")
            track_ids.append(fields[0])
            artist_ids.append(fields[1])
            paths.append(fields[3])
            tag_lists.append([t for t in fields[5:] if t])
    except TsvError as error:
        raise DatasetError(path, error.reason) from None
    return track_ids, artist_ids, paths, tag_lists


def load_mtg_jamendo(metadata, tags=None, top_tags=None) -> TrackTable:
    track_ids, artist_ids, paths, tag_lists = read_mtg_jamendo(metadata)
    track_id = np.array(track_ids, dtype=object)
    check_unique_ids(track_id, metadata)
    vocab = choose_vocabulary(tag_lists, metadata, tags, top_tags)
    return TrackTable(track_id, np.array(artist_ids, dtype=object),
                      np.array(paths, dtype=object), label_matrix(tag_lists, vocab), vocab)


OFFICIAL_SETS = {"train": "train", "validation": "valid", "test": "test"}


def load_official_split(folder, tags=None, top_tags=None):
    """(TrackTable, set name per track) from the dataset's own split folder
    `split-N/autotagging[_<subset>]-{train,validation,test}.tsv` (train/valid/test; the
    official split labels every track, so no student set)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, "official split folder not found")
    files = {}
    for part, name in OFFICIAL_SETS.items():
        found = sorted(folder.glob(f"autotagging*-{part}.tsv"))
        if len(found) != 1:
            raise DatasetError(folder, f"expected one autotagging*-{part}.tsv, found {len(found)}")
        files[name] = found[0]
    track_ids, artist_ids, paths, tag_lists, sets = [], [], [], [], []
    for name, path in files.items():
        t, a, p, tl = read_mtg_jamendo(path)
        track_ids += t
        artist_ids += a
        paths += p
        tag_lists += tl
        sets += [name] * len(t)
    track_id = np.array(track_ids, dtype=object)
    check_unique_ids(track_id, folder)
    vocab = choose_vocabulary(tag_lists, folder, tags, top_tags)
    table = TrackTable(track_id, np.array(artist_ids, dtype=object), np.array(paths, dtype=object),
                       label_matrix(tag_lists, vocab), vocab)
    return table, np.array(sets, dtype=object)
