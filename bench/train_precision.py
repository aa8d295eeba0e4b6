"""Does a bf16-trained demo teacher reach the fp32 teacher's validation metrics? fp32 vs bf16.

`mtt demo-data` -> `mtt split --format msd` -> `mtt preprocess` (train and valid), then for each
training seed the demo teacher (config.yaml's C8/D64, 4 heads, with its recipe: 2 s crops, batch
16, 32 steps per epoch, EMA 0.99, noise, epoch kept by validation ROC-AUC + PR-AUC, early
stopping) is trained twice from the same seed, `--precision fp32` and `--precision bf16`
(explicitly: bf16 autocast runs on any CPU; `auto` keeps the demo's small CNNs in fp32), the
two side by side, one thread each. Both kept checkpoints are then scored on the validation split
by `mtt evaluate --precision fp32` (the same arithmetic for both: the comparison is between the
trained weights). The baseline is the fp32 run of the same seed.

"Within noise" is judged against the spread between training seeds: the bf16 - fp32 difference
of each metric (mean over seeds) is compared with the standard deviation of the fp32 runs over
seeds, and with the half-width of one run's bootstrap interval. Prints every run and the wall
time of each precision's training.

Last line, for roc_auc and then pr_auc: fp32_roc_auc bf16_roc_auc (means over seeds) diff_roc_auc
(bf16 - fp32, mean of the paired differences) seed_std_roc_auc (fp32 over seeds) ci_half_roc_auc
(mean half-width of the runs' bootstrap intervals); then within_noise=yes|no (every |diff| at
most the seed std) bf16_time_ratio (bf16 / fp32 training wall time) runs=N minutes=M.
"""
import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from mtt.cli import main as mtt
from mtt.datasets import DEMO_SPLIT

PRECISIONS = ("fp32", "bf16")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="2 seeds, 1,200 songs, at most 20 epochs: ~15 min on 2 loaded cores")
    p.add_argument("--work", type=Path, default=Path(".bench_cache/train_precision"),
                   help="working folder (demo data and shards are reused)")
    p.add_argument("--demo-songs", type=int, help="songs of the demo data (default 1500)")
    p.add_argument("--demo-seconds", type=float, default=10.0)
    p.add_argument("--fractions", type=float, nargs=3, default=[0.45, 0.45, 0.1],
                   help="train / valid / test shares of the labeled songs (test is not used)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default 0 1 2)")
    p.add_argument("--conv-channels", type=int, default=8)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-epochs", type=int, help="default 80 (20 with --quick)")
    p.add_argument("--patience", type=int, help="default 8 (6 with --quick)")
    p.add_argument("--steps-per-epoch", type=int, default=32)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each")
    args = p.parse_args()
    args.demo_songs = args.demo_songs or (1200 if args.quick else 1500)
    args.seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    args.max_epochs = args.max_epochs or (20 if args.quick else 80)
    args.patience = args.patience or (6 if args.quick else 8)
    return args


def check(status: int, what: str):
    if status != 0:
        sys.exit(f"bench: {what} failed (exit {status})")


def prepare(args) -> Path:
    """Demo data, split, train and valid shards; reused when present."""
    root = args.work / (f"demo{args.demo_songs}x{args.demo_seconds:g}_"
                        + "_".join(f"{f:g}" for f in args.fractions))
    raw, split, mels = root / "raw", root / "split", root / "mels"
    if not (raw / "demo.json").exists():
        check(mtt(["demo-data", "--out", str(raw), "--seed", "0", "--songs",
                   str(args.demo_songs), "--seconds", str(args.demo_seconds)]), "demo-data")
    if not (split / "tags.txt").exists():
        check(mtt(["split", "--format", "msd", "--track-metadata", str(raw / "track_metadata.db"),
                   "--lastfm-tags", str(raw / "lastfm_tags.db"), "--tag-list", str(raw / "tags.txt"),
                   "--audio-ext", DEMO_SPLIT["audio_ext"], "--out", str(split), "--seed", "0",
                   "--fractions", *map(str, args.fractions)]),
              "split")
    for name in ("train", "valid"):
        if not (mels / f"{name}.h5").exists():
            check(mtt(["preprocess", "--audio-root", str(raw / "audio"), "--tracks",
                       str(split / f"{name}.tsv"), "--out", str(mels / f"{name}.h5"),
                       "--failures", str(mels / f"{name}.failed.tsv"), "--workers", "2"]),
                  f"preprocess {name}")
    return root


def run_key(args) -> str:
    return (f"c{args.conv_channels}d{args.width}h{args.heads}_e{args.max_epochs}"
            f"_p{args.patience}_s{args.steps_per_epoch}")


def train_and_score(args, root: Path, seed: int, precision: str) -> dict:
    """Train one teacher (or reuse a finished run) and score its kept checkpoint on valid."""
    torch.set_num_threads(1)
    split, mels = root / "split", root / "mels"
    out = root / "runs" / run_key(args) / f"seed{seed}_{precision}"
    best, seconds = out / "best.ckpt", None
    finished = best.exists() and "stopped" in torch.load(best, map_location="cpu",
                                                         weights_only=True)["meta"]
    if not finished:
        start = time.perf_counter()
        check(mtt(["train", "--train", str(split / "train.tsv"), "--valid", str(split / "valid.tsv"),
                   "--tags", str(split / "tags.txt"), "--mels", str(mels / "train.h5"),
                   str(mels / "valid.h5"), "--out", str(out),
                   "--conv-channels", str(args.conv_channels), "--width", str(args.width),
                   "--heads", str(args.heads), "--drop-path", "0.1", "--dropout", "0.1",
                   "--noise", "specaugment,gain,mixup,shift", "--noise-prob", "0.5",
                   "--crop-seconds", "2", "--batch-size", "16", "--lr", "1e-3",
                   "--ema-decay", "0.99", "--select-by", "valid_auc", "--valid-chunks", "4",
                   "--max-epochs", str(args.max_epochs), "--patience", str(args.patience),
                   "--steps-per-epoch", str(args.steps_per_epoch), "--seed", str(seed),
                   "--device", "cpu", "--threads", "1", "--precision", precision]),
              f"train {out}")
        seconds = time.perf_counter() - start
    scored = out / "valid_fp32"
    if not (scored / "metrics.json").exists():
        check(mtt(["evaluate", "--checkpoint", str(best), "--tracks", str(split / "valid.tsv"),
                   "--tags", str(split / "tags.txt"), "--mels", str(mels / "valid.h5"),
                   "--out", str(scored), "--chunks", "6", "--bootstrap", str(args.bootstrap),
                   "--device", "cpu", "--threads", "1", "--precision", "fp32"]),
              f"evaluate {best}")
    metrics = json.loads((scored / "metrics.json").read_text())
    meta = torch.load(best, map_location="cpu", weights_only=True)["meta"]
    history = pd.read_csv(out / "history.csv")
    row = {"seed": seed, "precision": precision, "seconds": seconds,
           "best_epoch": meta.get("best_epoch"), "epochs": len(history)}
    for metric in ("roc_auc", "pr_auc"):
        entry = metrics[metric]
        row[metric] = entry["macro"]
        row[f"{metric}_ci_half"] = (entry["ci_high"] - entry["ci_low"]) / 2
    return row


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    print(f"cpus={os.cpu_count()} load_average={os.getloadavg()[0]:.2f} torch={torch.__version__}"
          f" demo={args.demo_songs}x{args.demo_seconds:g}s seeds={args.seeds} "
          f"max_epochs={args.max_epochs} patience={args.patience}", flush=True)
    root = prepare(args)
    tasks = [(seed, precision) for seed in args.seeds for precision in PRECISIONS]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_and_score, args, root, s, p) for s, p in tasks]
        rows = [f.result() for f in futures]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)

    by = {p: table[table.precision == p].set_index("seed").sort_index() for p in PRECISIONS}
    out = {}
    for metric in ("roc_auc", "pr_auc"):
        fp32, bf16 = by["fp32"][metric], by["bf16"][metric]
        diffs = (bf16 - fp32).tolist()
        out[f"fp32_{metric}"] = statistics.mean(fp32)
        out[f"bf16_{metric}"] = statistics.mean(bf16)
        out[f"diff_{metric}"] = statistics.mean(diffs)
        out[f"seed_std_{metric}"] = statistics.stdev(fp32) if len(fp32) > 1 else float("nan")
        out[f"ci_half_{metric}"] = statistics.mean(table[f"{metric}_ci_half"])
        print(f"{metric}: fp32 {statistics.mean(fp32):.4f} bf16 {statistics.mean(bf16):.4f}; "
              f"bf16 - fp32 per seed {', '.join(f'{d:+.4f}' for d in diffs)}", flush=True)
    noise = {m: max(out[f"seed_std_{m}"], 0.0) if out[f"seed_std_{m}"] == out[f"seed_std_{m}"]
             else out[f"ci_half_{m}"] for m in ("roc_auc", "pr_auc")}
    within = all(abs(out[f"diff_{m}"]) <= noise[m] for m in ("roc_auc", "pr_auc"))
    times = {p: by[p]["seconds"].dropna() for p in PRECISIONS}
    ratio = (statistics.mean(times["bf16"]) / statistics.mean(times["fp32"])
             if len(times["bf16"]) and len(times["fp32"]) else float("nan"))
    print(" ".join(f"{k}={v:.4f}" for k, v in out.items())
          + f" within_noise={'yes' if within else 'no'} bf16_time_ratio={ratio:.2f}"
          f" runs={len(rows)} minutes={(time.perf_counter() - started) / 60:.1f}"
          f" load_average={os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
