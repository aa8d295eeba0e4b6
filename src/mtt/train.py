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

The options of a run are `TrainConfig` (`mtt.train_config`); resuming from last.ckpt is
`mtt.resume`.
"""
import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checks import output_folder
from . import resume
from .atomic import atomic_path
from .checkpoint import load_checkpoint, save_checkpoint
from .data import LABELED, CropDataset, EpochBatchPlan, keep_stored, pseudo_targets
from .formats.pseudo_labels import read_pseudo_labels
from .formats.split_folder import read_split, read_tag_list
from .mel_store import MelStore
from .metrics import evaluable_tags, per_tag_scores
from .models import build_model, to_channels_last
from .noise import MelNoise
from .inference.device import (autocast, channels_last_faster, default_batch_size,
                               inference_model, resolve_device, select_precision, set_threads)
from .inference.songs import crop_frames, predict_songs
from .tag_trust import teacher_tag_weights
from .train_config import SELECT_BY, TrainConfig

LOG_EVERY = 50  # steps between reads of the running training loss (a host-device sync on a GPU)
HISTORY_COLUMNS = ["epoch", "train_loss", "valid_loss", "valid_roc_auc", "valid_pr_auc", "lr",
                   "seconds"]


@dataclass(frozen=True)
class TrainFiles:
    """The files of a training run, arguments of `mtt train` beside its options: what it reads
    (stamped into last.ckpt: other files, another run) and where it writes (`out`)."""
    train: Path
    valid: Path
    tags: Path
    mels: list
    out: Path
    pseudo_labels: list = ()
    unlabeled_mels: list = ()
    labeled_pseudo_labels: list = ()
    teacher_checkpoint: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainFiles":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @property
    def is_student(self) -> bool:
        return bool(self.pseudo_labels)

    def stamp(self) -> list:
        return resume.input_files_stamp([self.train, self.valid, self.tags, *self.mels,
                                         *self.pseudo_labels, *self.unlabeled_mels,
                                         *self.labeled_pseudo_labels])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, type=Path, help="training split TSV")
    data.add_argument("--valid", required=True, type=Path, help="validation split TSV")
    data.add_argument("--tags", required=True, type=Path, help="tag list (model output order)")
    data.add_argument("--mels", required=True, nargs="+", type=Path,
                      help="mel shards holding the train and valid songs")
    data.add_argument("--out", required=True, type=output_folder, help="output folder")
    groups = {title: parser.add_argument_group(title)
              for title in ("model", "optimisation", "noisy student")}
    student = groups["noisy student"]
    student.add_argument("--pseudo-labels", nargs="+", type=Path, default=[],
                         help="pseudo-label shards from `mtt pseudo-label` (makes this a student)")
    student.add_argument("--unlabeled-mels", nargs="+", type=Path, default=[],
                         help="mel shards of the pseudo-labeled songs (default: --mels)")
    student.add_argument("--labeled-pseudo-labels", nargs="+", type=Path, default=[],
                         help="the teacher's predictions for the labeled training songs "
                         "(`mtt pseudo-label` on their shards), for --label-blend")
    student.add_argument("--teacher-checkpoint", type=Path,
                         help="the checkpoint that made the pseudo-labels")
    TrainConfig.add_arguments(groups)  # every option of the run


def check_options(config: TrainConfig, files: TrainFiles) -> None:
    """The options' own checks, and the files they need."""
    config.check(student=files.is_student)
    if files.unlabeled_mels and not files.pseudo_labels:
        raise ValueError("--unlabeled-mels needs --pseudo-labels")
    if config.pseudo_targets != "song" and not (files.pseudo_labels and files.teacher_checkpoint):
        raise ValueError(f"--pseudo-targets {config.pseudo_targets} needs --pseudo-labels and "
                         "--teacher-checkpoint")
    if config.pseudo_tag_weights != "none" and not (files.pseudo_labels and
                                                    files.teacher_checkpoint):
        raise ValueError("--pseudo-tag-weights needs --pseudo-labels and --teacher-checkpoint")
    if config.label_blend > 0 and not files.labeled_pseudo_labels:
        raise ValueError("--label-blend needs --labeled-pseudo-labels")


def run(args) -> int:
    try:
        config, files = TrainConfig.from_args(args), TrainFiles.from_args(args)
        check_options(config, files)
        return Trainer(config, files).fit()
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"mtt train: error: {err}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- plain functions

def student_loss(logits, labeled_targets, pseudo_targets, pseudo_weights, pseudo_weight: float,
                 tag_weights=None):
    """BCE of the labeled crops (the first `len(labeled_targets)` rows of `logits`) plus
    `pseudo_weight` times the pseudo-labeled crops' BCE, each element weighted by its tag's
    weight (`tag_weights`, --pseudo-tag-weights) and its own (`pseudo_weights`: 0 where threshold
    mode leaves it out), over the sum of the own weights (at least 1: a tag weight of 0 adds
    nothing and takes nothing from the denominator)."""
    n = len(labeled_targets)
    loss = F.binary_cross_entropy_with_logits(logits[:n], labeled_targets)
    pseudo = F.binary_cross_entropy_with_logits(logits[n:], pseudo_targets, reduction="none")
    if tag_weights is not None:
        pseudo = pseudo * tag_weights
    pseudo = (pseudo * pseudo_weights).sum() / pseudo_weights.sum().clamp_min(1.0)
    return loss + pseudo_weight * pseudo


def stop_reason(state: dict, config: TrainConfig) -> str | None:
    """Why a run in `state` has stopped (early stopping, the epoch limit), or None."""
    if state["epochs_since_best"] >= config.patience:
        better = SELECT_BY[config.select_by].replace("lowest", "lower").replace(
            "highest", "higher")
        return f"early stop: no {better} for {config.patience} epochs"
    if state["epoch"] >= config.max_epochs:
        return f"reached --max-epochs {config.max_epochs}"
    return None


def selection_score(valid: dict, select_by: str) -> float:
    """The --select-by score of one validation, higher is better; a metric that is not
    defined (no tag with positives) counts as no improvement."""
    if select_by == "valid_loss":
        return -valid["loss"]
    value = ((valid["roc_auc"] + valid["pr_auc"]) / 2 if select_by == "valid_auc"
             else valid[select_by.removeprefix("valid_")])
    return value if math.isfinite(value) else -math.inf


def validation_scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Song-level BCE and macro ROC-AUC / PR-AUC over the tags with positives."""
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    roc, pr = per_tag_scores(labels, probs)
    mask = evaluable_tags(labels)
    nan = float("nan")
    return {"loss": float(loss), "roc_auc": float(np.mean(roc[mask])) if mask.any() else nan,
            "pr_auc": float(np.mean(pr[mask])) if mask.any() else nan}


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


def validation_share(n_songs: int, rank: int, world: int) -> range:
    """The validation songs (indices) rank `rank` of `world` predicts: contiguous, in order,
    the first ones one song longer when they do not divide evenly."""
    base, extra = divmod(n_songs, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def loader_workers(workers: int | None, device: torch.device, threads: int | None) -> int:
    """--workers, or by default 4 loader processes on CUDA (none on the CPU, where the step
    wants the cores), within the job's --threads: the main process keeps one of them."""
    if workers is not None:
        return workers
    if device.type != "cuda":
        return 0
    return 4 if threads is None else max(0, min(4, threads - 1))


def distributed_context():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def write_history(path: Path, rows: list) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)


def tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))


# ----------------------------------------------------------------------------- the run

class Trainer:
    def __init__(self, config: TrainConfig, files: TrainFiles):
        self.config, self.files = config, files
        self.rank, self.world, local_rank = distributed_context()
        set_threads(config.threads)
        self.device = resolve_device(config.device)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", local_rank)
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        self.out = files.out
        self.tags = read_tag_list(files.tags)
        if not self.tags:
            raise ValueError(f"{files.tags}: no tags")
        self.is_student = files.is_student
        self.noise_kinds = config.noise_kinds(self.is_student)

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(config.model, len(self.tags), preset=config.preset,
                                 **config.model_config()).to(self.device)
        if self.rank > 0:  # dropout and drop-path masks of their own on each rank (rank 0, and
            # a single process, keep the stream of config.seed)
            torch.manual_seed(resume.fresh_seed(config.seed, self.rank))
        # "fp32" or "bf16"; auto knows the model (small CNNs stay fp32 on bf16 CPUs)
        self.precision = select_precision(config.precision, self.device, model=self.model)
        if channels_last_faster(self.model, self.device, self.precision):
            to_channels_last(self.model)  # same weights, NHWC activations: faster small CNNs
        self.frames = crop_frames(self.model, config.crop_seconds)
        self.identity = config.identity(
            self.is_student, model_config=self.model.config, tags=self.tags,
            crop_frames=self.frames, noise=list(self.noise_kinds), precision=self.precision)
        self._build_data()
        self.state = {"epoch": 0, "best_valid_loss": math.inf, "best_score": -math.inf,
                      "best_epoch": -1, "epochs_since_best": 0, "history": [], "lr_scale": 1.0,
                      "plateau": 0}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        warmup = max(0, config.warmup_steps)
        # per step: linear warm-up, times the decay that validation plateaus have brought so far
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: (min(1.0, (step + 1) / warmup) if warmup else 1.0)
            * self.state["lr_scale"])
        self.noise = MelNoise(self.noise_kinds, config.noise_prob, seed=[config.seed, self.rank])
        self.ddp_model = self.model
        if self.world > 1:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        # --ema-decay: the averaged weights are the ones validated, kept and saved as best.ckpt
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                                  use_buffers=True) if config.ema_decay > 0 else None)
        self.best_weights = None  # CPU copy of the best epoch's weights, also kept in last.ckpt
        self.inputs = files.stamp()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Trainer":
        return cls(TrainConfig.from_args(args), TrainFiles.from_args(args))

    def _build_data(self):
        config, files = self.config, self.files
        store = MelStore(files.mels)
        train_ids, train_labels = keep_stored(*read_split(files.train, self.tags), store, "train")
        if config.label_blend > 0:
            teacher = teacher_predictions(files.labeled_pseudo_labels, self.tags, train_ids)
            train_labels = (1 - config.label_blend) * train_labels + config.label_blend * teacher
        self.valid_ids, self.valid_labels = keep_stored(*read_split(files.valid, self.tags), store,
                                                        "valid")
        if not self.valid_ids:
            raise ValueError(f"{files.valid}: no validation song has a stored mel")
        self.valid_store = store
        pseudo = None
        if self.is_student:
            pseudo_store = MelStore(files.unlabeled_mels) if files.unlabeled_mels else store
            pseudo_ids, pseudo_probs = keep_stored(
                *read_pseudo_labels(files.pseudo_labels, self.tags), pseudo_store,
                "pseudo-labeled")
            if not pseudo_ids:
                raise ValueError("no pseudo-labeled song has a stored mel; pass the unlabeled "
                                 "songs' shards with --unlabeled-mels")
            pseudo = (pseudo_store, pseudo_ids, pseudo_probs)
        self.tag_weights = None
        if self.is_student and config.pseudo_tag_weights == "teacher_valid_auc":
            weights = teacher_tag_weights(files.teacher_checkpoint, self.tags, store,
                                          self.valid_ids, self.valid_labels, self.device,
                                          config.valid_chunks, precision=self.precision)
            self.tag_weights = torch.from_numpy(weights).to(self.device)
            self._log("pseudo-label tag weights (teacher's validation ROC-AUC): " + ", ".join(
                f"{t} {w:.2f}" for t, w in zip(self.tags, weights)))
        self.crop_teacher = None
        if self.is_student and config.pseudo_targets != "song":
            teacher, _ = load_checkpoint(files.teacher_checkpoint)
            self.crop_teacher = inference_model(teacher.to(self.device).eval(), self.device,
                                                self.precision)
        self.dataset = CropDataset(self.frames, (store, train_ids, train_labels), pseudo)
        self.plan = EpochBatchPlan(len(train_ids), len(pseudo[1]) if pseudo else 0,
                                   config.batch_size, config.labeled_ratio,
                                   config.steps_per_epoch, config.seed, self.rank, self.world)
        workers = loader_workers(config.workers, self.device, config.threads)
        self.loader = DataLoader(self.dataset, batch_sampler=self.plan, num_workers=workers,
                                 pin_memory=self.device.type == "cuda",
                                 persistent_workers=workers > 0,
                                 # its own generator: the loader must not draw from the global
                                 # RNG (crop positions come from the plan), or a resumed run with
                                 # persistent workers would diverge
                                 generator=torch.Generator().manual_seed(config.seed))
        self._log(f"train: {len(train_ids)} labeled songs"
                  + (f" + {len(pseudo[1])} pseudo-labeled" if pseudo else "")
                  + f", {len(self.plan)} steps/epoch of {self.plan.n_labeled} labeled"
                  + (f" + {self.plan.n_pseudo} pseudo-labeled" if pseudo else "")
                  + f" crops of {self.frames} frames; valid: {len(self.valid_ids)} songs")

    # ---------------------------------------------------------------------------- training

    def fit(self) -> int:
        """Resume or start; then train an epoch, validate, keep the best weights and save, until
        early stopping or the epoch limit."""
        resumed = self._resume()
        if (stopped := stop_reason(self.state, self.config)) is not None:
            self._already_finished(stopped)
            return 0
        if resumed:
            self._log(f"resuming from {self.last_path} after epoch {self.state['epoch']}")
        writer = tensorboard_writer(self.out) if self.is_main else None
        while (stopped := stop_reason(self.state, self.config)) is None:
            epoch, started = self.state["epoch"], time.perf_counter()
            train_loss = self._train_epoch(epoch)
            lr = self.optimizer.param_groups[0]["lr"]  # of the epoch's last step
            valid = self._validate()  # every rank a share of the songs, every rank the scores
            valid_loss = valid["loss"]
            if not math.isfinite(valid_loss):
                raise ValueError(f"validation loss is {valid_loss} after epoch {epoch + 1}: "
                                 "training diverged (try a lower --lr)")
            score = selection_score(valid, self.config.select_by)
            improved = self._end_epoch(valid_loss, score)
            rank_rngs = self._gather_rng_states()  # every rank's streams, for rank 0 to save
            if self.is_main:
                row = {"epoch": epoch + 1, "train_loss": round(train_loss, 6),
                       "valid_loss": round(valid_loss, 6),
                       "valid_roc_auc": round(valid["roc_auc"], 6),
                       "valid_pr_auc": round(valid["pr_auc"], 6), "lr": float(f"{lr:.6g}"),
                       "seconds": round(time.perf_counter() - started, 2)}
                self._record(row, improved, writer, rank_rngs)
            if self.world > 1:
                dist.barrier()
        if self.is_main:
            self._save_best(self._meta(stopped))  # the final metadata: whole history, why stopped
            self._log(f"{self.out}: {stopped}; best epoch {self.state['best_epoch']} "
                      f"(valid_loss={self.state['best_valid_loss']:.4f}, "
                      f"{self.config.select_by} "
                      f"score={self.state.get('best_score', float('nan')):.4f})")
        if writer:
            writer.close()
        if self.world > 1:
            dist.destroy_process_group()
        return 0

    def _train_epoch(self, epoch: int) -> float:
        """One epoch's steps; returns the mean training loss over every rank's steps. The
        losses add up on the device (in float64, as a Python float would) and are read on the
        host once per LOG_EVERY steps (the progress bar) and at the end."""
        self.ddp_model.train()
        self.noise.train()
        self.plan.set_epoch(epoch)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        bar = tqdm(self.loader, desc=f"epoch {epoch + 1}", unit="step", leave=False,
                   disable=not self.is_main, mininterval=10)
        for mels, targets, sources in bar:
            loss = self._step(mels.to(self.device, non_blocking=True),
                              targets.to(self.device, non_blocking=True), sources)
            total += loss.double()
            count += 1
            if self.is_main and count % LOG_EVERY == 0:
                bar.set_postfix(loss=f"{float(total) / count:.4f}", refresh=False)
        mean = torch.stack([total, torch.tensor(float(count), dtype=torch.float64,
                                                device=self.device)])
        if self.world > 1:
            dist.all_reduce(mean)
        return float(mean[0] / mean[1])

    def _step(self, mels, targets, sources) -> torch.Tensor:
        x, y, y_pseudo, w_pseudo = self._batch(mels, targets, sources)
        with autocast(self.device, self.precision):
            logits = self.ddp_model(x).float()
        if self.is_student:
            loss = student_loss(logits, y, y_pseudo, w_pseudo, self.config.pseudo_weight,
                                self.tag_weights)
        else:
            loss = F.binary_cross_entropy_with_logits(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach()

    def _batch(self, mels, targets, sources):
        """The noised inputs (labeled crops first) and targets of one batch: (x, labeled
        targets, pseudo-label targets, their per-element weights); a teacher's has no pseudo
        part (None, None)."""
        if not self.is_student:
            x, y, _ = self.noise(mels, targets)
            return x, y, None, None
        c = self.config
        n = self.plan.n_labeled  # the plan puts a batch's labeled crops first
        if not (sources[:n] == LABELED).all() or (sources[n:] == LABELED).any():  # on the host
            raise RuntimeError("a batch's labeled crops must come first")
        x_l, y_l, _ = self.noise(mels[:n], targets[:n])
        x_p, y_p = mels[n:], targets[n:]
        if c.pseudo_targets == "crop":
            y_p = self._teacher_probs(x_p)
        y_p, w_p = pseudo_targets(y_p, c.pseudo_mode, c.pseudo_threshold, c.pseudo_temperature)
        x_p, y_p, w_p = self.noise(x_p, y_p, w_p)
        if c.pseudo_targets == "crop_noised":
            y_p, w_p = pseudo_targets(self._teacher_probs(x_p), c.pseudo_mode,
                                      c.pseudo_threshold, c.pseudo_temperature)
        return torch.cat([x_l, x_p]), y_l, y_p, w_p

    @torch.no_grad()
    def _teacher_probs(self, x):
        with autocast(self.device, self.precision):
            return torch.sigmoid(self.crop_teacher(x).float())

    @property
    def validated_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _validate(self) -> dict:
        """Song-level validation scores. With several processes each rank predicts its share
        of the songs (`validation_share`) with rank 0's weights and the shares are gathered, so
        every rank computes the same scores, those of one process (to float rounding)."""
        chunks = self.config.valid_chunks
        model = self.validated_model
        if self.world > 1:  # rank 0's weights and buffers (batch-norm statistics and their
            # moving average are each rank's own between DDP's broadcasts)
            for tensor in model.state_dict().values():
                if tensor.device == self.device:
                    dist.broadcast(tensor, src=0)
                else:  # e.g. the moving average's CPU counter: NCCL sends device tensors
                    on_device = tensor.to(self.device)
                    dist.broadcast(on_device, src=0)
                    tensor.copy_(on_device)
        share = validation_share(len(self.valid_ids), self.rank, self.world)
        batch_size = (max(self.config.batch_size, chunks) if self.device.type == "cpu"
                      else default_batch_size(self.device))
        probs = predict_songs(model, self.valid_store, [self.valid_ids[i] for i in share],
                              self.device, chunks=chunks, frames=self.frames,
                              batch_size=batch_size, precision=self.precision)
        if self.world > 1:
            probs = self._gather_rows(probs, len(self.valid_ids))
        return validation_scores(self.valid_labels, probs)

    def _gather_rows(self, rows: np.ndarray, total: int) -> np.ndarray:
        """Every rank's `rows` (its `validation_share`, in rank order), on every rank."""
        longest = -(-total // self.world)
        padded = torch.zeros(longest, rows.shape[1], dtype=torch.float32, device=self.device)
        padded[:len(rows)] = torch.from_numpy(rows).to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return np.concatenate([
            part[:len(validation_share(total, r, self.world))].cpu().numpy()
            for r, part in enumerate(parts)])

    def _gather_rng_states(self) -> list | None:
        """Every rank's RNG streams (`resume.rng_state`), in rank order, on rank 0 (None on
        the others)."""
        own = resume.rng_state(self.noise, self.device)
        if self.world == 1:
            return [own]
        states = [None] * self.world if self.is_main else None
        dist.gather_object(own, states, dst=0)
        return states

    def _end_epoch(self, valid_loss: float, score: float) -> bool:
        """Count the epoch; keep its weights if its score is the best so far (returns whether
        it is); decay the learning rate on a plateau."""
        self.state["epoch"] += 1
        improved = (score > self.state.get("best_score", -self.state["best_valid_loss"])
                    or self.state["best_epoch"] < 0)
        if improved:
            self.state.update(best_valid_loss=valid_loss, best_score=score,
                              best_epoch=self.state["epoch"], epochs_since_best=0)
            self.best_weights = {k: v.detach().cpu().clone()
                                 for k, v in self.validated_model.state_dict().items()}
        else:
            self.state["epochs_since_best"] += 1
        self._decay_on_plateau(improved)
        return improved

    def _decay_on_plateau(self, improved: bool):
        """--lr-decay: after --lr-patience epochs without a better --select-by score (counted from
        the best epoch or the last decay), scale the learning rate down."""
        c = self.config
        self.state["plateau"] = 0 if improved else self.state["plateau"] + 1
        if c.lr_decay < 1 and self.state["plateau"] >= c.lr_patience:
            self.state["lr_scale"] *= c.lr_decay
            self.state["plateau"] = 0
            for group in self.optimizer.param_groups:  # takes effect from the next step on
                group["lr"] *= c.lr_decay
            self._log(f"learning rate x{c.lr_decay:g} -> {c.lr * self.state['lr_scale']:.3g}")

    def _log(self, message: str) -> None:
        if self.is_main:
            print(message, file=sys.stderr)

    # ------------------------------------------------------------------- files of the run

    @property
    def last_path(self) -> Path:
        return self.out / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.ckpt"

    def _resume(self) -> bool:
        """Restore the run in last.ckpt, if there is one to resume (`mtt.resume`)."""
        fresh = self.config.fresh_unless_interrupted
        last = resume.load_last(self.last_path, fresh=fresh, rank=self.rank, world=self.world)
        if fresh:
            last = resume.discard_stale(
                self.last_path, last, identity=self.identity, inputs=self.inputs,
                finished=lambda state: stop_reason(state, self.config), rank=self.rank,
                world=self.world)
        if last is None:
            return False
        self.state, self.best_weights = resume.restore(
            self.last_path, last, identity=self.identity, model=self.model, ema=self.ema,
            optimizer=self.optimizer, scheduler=self.scheduler, noise=self.noise,
            best_path=self.best_path, rank=self.rank, world=self.world, device=self.device,
            seed=self.config.seed)
        return True

    def _already_finished(self, stopped: str) -> None:
        if not self.is_main:
            return
        if self.best_path.exists() and (self.out / "history.csv").exists():
            self._log(f"{self.out}: training already finished ({stopped}); nothing to do")
        else:  # outputs removed after the run (e.g. by a workflow manager): restore them
            write_history(self.out / "history.csv", self.state["history"])
            self._save_best(self._meta(stopped))
            self._log(f"{self.out}: training already finished ({stopped}); restored "
                      "best.ckpt and history.csv from last.ckpt")

    def _record(self, row: dict, improved: bool, writer, rank_rngs: list) -> None:
        """An epoch's outputs: its history row, best.ckpt if it improved, last.ckpt."""
        self.state["history"].append(row)
        if improved or not self.best_path.exists():
            self._save_best(self._meta())
        write_history(self.out / "history.csv", self.state["history"])
        resume.save_last(self.last_path, identity=self.identity, inputs=self.inputs,
                         state=self.state, model=self.model, best_model=self.best_weights,
                         ema=self.ema, optimizer=self.optimizer, scheduler=self.scheduler,
                         noise=self.noise, rank_rngs=rank_rngs)
        self._log(f"epoch {row['epoch']}: train_loss={row['train_loss']:.4f} "
                  f"valid_loss={row['valid_loss']:.4f} roc_auc={row['valid_roc_auc']:.4f} "
                  f"pr_auc={row['valid_pr_auc']:.4f} ({row['seconds']:.0f} s)"
                  + (" *" if improved else ""))
        if writer:
            for key in HISTORY_COLUMNS[1:5]:
                writer.add_scalar(key, row[key], row["epoch"])

    def _meta(self, stopped: str | None = None) -> dict:
        meta = {"role": "student" if self.is_student else "teacher",
                "best_epoch": self.state["best_epoch"],
                "best_valid_loss": self.state["best_valid_loss"],
                "select_by": self.config.select_by,
                "epochs_run": self.state["epoch"], "history": self.state["history"],
                "training": {k: v for k, v in self.identity.items() if k not in ("tags",)},
                "train_tsv": str(self.files.train), "valid_tsv": str(self.files.valid),
                "pseudo_labels": [str(p) for p in self.files.pseudo_labels]}
        if stopped:
            meta["stopped"] = stopped
        return meta

    def _save_best(self, meta: dict):
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            best = build_model(self.config.model, **self.model.config)
        best.load_state_dict(self.best_weights)
        save_checkpoint(self.best_path, best, self.tags, meta)
