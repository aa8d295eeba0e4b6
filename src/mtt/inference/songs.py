"""Song-level predictions: the chunks a song is scored on, and the mean of their outputs.

Every song prediction (`mtt tag`, `mtt.Tagger`, `mtt evaluate`, `mtt pseudo-label`, validation
during training) cuts the song's log-mel into chunks planned by `chunk_starts` and averages the
sigmoid outputs of the model (`features`) over them. The chunking is one parameter, `chunks`,
with one default everywhere: None, consecutive chunks covering the song, the last one aligned to
its end (`chunk_starts`); an integer N takes N evenly spaced chunks instead (the workflow's
`evaluate.chunks` and `pseudo_label.chunks`, so its numbers stay those of earlier runs).

`predict_songs` scores songs stored in mel shards. Reading, batching, pinning and (on CUDA, on a
stream of its own) the copy to the device run in a background thread so that they overlap the
model's forward passes; the results stay on the device until the last batch, so the host never
waits for a batch. The forward runs without autograd, in the precision chosen by `--precision`
(`mtt.inference.device`), on batches sized for the device (`default_batch_size`).
`mtt.inference.tagger` scores audio with the same plan and the same forward.
"""
import queue
import threading

import numpy as np
import torch
from tqdm import tqdm

from ..checks import positive_int
from ..frontend import seconds_to_frames
from .device import (CPU_BATCH, CUDA_BATCH, add_device_arguments, autocast, default_batch_size,
                     inference_model, resolve_precision)


def chunk_starts(n_frames: int, frames: int, chunks: int | None = None) -> list[int]:
    """Start frames of the chunks of `frames` frames a song of `n_frames` frames is scored on.
    None (the default): consecutive chunks covering the song, the last one aligned to its end,
    so every frame is scored and only the last chunk overlaps another. N: N evenly spaced
    chunks, the first at the song's start and the last ending at its end. A song of at most
    `frames` frames is one chunk (N copies of it for N)."""
    if n_frames <= frames:
        return [0] * (chunks or 1)
    if chunks is not None:
        return [int(s) for s in np.rint(np.linspace(0, n_frames - frames, chunks))]
    starts = list(range(0, n_frames - frames + 1, frames))
    if starts[-1] + frames < n_frames:
        starts.append(n_frames - frames)
    return starts


def features(model, mel):
    """(embedding, logits) of a model on (batch, 128, frames) dB log-mel: the forward of every
    song prediction (the model's own forward is the head over the embedding)."""
    emb = model.embed(mel)
    return emb, model.head(emb)


def crop_frames(model, crop_seconds: float | None = None) -> int:
    """Frames of one training crop / evaluation chunk for `model` (its default length if None)."""
    seconds = crop_seconds if crop_seconds else model.default_crop_seconds
    return seconds_to_frames(seconds)


def _chunk_batches(store, track_ids, chunks, frames, batch_size):
    """(song indices, (inputs, 128, frames) array, chunks per song) per batch: whole songs (all
    their `chunk_starts`) in order, as many as fit `batch_size` inputs (at least one)."""
    batch = []  # (song index, starts)
    for i, track_id in enumerate(track_ids):
        starts = chunk_starts(store.num_frames(track_id), frames, chunks)
        if batch and sum(len(s) for _, s in batch) + len(starts) > batch_size:
            yield _read_batch(store, track_ids, batch, frames)
            batch = []
        batch.append((i, starts))
    if batch:
        yield _read_batch(store, track_ids, batch, frames)


def _read_batch(store, track_ids, batch, frames):
    mels = np.concatenate([store.read_chunks(track_ids[i], starts, frames) for i, starts in batch])
    return [i for i, _ in batch], mels, [len(starts) for _, starts in batch]


def whole_song_plan(lengths, max_frames, batch_size) -> list:
    """Whole-song batches: lists of (song index, chunks). A song of at most `max_frames` frames
    is one input of its own length; a longer one is the fewest evenly spaced chunks of
    `max_frames` that cover it. Inputs of equal length share a batch wherever their songs are
    in the list (songs are bucketed by length; a song's chunks stay in one batch), up to
    `batch_size` inputs: no padding, so every song's result is the one it gets alone."""
    buckets = {}
    for i, length in enumerate(lengths):
        if length > max_frames:
            buckets.setdefault(max_frames, []).append((i, -(-length // max_frames)))
        else:
            buckets.setdefault(length, []).append((i, 1))
    batches = []
    for length in sorted(buckets):
        batch, size = [], 0
        for song, chunks in buckets[length]:
            if batch and size + chunks > batch_size:
                batches.append(batch)
                batch, size = [], 0
            batch.append((song, chunks))
            size += chunks
        batches.append(batch)
    return batches


def _whole_song_batches(store, track_ids, max_frames, batch_size):
    """(song indices, inputs, chunks per song) for each batch of `whole_song_plan`."""
    lengths = [store.num_frames(t) for t in track_ids]
    for batch in whole_song_plan(lengths, max_frames, batch_size):
        mels = [store.read_chunks(track_ids[i], chunk_starts(lengths[i], max_frames, chunks),
                                  max_frames) if chunks > 1
                else store.read_song(track_ids[i])[None] for i, chunks in batch]
        yield [i for i, _ in batch], np.concatenate(mels), [chunks for _, chunks in batch]


def _to_device(batches, device: torch.device):
    """The batches as tensors on `device`: on CUDA pinned and copied on a stream of this
    thread's own (the consumer waits for the copy's event, not the host)."""
    if device.type != "cuda":
        for indices, mels, counts in batches:
            yield indices, torch.from_numpy(mels), counts, None
        return
    stream = torch.cuda.Stream(device=device)
    for indices, mels, counts in batches:
        with torch.cuda.device(device), torch.cuda.stream(stream):
            x = torch.from_numpy(mels).pin_memory().to(device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(stream)
        yield indices, x, counts, copied


def _prefetch(iterator, depth=2):
    """Run `iterator` in a background thread, `depth` items ahead."""
    items = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for item in iterator:
                items.put(item)
        except BaseException as err:  # hand the error to the consumer
            items.put(err)
        items.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


@torch.inference_mode()
def predict_songs(model, store, track_ids, device, *, chunks: int | None = None,
                  whole_song: bool = False,
                  frames: int | None = None, batch_size: int | None = None,
                  progress: bool = False, precision: str = "auto") -> np.ndarray:
    """Song-level probabilities (N, n_tags) float32 for `track_ids` read from `store`.

    Chunk mode: the mean of the sigmoid outputs of the song's chunks of `frames` frames (the
    model's crop length by default) at `chunk_starts(length, frames, chunks)`; a song shorter
    than a chunk is padded with silence to `frames`, as in training. Whole-song mode
    (transformer only): one pass over the whole song (songs of equal length batched together,
    `whole_song_plan`). `batch_size` counts model inputs (chunks
    or songs) per forward pass (None: `default_batch_size` for the device); `precision` as
    `--precision` (resolve_precision).
    """
    was_training = model.training
    model.eval()
    n_tags = model.config["n_tags"]
    out = np.zeros((len(track_ids), n_tags), dtype=np.float32)
    precision = resolve_precision(precision, device, model=model)
    net = inference_model(model, device, precision)
    batch_size = batch_size or default_batch_size(device)
    if whole_song:
        if not hasattr(model, "max_frames"):
            raise ValueError(f"whole-song prediction needs a transformer, not a {model.kind}")
        batches = _whole_song_batches(store, track_ids, model.max_frames, batch_size)
    else:
        batches = _chunk_batches(store, track_ids, chunks, frames or crop_frames(model), batch_size)
    bar = tqdm(total=len(track_ids), unit="song", disable=not progress, mininterval=5)
    done_indices, done_probs = [], []  # on the device until the end: no wait per batch
    for indices, x, counts, copied in _prefetch(_to_device(batches, device)):
        if copied is not None:  # the copy ran on the loader thread's stream
            torch.cuda.current_stream(device).wait_event(copied)
            x.record_stream(torch.cuda.current_stream(device))
        with autocast(device, precision):
            probs = torch.sigmoid(features(net, x)[1].float())
        if len(set(counts)) == 1:
            song_probs = probs.view(len(indices), counts[0], n_tags).mean(1)
        else:  # long songs of several chunk counts in one batch
            song_probs = torch.stack([part.mean(0) for part in probs.split(counts)])
        done_indices += indices
        done_probs.append(song_probs)
        bar.update(len(indices))
    if done_probs:
        out[done_indices] = torch.cat(done_probs).cpu().numpy()
    bar.close()
    model.train(was_training)
    return out


def checkpoint_frames(model, info) -> int:
    """The chunk length a checkpoint was trained with (its model's default for other files)."""
    frames = info.get("meta", {}).get("training", {}).get("crop_frames")
    return int(frames) if frames else crop_frames(model)


CHUNKS_HELP = ("N evenly spaced chunks per song instead of the default: consecutive chunks "
               "covering the song, the last one aligned to its end; predictions averaged")


def add_prediction_arguments(parser) -> None:
    """--chunks N | --whole-song, --batch-size, --device, --threads, --precision: shared by
    evaluate and pseudo-label."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--chunks", type=positive_int, default=None, help=CHUNKS_HELP)
    mode.add_argument("--whole-song", action="store_true",
                      help="one pass over the whole song (transformer only)")
    add_device_arguments(parser, f"model inputs per forward pass ({CPU_BATCH} on the CPU, "
                                 f"{CUDA_BATCH} on CUDA)")


