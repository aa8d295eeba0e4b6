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


def write_pseudo_labels(path: Path, track_ids, probs, tags, checkpoint, precision="fp32") -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("track_id", data=np.array(track_ids, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("probs", data=probs.astype(np.float16))
            f.attrs["tags"] = json.dumps(list(tags))
            f.attrs["checkpoint"] = str(checkpoint)
            f.attrs["precision"] = precision


def read_pseudo_labels(paths, tags: list[str]) -> tuple[list[str], np.ndarray]:
    """Track IDs and (N, n_tags) float32 soft labels from one or more pseudo-label shards."""
    ids, probs = [], []
    for path in paths:
        try:
            with h5py.File(path, "r") as f:
                shard_tags = json.loads(f.attrs["tags"])
                if shard_tags != list(tags):
                    raise ValueError(f"{path}: its tags differ from the tag list in use "
                                     f"({len(shard_tags)} vs {len(tags)} tags, or another order)")
                ids.extend(t.decode() if isinstance(t, bytes) else str(t) for t in f["track_id"][:])
                probs.append(f["probs"][:].astype(np.float32))
        except (OSError, KeyError) as err:
            raise ValueError(f"{path}: not a pseudo-label shard ({err})") from None
    if not ids:
        return [], np.zeros((0, len(tags)), dtype=np.float32)
    if len(set(ids)) != len(ids):
        raise ValueError(f"pseudo-label shards {list(map(str, paths))} repeat a track ID")
    return ids, np.concatenate(probs)
