"""`mtt tag`: audio files -> tags with any checkpoint (ours or the published layout).

A thin command over `mtt.inference.tagger.Tagger`: a song's prediction is the mean over the
chunks of the model's training crop (10 s for the transformer) that `mtt evaluate` would score
(`mtt.inference.songs.chunk_starts`): by default consecutive chunks covering it, the last chunk
aligned to the song's end, or `--chunks N` evenly spaced ones; a song of at most one chunk is one
forward pass over the whole input. Files are decoded in blocks and chunks cut as their samples
come, so a file's length does not raise the peak memory; chunks of several files share batches.
A file that cannot be tagged is reported on stderr (one line) and the others are still tagged
(exit status 1).
"""
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..checks import input_file, keep_output, output_file, positive_float, positive_int
from .device import add_device_arguments, set_threads
from .songs import CHUNKS_HELP
from .tagger import Tagger

AUDIO_SUFFIXES = {".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".aif", ".aiff", ".au"}


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="AUDIO_OR_FOLDER",
                        help="audio files, or folders searched recursively for audio files")
    parser.add_argument("--checkpoint", required=True, type=input_file, help="an mtt or published-layout checkpoint")
    parser.add_argument("--top-k", type=positive_int, default=5, help="tags shown per file (default 5)")
    parser.add_argument("--all-tags", action="store_true", help="show every tag's probability")
    parser.add_argument("--format", choices=["text", "json", "tsv"], default="text")
    parser.add_argument("--taggram", action="store_true",
                        help="also give every chunk's probabilities with its start time")
    parser.add_argument("--embeddings", metavar="FILE", type=output_file,
                        help="write song embeddings to FILE: .npy (files x dim, in output order) "
                             "or .h5 (paths, song and per-chunk embeddings, chunk start times)")
    parser.add_argument("--out", metavar="FILE", type=output_file, help="write the results to FILE instead of stdout")
    add_device_arguments(parser, "chunks per forward pass (4 on the CPU, 256 on CUDA). Peak "
                         "memory is set by it, not by the files' length: 0.9 / 1.1 / 1.4 GB at "
                         "1 / 2 / 4 for the paper-size teacher on CPU, batch 4 using 0.7x the "
                         "CPU time of batch 1")
    parser.add_argument("--chunks", type=positive_int, default=None, help=CHUNKS_HELP)
    parser.add_argument("--chunk-seconds", type=positive_float, default=None,
                        help="chunk length (default: the model's training crop, 10 s for the transformer)")


def expand_inputs(inputs) -> list[str]:
    """Files as given, folders expanded to the audio files inside them (sorted)."""
    paths = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        else:
            paths.append(item)
    return paths


def run(args) -> int:
    if args.embeddings and Path(args.embeddings).suffix.lower() not in {".npy", ".h5", ".hdf5"}:
        print("mtt tag: --embeddings FILE must end in .npy or .h5", file=sys.stderr)
        return 2
    try:
        set_threads(args.threads)
        tagger = Tagger.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision,
                                        batch_size=args.batch_size, chunk_seconds=args.chunk_seconds,
                                        chunks=args.chunks)
    except (FileNotFoundError, ValueError) as err:
        print(f"mtt tag: {err}", file=sys.stderr)
        return 2
    paths = expand_inputs(args.inputs)
    if not paths:
        print("mtt tag: no audio files found in the given inputs", file=sys.stderr)
        return 2
    tags = tagger.tags
    errors, results, embedded = [], {}, []
    outputs = tagger.outputs(paths)
    for i, out in tqdm(outputs, total=len(paths), desc="tagging", unit="file",
                       disable=len(paths) < 2 or None, file=sys.stderr):
        if isinstance(out, Exception):
            errors.append(out)
            continue
        probs = out.song_probs
        keep = np.argsort(-probs, kind="stable")
        keep = keep if args.all_tags else keep[: args.top_k]
        entry = {"tags": {tags[t]: round(float(probs[t]), 6) for t in keep}}
        if args.taggram:
            entry["starts"] = [round(float(s), 3) for s in out.starts]
            entry["taggram"] = {tags[t]: [round(float(p), 6) for p in out.probs[:, t]] for t in keep}
        results[paths[i]] = entry
        if args.embeddings:
            embedded.append((paths[i], out))
    text = format_results(results, args.format, args.taggram)
    for err in errors:
        print(f"mtt tag: error: {' '.join(str(err).split())}", file=sys.stderr)
    failed = False
    if args.out:
        failed |= not keep_written(args.out, lambda path: made_parent(path).write_text(
            text, encoding="utf-8"))
    else:
        sys.stdout.write(text)
    if args.embeddings:
        failed |= not keep_written(args.embeddings,
                                   lambda path: write_embeddings(made_parent(path), embedded))
    return 1 if errors or failed else 0


def made_parent(path) -> Path:
    """`path`, its folder made if missing (as every mtt command does for its outputs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def keep_written(path, write) -> bool:
    """`write(path)`, or what was computed in a temporary file when that fails at the end
    (`mtt.checks.keep_output`), with one line saying why and where; False when `path` failed."""
    try:
        kept = keep_output(write, path, "tag")
    except OSError as err:
        print(f"mtt tag: error: {err}", file=sys.stderr)
        return False
    if kept is None:
        return True
    fallback, reason = kept
    print(f"mtt tag: error: cannot write {path}: {reason}; the results are in {fallback}",
          file=sys.stderr)
    return False


def format_results(results, fmt, taggram=False) -> str:
    if fmt == "json":
        if taggram:
            doc = {p: {"tags": e["tags"], "taggram": {"start_seconds": e["starts"], **e["taggram"]}}
                   for p, e in results.items()}
        else:
            doc = {p: e["tags"] for p, e in results.items()}
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    lines = []
    if fmt == "tsv":
        if taggram:  # one row per chunk, one column per tag shown
            shown = next(iter(results.values()))["taggram"] if results else {}
            lines.append("\t".join(["path", "start_seconds", *shown]))
            for path, e in results.items():
                for c, start in enumerate(e["starts"]):
                    lines.append("\t".join([path, f"{start:.3f}", *(f"{v[c]:.6f}" for v in e["taggram"].values())]))
        else:
            lines.append("path\ttag\tprobability")
            lines += [f"{path}\t{tag}\t{p:.6f}" for path, e in results.items() for tag, p in e["tags"].items()]
        return "\n".join(lines) + "\n"
    for path, e in results.items():
        lines.append(path)
        lines += [f"  {p:.3f}  {tag}" for tag, p in e["tags"].items()]
        if taggram:
            for c, start in enumerate(e["starts"]):
                best = sorted(e["taggram"].items(), key=lambda kv: -kv[1][c])[:3]
                lines.append(f"  @ {start:7.2f} s  " + ", ".join(f"{tag} {v[c]:.3f}" for tag, v in best))
    return "\n".join(lines) + ("\n" if lines else "")


def write_embeddings(path, embedded):
    """Song embeddings (.npy), or songs, chunks and chunk start times (.h5)."""
    songs = np.stack([out.song_embedding for _, out in embedded]) if embedded else np.zeros((0, 0), np.float32)
    if Path(path).suffix.lower() == ".npy":
        np.save(path, songs.astype(np.float32))
        return
    import h5py
    with h5py.File(path, "w") as f:
        f.create_dataset("paths", data=np.array([p for p, _ in embedded], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("song", data=songs.astype(np.float32))
        if embedded:
            f.create_dataset("chunks", data=np.concatenate([o.embeddings for _, o in embedded]).astype(np.float32))
            f.create_dataset("chunk_song", data=np.concatenate(
                [np.full(len(o.starts), k) for k, (_, o) in enumerate(embedded)]).astype(np.int64))
            f.create_dataset("chunk_start_seconds", data=np.concatenate([o.starts for _, o in embedded]))
