"""The track table every dataset adapter reads its metadata into, and the helpers the adapters
share (vocabulary, label matrix, table and .npy checks).

A track table holds, for each track, its ID, its artist's ID, its audio path relative to the audio
root, and a boolean label row over a tag vocabulary (the model's output order). The split and the
rest of the pipeline only ever see this table, whatever the dataset.
"""
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtt.datasets import DatasetError
from mtt.formats.tsv_dialect import TsvError, read_tsv


def check_npy_size(path, f, shape, dtype, ndim=None, expected=None):
    """A .npy header's claims against the file, before anything is allocated: the number of
    dimensions (or the whole shape) expected, and as many bytes after the header as the shape
    declares (an object array: at least one byte per element)."""
    if ndim is not None and len(shape) != ndim:
        raise DatasetError(path, f"expected a {ndim}-D array, its header declares shape {shape}")
    if expected is not None and tuple(shape) != tuple(expected):
        raise DatasetError(path, f"shape {tuple(shape)} does not match {expected[0]} IDs x "
                                 f"{expected[1]} tags")
    count = 1
    for n in shape:
        count *= int(n)
    declared = count if dtype.hasobject else count * dtype.itemsize
    stored = os.fstat(f.fileno()).st_size - f.tell()
    if declared > stored:
        raise DatasetError(path, f"its header declares {tuple(shape)} {dtype} ({declared:,} "
                                 f"bytes) but the file holds {stored:,} bytes of data")


def read_npy_header(path, f):
    """(shape, fortran order, dtype) of the .npy file open as `f`, its data next."""
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    return read_header(f)


@dataclass
class TrackTable:
    track_id: np.ndarray  # (n,) str
    artist_id: np.ndarray  # (n,) str ("" when unknown)
    path: np.ndarray  # (n,) str, relative to the audio root
    labels: np.ndarray  # (n, n_tags) bool
    tags: list  # the vocabulary, model output order

    def __post_init__(self):
        n = len(self.track_id)
        if not (len(self.artist_id) == len(self.path) == self.labels.shape[0] == n):
            raise ValueError("track table columns differ in length")
        if self.labels.shape[1] != len(self.tags):
            raise ValueError("label matrix width differs from the vocabulary size")

    def __len__(self):
        return len(self.track_id)

    def subset(self, index) -> "TrackTable":
        return TrackTable(self.track_id[index], self.artist_id[index], self.path[index],
                          self.labels[index], list(self.tags))

    def tag_strings(self) -> np.ndarray:
        """Each track's tags joined by ';' in vocabulary order ('' when it has none)."""
        return join_tags(self.labels, self.tags)


def join_tags(labels: np.ndarray, tags) -> np.ndarray:
    """Rows of a boolean label matrix as ';'-joined tag strings, one join per distinct row."""
    n = labels.shape[0]
    if n == 0:
        return np.array([], dtype=object)
    packed = np.packbits(labels, axis=1)
    order = np.lexsort(packed.T[::-1])  # group equal rows (faster than np.unique(axis=0))
    ordered = packed[order]
    new_group = np.r_[True, (ordered[1:] != ordered[:-1]).any(1)]
    group = np.empty(n, dtype=np.int64)
    group[order] = np.cumsum(new_group) - 1
    tag_array = np.array(tags, dtype=object)
    width = labels.shape[1]
    strings = np.array(
        [";".join(tag_array[np.unpackbits(p)[:width].astype(bool)]) for p in ordered[new_group]],
        dtype=object)
    return strings[group]


def split_tag_strings(values, path) -> list[list[str]]:
    """';'-joined tag strings -> lists of tags, stripped, empty entries dropped."""
    out = []
    for value in values:
        if not isinstance(value, str):
            raise DatasetError(path, f"tags value {value!r} is not text")
        out.append([t.strip() for t in value.split(";") if t.strip()])
    return out


def choose_vocabulary(tag_lists, path, tags=None, top_tags=None, order="frequency") -> list[str]:
    """The vocabulary: `tags` if given, else every tag seen (most frequent first, ties by name,
    or first-seen order with order="seen"), cut to the `top_tags` most frequent if given."""
    if tags is not None:
        tags = list(tags)
        if len(set(tags)) != len(tags):
            raise DatasetError(path, "the tag list has duplicates")
        if not tags:
            raise DatasetError(path, "the tag list is empty")
        return tags
    counts = {}
    for row in tag_lists:
        for t in row:
            counts[t] = counts.get(t, 0) + 1
    if not counts:
        raise DatasetError(path, "no tags found")
    if order == "seen":
        vocab = list(counts)
    else:
        vocab = sorted(counts, key=lambda t: (-counts[t], t))
    if top_tags is not None:
        keep = set(sorted(counts, key=lambda t: (-counts[t], t))[:top_tags])
        vocab = [t for t in vocab if t in keep]
    return vocab


def label_matrix(tag_lists, vocab) -> np.ndarray:
    """Lists of tags -> (n, len(vocab)) bool; tags outside the vocabulary are ignored."""
    index = {t: i for i, t in enumerate(vocab)}
    labels = np.zeros((len(tag_lists), len(vocab)), dtype=bool)
    for row, tags in enumerate(tag_lists):
        for t in tags:
            column = index.get(t)
            if column is not None:
                labels[row, column] = True
    return labels


def read_tab_table(path):
    """A table in the dialect of `mtt.formats.tsv_dialect` (every row as wide as the header), every cell a
    string; clear errors naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        return read_tsv(path)
    except TsvError as error:
        raise DatasetError(path, error.reason) from None


def check_unique_ids(track_id, path):
    duplicated = pd.Index(track_id).duplicated()
    if duplicated.any():
        raise DatasetError(path, f"duplicate track IDs, e.g. {track_id[duplicated][0]!r}")
