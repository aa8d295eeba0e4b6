"""A run's progress, saved in last.ckpt: the epochs done, the best one, the history rows."""
import math
from dataclasses import asdict, dataclass, field

from ..config import SELECT_BY, TrainConfig


def selection_score(valid: dict, select_by: str) -> float:
    """The --select-by score of one validation, higher is better; a metric that is not
    defined (no tag with positives) counts as no improvement."""
    if select_by == "valid_loss":
        return -valid["loss"]
    value = ((valid["roc_auc"] + valid["pr_auc"]) / 2 if select_by == "valid_auc"
             else valid[select_by.removeprefix("valid_")])
    return value if math.isfinite(value) else -math.inf


@dataclass
class RunState:
    epoch: int = 0  # epochs done
    best_epoch: int = -1  # the kept one (1-based); -1 before the first
    best_score: float = -math.inf  # its --select-by score
    best_valid_loss: float = math.inf
    epochs_since_best: int = 0
    history: list = field(default_factory=list)  # the rows of history.csv

    @classmethod
    def from_dict(cls, saved: dict) -> "RunState":
        """The state of last.ckpt's `state` (one from before --select-by has no best_score:
        its best was the lowest loss; one from before the schedule kept its own counters has
        theirs, `lr_scale` and `plateau`, which `resume` hands to the schedule)."""
        return cls(epoch=saved["epoch"], best_epoch=saved["best_epoch"],
                   best_score=saved.get("best_score", -saved["best_valid_loss"]),
                   best_valid_loss=saved["best_valid_loss"],
                   epochs_since_best=saved["epochs_since_best"], history=saved["history"])

    def as_dict(self) -> dict:
        return asdict(self)

    def end_epoch(self, valid_loss: float, score: float) -> bool:
        """Count the epoch; returns whether its score is the best so far (the first always is)."""
        self.epoch += 1
        improved = score > self.best_score or self.best_epoch < 0
        if improved:
            self.best_valid_loss, self.best_score = valid_loss, score
            self.best_epoch, self.epochs_since_best = self.epoch, 0
        else:
            self.epochs_since_best += 1
        return improved

    def stop_reason(self, config: TrainConfig) -> str | None:
        """Why the run has stopped (early stopping, the epoch limit), or None."""
        if self.epochs_since_best >= config.patience:
            better = SELECT_BY[config.select_by].replace("lowest", "lower").replace(
                "highest", "higher")
            return f"early stop: no {better} for {config.patience} epochs"
        if self.epoch >= config.max_epochs:
            return f"reached --max-epochs {config.max_epochs}"
        return None
