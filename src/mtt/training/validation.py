"""Song-level validation after each epoch: BCE and macro ROC-AUC / PR-AUC."""
import numpy as np

from ..metrics import evaluable_tags, per_tag_scores
from ..inference.device import default_batch_size
from ..inference.songs import predict_songs
from .processes import Processes, validation_share


def validation_scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Song-level BCE and macro ROC-AUC / PR-AUC over the tags with positives."""
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    roc, pr = per_tag_scores(labels, probs)
    mask = evaluable_tags(labels)
    nan = float("nan")
    return {"loss": float(loss), "roc_auc": float(np.mean(roc[mask])) if mask.any() else nan,
            "pr_auc": float(np.mean(pr[mask])) if mask.any() else nan}


def validate(model, data, processes: Processes, *, chunks: int, frames: int, batch_size: int,
             precision: str) -> dict:
    """The validation scores of `model` on `data`'s validation songs. With several processes
    each rank predicts its share of the songs with rank 0's weights and the shares are gathered,
    so every rank computes the same scores, those of one process (to float rounding)."""
    processes.share_main_weights(model)
    device = processes.device
    share = validation_share(len(data.valid_ids), processes.rank, processes.world)
    batch_size = max(batch_size, chunks) if device.type == "cpu" else default_batch_size(device)
    probs = predict_songs(model, data.valid_store, [data.valid_ids[i] for i in share], device,
                          chunks=chunks, frames=frames, batch_size=batch_size,
                          precision=precision)
    return validation_scores(data.valid_labels, processes.gather_rows(probs, len(data.valid_ids)))
