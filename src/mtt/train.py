"""`mtt train`: train a teacher, or a noisy student on labeled plus pseudo-labeled songs.

Random crops from the mel shards, binary cross-entropy, Adam. Each epoch ends with a song-level
validation (loss, macro ROC-AUC and PR-AUC), a row in `history.csv`, `best.ckpt` when the
validation score chosen by `--select-by` improved (loss by default), and a resumable `last.ckpt` (model, optimizer, scheduler, RNG states,
counters), all written atomically. Rerunning the command resumes from `last.ckpt`; a finished run
(early-stopped or at the epoch limit) is left as it is. Several GPUs: start with `torchrun`.

Noisy student (`--pseudo-labels`): every batch holds labeled and pseudo-labeled crops
(`--labeled-ratio`), loss = BCE(labeled) + `--pseudo-weight` * BCE(pseudo-labeled), and the
student's inputs are noised in the mel domain (`mtt.noise`) while dropout / stochastic depth noise
the model.
"""
import argparse
import csv
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import atomic_path
from .checkpoint import load_checkpoint, one_line, save_checkpoint
from .data import (LABELED, CropDataset, EpochBatchPlan, keep_stored, pseudo_targets,
                   read_pseudo_labels, read_split)
from .mel_store import MelStore
from .metrics import evaluable_tags, per_tag_scores
from .models import build_model
from .noise import NOISE_KINDS, MelNoise, parse_noise_kinds
from .predict import (PRECISIONS, autocast, crop_frames, predict_songs, resolve_device,
                      select_precision, set_threads)
from .tag_trust import MODES as TAG_TRUST_MODES, teacher_tag_weights
from .tags import read_tag_list

HISTORY_COLUMNS = ["epoch", "train_loss", "valid_loss", "valid_roc_auc", "valid_pr_auc", "lr",
                   "seconds"]
# Settings a resumed run must share with the run that wrote last.ckpt (others, like the epoch
# limit, patience, workers or device, may change between attempts).
RUN_IDENTITY = ["model", "model_config", "tags", "seed", "batch_size", "lr", "crop_frames",
                "steps_per_epoch", "labeled_ratio", "pseudo_weight", "pseudo_mode",
                "pseudo_threshold", "noise", "noise_prob", "warmup_steps", "lr_decay", "lr_patience",
                "label_blend", "ema_decay", "select_by", "precision", "pseudo_tag_weights",
                "pseudo_targets", "pseudo_temperature"]


# Settings added after last.ckpt files were first written: an older file ran with these values.
IDENTITY_DEFAULTS = {"lr_decay": 1.0, "lr_patience": None, "label_blend": 0.0, "ema_decay": 0.0,
                     "select_by": "valid_loss", "precision": "fp32", "pseudo_tag_weights": "none",
                     "pseudo_targets": "song", "pseudo_temperature": 1.0}
# --select-by: the validation score that picks the kept epoch and counts the patience
SELECT_BY = {"valid_loss": "lowest validation loss",
             "valid_roc_auc": "highest validation macro ROC-AUC",
             "valid_pr_auc": "highest validation macro PR-AUC",
             "valid_auc": "highest mean of validation macro ROC-AUC and PR-AUC"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, type=Path, help="training split TSV")
    data.add_argument("--valid", required=True, type=Path, help="validation split TSV")
    data.add_argument("--tags", required=True, type=Path, help="tag list (model output order)")
    data.add_argument("--mels", required=True, nargs="+", type=Path,
                      help="mel shards holding the train and valid songs")
    data.add_argument("--out", required=True, type=Path, help="output folder")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="transformer", choices=["transformer", "resnet"])
    model.add_argument("--preset", choices=["teacher", "compact_student"],
                       help="transformer size preset (teacher C128/D256, compact_student C128/D64)")
    model.add_argument("--conv-channels", type=int, help="CNN channels C")
    model.add_argument("--width", type=int, help="transformer width D")
    model.add_argument("--layers", type=int, help="transformer layers")
    model.add_argument("--heads", type=int, help="attention heads")
    model.add_argument("--dropout", type=float, help="dropout (model noise)")
    model.add_argument("--drop-path", type=float, help="stochastic depth rate (model noise)")
    model.add_argument("--crop-seconds", type=float,
                       help="training crop / validation chunk length (default: the model's, 10 s "
                            "for the transformer)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=32)
    opt.add_argument("--lr", type=float, default=1e-4)
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    opt.add_argument("--lr-decay", type=float, default=1.0,
                     help="multiply the learning rate by this after --lr-patience epochs without "
                          "a lower validation loss (default 1: a constant rate)")
    opt.add_argument("--lr-patience", type=int, default=3,
                     help="epochs without a lower validation loss before the rate decays")
    opt.add_argument("--ema-decay", type=float, default=0.0,
                     help="validate and keep an exponential moving average of the weights, "
                          "updated every step with this decay (e.g. 0.98); default 0: the raw "
                          "weights")
    opt.add_argument("--select-by", choices=sorted(SELECT_BY), default="valid_loss",
                     help="the epoch kept as best.ckpt, and the one early stopping counts from: "
                     + "; ".join(f"{k}: {v}" for k, v in SELECT_BY.items()))
    opt.add_argument("--max-epochs", type=int, default=200)
    opt.add_argument("--patience", type=int, default=40,
                     help="stop after this many epochs without a lower validation loss")
    opt.add_argument("--steps-per-epoch", type=int,
                     help="batches per epoch (default: one pass over the labeled training songs)")
    opt.add_argument("--valid-chunks", type=int, default=8,
                     help="evenly spaced chunks per validation song (predictions averaged)")
    opt.add_argument("--workers", type=int, help="data-loader processes (default: 0 on CPU, 4 on GPU)")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--fresh-unless-interrupted", action="store_true",
                     help="start over (deleting last.ckpt) unless it holds an unfinished run with "
                     "these settings and these input files (same sizes and modification times); "
                     "for workflow managers, which rerun a finished job only to redo it")
    opt.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    opt.add_argument("--precision", choices=PRECISIONS, default="auto",
                     help="fp32, bf16 autocast, or auto (default): bf16 where it is faster, on "
                          "CUDA with bf16 support or a CPU with AMX; fp32 elsewhere")
    opt.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    student = parser.add_argument_group("noisy student")
    student.add_argument("--pseudo-labels", nargs="+", type=Path, default=[],
                         help="pseudo-label shards from `mtt pseudo-label` (makes this a student)")
    student.add_argument("--unlabeled-mels", nargs="+", type=Path, default=[],
                         help="mel shards of the pseudo-labeled songs (default: --mels)")
    student.add_argument("--labeled-ratio", type=float, default=0.5,
                         help="share of labeled crops in a batch")
    student.add_argument("--pseudo-weight", type=float, default=1.0,
                         help="weight of the pseudo-label loss")
    student.add_argument("--pseudo-mode", choices=["soft", "hard", "threshold"], default="soft")
    student.add_argument("--pseudo-temperature", type=float, default=1.0,
                         help="soft mode: sharpen pseudo-labels as sigmoid(logit(p) / T) "
                         "(default 1: the teacher's probabilities)")
    student.add_argument("--pseudo-threshold", type=float, default=0.5,
                         help="hard: positive at p >= T; threshold: keep p >= T and p <= 1 - T")
    student.add_argument("--labeled-pseudo-labels", nargs="+", type=Path, default=[],
                         help="the teacher's predictions for the labeled training songs "
                         "(`mtt pseudo-label` on their shards), for --label-blend")
    student.add_argument("--pseudo-tag-weights", choices=TAG_TRUST_MODES, default="none",
                         help="teacher_valid_auc: weight each tag's pseudo-label loss by "
                         "clip(2 * ROC-AUC - 1, 0, 1) of the teacher on the validation split "
                         "(needs --teacher-checkpoint); none: every tag weight 1")
    student.add_argument("--teacher-checkpoint", type=Path,
                         help="the checkpoint that made the pseudo-labels")
    student.add_argument("--pseudo-targets", choices=["song", "crop", "crop_noised"],
                         default="song",
                         help="song: the pseudo-label shard's song-level labels; crop: the "
                         "teacher (--teacher-checkpoint) labels the same clean crop the student "
                         "sees noised; crop_noised: the teacher sees the noised crop too")
    student.add_argument("--label-blend", type=float, default=0.0,
                         help="labeled targets = (1 - B) * labels + B * teacher predictions "
                         "(default 0: the labels alone)")
    student.add_argument("--noise", default="auto",
                         help=f"input noise kinds, comma-separated from {', '.join(NOISE_KINDS)}, "
                              "or none (default: all for a student, none for a teacher)")
    student.add_argument("--noise-prob", type=float, default=0.5,
                         help="probability of each noise kind per example")


def check_options(args) -> None:
    if args.pseudo_labels and args.pseudo_mode == "threshold" and \
            not 0.5 < args.pseudo_threshold < 1.0:  # at start, not on the first step
        raise ValueError(f"--pseudo-mode threshold needs --pseudo-threshold in (0.5, 1), "
                         f"not {args.pseudo_threshold:g}")
    for flag in ("batch_size", "max_epochs", "patience", "valid_chunks", "lr_patience"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        raise ValueError("--steps-per-epoch must be at least 1")
    if args.unlabeled_mels and not args.pseudo_labels:
        raise ValueError("--unlabeled-mels needs --pseudo-labels")
    if not 0.0 < args.lr_decay <= 1.0:
        raise ValueError("--lr-decay must be in (0, 1]")
    if not 0.0 <= args.ema_decay < 1.0:
        raise ValueError("--ema-decay must be in [0, 1)")
    if not 0.0 <= args.label_blend <= 1.0:
        raise ValueError("--label-blend must be in [0, 1]")
    if args.pseudo_targets != "song" and not (args.pseudo_labels and args.teacher_checkpoint):
        raise ValueError(f"--pseudo-targets {args.pseudo_targets} needs --pseudo-labels and "
                         "--teacher-checkpoint")
    if args.pseudo_temperature <= 0:
        raise ValueError("--pseudo-temperature must be positive")
    if args.pseudo_tag_weights != "none" and not (args.pseudo_labels and args.teacher_checkpoint):
        raise ValueError("--pseudo-tag-weights needs --pseudo-labels and --teacher-checkpoint")
    if args.label_blend > 0 and not args.labeled_pseudo_labels:
        raise ValueError("--label-blend needs --labeled-pseudo-labels")


def run(args) -> int:
    try:
        check_options(args)
        return Trainer(args).fit()
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"mtt train: error: {err}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------------ setup

def model_config(args) -> dict:
    """Constructor keywords from the preset and the explicit size/noise options."""
    if args.model == "resnet":
        for flag in ("preset", "width", "layers", "heads", "drop_path"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} does not apply to the resnet")
        config = {"channels": args.conv_channels, "dropout": args.dropout}
    else:
        config = {"conv_channels": args.conv_channels, "width": args.width, "layers": args.layers,
                  "heads": args.heads, "dropout": args.dropout, "drop_path": args.drop_path}
    return {k: v for k, v in config.items() if v is not None}


def teacher_predictions(paths, tags, track_ids) -> np.ndarray:
    """The teacher's song-level predictions for `track_ids`, in that order, from pseudo-label
    shards; every song must have one."""
    ids, probs = read_pseudo_labels(paths, tags)
    row = {t: i for i, t in enumerate(ids)}
    missing = [t for t in track_ids if t not in row]
    if missing:
        raise ValueError(f"{len(missing)} of {len(track_ids)} training songs (e.g. {missing[0]}) "
                         f"have no teacher prediction in {', '.join(map(str, paths))}")
    return probs[[row[t] for t in track_ids]]


def distributed_context():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def input_files_stamp(args) -> list:
    """(path, size, modification time) of every input file: a rebuilt shard or a new split
    changes it, as it makes a workflow manager rerun the job."""
    paths = [args.train, args.valid, args.tags, *args.mels, *args.pseudo_labels,
             *args.unlabeled_mels, *args.labeled_pseudo_labels]
    stamp = []
    for path in paths:
        info = Path(path).stat()
        stamp.append((str(Path(path).resolve()), info.st_size, info.st_mtime_ns))
    return stamp


def _numpy_state_plain(state: tuple) -> dict:
    """np.random.get_state() with its key array as a tensor (weights_only loads it)."""
    kind, keys, pos, has_gauss, gauss = state
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _numpy_state_tuple(state: dict) -> tuple:
    return (state["kind"], state["keys"].numpy().astype(np.uint32), state["pos"],
            state["has_gauss"], state["gauss"])


class Trainer:
    def __init__(self, args):
        self.args = args
        self.rank, self.world, local_rank = distributed_context()
        set_threads(args.threads)
        self.device = resolve_device(args.device)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.precision = select_precision(args.precision, self.device)  # "fp32" or "bf16"
        self.is_main = self.rank == 0
        self.out = args.out
        self.tags = read_tag_list(args.tags)
        if not self.tags:
            raise ValueError(f"{args.tags}: no tags")
        self.is_student = bool(args.pseudo_labels)
        noise = ("all" if self.is_student else "none") if args.noise == "auto" else args.noise
        self.noise_kinds = NOISE_KINDS if noise == "all" else parse_noise_kinds(noise)

        torch.manual_seed(args.seed)
        self.model = build_model(args.model, len(self.tags), preset=args.preset,
                                 **model_config(args)).to(self.device)
        self.frames = crop_frames(self.model, args.crop_seconds)
        self.identity = {
            "model": args.model, "model_config": self.model.config, "tags": self.tags,
            "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
            "crop_frames": self.frames, "steps_per_epoch": args.steps_per_epoch,
            "labeled_ratio": args.labeled_ratio if self.is_student else None,
            "pseudo_weight": args.pseudo_weight if self.is_student else None,
            "pseudo_mode": args.pseudo_mode if self.is_student else None,
            "pseudo_threshold": args.pseudo_threshold if self.is_student else None,
            "noise": list(self.noise_kinds), "noise_prob": args.noise_prob,
            "warmup_steps": args.warmup_steps, "lr_decay": args.lr_decay,
            "lr_patience": args.lr_patience if args.lr_decay < 1 else None,
            "label_blend": args.label_blend, "ema_decay": args.ema_decay,
            "select_by": args.select_by,
            "precision": self.precision,
            "pseudo_tag_weights": args.pseudo_tag_weights if self.is_student else "none",
            "pseudo_targets": args.pseudo_targets if self.is_student else "song",
            "pseudo_temperature": args.pseudo_temperature if self.is_student else 1.0,
        }
        self._build_data()
        self.state = {"epoch": 0, "best_valid_loss": math.inf, "best_score": -math.inf,
                      "best_epoch": -1, "epochs_since_best": 0, "history": [], "lr_scale": 1.0,
                      "plateau": 0}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        warmup = max(0, args.warmup_steps)
        # per step: linear warm-up, times the decay that validation plateaus have brought so far
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: (min(1.0, (step + 1) / warmup) if warmup else 1.0)
            * self.state["lr_scale"])
        self.noise = MelNoise(self.noise_kinds, args.noise_prob, seed=[args.seed, self.rank])
        self.ddp_model = self.model
        if self.world > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        # --ema-decay: the averaged weights are the ones validated, kept and saved as best.ckpt
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay),
                                  use_buffers=True) if args.ema_decay > 0 else None)
        self.best_weights = None  # CPU copy of the best epoch's weights, also kept in last.ckpt
        self.inputs = input_files_stamp(args)

    def _build_data(self):
        args = self.args
        store = MelStore(args.mels)
        train_ids, train_labels = keep_stored(*read_split(args.train, self.tags), store, "train")
        if args.label_blend > 0:
            teacher = teacher_predictions(args.labeled_pseudo_labels, self.tags, train_ids)
            train_labels = (1 - args.label_blend) * train_labels + args.label_blend * teacher
        self.valid_ids, self.valid_labels = keep_stored(*read_split(args.valid, self.tags), store,
                                                        "valid")
        if not self.valid_ids:
            raise ValueError(f"{args.valid}: no validation song has a stored mel")
        self.valid_store = store
        pseudo = None
        if self.is_student:
            pseudo_store = MelStore(args.unlabeled_mels) if args.unlabeled_mels else store
            pseudo_ids, pseudo_probs = keep_stored(
                *read_pseudo_labels(args.pseudo_labels, self.tags), pseudo_store, "pseudo-labeled")
            if not pseudo_ids:
                raise ValueError("no pseudo-labeled song has a stored mel; pass the unlabeled "
                                 "songs' shards with --unlabeled-mels")
            pseudo = (pseudo_store, pseudo_ids, pseudo_probs)
        self.tag_weights = None
        if self.is_student and args.pseudo_tag_weights == "teacher_valid_auc":
            weights = teacher_tag_weights(args.teacher_checkpoint, self.tags, store,
                                          self.valid_ids, self.valid_labels, self.device,
                                          args.valid_chunks)
            self.tag_weights = torch.from_numpy(weights).to(self.device)
            if self.is_main:
                print("pseudo-label tag weights (teacher's validation ROC-AUC): " + ", ".join(
                    f"{t} {w:.2f}" for t, w in zip(self.tags, weights)), file=sys.stderr)
        self.crop_teacher = None
        if self.is_student and args.pseudo_targets != "song":
            self.crop_teacher, _ = load_checkpoint(args.teacher_checkpoint)
            self.crop_teacher.to(self.device).eval()
        self.dataset = CropDataset(self.frames, (store, train_ids, train_labels), pseudo)
        self.plan = EpochBatchPlan(len(train_ids), len(pseudo[1]) if pseudo else 0,
                                   args.batch_size, args.labeled_ratio, args.steps_per_epoch,
                                   args.seed, self.rank, self.world)
        workers = args.workers if args.workers is not None else (4 if self.device.type == "cuda" else 0)
        self.loader = DataLoader(self.dataset, batch_sampler=self.plan, num_workers=workers,
                                 pin_memory=self.device.type == "cuda",
                                 persistent_workers=workers > 0,
                                 # its own generator: the loader must not draw from the global
                                 # RNG (crop positions come from the plan), or a resumed run with
                                 # persistent workers would diverge
                                 generator=torch.Generator().manual_seed(args.seed))
        if self.is_main:
            print(f"train: {len(train_ids)} labeled songs"
                  + (f" + {len(pseudo[1])} pseudo-labeled" if pseudo else "")
                  + f", {len(self.plan)} steps/epoch of {self.plan.n_labeled} labeled"
                  + (f" + {self.plan.n_pseudo} pseudo-labeled" if pseudo else "")
                  + f" crops of {self.frames} frames; valid: {len(self.valid_ids)} songs",
                  file=sys.stderr)

    # -------------------------------------------------------------------------- checkpoints

    @property
    def last_path(self) -> Path:
        return self.out / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.ckpt"

    def _save_last(self):
        payload = {
            "identity": self.identity,
            "inputs": self.inputs,
            "state": self.state,
            "model": self.model.state_dict(),
            "best_model": self.best_weights,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": _numpy_state_plain(np.random.get_state()),
                "python": random.getstate(),
                "noise": self.noise.rng_state(),
            },
        }  # tensors and plain types only: read back with torch.load(weights_only=True)
        with atomic_path(self.last_path) as tmp:
            torch.save(payload, tmp)

    def _load_last(self) -> dict | None:
        """last.ckpt's payload, read with weights_only=True so that no file runs code.

        A file that cannot be read that way (written by an mtt before this format, truncated,
        or not ours) is an error of one line; with --fresh-unless-interrupted it is stale and
        removed, like a finished run's."""
        if not self.last_path.exists():
            return None
        try:
            payload = torch.load(self.last_path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or not {"identity", "state", "model",
                                                     "rng"} <= payload.keys():
                raise ValueError("not a last.ckpt of mtt train")
        except Exception as err:  # noqa: BLE001 - any failure: one line, never a traceback
            reason = one_line(err)
            if self.args.fresh_unless_interrupted:
                if self.world > 1:
                    dist.barrier()
                if self.is_main:
                    print(f"{self.last_path}: not a resumable checkpoint ({reason}); "
                          "starting over", file=sys.stderr)
                    self.last_path.unlink(missing_ok=True)
                if self.world > 1:
                    dist.barrier()
                return None
            raise ValueError(f"{self.last_path}: not a resumable checkpoint ({reason}); "
                             "delete it (or use --fresh-unless-interrupted) to start over") from None
        return payload

    @staticmethod
    def _stored_identity(payload: dict) -> dict:
        return {**IDENTITY_DEFAULTS, **payload["identity"]}

    def _discard_stale_last(self, payload: dict | None) -> dict | None:
        """--fresh-unless-interrupted: delete last.ckpt unless it is an unfinished run of these
        settings on these input files, the one case where resuming is what a rerun means.
        Returns the payload to resume from, or None."""
        if payload is None:
            return None
        reason = None
        if self._stored_identity(payload) != self.identity:
            reason = "a run with other settings"
        elif payload.get("inputs") != self.inputs:
            reason = "a run on other input files"
        else:
            finished = self._stop_reason(payload["state"])
            if finished is not None:
                reason = f"a finished run ({finished})"
        if reason is not None:  # every rank reaches the same verdict from the same file
            if self.world > 1:
                dist.barrier()  # all ranks have read it before it goes
            if self.is_main:
                print(f"{self.last_path}: left by {reason}; starting over", file=sys.stderr)
                self.last_path.unlink()
            if self.world > 1:
                dist.barrier()
            return None
        return payload

    def _resume(self, payload: dict | None) -> bool:
        """Restore the run saved in last.ckpt's `payload`; False when there is none."""
        if payload is None:
            return False
        stored = self._stored_identity(payload)
        if stored != self.identity:
            changed = [k for k in RUN_IDENTITY if stored.get(k) != self.identity.get(k)]
            raise ValueError(f"{self.last_path}: left by a run with other settings ({changed}); "
                             "use another --out or delete the folder to start over")
        self.model.load_state_dict(payload["model"])
        if self.ema is not None:
            self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = {"lr_scale": 1.0, "plateau": 0, **payload["state"]}
        self.best_weights = payload.get("best_model")
        if self.best_weights is None and self.best_path.exists():  # written by an older version
            try:
                self.best_weights = torch.load(self.best_path, map_location="cpu",
                                               weights_only=True)["state_dict"]
            except Exception as err:  # noqa: BLE001
                raise ValueError(f"{self.best_path}: not a readable mtt checkpoint "
                                 f"({one_line(err)})") from None
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(_numpy_state_tuple(rng["numpy"]))
        random.setstate(rng["python"])
        self.noise.set_rng_state(rng["noise"])
        return True

    def _write_history(self):
        with atomic_path(self.out / "history.csv") as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
                writer.writeheader()
                writer.writerows(self.state["history"])

    def _meta(self, stopped: str | None = None) -> dict:
        meta = {"role": "student" if self.is_student else "teacher",
                "best_epoch": self.state["best_epoch"],
                "best_valid_loss": self.state["best_valid_loss"],
                "select_by": self.args.select_by,
                "epochs_run": self.state["epoch"], "history": self.state["history"],
                "training": {k: v for k, v in self.identity.items() if k not in ("tags",)},
                "train_tsv": str(self.args.train), "valid_tsv": str(self.args.valid),
                "pseudo_labels": [str(p) for p in self.args.pseudo_labels]}
        if stopped:
            meta["stopped"] = stopped
        return meta

    # ---------------------------------------------------------------------------- training

    def _stop_reason(self, state: dict | None = None) -> str | None:
        state = self.state if state is None else state
        if state["epochs_since_best"] >= self.args.patience:
            better = SELECT_BY[self.args.select_by].replace("lowest", "lower").replace(
                "highest", "higher")
            return f"early stop: no {better} for {self.args.patience} epochs"
        if state["epoch"] >= self.args.max_epochs:
            return f"reached --max-epochs {self.args.max_epochs}"
        return None

    def fit(self) -> int:
        last = self._load_last()
        if self.args.fresh_unless_interrupted:
            last = self._discard_stale_last(last)
        resumed = self._resume(last)
        if (stopped := self._stop_reason()) is not None:
            if self.is_main:
                if self.best_path.exists() and (self.out / "history.csv").exists():
                    print(f"{self.out}: training already finished ({stopped}); nothing to do",
                          file=sys.stderr)
                else:  # outputs removed after the run (e.g. by a workflow manager): restore them
                    self._write_history()
                    self._save_best(self._meta(stopped))
                    print(f"{self.out}: training already finished ({stopped}); restored "
                          "best.ckpt and history.csv from last.ckpt", file=sys.stderr)
            return 0
        if resumed and self.is_main:
            print(f"resuming from {self.last_path} after epoch {self.state['epoch']}",
                  file=sys.stderr)
        writer = self._tensorboard()
        while (stopped := self._stop_reason()) is None:
            epoch = self.state["epoch"]
            started = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            lr = self.optimizer.param_groups[0]["lr"]  # of the epoch's last step
            valid = self._validate() if self.is_main else None
            valid_loss = self._broadcast(valid["loss"] if valid else 0.0)
            if not math.isfinite(valid_loss):
                raise ValueError(f"validation loss is {valid_loss} after epoch {epoch + 1}: "
                                 "training diverged (try a lower --lr)")
            score = self._broadcast(self._score(valid) if valid else 0.0)
            self.state["epoch"] = epoch + 1
            improved = (score > self.state.get("best_score", -self.state["best_valid_loss"])
                        or self.state["best_epoch"] < 0)
            if improved:
                self.state.update(best_valid_loss=valid_loss, best_score=score,
                                  best_epoch=epoch + 1, epochs_since_best=0)
                self.best_weights = {k: v.detach().cpu().clone()
                                     for k, v in self.validated_model.state_dict().items()}
            else:
                self.state["epochs_since_best"] += 1
            self._decay_on_plateau(improved)
            if self.is_main:
                row = {"epoch": epoch + 1, "train_loss": round(train_loss, 6),
                       "valid_loss": round(valid_loss, 6),
                       "valid_roc_auc": round(valid["roc_auc"], 6),
                       "valid_pr_auc": round(valid["pr_auc"], 6),
                       "lr": float(f"{lr:.6g}"),
                       "seconds": round(time.perf_counter() - started, 2)}
                self.state["history"].append(row)
                if improved or not self.best_path.exists():
                    self._save_best(self._meta())
                self._write_history()
                self._save_last()
                print(f"epoch {row['epoch']}: train_loss={row['train_loss']:.4f} "
                      f"valid_loss={row['valid_loss']:.4f} roc_auc={row['valid_roc_auc']:.4f} "
                      f"pr_auc={row['valid_pr_auc']:.4f} ({row['seconds']:.0f} s)"
                      + (" *" if improved else ""), file=sys.stderr)
                if writer:
                    for key in HISTORY_COLUMNS[1:5]:
                        writer.add_scalar(key, row[key], row["epoch"])
            if self.world > 1:
                dist.barrier()
        if self.is_main:
            self._save_best(self._meta(stopped))  # the final metadata: whole history, why stopped
            print(f"{self.out}: {stopped}; best epoch {self.state['best_epoch']} "
                  f"(valid_loss={self.state['best_valid_loss']:.4f}, {self.args.select_by} "
                  f"score={self.state.get('best_score', float('nan')):.4f})", file=sys.stderr)
        if writer:
            writer.close()
        if self.world > 1:
            dist.destroy_process_group()
        return 0

    def _score(self, valid: dict) -> float:
        """The --select-by score of one validation, higher is better; a metric that is not
        defined (no tag with positives) counts as no improvement."""
        by = self.args.select_by
        if by == "valid_loss":
            return -valid["loss"]
        value = ((valid["roc_auc"] + valid["pr_auc"]) / 2 if by == "valid_auc"
                 else valid[by.removeprefix("valid_")])
        return value if math.isfinite(value) else -math.inf

    def _decay_on_plateau(self, improved: bool):
        """--lr-decay: after --lr-patience epochs without a better --select-by score (counted from
        the best epoch or the last decay), scale the learning rate down."""
        self.state["plateau"] = 0 if improved else self.state["plateau"] + 1
        if self.args.lr_decay < 1 and self.state["plateau"] >= self.args.lr_patience:
            self.state["lr_scale"] *= self.args.lr_decay
            self.state["plateau"] = 0
            for group in self.optimizer.param_groups:  # takes effect from the next step on
                group["lr"] *= self.args.lr_decay
            if self.is_main:
                print(f"learning rate x{self.args.lr_decay:g} -> "
                      f"{self.args.lr * self.state['lr_scale']:.3g}", file=sys.stderr)

    def _save_best(self, meta: dict):
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            best = build_model(self.args.model, **self.model.config)
        best.load_state_dict(self.best_weights)
        save_checkpoint(self.best_path, best, self.tags, meta)

    @property
    def validated_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _train_epoch(self, epoch: int) -> float:
        self.ddp_model.train()
        self.noise.train()
        self.plan.set_epoch(epoch)
        total, count = 0.0, 0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}", unit="step", leave=False,
                   disable=not self.is_main, mininterval=10)
        for mels, targets, sources in bar:
            loss = self._step(mels.to(self.device, non_blocking=True),
                              targets.to(self.device, non_blocking=True), sources)
            total += loss
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        mean = torch.tensor([total, count], dtype=torch.float64, device=self.device)
        if self.world > 1:
            dist.all_reduce(mean)
        return float(mean[0] / mean[1])

    def _step(self, mels, targets, sources) -> float:
        labeled = (sources == LABELED).to(self.device)
        if self.is_student:
            x_l, y_l, _ = self.noise(mels[labeled], targets[labeled])
            x_p, y_p = mels[~labeled], targets[~labeled]
            if self.args.pseudo_targets == "crop":
                y_p = self._teacher_probs(x_p)
            y_p, w_p = pseudo_targets(y_p, self.args.pseudo_mode, self.args.pseudo_threshold,
                                      self.args.pseudo_temperature)
            x_p, y_p, w_p = self.noise(x_p, y_p, w_p)
            if self.args.pseudo_targets == "crop_noised":
                y_p, w_p = pseudo_targets(self._teacher_probs(x_p), self.args.pseudo_mode,
                                          self.args.pseudo_threshold, self.args.pseudo_temperature)
            x = torch.cat([x_l, x_p])
        else:
            x, y_l, _ = self.noise(mels, targets)
        with autocast(self.device, self.precision):
            logits = self.ddp_model(x).float()
        loss = F.binary_cross_entropy_with_logits(logits[:len(y_l)], y_l)
        if self.is_student:
            pseudo = F.binary_cross_entropy_with_logits(logits[len(y_l):], y_p, reduction="none")
            if self.tag_weights is not None:  # the denominator stays: untrusted tags add nothing
                pseudo = pseudo * self.tag_weights
            pseudo = (pseudo * w_p).sum() / w_p.sum().clamp_min(1.0)
            loss = loss + self.args.pseudo_weight * pseudo
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return float(loss.detach())

    @torch.no_grad()
    def _teacher_probs(self, x):
        with autocast(self.device, self.precision):
            return torch.sigmoid(self.crop_teacher(x).float())

    def _validate(self) -> dict:
        probs = predict_songs(self.validated_model, self.valid_store, self.valid_ids, self.device,
                              chunks=self.args.valid_chunks, frames=self.frames,
                              batch_size=max(self.args.batch_size, self.args.valid_chunks),
                              precision=self.precision)
        labels = self.valid_labels
        clipped = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
        roc, pr = per_tag_scores(labels, probs)
        mask = evaluable_tags(labels)
        nan = float("nan")
        return {"loss": float(loss), "roc_auc": float(np.mean(roc[mask])) if mask.any() else nan,
                "pr_auc": float(np.mean(pr[mask])) if mask.any() else nan}

    def _broadcast(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor[0])

    def _tensorboard(self):
        if not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.out / "tensorboard"))
