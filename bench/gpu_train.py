"""Training throughput of the paper's teacher through the real pipeline: `mtt train` (its
DataLoader reading random crops from HDF5 mel shards, noise, AdamW, bf16 autocast on CUDA) on a
small demo built here, against the bare training step on tensors already on the device
(bench/model_step.py's baseline shape: same model, batch and crop).

Last line: train_crops_per_s=X step_crops_per_s=Y ratio_vs_step=Z peak_gpu_mib=M device=...
"""
import argparse
import csv
import time
from pathlib import Path

import torch

from mtt.cli import main as mtt
from mtt.frontend import seconds_to_frames
from mtt.models import build_model
from mtt.predict import autocast, resolve_device


def check(status, what):
    if status != 0:
        raise SystemExit(f"gpu_train: {what} failed (exit {status})")


def bare_step_crops_per_s(device, batch, frames, n_tags, steps=20):
    model = build_model("transformer", n_tags, preset="teacher").to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    mel = torch.randn(batch, 128, frames, device=device)
    target = torch.rand(batch, n_tags, device=device)
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize() if device.type == "cuda" else None
            start = time.perf_counter()
        with autocast(device):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(mel), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    return steps * batch / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=60, help="steps per epoch (2 epochs, the 2nd timed)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--crop-seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args()
    try:
        device = resolve_device(args.device)
    except ValueError as err:  # CUDA asked for and absent: one line, no fallback to the CPU
        raise SystemExit(f"gpu_train: {err}") from None
    raw, split, mels = args.work / "raw", args.work / "split", args.work / "mels"
    check(mtt(["demo-data", "--out", str(raw), "--size", "small", "--seed", "0"]), "demo-data")
    check(mtt(["split", "--format", "msd", "--track-metadata", str(raw / "track_metadata.db"),
               "--lastfm-tags", str(raw / "lastfm_tags.db"), "--tag-list", str(raw / "tags.txt"),
               "--out", str(split)]), "split")
    for name in ("train", "valid"):
        check(mtt(["preprocess", "--audio-root", str(raw / "audio"), "--tracks",
                   str(split / f"{name}.tsv"), "--out", str(mels / f"{name}.h5"), "--failures",
                   str(mels / f"{name}.failed.tsv")]), f"preprocess {name}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = args.work / "teacher"
    check(mtt(["train", "--train", str(split / "train.tsv"), "--valid", str(split / "valid.tsv"),
               "--tags", str(split / "tags.txt"), "--mels", str(mels / "train.h5"),
               str(mels / "valid.h5"), "--out", str(out), "--preset", "teacher",
               "--crop-seconds", str(args.crop_seconds), "--batch-size", str(args.batch_size),
               "--steps-per-epoch", str(args.steps), "--max-epochs", "2", "--valid-chunks", "1",
               "--workers", str(args.workers), "--device", str(device)]), "train")
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    with open(out / "history.csv") as f:
        timed = list(csv.DictReader(f))[-1]  # epoch 2: warm (includes its validation pass)
    crops = args.steps * args.batch_size / float(timed["seconds"])
    n_tags = len([t for t in (split / "tags.txt").read_text().splitlines() if t.strip()])
    step = bare_step_crops_per_s(device, args.batch_size,
                                 seconds_to_frames(args.crop_seconds), n_tags)
    print(f"train_crops_per_s={crops:.1f} step_crops_per_s={step:.1f} "
          f"ratio_vs_step={crops / step:.3f} peak_gpu_mib={peak:.0f} device={device}")


if __name__ == "__main__":
    main()
