"""The files a run writes into --out: history.csv and best.ckpt (and last.ckpt, `resume`)."""
import csv
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..checkpoint import save_checkpoint
from ..models import build_model
from .state import RunState

HISTORY_COLUMNS = ["epoch", "train_loss", "valid_loss", "valid_roc_auc", "valid_pr_auc", "lr",
                   "seconds"]


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


def history_row(epoch: int, train_loss: float, valid: dict, lr: float, seconds: float) -> dict:
    return {"epoch": epoch, "train_loss": round(train_loss, 6),
            "valid_loss": round(valid["loss"], 6), "valid_roc_auc": round(valid["roc_auc"], 6),
            "valid_pr_auc": round(valid["pr_auc"], 6), "lr": float(f"{lr:.6g}"),
            "seconds": round(seconds, 2)}


def epoch_line(row: dict, improved: bool) -> str:
    return (f"epoch {row['epoch']}: train_loss={row['train_loss']:.4f} "
            f"valid_loss={row['valid_loss']:.4f} roc_auc={row['valid_roc_auc']:.4f} "
            f"pr_auc={row['valid_pr_auc']:.4f} ({row['seconds']:.0f} s)"
            + (" *" if improved else ""))


def add_scalars(writer, row: dict) -> None:
    """An epoch's losses and scores in TensorBoard (`writer`: None without it)."""
    if writer:
        for key in HISTORY_COLUMNS[1:5]:
            writer.add_scalar(key, row[key], row["epoch"])


class RunFolder:
    """--out of one run: where its files are, and best.ckpt's metadata."""

    def __init__(self, out: Path, *, config, files, identity: dict, role: str, tags: list,
                 model_config: dict):
        self.out, self.config, self.files = out, config, files
        self.identity, self.role, self.tags = identity, role, tags
        self.model_config = model_config
        self.last = out / "last.ckpt"
        self.best = out / "best.ckpt"
        self.history = out / "history.csv"

    def write_history(self, state: RunState) -> None:
        write_history(self.history, state.history)

    def save_epoch(self, state: RunState, improved: bool, best_weights: dict) -> None:
        """An epoch's history.csv, and best.ckpt if the epoch improved (or it is missing)."""
        if improved or not self.best.exists():
            self.save_best(state, best_weights)
        self.write_history(state)

    def restore_finished(self, state: RunState, best_weights: dict, stopped: str) -> str:
        """What a rerun of a finished run says; it writes best.ckpt and history.csv again when
        they were removed after the run (e.g. by a workflow manager)."""
        if self.best.exists() and self.history.exists():
            return f"{self.out}: training already finished ({stopped}); nothing to do"
        self.write_history(state)
        self.save_best(state, best_weights, stopped)
        return (f"{self.out}: training already finished ({stopped}); restored best.ckpt and "
                "history.csv from last.ckpt")

    def finish(self, state: RunState, best_weights: dict, stopped: str) -> str:
        """best.ckpt with the whole history and why the run `stopped`; returns the last line."""
        self.save_best(state, best_weights, stopped)
        return (f"{self.out}: {stopped}; best epoch {state.best_epoch} "
                f"(valid_loss={state.best_valid_loss:.4f}, {self.config.select_by} "
                f"score={state.best_score:.4f})")

    def save_best(self, state: RunState, weights: dict, stopped: str | None = None) -> None:
        """best.ckpt: the kept epoch's `weights`, with the run so far (and why it stopped)."""
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            best = build_model(self.config.model, **self.model_config)
        best.load_state_dict(weights)
        save_checkpoint(self.best, best, self.tags, self.meta(state, stopped))

    def meta(self, state: RunState, stopped: str | None = None) -> dict:
        meta = {"role": self.role, "best_epoch": state.best_epoch,
                "best_valid_loss": state.best_valid_loss, "select_by": self.config.select_by,
                "epochs_run": state.epoch, "history": state.history,
                "training": {k: v for k, v in self.identity.items() if k not in ("tags",)},
                "train_tsv": str(self.files.train), "valid_tsv": str(self.files.valid),
                "pseudo_labels": [str(p) for p in self.files.pseudo_labels]}
        if stopped:
            meta["stopped"] = stopped
        return meta
