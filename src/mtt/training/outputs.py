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


class RunFolder:
    """--out of one run: where its files are, and best.ckpt's metadata."""

    def __init__(self, out: Path, *, config, files, identity: dict, role: str, tags: list):
        self.out, self.config, self.files = out, config, files
        self.identity, self.role, self.tags = identity, role, tags
        self.last = out / "last.ckpt"
        self.best = out / "best.ckpt"
        self.history = out / "history.csv"

    def write_history(self, state: RunState) -> None:
        write_history(self.history, state.history)

    def save_best(self, state: RunState, weights: dict, model_config: dict,
                  stopped: str | None = None) -> None:
        """best.ckpt: the kept epoch's `weights`, with the run so far (and why it stopped)."""
        with torch.random.fork_rng(devices=[]):  # building a model must not move the RNG
            best = build_model(self.config.model, **model_config)
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
