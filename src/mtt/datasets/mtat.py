"""MagnaTagATune: `annotations_final.csv`, tab-separated (read with `mtt.formats.tsv_dialect`) with `clip_id`, one
0/1 column per tag and `mp3_path` (relative to the audio root, e.g.
`f/american_bach_soloists-j_s__bach_solo_cantatas-01-bwv54__i_aria-30-59.mp3`). The file wraps
every field in double quotes: they are taken off the header, `clip_id` and `mp3_path`, and a tag
cell is 0 or 1 with or without them.

There is no artist column: the artist is the file name's part before the first '-', which keeps
all clips of one artist (and so of one song) in the same set.
The vocabulary defaults to the tag columns in file order (`--top-tags 50` gives the usual top 50).
"""
from pathlib import Path

import numpy as np

from mtt.datasets import DatasetError
from mtt.datasets.table import (TrackTable, check_npy_size, check_unique_ids, read_npy_header,
                                read_tab_table)


def artist_of_mp3_path(mp3_path: str) -> str:
    return mp3_path.rsplit("/", 1)[-1].split("-", 1)[0]


QUOTE = '"'


def _unquote(value: str) -> str:
    """A value wrapped in double quotes without them (a doubled quote inside stands for one);
    any other value as it is."""
    if len(value) >= 2 and value[0] == value[-1] == QUOTE:
        return value[1:-1].replace(QUOTE * 2, QUOTE)
    return value


def load_mtat(metadata, tags=None, top_tags=None) -> TrackTable:
    metadata = Path(metadata)
    table = read_tab_table(metadata)
    table.columns = [_unquote(column) for column in table.columns]
    for column in ("clip_id", "mp3_path"):
        if column not in table.columns:
            raise DatasetError(metadata, f"no {column!r} column")
        table[column] = [_unquote(value) for value in table[column]]
    tag_columns = [c for c in table.columns if c not in ("clip_id", "mp3_path")]
    values = table[tag_columns]  # quoted or not: unquoting 190 columns would take seconds
    bad = ~values.isin(["0", "1", '"0"', '"1"'])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DatasetError(metadata, f"line {row + 2}, column {tag_columns[col]!r}: "
                                 f"{_unquote(values.iat[row, col])!r} is not 0 or 1")
    labels = values.isin(["1", '"1"']).to_numpy()
    if tags is not None:
        missing = [t for t in tags if t not in tag_columns]
        if missing:
            raise DatasetError(metadata, f"tag(s) not among the columns: {missing[:5]}")
        vocab = list(tags)
        labels = labels[:, [tag_columns.index(t) for t in vocab]]
    else:
        vocab = tag_columns
    if top_tags is not None:
        keep = np.sort(np.argsort(-labels.sum(0), kind="stable")[:top_tags])
        labels, vocab = labels[:, keep], [vocab[i] for i in keep]
    track_id = table["clip_id"].to_numpy(dtype=object)
    check_unique_ids(track_id, metadata)
    mp3_path = table["mp3_path"].to_numpy(dtype=object)
    artist_id = np.array([artist_of_mp3_path(p) for p in mp3_path], dtype=object)
    return TrackTable(track_id, artist_id, mp3_path, labels, vocab)


OFFICIAL_FILES = {"train": "train.npy", "valid": "valid.npy", "test": "test.npy"}


def read_official_split(folder) -> dict:
    """{mp3_path: set name} from the widely used split files (minzwon/sota-music-tagging-models
    `split/mtat/{train,valid,test}.npy`: numpy string arrays of "index<TAB>mp3_path"), read
    with allow_pickle=False (a pickled object array is refused, never executed)."""
    folder = Path(folder)
    membership = {}
    for name, file in OFFICIAL_FILES.items():
        path = folder / file
        if not path.is_file():
            raise DatasetError(path, "official split file not found")
        try:
            with open(path, "rb") as f:  # the header's claims checked before loading
                shape, _, dtype = read_npy_header(path, f)
                if dtype.hasobject:
                    raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
                check_npy_size(path, f, shape, dtype)
                f.seek(0)
                entries = np.load(f, allow_pickle=False)
        except ValueError as err:
            raise DatasetError(path, f"not a numpy string array ({err})") from None
        if entries.dtype.kind not in "US":
            raise DatasetError(path, f"expected strings 'index<TAB>mp3_path', got dtype {entries.dtype}")
        for entry in entries.astype(str).ravel():
            mp3_path = entry.split("\t", 1)[-1].strip()
            if mp3_path in membership:
                raise DatasetError(path, f"{mp3_path} is in {membership[mp3_path]} and {name}")
            membership[mp3_path] = name
    return membership


def load_official_split(folder, metadata, tags=None, top_tags=None):
    """(TrackTable, set per track): tags and labels from annotations_final.csv (`metadata`; the
    usual vocabulary is `top_tags=50`), set membership from the split files; clips in no split
    file go to `none`."""
    table = load_mtat(metadata, tags, top_tags)
    membership = read_official_split(folder)
    sets = np.array([membership.get(p, "none") for p in table.path], dtype=object)
    unknown = set(membership) - set(table.path)
    if unknown:
        raise DatasetError(folder, f"{len(unknown)} split entries are not in {metadata}, "
                                   f"e.g. {sorted(unknown)[0]}")
    return table, sets
