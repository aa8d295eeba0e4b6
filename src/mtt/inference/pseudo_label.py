"""`mtt pseudo-label`: a teacher's song-level soft labels for every song of one mel shard.

One job per shard, so the unlabeled set can be labeled by many jobs at once. Output: a
pseudo-label shard (`mtt.formats.pseudo_label_shard`), written under a temporary name and renamed
when complete. An existing output is left untouched.
"""
import argparse
import sys
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..checks import keep_output, output_file, refuse_non_finite
from ..formats.pseudo_label_shard import write_pseudo_labels
from ..formats.mel_store import MelStore
from .device import resolve_device, select_precision, set_threads
from .songs import add_prediction_arguments, checkpoint_frames, predict_songs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="teacher checkpoint")
    parser.add_argument("--mels", required=True, type=Path, help="one mel shard to label")
    parser.add_argument("--out", required=True, type=output_file, help="pseudo-label shard (.h5)")
    add_prediction_arguments(parser)


def run(args) -> int:
    if args.out.exists():
        print(f"{args.out} exists; skipping", file=sys.stderr)
        return 0
    try:
        n_songs = pseudo_label(args)
    except (ValueError, OSError, KeyError) as err:
        print(f"mtt pseudo-label: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {n_songs} songs labeled", file=sys.stderr)
    return 0


def pseudo_label(args) -> int:
    if args.chunks is not None and args.chunks < 1:
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
    refuse_non_finite(probs, track_ids, store, args.checkpoint, "pseudo-labels")
    kept = keep_output(lambda out: write_pseudo_labels(Path(out), track_ids, probs, info["tags"],
                                                       args.checkpoint, precision),
                       args.out, "pseudo-label")
    if kept is not None:  # the work is done: keep it where it can be found
        raise ValueError(f"cannot write {args.out}: {kept[1]}; the pseudo-labels are in "
                         f"{kept[0]}")
    return len(track_ids)
