"""`mtt pseudo-label`: a teacher's song-level soft labels for every song of one mel shard.

One job per shard, so the unlabeled set can be labeled by many jobs at once. Output: HDF5 with
`track_id` (N,) UTF-8 and `probs` float16 (N, n_tags), attributes `tags` (JSON list),
`checkpoint` and `precision` (fp32 or bf16); written under a temporary name and renamed when complete. An existing output is
left untouched.
"""
import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_path
from .checkpoint import load_checkpoint
from .mel_store import MelStore
from .predict import (add_prediction_arguments, checkpoint_frames, predict_songs,
                      resolve_device, select_precision, set_threads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="teacher checkpoint")
    parser.add_argument("--mels", required=True, type=Path, help="one mel shard to label")
    parser.add_argument("--out", required=True, type=Path, help="pseudo-label shard (.h5)")
    add_prediction_arguments(parser)


def run(args) -> int:
    if args.out.exists():
        print(f"{args.out} exists; skipping", file=sys.stderr)
        return 0
    try:
        n_songs = pseudo_label(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"mtt pseudo-label: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n_songs} songs labeled", file=sys.stderr)
    return 0


def pseudo_label(args) -> int:
    if args.chunks < 1:
        raise ValueError("--chunks must be at least 1")
    set_threads(args.threads)
    device = resolve_device(args.device)
    model, info = load_checkpoint(args.checkpoint)
    model.to(device)
    precision = select_precision(args.precision, device, model=model)
    store = MelStore([args.mels])
    track_ids = list(store.track_ids)
    probs = predict_songs(model, store, track_ids, device, chunks=args.chunks,
                          whole_song=args.whole_song, frames=checkpoint_frames(model, info),
                          batch_size=args.batch_size, progress=True, precision=precision)
    write_pseudo_labels(args.out, track_ids, probs, info["tags"], args.checkpoint, precision)
    return len(track_ids)


def write_pseudo_labels(path: Path, track_ids, probs, tags, checkpoint, precision="fp32") -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("track_id", data=np.array(track_ids, dtype=object),
                             dtype=h5py.string_dtype("utf-8"))
            f.create_dataset("probs", data=probs.astype(np.float16))
            f.attrs["tags"] = json.dumps(list(tags))
            f.attrs["checkpoint"] = str(checkpoint)
            f.attrs["precision"] = precision
