"""Pseudo-label shards: a teacher's song-level probabilities for the songs of one mel shard.

HDF5 with datasets `track_id` (N,) UTF-8 and `probs` float16 (N, n_tags); attributes `tags`
(JSON list, the model's output order), `checkpoint` (the teacher's path) and `precision` (fp32 or
bf16). Written by `mtt pseudo-label` under a temporary name and renamed when complete; read by
`mtt train --pseudo-labels`, which refuses a shard whose tags differ from its own.
"""
import json
from pathlib import Path

import h5py
import numpy as np

from mtt.atomic import atomic_path
from mtt.formats.hdf5 import checked_dataset


def check_probs(path, track_ids, probs, tags) -> np.ndarray:
    """`probs` as a float array after the checks a pseudo-label shard's content must pass:
    (len(track_ids), len(tags)), finite, in [0, 1]; ValueError naming `path` otherwise."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape != (len(track_ids), len(tags)):
        raise ValueError(f"{path}: probs {probs.shape} disagree with {len(track_ids)} track "
                         f"IDs and {len(tags)} tags")
    if probs.dtype.kind != "f":
        raise ValueError(f"{path}: probs are {probs.dtype}, not floats")
    if probs.size:
        bad = ~np.isfinite(probs)
        if bad.any():
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"{path}: {int(bad.sum())} probabilities are not finite (NaN or "
                             f"infinite), the first for track {track_ids[row]!r}")
        low, high = float(probs.min()), float(probs.max())
        if low < 0 or high > 1:
            raise ValueError(f"{path}: probabilities must lie in [0, 1]; they range from "
                             f"{low:g} to {high:g}")
    return probs


def write_pseudo_labels(path: Path, track_ids, probs, tags, checkpoint, precision="fp32") -> None:
    """Refuses (ValueError naming `path`, nothing written) probabilities that are not finite, lie
    outside [0, 1], or whose shape disagrees with the track IDs and tags."""
    track_ids = list(track_ids)
    probs = check_probs(path, track_ids, probs, list(tags))
    if len(set(track_ids)) != len(track_ids):
        raise ValueError(f"{path}: the track IDs repeat one")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("track_id", data=np.array(track_ids, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("probs", data=probs.astype(np.float16))
            f.attrs["tags"] = json.dumps(list(tags))
            f.attrs["checkpoint"] = str(checkpoint)
            f.attrs["precision"] = precision


def read_pseudo_labels(paths, tags: list[str]) -> tuple[list[str], np.ndarray]:
    """Track IDs and (N, n_tags) float32 soft labels from one or more pseudo-label shards.

    Each file is checked before its data are read (mtt.formats.hdf5: datasets in the file itself,
    as large on disk as declared; `track_id` (N,) and `probs` (N, n_tags) agree) and after
    (finite, in [0, 1]); ValueError naming the file."""
    ids, probs = [], []
    for path in paths:
        try:
            with h5py.File(path, "r") as f:
                try:
                    shard_tags = json.loads(f.attrs["tags"])
                except (TypeError, ValueError):
                    raise ValueError(f"{path}: its 'tags' attribute is not a JSON list") from None
                if shard_tags != list(tags):
                    raise ValueError(f"{path}: its tags differ from the tag list in use "
                                     f"({len(shard_tags)} vs {len(tags)} tags, or another order)")
                track_id = checked_dataset(f, "track_id", path)
                prob = checked_dataset(f, "probs", path)
                if track_id is None or prob is None:
                    raise KeyError("no 'track_id' or 'probs' dataset")
                if track_id.ndim != 1 or prob.shape != (track_id.shape[0], len(tags)):
                    raise ValueError(f"{path}: probs {prob.shape} disagree with "
                                     f"{track_id.shape[0] if track_id.ndim == 1 else track_id.shape}"
                                     f" track IDs and {len(tags)} tags")
                if prob.dtype.kind != "f":
                    raise ValueError(f"{path}: probs are {prob.dtype}, not floats")
                shard_ids = [t.decode() if isinstance(t, bytes) else str(t)
                             for t in track_id[:]]
                shard_probs = check_probs(path, shard_ids, prob[:].astype(np.float32), tags)
                ids.extend(shard_ids)
                probs.append(shard_probs)
        except (OSError, KeyError) as err:
            raise ValueError(f"{path}: not a pseudo-label shard ({err})") from None
    if not ids:
        return [], np.zeros((0, len(tags)), dtype=np.float32)
    if len(set(ids)) != len(ids):
        raise ValueError(f"pseudo-label shards {list(map(str, paths))} repeat a track ID")
    return ids, np.concatenate(probs)
