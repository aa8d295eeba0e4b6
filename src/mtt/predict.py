"""Song-level predictions: the mean over evenly spaced chunks, or the whole song in one pass.

Shared by validation during training, `mtt evaluate` and `mtt pseudo-label`. Reading, batching,
pinning and (on CUDA, on a stream of its own) the copy to the device run in a background thread
so that they overlap the model's forward passes; the results stay on the device until the last
batch, so the host never waits for a batch. The forward runs without autograd, in the precision
chosen by `--precision` (see `resolve_precision`), on batches sized for the device
(`default_batch_size`).
"""
import argparse
import contextlib
import copy
import functools
import queue
import threading

import numpy as np
import torch
from tqdm import tqdm

from .checks import positive_int
from .config.choices import PRECISION_HELP, PRECISIONS
from .frontend import seconds_to_frames
from .models import to_channels_last


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


CPU_BATCH, CUDA_BATCH = 64, 256


def default_batch_size(device: torch.device) -> int:
    """Model inputs per inference batch when none is given: hundreds on a GPU, which a batch of
    64 leaves mostly idle; 64 on the CPU, where larger batches gain nothing."""
    return CUDA_BATCH if torch.device(device).type == "cuda" else CPU_BATCH


def set_threads(threads: int | None) -> None:
    """Intra-op CPU threads; match the cores the job was given (e.g. Snakemake's {threads}):
    more threads than free cores makes small models much slower, not faster."""
    if threads is not None:
        if threads < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(threads)


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix units): torch's check, else /proc/cpuinfo."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if check is not None:
        return bool(check())
    return _cpuinfo_flag("amx_bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AMX tiles (Intel Xeon since Sapphire Rapids) or
    AVX512-BF16 dot products (AMD Zen 4 and later, Intel Cooper Lake). Without either, oneDNN
    emulates bf16 and it is slower than fp32."""
    if cpu_has_amx():
        return True
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is not None:
        return bool(check())
    return _cpuinfo_flag("avx512_bf16")


def _cpuinfo_flag(flag: str) -> bool:
    try:
        return flag in open("/proc/cpuinfo").read().split()
    except OSError:
        return False


SMALL_CNN_CHANNELS = 16  # convolution channels up to which a model counts as a small CNN


def conv_channels(model) -> int | None:
    """The channels of a model's convolutions (transformer `conv_channels`, ResNet `channels`)."""
    config = getattr(model, "config", None) or {}
    return config.get("conv_channels", config.get("channels"))


def is_small_cnn(model) -> bool:
    """The demo's models (C8, C16), not the paper's (C128): see channels_last_faster."""
    channels = conv_channels(model)
    return channels is not None and channels <= SMALL_CNN_CHANNELS


def resolve_precision(precision: str, device: torch.device, *, native_bf16: bool | None = None,
                      cuda_bf16: bool | None = None, model=None) -> str:
    """`--precision` for `device`: "fp32" or "bf16". "auto" takes bf16 only where it is faster:
    CUDA with bf16 support, a CPU with native bf16 (AMX or AVX512-BF16, `cpu_has_native_bf16`);
    fp32 elsewhere (bf16 runs there, emulated and slower). Given the `model`, "auto" keeps fp32
    for a small CNN (`is_small_cnn`, the demo's models) on such a CPU too: fp32 with
    channels-last is faster for them, and exact (AMX Xeon, demo C8 models: fp32 + channels-last
    1.88-1.97x our fp32 step, bf16 1.28-1.35x; Zen 4 EPYC: training 1.32x the reference in fp32 +
    channels-last, 1.12x in bf16 + channels-last). The paper's models gain from bf16 on both
    (Zen 4 EPYC, teacher, bf16 + channels-last: training 2.1x and inference 2.4x our fp32;
    docs/OPTIMIZATION_LOG.md). `native_bf16` / `cuda_bf16` fake the device's capabilities (None: detect
    them)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cuda" and precision != "fp32" and cuda_bf16 is None:
        cuda_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise ValueError(f"--precision bf16: {device} has no bf16 support")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_bf16 else "fp32"
    if device.type == "cpu":
        if not (cpu_has_native_bf16() if native_bf16 is None else native_bf16):
            return "fp32"
        return "fp32" if model is not None and is_small_cnn(model) else "bf16"
    return "fp32"


def channels_last_faster(model, device: torch.device, precision: str, *,
                         native_bf16: bool | None = None) -> bool:
    """Whether the model runs faster in channels-last memory format. Measured on CPU
    (docs/OPTIMIZATION_LOG.md): for small CNNs in fp32 (demo C8/C16 models, 2-core AMD EPYC: 1.2-2.1x
    inference, 1.6-1.8x training; AMX Xeon: 1.9-2.0x inference); and for larger models in bf16 on
    a CPU with native bf16, where oneDNN's bf16 kernels want NHWC (the paper's teacher, bf16 +
    channels-last over our fp32: AMX Xeon 2.86x training and 3.67x inference, bf16 alone 1.51x /
    0.99x; Zen 4 EPYC 2.14x / 2.36x, bf16 alone 1.80x / 1.58x). Not chosen: the paper's C128
    models in fp32 (0.6-0.7x on the EPYC under load on 2026-12-04, 1.13-1.19x idle on
    2026-12-05: not a clear gain), CUDA (not measured). `native_bf16` fakes the CPU's native
    bf16 (None: detect it)."""
    if device.type != "cpu":
        return False
    if precision == "fp32":
        return is_small_cnn(model)
    return precision == "bf16" and (cpu_has_native_bf16() if native_bf16 is None
                                    else native_bf16) and not is_small_cnn(model)


def inference_model(model, device: torch.device, precision: str):
    """The model to run inference with: a channels-last copy where that is faster
    (`channels_last_faster`; the same numbers to float32 rounding), else `model` itself. The
    caller's model is never changed."""
    if channels_last_faster(model, device, precision):
        return to_channels_last(copy.deepcopy(model))
    return model


def select_precision(precision: str, device: torch.device, model=None) -> str:
    """resolve_precision, and fp32 on CUDA made true float32: cuDNN otherwise runs convolutions
    in TF32. For commands, once per process."""
    resolved = resolve_precision(precision, device, model=model)
    if device.type == "cuda" and resolved == "fp32":
        torch.backends.cudnn.allow_tf32 = False
    return resolved


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast where `precision` resolves to bf16 on `device`; nothing for fp32."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def crop_frames(model, crop_seconds: float | None = None) -> int:
    """Frames of one training crop / evaluation chunk for `model` (its default length if None)."""
    seconds = crop_seconds if crop_seconds else model.default_crop_seconds
    return seconds_to_frames(seconds)


def _chunk_batches(store, track_ids, n_chunks, frames, batch_size):
    """(song indices, (songs * n_chunks, 128, frames) array, chunks per song) per batch."""
    songs_per_batch = max(1, batch_size // n_chunks)
    for first in range(0, len(track_ids), songs_per_batch):
        indices = list(range(first, min(first + songs_per_batch, len(track_ids))))
        mels = np.concatenate([store.read_chunks(track_ids[i], n_chunks, frames) for i in indices])
        yield indices, mels, [n_chunks] * len(indices)


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
        mels = [store.read_chunks(track_ids[i], chunks, max_frames) if chunks > 1
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
def predict_songs(model, store, track_ids, device, *, chunks: int = 8, whole_song: bool = False,
                  frames: int | None = None, batch_size: int | None = None,
                  progress: bool = False, precision: str = "auto") -> np.ndarray:
    """Song-level probabilities (N, n_tags) float32 for `track_ids` read from `store`.

    Chunk mode: the mean of the sigmoid outputs of `chunks` evenly spaced crops of `frames`
    frames (the model's crop length by default), which cover the song when chunks * frames is at
    least its length. Whole-song mode (transformer only): one pass over the whole song (songs of
    equal length batched together, `whole_song_plan`). `batch_size` counts model inputs (chunks
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
            probs = torch.sigmoid(net(x).float())
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


def add_prediction_arguments(parser) -> None:
    """--chunks N | --whole-song, --batch-size, --device, --threads, --precision: shared by
    evaluate and pseudo-label."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--chunks", type=positive_int, default=8,
                      help="evenly spaced chunks per song, predictions averaged (default 8)")
    mode.add_argument("--whole-song", action="store_true",
                      help="one pass over the whole song (transformer only)")
    parser.add_argument("--batch-size", type=batch_size_argument, default=None,
                        help=f"model inputs per forward pass, or auto (the default: {CPU_BATCH} "
                        f"on the CPU, {CUDA_BATCH} on CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's choice)")
    add_precision_argument(parser)


def batch_size_argument(text: str) -> int | None:
    """--batch-size: a positive count, or auto (None: `default_batch_size`)."""
    if text == "auto":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 or auto, not {text}")
    return value


def add_precision_argument(parser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
