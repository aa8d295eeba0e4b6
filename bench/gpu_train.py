"""Training throughput of the paper's teacher through the real pipeline: `mtt train`'s own
Trainer (its DataLoader reading random crops from HDF5 mel shards, noise, Adam, the precision
`--precision auto` picks) on a small demo built here, against the bare training step on tensors
already on the device (bench/model_step.py's shape: same model, batch, crop, precision, memory
format and optimizer, Adam).

The training figure is one warm epoch of steps alone: epoch 1 warms up (loader workers, cuDNN,
the allocator), epoch 2 is timed from its first step to its last (the device synchronized), and
neither validation nor checkpointing is in it (they run once an epoch, not once a step).

Options the GPU check compares: `--cudnn-benchmark` (cuDNN picks its fastest convolutions for the
fixed crop shape) and `--fused-adam` (one fused kernel for the optimizer step), each applied to
both figures; without them the last line also gives the bare step with each of them
(`step_benchmark_crops_per_s`, `step_fused_adam_crops_per_s`), so one run shows what they would
gain. `--quick`: a tiny run that finishes on the CPU (for the CPU tests of this script; its
figures mean nothing).

Last line: train_crops_per_s=X step_crops_per_s=Y ratio_vs_step=Z peak_gpu_mib=M
step_benchmark_crops_per_s=B step_fused_adam_crops_per_s=F device=...
"""
import argparse
import contextlib
import functools
import time
from pathlib import Path
from unittest import mock

import torch

from mtt.config import TrainConfig
from mtt.training.command import TrainFiles, Trainer, add_arguments
from mtt.cli import main as mtt
from mtt.datasets import DEMO_SPLIT
from mtt.frontend import seconds_to_frames
from mtt.models import build_model, to_channels_last
from mtt.inference.device import autocast, channels_last_faster, resolve_device, select_precision


def check(status, what):
    if status != 0:
        raise SystemExit(f"gpu_train: {what} failed (exit {status})")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def adam(fused: bool):
    """torch.optim.Adam as `mtt train` builds it, fused or not (fused=None: torch's default)."""
    return functools.partial(torch.optim.Adam, fused=True) if fused else torch.optim.Adam


def bare_step_crops_per_s(device, batch, frames, n_tags, *, fused=False, lr=1e-4, warmup=10,
                          steps=30):
    """The teacher's training step on tensors already on the device, as the Trainer runs it:
    its precision and memory format, BCE, Adam (`fused` or not)."""
    torch.manual_seed(0)
    model = build_model("transformer", n_tags, preset="teacher").to(device)
    precision = select_precision("auto", device, model=model)
    if channels_last_faster(model, device, precision):
        to_channels_last(model)
    opt = adam(fused)(model.parameters(), lr=lr)
    mel = torch.randn(batch, 128, frames, device=device) * 15 - 40
    target = torch.rand(batch, n_tags, device=device).round()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        with autocast(device, precision):
            logits = model(mel).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return steps * batch / (time.perf_counter() - start)


def pipeline_crops_per_s(args, split, mels, out, device, fused) -> float:
    """Crops/s of the Trainer's second epoch of steps (no validation, no checkpoint)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = parser.parse_args([
        "--train", str(split / "train.tsv"), "--valid", str(split / "valid.tsv"),
        "--tags", str(split / "tags.txt"), "--mels", str(mels / "train.h5"),
        str(mels / "valid.h5"), "--out", str(out), "--preset", "teacher",
        "--crop-seconds", str(args.crop_seconds), "--batch-size", str(args.batch_size),
        "--steps-per-epoch", str(args.steps), "--workers", str(args.workers),
        "--device", str(device)])
    patch = (mock.patch.object(torch.optim, "Adam", adam(True)) if fused
             else contextlib.nullcontext())
    with patch:  # the Trainer builds its optimizer with torch.optim.Adam
        trainer = Trainer(TrainConfig.from_args(options), TrainFiles.from_args(options))
    trainer.train_epoch(0)  # warm-up epoch
    sync(device)
    start = time.perf_counter()
    trainer.train_epoch(1)  # returns after reading the epoch's mean loss: the device is done
    sync(device)
    return trainer.data.plan.steps * args.batch_size / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=None, help="steps per epoch (default 60)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--crop-seconds", type=float, default=None, help="default 10")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark on, for both figures")
    p.add_argument("--fused-adam", action="store_true", help="fused Adam, for both figures")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes that finish on the CPU (checks the script, not the speed)")
    args = p.parse_args()
    args.steps = args.steps or (3 if args.quick else 60)
    args.batch_size = args.batch_size or (2 if args.quick else 32)
    args.crop_seconds = args.crop_seconds or (1.0 if args.quick else 10.0)
    if args.quick:
        args.workers = min(args.workers, 1)
    try:
        device = resolve_device(args.device)
    except ValueError as err:  # CUDA asked for and absent: one line, no fallback to the CPU
        raise SystemExit(f"gpu_train: {err}") from None
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    raw, split, mels = args.work / "raw", args.work / "split", args.work / "mels"
    size = ["--songs", "120", "--seconds", "4"] if args.quick else ["--size", "small"]
    check(mtt(["demo-data", "--out", str(raw), *size, "--seed", "0"]), "demo-data")
    check(mtt(["split", "--format", "msd", "--track-metadata", str(raw / "track_metadata.db"),
               "--lastfm-tags", str(raw / "lastfm_tags.db"), "--tag-list", str(raw / "tags.txt"),
               "--audio-ext", DEMO_SPLIT["audio_ext"], "--out", str(split)]), "split")
    for name in ("train", "valid"):
        check(mtt(["preprocess", "--audio-root", str(raw / "audio"), "--tracks",
                   str(split / f"{name}.tsv"), "--out", str(mels / f"{name}.h5"), "--failures",
                   str(mels / f"{name}.failed.tsv")]), f"preprocess {name}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    crops = pipeline_crops_per_s(args, split, mels, args.work / "teacher", device,
                                 args.fused_adam)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    n_tags = len([t for t in (split / "tags.txt").read_text().splitlines() if t.strip()])
    frames = seconds_to_frames(args.crop_seconds)
    steps = dict(warmup=2, steps=3) if args.quick else {}
    step = bare_step_crops_per_s(device, args.batch_size, frames, n_tags,
                                 fused=args.fused_adam, **steps)
    variants = {}
    if not (args.cudnn_benchmark or args.fused_adam):  # what each option would give the step
        torch.backends.cudnn.benchmark = True
        variants["step_benchmark_crops_per_s"] = bare_step_crops_per_s(
            device, args.batch_size, frames, n_tags, **steps)
        torch.backends.cudnn.benchmark = False
        variants["step_fused_adam_crops_per_s"] = bare_step_crops_per_s(
            device, args.batch_size, frames, n_tags, fused=True, **steps)
    print(f"train_crops_per_s={crops:.1f} step_crops_per_s={step:.1f} "
          f"ratio_vs_step={crops / step:.3f} peak_gpu_mib={peak:.0f} "
          + "".join(f"{k}={v:.1f} " for k, v in variants.items())
          + f"cudnn_benchmark={int(args.cudnn_benchmark)} fused_adam={int(args.fused_adam)} "
          f"device={device}")


if __name__ == "__main__":
    main()
