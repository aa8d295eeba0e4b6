"""How far a student should trust each tag of its teacher's pseudo-labels.

A teacher trained on few labeled songs learns some tags well and others hardly at all; on the
latter its pseudo-labels are noise, and a student that fits them on many unlabeled songs learns
that noise (on the demo, ROC-AUC of '80s' fell from 0.55 for the teacher to 0.35-0.47 for its
students). `--pseudo-tag-weights teacher_valid_auc` weights each tag's pseudo-label loss by how
much better than chance the teacher ranks that tag on the validation split:
w = clip(2 * ROC-AUC - 1, 0, 1) (0 for a coin flip, 1 for a perfect ranking). The validation
split is the one on which settings may be chosen; test is never read. A tag without both
positive and negative validation songs cannot be judged and keeps weight 1.
"""
import numpy as np
from sklearn.metrics import roc_auc_score

from ..checkpoint import load_checkpoint
from ..inference.songs import checkpoint_frames, predict_songs


def teacher_tag_weights(checkpoint, tags, store, track_ids, labels, device, chunks,
                        precision: str = "fp32") -> np.ndarray:
    """Per-tag weights (in `tags` order) from the teacher's validation ROC-AUC, its predictions
    made in the run's `precision` (what `select_precision` chose for the student)."""
    model, info = load_checkpoint(checkpoint)
    if list(info["tags"]) != list(tags):
        raise ValueError(f"{checkpoint}: its tags differ from the student's tag list")
    model.to(device)
    probs = predict_songs(model, store, track_ids, device, chunks=chunks,
                          frames=checkpoint_frames(model, info), precision=precision)
    weights = np.ones(len(tags), dtype=np.float32)
    for j in range(len(tags)):
        positives = labels[:, j] > 0.5
        if 0 < positives.sum() < len(positives):
            weights[j] = np.clip(2 * roc_auc_score(positives, probs[:, j]) - 1, 0, 1)
    return weights
