"""The Python API: `mtt.Tagger`, a checkpoint (ours or the published layout) that tags audio.

    import mtt
    tagger = mtt.Tagger.from_checkpoint("teacher.ckpt")
    tagger.tag("song.mp3", top_k=5)           # {tag: probability} for the whole song
    tagger.taggram("song.mp3")                # per-chunk probabilities with chunk start times
    tagger.embed("song.mp3")                  # song embedding and per-chunk embeddings

A song is cut into chunks of the model's training crop (10 s for the transformer) planned by
`mtt.inference.songs.chunk_starts`, as `mtt evaluate` and `mtt pseudo-label` cut stored songs:
by default consecutive chunks covering the song, the last one aligned to its end; `chunks=N`
takes N evenly spaced ones. A song of at most one chunk is one pass over the whole input (the
stored-mel commands pad it with silence to the chunk length, as in training). The song's
probabilities (and embedding) are the mean over its chunks. Files are decoded and resampled in
blocks and, by default, each chunk is computed as soon as its samples are in, so a long file
never sits in memory whole (N evenly spaced chunks need the song's length: its samples are held
until its end); chunks of several songs share batches. Device and precision take the names and
defaults of every command (`mtt.inference.device`: auto, auto); `precision="fp32"` for exact
float32. Inputs are file paths or
arrays (mono `(samples,)` or multi-channel `(channels, samples)` / `(samples, channels)`) at any
sample rate (`sample_rate`, default 22,050 Hz); channels are averaged.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from ..audio import AudioError, load_audio, stream_audio
from ..checkpoint import load_checkpoint
from ..frontend import (DB_FLOOR, HOP_LENGTH, N_FFT, SAMPLE_RATE, LogMel, num_frames,
                        seconds_to_frames)
from .device import (autocast, default_tagging_batch_size, inference_model, resolve_device,
                     select_precision)
from .songs import chunk_starts, features

MIN_FRAMES = 16  # shortest input the transformer's pooling takes; shorter mels are padded
MIN_SAMPLES = N_FFT // 2 + 1  # the centred STFT's reflect padding needs more than 512 samples
QUEUE_BLOCKS = 4  # decoded blocks the background decoder may run ahead of the model


@dataclass
class SongOutput:
    """One song's chunks: start times (s), sigmoid outputs and embeddings, one row per chunk."""
    starts: np.ndarray        # (chunks,) seconds
    probs: np.ndarray         # (chunks, n_tags)
    embeddings: np.ndarray    # (chunks, dim)

    @property
    def song_probs(self) -> np.ndarray:
        return self.probs.mean(0)

    @property
    def song_embedding(self) -> np.ndarray:
        return self.embeddings.mean(0)


def to_waveform(audio, sample_rate=None, name="array") -> np.ndarray:
    """A path or an array at any rate, mono or multi-channel -> mono float32 at 22,050 Hz.
    Raises AudioError for what cannot be tagged."""
    if isinstance(audio, (str, Path)):
        wave = load_audio(audio)
        name = str(audio)
    else:
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        wave = np.asarray(audio, dtype=np.float32)
        if wave.ndim == 2:  # channels on the shorter axis
            wave = wave.mean(axis=0 if wave.shape[0] <= wave.shape[1] else 1)
        elif wave.ndim != 1:
            raise AudioError(name, f"expected a 1-D or 2-D waveform, got shape {wave.shape}")
        if not np.isfinite(wave).all():
            raise AudioError(name, "non-finite samples (NaN or infinity)")
        rate = SAMPLE_RATE if sample_rate is None else int(sample_rate)
        if rate <= 0:
            raise AudioError(name, f"sample rate must be positive, not {sample_rate}")
        if rate != SAMPLE_RATE and wave.size:
            wave = soxr.resample(wave, rate, SAMPLE_RATE, quality="HQ")
        wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.size < MIN_SAMPLES:
        raise AudioError(name, f"too short to tag ({wave.size} samples at {SAMPLE_RATE} Hz; "
                               f"at least {MIN_SAMPLES} needed)")
    return wave


# The longest chunk a model without a positional table (the ResNet) is given: ~10 min.
MAX_CHUNK_FRAMES = 26_000


class Tagger:
    """A model, its tag names and how to cut songs into chunks. `device`, `precision` as every
    command's (default auto, auto; "fp32": exact float32); `chunk_seconds` (default: the model's
    training crop) and `chunks` (None: covering the song, or N evenly spaced) as `chunk_starts`
    plans them; `batch_size`: chunks per forward pass (`default_tagging_batch_size`)."""

    def __init__(self, model, tags, *, device="auto", precision="auto", chunk_seconds=None,
                 chunks=None, batch_size=None, info=None):
        self.device = resolve_device(device)
        model = model.to(self.device).eval()
        self.precision = select_precision(precision, self.device, model=model)  # fp32 or bf16
        # channels-last where faster (small CNNs in fp32 on CPU), on a copy
        self.model = inference_model(model, self.device, self.precision)
        self.tags = list(tags)
        self.info = info or {}
        self.batch_size = (int(batch_size) if batch_size is not None
                           else default_tagging_batch_size(self.device))
        if self.batch_size < 1:
            raise ValueError(f"batch size {batch_size} must be at least 1")
        if chunks is not None and int(chunks) < 1:
            raise ValueError(f"chunks {chunks} must be at least 1 (or None: covering the song)")
        self.chunks = None if chunks is None else int(chunks)
        if chunk_seconds is not None and not (np.isfinite(chunk_seconds) and chunk_seconds > 0):
            raise ValueError(f"chunk length {chunk_seconds} s must be a positive number of seconds")
        self.chunk_frames = seconds_to_frames(chunk_seconds or model.default_crop_seconds)
        limit = getattr(model, "max_frames", MAX_CHUNK_FRAMES)
        if self.chunk_frames > min(limit, MAX_CHUNK_FRAMES):
            raise ValueError(f"chunk length {chunk_seconds} s ({self.chunk_frames} frames) is longer "
                             f"than the model takes ({min(limit, MAX_CHUNK_FRAMES)} frames)")
        self.logmel = LogMel().to(self.device)

    @classmethod
    def from_checkpoint(cls, path, device="auto", precision="auto", **kwargs) -> "Tagger":
        """Load an mtt checkpoint or a published-layout file (`network.*` keys)."""
        model, info = load_checkpoint(path, map_location="cpu")
        return cls(model, info["tags"], device=device, precision=precision, info=info, **kwargs)

    # --- public calls -------------------------------------------------------------------------
    def tag(self, audio, sample_rate=None, top_k=None):
        """{tag: probability} for the whole song, highest first (`top_k` of them, or all).
        A list of inputs gives a list of dicts (their chunks share batches)."""
        def one(out):
            probs = out.song_probs
            keep = np.argsort(-probs, kind="stable")[: top_k or len(probs)]
            return {self.tags[t]: float(probs[t]) for t in keep}
        return self._map(audio, sample_rate, one)

    def taggram(self, audio, sample_rate=None):
        """(chunk start times in seconds (chunks,), probabilities (chunks, n_tags)) per song;
        columns follow `self.tags`."""
        return self._map(audio, sample_rate, lambda out: (out.starts, out.probs))

    def embed(self, audio, sample_rate=None):
        """(song embedding (dim,), per-chunk embeddings (chunks, dim)) per song. The embedding
        is the transformer's CLS output before the head (the resnet's penultimate layer); the
        song's is the mean over its chunks."""
        return self._map(audio, sample_rate, lambda out: (out.song_embedding, out.embeddings))

    def outputs(self, items, sample_rate=None):
        """Yield (index, SongOutput or AudioError) for every input, in order. Files are decoded in
        blocks by a background thread; one song's failure does not stop the others."""
        items = list(items)
        songs = {}       # index -> _Song
        order = deque()  # indices not yet yielded
        pending = []     # (song, chunk index, mel (128, frames)) waiting for a full batch

        def flush():
            for (song, c, _), p, e in zip(pending, *self._forward([m for _, _, m in pending])):
                song.probs[c], song.embs[c] = p, e
            pending.clear()

        def ready():
            while order and songs[order[0]].ready:
                i = order.popleft()
                yield i, songs.pop(i).result()

        for i, block in decoded_blocks(items, sample_rate):
            if i not in songs:
                songs[i] = _Song(_Chunker(self))
                order.append(i)
            song = songs[i]
            if isinstance(block, Exception):
                song.error = block
            else:
                try:
                    if block is None:
                        chunks = song.chunker.end(_name(items[i], i))
                    else:
                        chunks = song.chunker.feed(block)
                    for start, mel in chunks:
                        song.starts.append(start)
                        song.probs.append(None)
                        song.embs.append(None)
                        pending.append((song, len(song.starts) - 1, mel))
                        if len(pending) >= self.batch_size:
                            flush()
                except AudioError as err:
                    song.error = err
                song.complete = block is None
            yield from ready()
        if pending:
            flush()
        yield from ready()

    # --- internals ----------------------------------------------------------------------------
    def _map(self, audio, sample_rate, fn):
        single = not isinstance(audio, (list, tuple))
        items = [audio] if single else list(audio)
        results = []
        for _, out in self.outputs(items, sample_rate):
            if isinstance(out, Exception):
                raise out
            results.append(fn(out))
        return results[0] if single else results

    def _starts(self, wave) -> list[int]:
        return chunk_starts(num_frames(wave.size), self.chunk_frames, self.chunks)

    def _chunk_mel(self, wave, start, offset=0) -> torch.Tensor:
        """Mel frames [start, start + chunk) of the whole song's centred STFT, computed from the
        samples they cover only (the same numbers as slicing the whole song's log-mel). `wave`
        holds the song's samples from `offset` to its end (so far)."""
        n = offset + wave.size
        frames = min(self.chunk_frames, num_frames(n) - start)
        half = N_FFT // 2
        lo, hi = start * HOP_LENGTH - half, (start + frames - 1) * HOP_LENGTH + half
        seg = torch.from_numpy(wave[max(lo, 0) - offset: min(hi, n) - offset]).to(self.device)
        left, right = max(0, -lo), max(0, hi - n)
        if left or right:  # the song's edges: reflect as the centred STFT does
            seg = torch.cat([seg[1:left + 1].flip(0), seg, seg[-right - 1:-1].flip(0)]) if right else \
                torch.cat([seg[1:left + 1].flip(0), seg])
        mel = self.logmel.frames_db(seg).T  # the whole-song path's own arithmetic
        if mel.shape[-1] < MIN_FRAMES:  # too short for the front end's pooling: pad with silence
            mel = F.pad(mel, (0, MIN_FRAMES - mel.shape[-1]), value=DB_FLOOR)
        return mel

    @torch.inference_mode()
    def _forward(self, mels):
        """(probabilities, embeddings) as numpy rows for a list of mels; equal lengths batch."""
        groups = {}
        for k, m in enumerate(mels):
            groups.setdefault(m.shape[-1], []).append(k)
        probs, embs = [None] * len(mels), [None] * len(mels)
        for ks in groups.values():
            with autocast(self.device, self.precision):
                emb, logits = features(self.model, torch.stack([mels[k] for k in ks]))
            for k, p, e in zip(ks, torch.sigmoid(logits.float()).cpu().numpy(), emb.float().cpu().numpy()):
                probs[k], embs[k] = p, e
        return probs, embs


def decoded_blocks(items, sample_rate):
    """Yield (index, samples block) for each input in turn, then (index, None) at its end, or
    (index, AudioError) where it fails. A background thread decodes up to QUEUE_BLOCKS ahead."""
    blocks = queue.Queue(maxsize=QUEUE_BLOCKS)
    stop = threading.Event()

    def put(entry):
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                blocks.put(entry, timeout=0.1)
                return True
        return False

    def decode():
        for k, item in enumerate(items):
            try:
                if isinstance(item, (str, Path)):
                    source = stream_audio(item)
                else:
                    source = [to_waveform(item, sample_rate, name=_name(item, k))]
                for block in source:
                    if not put((k, block)):
                        return
                entry = (k, None)
            except AudioError as err:
                entry = (k, err)
            except Exception as err:  # an unexpected decoder failure must not stop the others
                entry = (k, AudioError(_name(item, k), f"{type(err).__name__}: {err}"))
            if not put(entry):
                return
        put(StopIteration)

    thread = threading.Thread(target=decode, daemon=True)
    thread.start()
    try:
        while (entry := blocks.get()) is not StopIteration:
            yield entry
    finally:
        stop.set()
        thread.join()


def _name(item, k) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"input {k}"


@dataclass
class _Song:
    """One song in flight: its chunks' start frames and outputs so far."""
    chunker: "_Chunker"
    starts: list = field(default_factory=list)
    probs: list = field(default_factory=list)
    embs: list = field(default_factory=list)
    complete: bool = False  # all samples in and every chunk cut
    error: AudioError | None = None

    @property
    def ready(self) -> bool:
        return self.error is not None or (self.complete and all(p is not None for p in self.probs))

    def result(self) -> SongOutput | AudioError:
        if self.error is not None:
            return self.error
        starts = np.array(self.starts, dtype=np.float64) * HOP_LENGTH / SAMPLE_RATE
        return SongOutput(starts, np.stack(self.probs), np.stack(self.embs))


class _Chunker:
    """A song arriving in blocks -> its chunks' log-mels. Covering chunks (the default) are cut
    as soon as their samples are in, holding the samples from just after the last chunk cut
    (about two chunks), since the last, end-aligned chunk is known only at the song's end.
    N evenly spaced chunks depend on the song's length: they are all cut at its end."""

    def __init__(self, tagger):
        self.tagger, self.chunk = tagger, tagger.chunk_frames
        self.wave, self.offset = np.zeros(0, np.float32), 0  # samples [offset, offset + len)
        self.cut = set()  # start frames of the chunks cut so far

    def feed(self, block):
        """Append samples; (start, mel) of each consecutive chunk now complete."""
        self.wave = np.concatenate([self.wave, block])
        out = []
        while self.tagger.chunks is None:
            start = len(self.cut) * self.chunk
            if self.offset + self.wave.size < (start + self.chunk - 1) * HOP_LENGTH + N_FFT // 2:
                return out
            out.append((start, self.tagger._chunk_mel(self.wave, start, self.offset)))
            self.cut.add(start)
            keep = (start + 1) * HOP_LENGTH - N_FFT // 2  # the end-aligned chunk starts later
            self.wave, self.offset = self.wave[keep - self.offset:], keep
        return out

    def end(self, name):
        """The song is complete: (start, mel) of the chunks not cut yet."""
        n = self.offset + self.wave.size
        if n < MIN_SAMPLES:
            raise AudioError(name, f"too short to tag ({n} samples at {SAMPLE_RATE} Hz; "
                                   f"at least {MIN_SAMPLES} needed)")
        return [(s, self.tagger._chunk_mel(self.wave, s, self.offset))
                for s in chunk_starts(num_frames(n), self.chunk, self.tagger.chunks)
                if s not in self.cut]
