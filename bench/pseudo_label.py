"""Pseudo-labeling throughput: `mtt pseudo-label` on a mel shard vs the model's bare forward pass.

Baseline: the same model's forward passes on random tensors already in memory, same batch shape
and count (no reading, no batching, no writing), run as `mtt pseudo-label` runs it (the precision
`--precision auto` resolves to, and the channels-last copy `mtt.inference.device.inference_model` makes
for a small CNN in fp32 on CPU): the compute floor. Ours: the whole command on an
HDF5 shard of 30 s songs (checkpoint load, reading chunks, batching, forward, writing float16
labels). Each figure is the median of repeated runs; the ratio shows how much of the I/O hides
behind compute (1.0 = all of it). Also prints the per-song cost and the projection to the 516,415
unlabeled songs of MSD on N GPUs (from a measured per-song cost on this device, when the
device is a GPU; otherwise from the CPU figure and a stated FLOP ratio, marked as such).

Model: the demo teacher (C8/D64, 4 heads) by default on the CPU, the paper's teacher
(C128/D256, 8 heads: `--preset teacher`, the default on CUDA); `--conv-channels/--width/--heads`
set a size of their own (heads default: 8 at the paper's width 256, else 4). Songs: 48/128
(--quick/full) on the CPU, 1,024/4,096 on CUDA, where start-up (checkpoint load, CUDA context,
cuDNN's first calls) would otherwise be a large part of the figure. Batch: the command's default
for the device (64 inputs on the CPU, 256 on CUDA) unless `--batch-size` is given.

Last line: songs_per_s=X forward_songs_per_s=Y ratio_vs_forward=Z
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mtt.checkpoint import save_checkpoint
from mtt.cli import main
from mtt.formats.mel_shard import ShardWriter, shard_attributes
from mtt.frontend import seconds_to_frames
from mtt.models import build_model
from mtt.inference.device import (autocast, default_batch_size, inference_model, resolve_device,
                                  resolve_precision)
from mtt.datasets.vocabulary import MSD_TOP50

MSD_UNLABELED = 516_415


def write_random_shard(path: Path, n_songs: int, frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    writer = ShardWriter(path, shard_attributes(1.0, "bench"))
    for i in range(n_songs):
        mel = rng.normal(-40, 15, size=(frames, 128)).astype(np.float16)
        writer.add(f"TRBENCH{i:08d}", mel, frames * 512)
    writer.close()


def forward_seconds(model, device, n_songs, chunks, frames, batch_size, precision="auto"):
    """Time of the bare forward passes the command needs for `n_songs` songs."""
    songs_per_batch = max(1, batch_size // chunks)
    x = torch.randn(songs_per_batch * chunks, 128, frames, device=device) * 15 - 40
    n_batches = -(-n_songs // songs_per_batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode(), autocast(device, precision):
        probs = [torch.sigmoid(model(x).float()) for _ in range(n_batches)]
        torch.cat(probs).cpu()  # read once at the end, as the command does
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main_bench():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish within 2 minutes")
    parser.add_argument("--preset", choices=["demo", "teacher"],
                        help="demo: C8/D64, 4 heads; teacher: the paper's C128/D256, 8 heads "
                        "(default: teacher on CUDA, demo on the CPU)")
    parser.add_argument("--conv-channels", type=int, help="model size (default: the preset's)")
    parser.add_argument("--width", type=int)
    parser.add_argument("--heads", type=int,
                        help="default: the preset's, or 8 at width 256 (the paper's), else 4")
    parser.add_argument("--songs", type=int, help="songs in the shard")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--batch-size", type=int,
                        help="model inputs per forward (default: the command's for the device)")
    parser.add_argument("--repeats", type=int, help="timed repetitions (median reported)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    preset = args.preset or ("teacher" if cuda else "demo")
    conv, width = {"demo": (8, 64), "teacher": (128, 256)}[preset]
    args.conv_channels = args.conv_channels or conv
    args.width = args.width or width
    args.heads = args.heads or (8 if args.width == 256 else 4)
    args.batch_size = args.batch_size or default_batch_size(device)
    # real shards hold thousands: enough songs to amortize start-up
    songs = args.songs or ((1024 if args.quick else 4096) if cuda else (48 if args.quick else 128))
    repeats = args.repeats or (3 if args.quick else 5)
    frames = seconds_to_frames(30.0)  # a 30 s MSD preview: 1,292 frames
    chunk = seconds_to_frames(10.0)

    torch.manual_seed(0)
    model = build_model("transformer", len(MSD_TOP50), conv_channels=args.conv_channels,
                        width=args.width, heads=args.heads).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shard, ckpt = tmp / "unlabeled.h5", tmp / "teacher.ckpt"
        write_random_shard(shard, songs, frames)
        write_random_shard(tmp / "warmup_shard.h5", 2, frames, seed=1)
        save_checkpoint(ckpt, model, MSD_TOP50)
        model.to(device)
        precision = resolve_precision("auto", device, model=model)  # as the command does
        model = inference_model(model, device, precision)  # as predict_songs runs it
        forward_seconds(model, device, 2, args.chunks, chunk, args.batch_size, precision)
        command = ["pseudo-label", "--checkpoint", str(ckpt), "--mels", str(shard),
                   "--chunks", str(args.chunks), "--batch-size", str(args.batch_size),
                   "--device", str(device)]
        warmup = [a if a != str(shard) else str(tmp / "warmup_shard.h5") for a in command]
        main(warmup + ["--out", str(tmp / "warmup.h5")])  # warm-up (imports, caches)
        ours, base = [], []
        for r in range(repeats):  # interleaved, so both see the same machine state
            out = tmp / f"labels{r}.h5"
            start = time.perf_counter()
            assert main(command + ["--out", str(out)]) == 0
            ours.append(time.perf_counter() - start)
            base.append(forward_seconds(model, device, songs, args.chunks, chunk, args.batch_size,
                                        precision))
    ours_s, base_s = statistics.median(ours), statistics.median(base)
    songs_per_s, forward_per_s = songs / ours_s, songs / base_s
    per_song_ms = 1000 * ours_s / songs
    layout = "channels-last" if not model.frontend.layer2.conv_1.weight.is_contiguous() else "nchw"
    print(f"device={device} model=C{args.conv_channels}/D{args.width}/H{args.heads} "
          f"precision={precision} "
          f"layout={layout} songs={songs} "
          f"chunks={args.chunks}x{chunk} frames batch={args.batch_size} repeats={repeats}")
    print(f"mtt pseudo-label: {songs_per_s:.2f} songs/s ({per_song_ms:.1f} ms/song); "
          f"bare forward: {forward_per_s:.2f} songs/s; runs ours={['%.2f' % t for t in ours]} "
          f"forward={['%.2f' % t for t in base]}")
    for gpus in (1, 8, 32):
        hours = MSD_UNLABELED * per_song_ms / 1000 / 3600 / gpus
        print(f"projection on this device type: {MSD_UNLABELED} MSD songs on {gpus} x {device.type}"
              f" = {hours:.2f} h (this model size)")
    print(f"songs_per_s={songs_per_s:.3f} forward_songs_per_s={forward_per_s:.3f} "
          f"ratio_vs_forward={songs_per_s / forward_per_s:.3f}")


if __name__ == "__main__":
    main_bench()
