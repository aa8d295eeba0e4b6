"""Does noisy-student training beat its teacher on the demo dataset? Teacher vs KD vs KE.

For each demo-data seed: `mtt demo-data` -> `mtt split --format msd` -> `mtt preprocess`; then
for each training seed: train the teacher, pseudo-label the student set with it, train a KD
student (smaller) and a KE student (teacher-sized) on labeled + pseudo-labeled songs, and
evaluate all three on the test split. Every model gets the same recipe and the same budget and
early-stopping rule (steps per epoch, epoch limit, patience, best epoch by validation loss);
the teacher is the baseline, run side by side. Prints every run, mean ± std per model over all
runs, and the paired student - teacher differences.

Generated data and runs go to --work (reused when present: demo data and mel shards are only
built once per demo seed). The default recipe is the workflow's CPU demo recipe trained to
convergence: an epoch limit (150) that no model reaches, so that early stopping (patience 10 on
the validation loss) ends every run; `--max-epochs 10 --patience 4` gives the workflow's short
demo budget. About 15 CPU-minutes per training seed on the development machine.

Last line: teacher_roc_auc=... kd_roc_auc=... ke_roc_auc=... (means) teacher_pr_auc=...
kd_pr_auc=... ke_pr_auc=... kd_gain_roc_auc=... ke_gain_roc_auc=... kd_gain_pr_auc=...
ke_gain_pr_auc=... kd_wins=... ke_wins=... runs=N minutes=M
"""
import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from mtt.cli import main as mtt

MODELS = ("teacher", "kd", "ke")
SPLITS = ("train", "valid", "test", "student")


def size(text: str) -> tuple[int, int]:
    c, d = text.lower().replace("c", "").split("/d")
    return int(c), int(d)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="small demo, one seed each, a few epochs (a smoke test, not evidence)")
    p.add_argument("--work", type=Path, default=Path(".bench_cache/semi_supervised"),
                   help="working folder (demo data, shards, runs)")
    p.add_argument("--size", choices=["small", "default"], help="demo size (default: default)")
    p.add_argument("--demo-seeds", type=int, nargs="+", help="demo-data seeds (default: 0 1)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2)")
    p.add_argument("--teacher", type=size, default=(8, 64), help="teacher C/D (default C8/D64)")
    p.add_argument("--kd", type=size, default=(8, 32), help="KD student C/D (default C8/D32)")
    p.add_argument("--ke", type=size, default=(8, 64), help="KE student C/D (default C8/D64)")
    p.add_argument("--heads", type=int, default=4, help="attention heads of every model")
    p.add_argument("--crop-seconds", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--valid-chunks", type=int, default=2)
    p.add_argument("--eval-chunks", type=int, default=6)
    p.add_argument("--pseudo-chunks", type=int, default=6)
    p.add_argument("--noise", default="specaugment,gain,mixup,shift")
    p.add_argument("--noise-prob", type=float, default=0.5)
    p.add_argument("--student-dropout", type=float, default=0.1)
    p.add_argument("--student-drop-path", type=float, default=0.1)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--jobs", type=int, default=2,
                   help="training-seed chains run at once, one CPU thread each")
    args = p.parse_args()
    quick = args.quick
    args.size = args.size or ("small" if quick else "default")
    args.demo_seeds = args.demo_seeds or ([0] if quick else [0, 1])
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2])
    args.max_epochs = args.max_epochs or (2 if quick else 150)
    args.steps_per_epoch = args.steps_per_epoch or (4 if quick else 16)
    return args


def check(status: int, what: str):
    if status != 0:
        sys.exit(f"bench: {what} failed (exit {status})")


def prepare_demo(work: Path, demo_seed: int, size_name: str) -> Path:
    """Demo data, split and one mel shard per split; reused when already there."""
    root = work / f"demo_{size_name}_seed{demo_seed}"
    raw = root / "raw"
    if not (raw / "demo.json").exists():
        check(mtt(["demo-data", "--out", str(raw), "--seed", str(demo_seed), "--size", size_name]),
              "demo-data")
    split = root / "split"
    if not (split / "tags.txt").exists():
        check(mtt(["split", "--format", "msd", "--track-metadata", str(raw / "track_metadata.db"),
                   "--lastfm-tags", str(raw / "lastfm_tags.db"), "--tag-list",
                   str(raw / "tags.txt"), "--out", str(split), "--seed", "0"]), "split")
    for name in SPLITS:
        out = root / "mels" / f"{name}.h5"
        if not out.exists():
            check(mtt(["preprocess", "--audio-root", str(raw / "audio"), "--tracks",
                       str(split / f"{name}.tsv"), "--out", str(out), "--failures",
                       str(root / "mels" / f"{name}.failed.tsv"), "--workers", "2"]),
                  f"preprocess {name}")
    return root


def train(args, root: Path, out: Path, seed: int, c_d, student_of: Path | None = None):
    split, mels = root / "split", root / "mels"
    command = ["train", "--train", str(split / "train.tsv"), "--valid", str(split / "valid.tsv"),
               "--tags", str(split / "tags.txt"), "--mels", str(mels / "train.h5"),
               str(mels / "valid.h5"), "--out", str(out),
               "--conv-channels", str(c_d[0]), "--width", str(c_d[1]), "--heads", str(args.heads),
               "--crop-seconds", str(args.crop_seconds), "--batch-size", str(args.batch_size),
               "--lr", str(args.lr), "--max-epochs", str(args.max_epochs),
               "--patience", str(args.patience), "--steps-per-epoch", str(args.steps_per_epoch),
               "--valid-chunks", str(args.valid_chunks), "--seed", str(seed), "--device", "cpu",
               "--threads", "1"]
    if student_of is not None:
        command += ["--pseudo-labels", str(student_of), "--unlabeled-mels",
                    str(mels / "student.h5"), "--noise", args.noise,
                    "--noise-prob", str(args.noise_prob), "--dropout", str(args.student_dropout),
                    "--drop-path", str(args.student_drop_path)]
    check(mtt(command), f"train {out}")
    return out / "best.ckpt"


def evaluate(args, root: Path, checkpoint: Path, out: Path) -> dict:
    if not (out / "metrics.json").exists():
        check(mtt(["evaluate", "--checkpoint", str(checkpoint), "--tracks",
                   str(root / "split" / "test.tsv"), "--tags", str(root / "split" / "tags.txt"),
                   "--mels", str(root / "mels" / "test.h5"), "--out", str(out),
                   "--chunks", str(args.eval_chunks), "--bootstrap", str(args.bootstrap),
                   "--device", "cpu", "--threads", "1"]), f"evaluate {checkpoint}")
    metrics = json.loads((out / "metrics.json").read_text())
    meta = torch.load(checkpoint, map_location="cpu", weights_only=True)["meta"]
    return {"roc_auc": metrics["roc_auc"]["macro"], "pr_auc": metrics["pr_auc"]["macro"],
            "best_epoch": meta["best_epoch"], "epochs": meta["epochs_run"]}


def run_chain(args, root: Path, tag: str, demo_seed: int, seed: int) -> dict:
    """Teacher -> pseudo-labels -> KD and KE students for one training seed."""
    torch.set_num_threads(1)
    runs = root / "runs" / tag / f"seed{seed}"
    row = {"demo_seed": demo_seed, "seed": seed}
    teacher = train(args, root, runs / "teacher", seed, args.teacher)
    row["teacher"] = evaluate(args, root, teacher, runs / "teacher" / "test")
    labels = runs / "pseudo_labels.h5"
    check(mtt(["pseudo-label", "--checkpoint", str(teacher), "--mels",
               str(root / "mels" / "student.h5"), "--out", str(labels),
               "--chunks", str(args.pseudo_chunks), "--device", "cpu", "--threads", "1"]),
          "pseudo-label")
    for name in ("kd", "ke"):
        checkpoint = train(args, root, runs / name, seed, getattr(args, name), labels)
        row[name] = evaluate(args, root, checkpoint, runs / name / "test")
    print("run demo_seed={demo_seed} seed={seed}: ".format(**row) + "  ".join(
        f"{m} roc={row[m]['roc_auc']:.4f} pr={row[m]['pr_auc']:.4f} "
        f"(best epoch {row[m]['best_epoch']}/{row[m]['epochs']})" for m in MODELS),
        file=sys.stderr, flush=True)
    return row


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    args = parse_args()
    started = time.perf_counter()
    recipe = (f"teacher C{args.teacher[0]}/D{args.teacher[1]}, KD C{args.kd[0]}/D{args.kd[1]}, "
              f"KE C{args.ke[0]}/D{args.ke[1]}, {args.heads} heads; crop {args.crop_seconds} s, batch "
              f"{args.batch_size}, lr {args.lr}, {args.steps_per_epoch} steps/epoch, <= "
              f"{args.max_epochs} epochs, patience {args.patience}; student noise {args.noise} "
              f"p={args.noise_prob}, dropout {args.student_dropout}, drop-path "
              f"{args.student_drop_path}")
    print(f"recipe: {recipe}", file=sys.stderr)
    tag = (f"{args.size}_t{args.teacher[0]}x{args.teacher[1]}_kd{args.kd[0]}x{args.kd[1]}_"
           f"ke{args.ke[0]}x{args.ke[1]}_h{args.heads}_crop{args.crop_seconds}_b{args.batch_size}_lr{args.lr}_"
           f"e{args.max_epochs}_s{args.steps_per_epoch}_p{args.patience}_{args.noise}_"
           f"{args.noise_prob}_{args.student_dropout}_{args.student_drop_path}")
    roots = {demo_seed: prepare_demo(args.work, demo_seed, args.size)
             for demo_seed in args.demo_seeds}
    chains = [(args, roots[d], tag, d, seed) for d in args.demo_seeds for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run_chain, *zip(*chains)))
    (args.work / f"results_{tag}.json").write_text(json.dumps(results, indent=1))

    minutes = (time.perf_counter() - started) / 60
    print(f"\n{len(results)} runs ({len(args.demo_seeds)} demo seeds x {len(args.seeds)} "
          f"training seeds), demo size {args.size}; {recipe}")
    summary = {}
    for metric in ("roc_auc", "pr_auc"):
        for model in MODELS:
            m, s = mean_std([r[model][metric] for r in results])
            summary[f"{model}_{metric}"] = m
            print(f"{model:8s} test macro {metric}: {m:.4f} ± {s:.4f}")
        for model in ("kd", "ke"):
            gains = [r[model][metric] - r["teacher"][metric] for r in results]
            m, s = mean_std(gains)
            wins = sum(g > 0 for g in gains)
            summary[f"{model}_gain_{metric}"] = m
            summary[f"{model}_wins_{metric}"] = f"{wins}/{len(gains)}"
            print(f"{model} - teacher {metric}: {m:+.4f} ± {s:.4f} (student better in "
                  f"{wins}/{len(gains)} runs)")
    for demo_seed in args.demo_seeds:
        rows = [r for r in results if r["demo_seed"] == demo_seed]
        print(f"demo seed {demo_seed}: " + "  ".join(
            f"{m} roc={statistics.mean(r[m]['roc_auc'] for r in rows):.4f} "
            f"pr={statistics.mean(r[m]['pr_auc'] for r in rows):.4f}" for m in MODELS))
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in summary.items())
          + f" runs={len(results)} minutes={minutes:.1f}")


if __name__ == "__main__":
    main()
