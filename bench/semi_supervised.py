"""Does noisy-student training beat its teacher on the demo dataset? Teacher vs KD vs KE.

For each demo-data seed: `mtt demo-data` -> `mtt split --format msd` -> `mtt preprocess`; then
for each training seed: train the teacher, pseudo-label the student set with it, train a KD
student (smaller) and a KE student (teacher-sized) on labeled + pseudo-labeled songs, and
evaluate all three on the test split (and on valid, the split a recipe may be chosen on).
Every model gets the same steps per epoch, epoch limit and early-stopping rule (best epoch by
validation loss) and, as in noisy-student training (Xie et al. 2020, algorithm 1), the same
noise: mel-domain input noise, dropout, stochastic depth, and the same crops per step: a
student's batch of `--batch-size` is half labeled, half pseudo-labeled (`--student-batch-size`
gives students bigger batches, i.e. more compute than the teacher, which flatters them). The
teacher is the baseline, run side by side. Prints every run, mean ± std per
model over all runs, and the paired student - teacher differences.

Generated data and runs go to --work (reused when present: demo data and mel shards are only
built once per demo seed). The default recipe (M in docs/NOISY_STUDENT.md) is the workflow's CPU
demo models trained to convergence: 64 steps per epoch, an epoch limit (150) that no model
reaches, so that early stopping (patience 10 on the validation loss) ends every run, and every
model validated and kept as an exponential moving average of its weights (decay 0.99 per step).
`--steps-per-epoch 16 --ema-decay 0` gives recipe F, `--max-epochs 10 --patience 4
--steps-per-epoch 16 --ema-decay 0` the workflow's short demo budget. 25-45 CPU-minutes per
training seed on the development machine, two run at once.

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

import numpy as np
import pandas as pd
import torch

from mtt.cli import main as mtt
from mtt.config import TrainConfig
from mtt.datasets import DEMO_SPLIT
from mtt.demo import TAGS, make_catalogue, observe_all
from mtt.formats.evaluation_folder import read_predictions
from mtt.report.summarize import paired_report

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
    p.add_argument("--demo-songs", type=int, help="songs of the demo data (overrides --size)")
    p.add_argument("--demo-seconds", type=float, help="song length in s (overrides --size)")
    p.add_argument("--fractions", type=float, nargs=3, default=list(DEFAULT_FRACTIONS),
                   help="train / valid / test shares of the labeled songs (mtt split)")
    p.add_argument("--demo-seeds", type=int, nargs="+", help="demo-data seeds (default: 0 1)")
    p.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2)")
    p.add_argument("--teacher", type=size, default=(8, 64), help="teacher C/D (default C8/D64)")
    p.add_argument("--kd", type=size, default=(8, 32), help="KD student C/D (default C8/D32)")
    p.add_argument("--ke", type=size, default=(8, 64), help="KE student C/D (default C8/D64)")
    p.add_argument("--heads", type=int, default=4, help="attention heads of every model")
    p.add_argument("--crop-seconds", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--student-batch-size", type=int,
                   help="students' batch, labeled and pseudo-labeled crops together (default: "
                   "--batch-size, the teacher's crops per step)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--kd-lr", type=float, help="the KD student's learning rate (default: --lr)")
    p.add_argument("--ke-lr", type=float, help="the KE student's learning rate (default: --lr)")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--select-by", default="valid_loss",
                   choices=["valid_loss", "valid_roc_auc", "valid_pr_auc", "valid_auc"],
                   help="every model: the validation score that picks the kept epoch and counts "
                   "the patience")
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="learning-rate factor on a validation plateau (1: constant rate)")
    p.add_argument("--lr-patience", type=int, default=3)
    p.add_argument("--teacher-anneal-epochs", type=int, default=0,
                   help="teachers (and the oracle): the learning rate annealed linearly to 0 "
                   "over this many epochs (mtt train --lr-anneal-epochs; 0: a constant rate)")
    p.add_argument("--student-anneal-epochs", type=int, default=0,
                   help="students: the learning rate annealed linearly to 0 over this many "
                   "epochs (0: a constant rate)")
    p.add_argument("--ema-decay", type=float, default=0.99,
                   help="every model validated and kept as a moving average of its weights, "
                   "updated every step (0: the raw weights)")
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--valid-chunks", type=int, default=2)
    p.add_argument("--eval-chunks", type=int, default=6)
    p.add_argument("--pseudo-chunks", type=int, default=6)
    p.add_argument("--noise", default="specaugment,gain,mixup,shift")
    p.add_argument("--noise-prob", type=float, default=0.5)
    p.add_argument("--student-dropout", type=float, default=0.1)
    p.add_argument("--student-drop-path", type=float, default=0.1)
    p.add_argument("--teacher-noise", default="specaugment,gain,mixup,shift",
                   help="input noise of the teacher's own training (noisy student, step 1)")
    p.add_argument("--teacher-dropout", type=float, default=0.1)
    p.add_argument("--teacher-drop-path", type=float, default=0.1)
    p.add_argument("--label-blend", type=float, default=0.0,
                   help="students: labeled targets blended with the teacher's predictions")
    p.add_argument("--init-from-teacher", choices=["none", "frontend"], default="none",
                   help="students: start the CNN front end from the teacher's")
    p.add_argument("--pseudo-mode", choices=["soft", "hard", "threshold"], default="soft")
    p.add_argument("--pseudo-threshold", type=float, default=0.5)
    p.add_argument("--pseudo-temperature", type=float, default=1.0)
    p.add_argument("--labeled-ratio", type=float, default=0.5,
                   help="students: share of labeled crops in a batch")
    p.add_argument("--pseudo-weight", type=float, default=1.0)
    p.add_argument("--pseudo-tag-weights", choices=["none", "teacher_valid_auc"], default="none",
                   help="students: weight each tag's pseudo-label loss by the teacher's "
                   "validation ROC-AUC of that tag (mtt.training.teacher_trust)")
    p.add_argument("--pseudo-targets", choices=["song", "crop", "crop_noised"], default="song",
                   help="students: song-level pseudo-labels, or the teacher on the same crop")
    p.add_argument("--rounds", type=int, default=1,
                   help="noisy-student rounds: round k+1 of each student is taught by its round k")
    p.add_argument("--students", nargs="*", choices=["kd", "ke"], default=["kd", "ke"],
                   help="students to train (a screen may train one; none: the teacher alone, "
                   "e.g. a supervised control of a student's size with --teacher)")
    p.add_argument("--labeled-share", type=float, default=1.0,
                   help="train on this share of the labeled train artists (drawn once per demo "
                   "seed); the others' songs are left out, so fewer labels face the same "
                   "unlabeled pool")
    p.add_argument("--oracle", action="store_true",
                   help="measure the regime before any student exists: a supervised model with "
                   "the teacher's recipe on the labeled train songs plus the student songs "
                   "labeled by the demo generator's own observation process, vs the teacher, "
                   "on the validation split")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--with-oracle", nargs="*", type=int, metavar="SEED",
                   help="also train the oracle in a student run and score it on test beside "
                   "the teacher and students (for reporting; nothing is chosen with it); "
                   "with seeds, only in the chains of these training seeds")
    p.add_argument("--figure", type=Path,
                   help="write a bar chart of test ROC-AUC / PR-AUC (mean and std over runs) "
                   "per model to this PNG")
    p.add_argument("--jobs", type=int, default=2,
                   help="training-seed chains run at once, one CPU thread each")
    args = p.parse_args()
    quick = args.quick
    args.size = args.size or ("small" if quick else "default")
    args.demo_seeds = args.demo_seeds or ([0] if quick else [0, 1])
    args.seeds = args.seeds or ([0] if quick else [0, 1, 2])
    args.max_epochs = args.max_epochs or (2 if quick else 150)
    args.steps_per_epoch = args.steps_per_epoch or (4 if quick else 64)
    args.student_batch_size = args.student_batch_size or args.batch_size
    if not 0 < args.labeled_share <= 1:
        p.error("--labeled-share must be in (0, 1]")
    return args


def check(status: int, what: str):
    if status != 0:
        sys.exit(f"bench: {what} failed (exit {status})")


def demo_name(args) -> str:
    if args.demo_songs or args.demo_seconds:
        return f"{args.demo_songs or 'n'}x{args.demo_seconds or 's'}"
    return args.size


DEFAULT_FRACTIONS = [0.7, 0.15, 0.15]


def split_name(args) -> str:
    """The folder of a split other than the default one (one demo dataset, several splits)."""
    if args.fractions == DEFAULT_FRACTIONS:
        return ""
    return "fractions_" + "_".join(f"{f:g}" for f in args.fractions)


def results_path(args) -> Path:
    """Where a run's figures go: named by every setting, the split and the chains, so a run over
    another split, other seeds or other students does not overwrite this one."""
    split = split_name(args)
    return args.work / (f"results_{teacher_key(args)}_{student_key(args)}"
                        + (f"_{split}" if split else "")
                        + f"_demo{'-'.join(map(str, args.demo_seeds))}"
                        f"_seeds{'-'.join(map(str, args.seeds))}_"
                        f"{'-'.join(args.students) or 'nostudents'}"
                        f"{'_oracle' if args.oracle else ''}.json")


def prepare_demo(args, demo_seed: int) -> Path:
    """Demo data, split and one mel shard per split; reused when already there."""
    root = args.work / f"demo_{demo_name(args)}_seed{demo_seed}"
    raw = root / "raw"
    if not (raw / "demo.json").exists():
        command = ["demo-data", "--out", str(raw), "--seed", str(demo_seed), "--size", args.size]
        if args.demo_songs:
            command += ["--songs", str(args.demo_songs)]
        if args.demo_seconds:
            command += ["--seconds", str(args.demo_seconds)]
        check(mtt(command), "demo-data")
    fractions = DEFAULT_FRACTIONS
    if split := split_name(args):
        root = root / split
        fractions = args.fractions
        root.mkdir(exist_ok=True)
        if not (root / "raw").exists():
            (root / "raw").symlink_to("../raw")  # one demo dataset, several splits of it
    split = root / "split"
    if not (split / "tags.txt").exists():
        check(mtt(["split", "--format", "msd", "--track-metadata", str(raw / "track_metadata.db"),
                   "--lastfm-tags", str(raw / "lastfm_tags.db"), "--tag-list",
                   str(raw / "tags.txt"), "--audio-ext", DEMO_SPLIT["audio_ext"],
                   "--out", str(split), "--seed", "0",
                   "--fractions", *map(str, fractions)]), "split")
    for name in SPLITS:
        out = root / "mels" / f"{name}.h5"
        if not out.exists():
            check(mtt(["preprocess", "--audio-root", str(raw / "audio"), "--tracks",
                       str(split / f"{name}.tsv"), "--out", str(out), "--failures",
                       str(root / "mels" / f"{name}.failed.tsv"), "--workers", "2"]),
                  f"preprocess {name}")
    return root


def train(args, root: Path, out: Path, seed: int, c_d, student_of: Path | None = None,
          labeled_of: Path | None = None, train_tsv: Path | None = None, extra_mels=(),
          teacher: Path | None = None, lr: float | None = None):
    split, mels = root / "split", root / "mels"
    train_tsv = train_tsv or labeled_train(root, args.labeled_share)
    command = ["train", "--train", str(train_tsv), "--valid", str(split / "valid.tsv"),
               "--tags", str(split / "tags.txt"), "--mels", str(mels / "train.h5"),
               str(mels / "valid.h5"), *map(str, extra_mels), "--out", str(out),
               "--conv-channels", str(c_d[0]), "--width", str(c_d[1]), "--heads", str(args.heads),
               "--crop-seconds", str(args.crop_seconds),
               "--batch-size", str(args.student_batch_size if student_of else args.batch_size),
               "--lr", str(lr or args.lr), "--max-epochs", str(args.max_epochs),
               "--patience", str(args.patience), "--steps-per-epoch", str(args.steps_per_epoch),
               "--select-by", args.select_by,
               "--lr-decay", str(args.lr_decay), "--lr-patience", str(args.lr_patience),
               "--ema-decay", str(args.ema_decay),
               "--valid-chunks", str(args.valid_chunks), "--seed", str(seed), "--device", "cpu",
               "--threads", "1"]
    anneal = args.student_anneal_epochs if student_of is not None else args.teacher_anneal_epochs
    if anneal:
        command += ["--lr-anneal-epochs", str(anneal)]
    if student_of is not None:
        command += ["--pseudo-labels", str(student_of), "--unlabeled-mels",
                    str(mels / "student.h5"), "--noise", args.noise,
                    "--noise-prob", str(args.noise_prob), "--dropout", str(args.student_dropout),
                    "--drop-path", str(args.student_drop_path),
                    "--pseudo-mode", args.pseudo_mode, "--pseudo-threshold", str(args.pseudo_threshold),
                    "--labeled-ratio", str(args.labeled_ratio),
                    "--pseudo-weight", str(args.pseudo_weight),
                    "--pseudo-tag-weights", args.pseudo_tag_weights,
                    "--pseudo-temperature", str(args.pseudo_temperature)]
        if TrainConfig(pseudo_targets=args.pseudo_targets,
                       pseudo_tag_weights=args.pseudo_tag_weights,
                       init_from_teacher=args.init_from_teacher).teacher_readers():
            command += ["--teacher-checkpoint", str(teacher)]
        if args.init_from_teacher != "none":
            command += ["--init-from-teacher", args.init_from_teacher]
        if args.pseudo_targets != "song":
            command += ["--pseudo-targets", args.pseudo_targets]
        if labeled_of is not None:
            command += ["--labeled-pseudo-labels", str(labeled_of),
                        "--label-blend", str(args.label_blend)]
    else:
        command += ["--noise", args.teacher_noise, "--noise-prob", str(args.noise_prob),
                    "--dropout", str(args.teacher_dropout),
                    "--drop-path", str(args.teacher_drop_path)]
    best = out / "best.ckpt"
    if best.exists() and "stopped" in torch.load(best, map_location="cpu",
                                                 weights_only=True)["meta"]:
        return best  # a finished run (its last.ckpt may predate the current format)
    check(mtt(command), f"train {out}")
    return best


def labeled_train(root: Path, share: float) -> Path:
    """The train split, or `share` of its artists (all their songs), drawn once per demo seed."""
    full = root / "split" / "train.tsv"
    if share >= 1:
        return full
    out = root / "split" / f"train_share{share:g}.tsv"
    if not out.exists():
        table = pd.read_csv(full, sep="\t", dtype=str, keep_default_na=False)
        artists = np.array(sorted(table["artist_id"].unique()))
        keep = np.random.default_rng(0).permutation(artists)[:max(1, round(share * len(artists)))]
        table[table["artist_id"].isin(set(keep))].to_csv(out, sep="\t", index=False)
    return out


def oracle_train(root: Path, demo_seed: int, share: float) -> Path:
    """The labeled train songs plus every student song labeled the way the generator labels a
    tagged artist's songs (its Last.fm-like observation noise on the true tags): what perfect
    access to the tagging process would give the unlabeled songs."""
    out = root / "split" / f"oracle_train_share{share:g}.tsv"
    if not out.exists():
        meta = json.loads((root / "raw" / "demo.json").read_text())
        artists, songs = make_catalogue(demo_seed, meta["songs"])
        observed = observe_all(songs, artists, demo_seed)
        student = pd.read_csv(root / "split" / "student.tsv", sep="\t", dtype=str,
                              keep_default_na=False)
        student["tags"] = [";".join(t for t in TAGS if t in observed.get(track, ()))
                           for track in student["track_id"]]
        labeled = pd.read_csv(labeled_train(root, share), sep="\t", dtype=str,
                              keep_default_na=False)
        pd.concat([labeled, student]).to_csv(out, sep="\t", index=False)
    return out


def evaluate(args, root: Path, checkpoint: Path, out: Path, split: str = "test") -> dict:
    if not (out / "metrics.json").exists():
        check(mtt(["evaluate", "--checkpoint", str(checkpoint), "--tracks",
                   str(root / "split" / f"{split}.tsv"), "--tags", str(root / "split" / "tags.txt"),
                   "--mels", str(root / "mels" / f"{split}.h5"), "--out", str(out),
                   "--chunks", str(args.eval_chunks), "--bootstrap", str(args.bootstrap),
                   "--device", "cpu", "--threads", "1"]), f"evaluate {checkpoint}")
    metrics = json.loads((out / "metrics.json").read_text())
    meta = torch.load(checkpoint, map_location="cpu", weights_only=True)["meta"]
    return {"roc_auc": metrics["roc_auc"]["macro"], "pr_auc": metrics["pr_auc"]["macro"],
            "best_epoch": meta["best_epoch"], "epochs": meta["epochs_run"]}


def shared_key(args) -> str:
    return (f"{demo_name(args)}" + (f"_share{args.labeled_share:g}" if args.labeled_share < 1 else "")
            + f"_h{args.heads}_crop{args.crop_seconds}_b{args.batch_size}_lr{args.lr}_"
            f"e{args.max_epochs}_s{args.steps_per_epoch}_p{args.patience}_v{args.valid_chunks}"
            + (f"_decay{args.lr_decay}x{args.lr_patience}" if args.lr_decay < 1 else "")
            + (f"_ema{args.ema_decay}" if args.ema_decay > 0 else "")
            + (f"_{args.select_by}" if args.select_by != "valid_loss" else ""))


def teacher_key(args) -> str:
    """Runs are cached by what determines them: a teacher by the shared and teacher settings,
    students additionally by the student settings (so student variants reuse their teacher)."""
    return (f"{shared_key(args)}_t{args.teacher[0]}x{args.teacher[1]}_{args.teacher_noise}_"
            f"{args.noise_prob}_{args.teacher_dropout}_{args.teacher_drop_path}"
            + (f"_anneal{args.teacher_anneal_epochs}" if args.teacher_anneal_epochs else ""))


def student_lr(args, name: str) -> float:
    """A student's learning rate: its own (--kd-lr, --ke-lr) or --lr."""
    return getattr(args, f"{name}_lr") or args.lr


def student_key(args) -> str:
    return (f"kd{args.kd[0]}x{args.kd[1]}_ke{args.ke[0]}x{args.ke[1]}_{args.noise}_"
            f"{args.noise_prob}_{args.student_dropout}_{args.student_drop_path}_"
            f"pl{args.pseudo_chunks}_blend{args.label_blend}"
            + (f"_b{args.student_batch_size}" if args.student_batch_size != args.batch_size else "")
            + (f"_{args.pseudo_mode}{args.pseudo_threshold:g}" if args.pseudo_mode != "soft" else "")
            + (f"_lr{args.labeled_ratio:g}" if args.labeled_ratio != 0.5 else "")
            + (f"_pw{args.pseudo_weight:g}" if args.pseudo_weight != 1 else "")
            + ("_trust" if args.pseudo_tag_weights != "none" else "")
            + (f"_{args.pseudo_targets}" if args.pseudo_targets != "song" else "")
            + (f"_T{args.pseudo_temperature:g}" if args.pseudo_temperature != 1 else "")
            + ("_init-frontend" if args.init_from_teacher == "frontend" else "")
            + (f"_anneal{args.student_anneal_epochs}" if args.student_anneal_epochs else "")
            + "".join(f"_{name}lr{student_lr(args, name):g}" for name in ("kd", "ke")
                      if student_lr(args, name) != args.lr))


def pseudo_label(args, teacher: Path, mels: Path, out: Path) -> Path:
    if out.exists():
        return out
    check(mtt(["pseudo-label", "--checkpoint", str(teacher), "--mels", str(mels),
               "--out", str(out), "--chunks", str(args.pseudo_chunks), "--device", "cpu",
               "--threads", "1"]), "pseudo-label")
    return out


def run_chain(args, root: Path, demo_seed: int, seed: int) -> dict:
    """Teacher -> pseudo-labels -> KD and KE students for one training seed; every model is
    evaluated on test (the figures reported) and valid (for choosing a recipe)."""
    torch.set_num_threads(1)
    teacher_runs = root / "runs" / teacher_key(args) / f"seed{seed}"
    student_runs = teacher_runs / student_key(args)
    row = {"demo_seed": demo_seed, "seed": seed}
    teacher = train(args, root, teacher_runs / "teacher", seed, args.teacher)
    checkpoints = {"teacher": (teacher, teacher_runs / "teacher")}
    if args.oracle:
        oracle = train(args, root, teacher_runs / "oracle", seed, args.teacher,
                       train_tsv=oracle_train(root, demo_seed, args.labeled_share),
                       extra_mels=[root / "mels" / "student.h5"])
        checkpoints = {**checkpoints, "oracle": (oracle, teacher_runs / "oracle")}
        for model, (checkpoint, out) in checkpoints.items():
            row[model] = {"valid": evaluate(args, root, checkpoint,
                                            out / f"valid_c{args.eval_chunks}", "valid")}
        print("oracle run demo_seed={demo_seed} seed={seed}: ".format(**row) + "  ".join(
            f"{m} valid roc={row[m]['valid']['roc_auc']:.4f} pr={row[m]['valid']['pr_auc']:.4f} "
            f"(best epoch {row[m]['valid']['best_epoch']}/{row[m]['valid']['epochs']})"
            for m in checkpoints), file=sys.stderr, flush=True)
        return row
    labels = (pseudo_label(args, teacher, root / "mels" / "student.h5",
                           teacher_runs / f"pseudo_labels_c{args.pseudo_chunks}.h5")
              if args.students else None)
    labeled = None
    if args.label_blend > 0:
        labeled = pseudo_label(args, teacher, root / "mels" / "train.h5",
                               teacher_runs / f"train_predictions_c{args.pseudo_chunks}.h5")
    for name in args.students:
        out = student_runs / name
        checkpoints[name] = (train(args, root, out, seed, getattr(args, name), labels, labeled,
                                   teacher=teacher, lr=student_lr(args, name)), out)
    for round_ in range(2, args.rounds + 1):  # each student is its own next teacher
        for name in args.students:
            previous, previous_out = checkpoints[name if round_ == 2 else f"{name}{round_ - 1}"]
            round_labels = pseudo_label(args, previous, root / "mels" / "student.h5",
                                        previous_out / f"pseudo_labels_c{args.pseudo_chunks}.h5")
            out = student_runs / f"{name}_round{round_}"
            checkpoints[f"{name}{round_}"] = (train(args, root, out, seed, getattr(args, name),
                                                    round_labels, teacher=previous,
                                                    lr=student_lr(args, name)), out)
    if args.with_oracle is not None and (not args.with_oracle or seed in args.with_oracle):
        out = teacher_runs / "oracle"
        checkpoints["oracle"] = (train(args, root, out, seed, args.teacher,
                                       train_tsv=oracle_train(root, demo_seed, args.labeled_share),
                                       extra_mels=[root / "mels" / "student.h5"]), out)
    for model, (checkpoint, out) in checkpoints.items():
        row[model] = evaluate(args, root, checkpoint, out / f"test_c{args.eval_chunks}")
        row[model]["valid"] = evaluate(args, root, checkpoint, out / f"valid_c{args.eval_chunks}",
                                       "valid")
    teacher_test = read_predictions(teacher_runs / "teacher" / f"test_c{args.eval_chunks}"
                                    / "predictions.h5")
    for model in checkpoints:
        if model != "teacher":
            row[model]["paired"] = paired_vs_teacher(
                read_predictions(checkpoints[model][1] / f"test_c{args.eval_chunks}"
                                 / "predictions.h5"), teacher_test)
    print("run demo_seed={demo_seed} seed={seed}: ".format(**row) + "  ".join(
        f"{m} roc={row[m]['roc_auc']:.4f} pr={row[m]['pr_auc']:.4f} "
        f"(best epoch {row[m]['best_epoch']}/{row[m]['epochs']})" for m in ("teacher", *args.students)),
        file=sys.stderr, flush=True)
    return row


def paired_vs_teacher(model: dict, teacher: dict, n_resamples: int = 1000) -> dict:
    """Model - teacher on the same test songs, with the paired bootstrap interval."""
    return {metric: [entry["difference"], entry["ci_low"], entry["ci_high"]]
            for metric, entry in paired_report(model, teacher, n_resamples).items()}


def plot(results, models, path: Path):
    """Bars: mean test macro ROC-AUC and PR-AUC per model, whiskers: std over runs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric, title in zip(axes, ("roc_auc", "pr_auc"), ("ROC-AUC", "PR-AUC")):
        stats = [mean_std([r[m][metric] for r in runs_of(results, m)]) for m in models]
        ax.bar(range(len(models)), [m for m, _ in stats], yerr=[s for _, s in stats],
               capsize=4, color=[COLORS.get(m.rstrip("0123456789"), "#9467bd") for m in models])
        low = min(m - s for m, s in stats)
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(m + s for m, s in stats) + 0.02))
        runs = [len(runs_of(results, m)) for m in models]
        ax.set_xticks(range(len(models)), [f"{m.upper() if m != 'teacher' else m}\n{n} runs"
                                           for m, n in zip(models, runs)])
        ax.set_title(f"test macro {title}: mean ± std over runs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


COLORS = {"teacher": "#777777", "kd": "#1f77b4", "ke": "#ff7f0e", "oracle": "#2ca02c"}


def runs_of(results, model):
    """The runs that trained `model` (the oracle may be in some chains only)."""
    return [r for r in results if model in r]


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    args = parse_args()
    models = ("teacher", *args.students,
              *[f"{s}{r}" for r in range(2, args.rounds + 1) for s in args.students],
              *(["oracle"] if args.with_oracle is not None else []))
    started = time.perf_counter()
    recipe = (f"teacher C{args.teacher[0]}/D{args.teacher[1]}, KD C{args.kd[0]}/D{args.kd[1]}, "
              f"KE C{args.ke[0]}/D{args.ke[1]}, {args.heads} heads; crop {args.crop_seconds} s, batch "
              f"{args.batch_size}, lr {args.lr} (KD {student_lr(args, 'kd')}, KE "
              f"{student_lr(args, 'ke')}), {args.steps_per_epoch} steps/epoch, <= "
              f"{args.max_epochs} epochs, patience {args.patience}, lr x{args.lr_decay} after "
              f"{args.lr_patience} epochs without progress, annealed to 0 over "
              f"{args.teacher_anneal_epochs or '-'} (teacher) / "
              f"{args.student_anneal_epochs or '-'} (students) epochs, weight EMA "
              f"{args.ema_decay}; "
              f"student noise {args.noise} p={args.noise_prob}, dropout {args.student_dropout}, "
              f"drop-path {args.student_drop_path}, label blend {args.label_blend}, front end from "
              f"{'the teacher' if args.init_from_teacher == 'frontend' else 'scratch'}; teacher noise "
              f"{args.teacher_noise}, dropout {args.teacher_dropout}, drop-path "
              f"{args.teacher_drop_path}")
    print(f"recipe: {recipe}", file=sys.stderr)
    roots = {demo_seed: prepare_demo(args, demo_seed)
             for demo_seed in args.demo_seeds}
    chains = [(args, roots[d], d, seed) for d in args.demo_seeds for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run_chain, *zip(*chains)))
    results_path(args).write_text(json.dumps(results, indent=1))

    minutes = (time.perf_counter() - started) / 60
    if args.oracle:
        report_oracle(args, results, recipe, minutes)
        return
    print(f"\n{len(results)} runs ({len(args.demo_seeds)} demo seeds x {len(args.seeds)} "
          f"training seeds), demo {demo_name(args)}; {recipe}")
    summary = {}
    for metric in ("roc_auc", "pr_auc"):
        for model in models:
            m, s = mean_std([r[model][metric] for r in runs_of(results, model)])
            summary[f"{model}_{metric}"] = m
            print(f"{model:8s} test macro {metric}: {m:.4f} ± {s:.4f}")
        for model in models[1:]:
            gains = [r[model][metric] - r["teacher"][metric] for r in runs_of(results, model)]
            m, s = mean_std(gains)
            wins = sum(g > 0 for g in gains)
            summary[f"{model}_gain_{metric}"] = m
            summary[f"{model}_wins_{metric}"] = f"{wins}/{len(gains)}"
            print(f"{model} - teacher {metric}: {m:+.4f} ± {s:.4f} (student better in "
                  f"{wins}/{len(gains)} runs)")
    for metric in ("roc_auc", "pr_auc"):
        print(f"valid macro {metric}: " + "  ".join(
            "{} {:.4f} ± {:.4f}".format(model, *mean_std([r[model]["valid"][metric]
                                                          for r in runs_of(results, model)]))
            for model in models))
    print("per run, model - teacher on the same test songs [paired 95% bootstrap interval]:")
    for r in results:
        print(f"  demo seed {r['demo_seed']}, training seed {r['seed']}: " + "  ".join(
            f"{m} " + " ".join("{} {:+.4f} [{:+.4f}, {:+.4f}]".format(
                metric.replace("_auc", ""), *r[m]["paired"][metric])
                for metric in ("roc_auc", "pr_auc")) for m in models[1:] if m in r))
    if args.figure:
        plot(results, models, args.figure)
    for demo_seed in args.demo_seeds:
        rows = [r for r in results if r["demo_seed"] == demo_seed]
        print(f"demo seed {demo_seed}: " + "  ".join(
            f"{m} roc={statistics.mean(r[m]['roc_auc'] for r in runs_of(rows, m)):.4f} "
            f"pr={statistics.mean(r[m]['pr_auc'] for r in runs_of(rows, m)):.4f}" for m in models))
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in summary.items())
          + f" runs={len(results)} minutes={minutes:.1f}")


def report_oracle(args, results, recipe, minutes):
    """Validation headroom of the oracle over the teacher: mean, std and wins over runs."""
    print(f"\n{len(results)} oracle runs ({len(args.demo_seeds)} demo seeds x {len(args.seeds)} "
          f"training seeds), demo size {args.size}, labeled share {args.labeled_share:g}; {recipe}")
    summary = {}
    for metric in ("roc_auc", "pr_auc"):
        for model in ("teacher", "oracle"):
            m, s = mean_std([r[model]["valid"][metric] for r in results])
            summary[f"{model}_valid_{metric}"] = m
            print(f"{model:8s} valid macro {metric}: {m:.4f} ± {s:.4f}")
        gains = [r["oracle"]["valid"][metric] - r["teacher"]["valid"][metric] for r in results]
        m, s = mean_std(gains)
        summary[f"headroom_{metric}"] = m
        summary[f"oracle_wins_{metric}"] = f"{sum(g > 0 for g in gains)}/{len(gains)}"
        print(f"oracle - teacher valid {metric}: {m:+.4f} ± {s:.4f}")
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in summary.items())
          + f" labeled_share={args.labeled_share:g} runs={len(results)} minutes={minutes:.1f}")


if __name__ == "__main__":
    main()
