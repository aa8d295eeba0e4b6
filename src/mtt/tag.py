"""`mtt tag`: audio files -> tags with any checkpoint (ours or the published layout).

A song's prediction is the mean over consecutive 10 s chunks covering it, the last chunk aligned
to the song's end; a song of at most 10 s is one forward pass over the whole input. Chunks of
several files share batches.
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import AudioError, load_audio
from .checkpoint import load_checkpoint
from .frontend import LogMel, seconds_to_frames

MIN_FRAMES = 16
DB_FLOOR = -100.0
AUDIO_SUFFIXES = {".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".aif", ".aiff", ".au"}


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", metavar="AUDIO_OR_FOLDER",
                        help="audio files, or folders searched recursively for audio files")
    parser.add_argument("--checkpoint", required=True, help="an mtt or published-layout checkpoint")
    parser.add_argument("--top-k", type=int, default=5, help="tags shown per file (default 5)")
    parser.add_argument("--all-tags", action="store_true", help="show every tag's probability")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    parser.add_argument("--chunk-seconds", type=float, default=None,
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


def chunk_starts(n_frames: int, chunk: int) -> list[int]:
    """Starts of consecutive chunks covering n_frames; the last one ends at the song's end."""
    if n_frames <= chunk:
        return [0]
    starts = list(range(0, n_frames - chunk + 1, chunk))
    if starts[-1] + chunk < n_frames:
        starts.append(n_frames - chunk)
    return starts


class SongTagger:
    """Batches chunks of many songs through a model and averages them back per song."""

    def __init__(self, model, chunk_frames, batch_size, device):
        self.model = model.to(device).eval()
        self.logmel = LogMel().to(device)
        self.chunk_frames = chunk_frames
        self.batch_size = batch_size
        self.device = device

    def song_chunks(self, waveform: np.ndarray) -> torch.Tensor:
        mel = self.logmel(torch.from_numpy(waveform).to(self.device))  # (128, frames)
        n = mel.shape[-1]
        if n < MIN_FRAMES:  # too short for the front end's pooling: pad with silence
            mel = torch.nn.functional.pad(mel, (0, MIN_FRAMES - n), value=DB_FLOOR)
        if n <= self.chunk_frames:
            return mel[None]
        return torch.stack([mel[:, s:s + self.chunk_frames] for s in chunk_starts(n, self.chunk_frames)])

    @torch.inference_mode()
    def predict(self, waveforms):
        """Yield (index, mean probabilities) per song, in order, from an iterable of (index, waveform)."""
        pending, sums, counts = [], {}, {}
        order = []

        def flush(batch):
            same_len = len({c.shape[-1] for _, c in batch}) == 1
            if same_len:
                probs = torch.sigmoid(self.model(torch.stack([c for _, c in batch])).float())
            else:  # short songs have their own length: run them one by one
                probs = torch.cat([torch.sigmoid(self.model(c[None]).float()) for _, c in batch])
            for (i, _), p in zip(batch, probs.cpu().numpy()):
                sums[i] = sums.get(i, 0) + p
                counts[i] = counts.get(i, 0) + 1

        for i, waveform in waveforms:
            order.append(i)
            chunks = self.song_chunks(waveform)
            counts.setdefault(i, 0)
            pending += [(i, c) for c in chunks]
            while len(pending) >= self.batch_size:
                flush(pending[: self.batch_size])
                pending = pending[self.batch_size:]
            # songs whose chunks are all done can be reported now
            waiting = {j for j, _ in pending}
            while order and order[0] not in waiting:
                j = order.pop(0)
                yield j, sums.pop(j) / counts.pop(j)
        if pending:
            flush(pending)
        for j in order:
            yield j, sums.pop(j) / counts.pop(j)


def _decode_all(paths, errors):
    """Decode in a background thread pool (libsndfile releases the GIL), in input order."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(load_audio, p) for p in paths]
        for i, future in enumerate(futures):
            try:
                yield i, future.result()
            except AudioError as err:
                errors.append(err)
            except Exception as err:  # an unexpected decoder failure must not stop the others
                errors.append(AudioError(paths[i], f"{type(err).__name__}: {err}"))


def run(args) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("mtt tag: --device cuda asked for but no CUDA device is available", file=sys.stderr)
        return 2
    try:
        model, info = load_checkpoint(args.checkpoint, map_location=args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"mtt tag: {err}", file=sys.stderr)
        return 2
    paths = expand_inputs(args.inputs)
    if not paths:
        print("mtt tag: no audio files found in the given inputs", file=sys.stderr)
        return 2
    seconds = args.chunk_seconds or model.default_crop_seconds
    tagger = SongTagger(model, seconds_to_frames(seconds), args.batch_size, args.device)
    tags = info["tags"]
    errors, results = [], {}
    songs = tagger.predict(_decode_all(paths, errors))
    for i, probs in tqdm(songs, total=len(paths), desc="tagging", unit="file",
                         disable=len(paths) < 2 or None, file=sys.stderr):
        ranked = np.argsort(-probs, kind="stable")
        keep = ranked if args.all_tags else ranked[: args.top_k]
        results[paths[i]] = {tags[t]: round(float(probs[t]), 6) for t in keep}
    _print_results(results, args.format)
    for err in errors:
        print(f"mtt tag: error: {err}", file=sys.stderr)
    return 1 if errors else 0


def _print_results(results, fmt):
    if fmt == "json":
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for path, tag_probs in results.items():
        print(path)
        for tag, p in tag_probs.items():
            print(f"  {p:.3f}  {tag}")
