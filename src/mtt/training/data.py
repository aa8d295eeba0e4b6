"""A run's data, built once before the first epoch: the labeled songs (their labels blended with
the teacher's predictions under --label-blend), the validation songs, the pseudo-labeled songs,
the batch plan and its loader; for a student, what its teacher adds: per-tag trust in the
pseudo-labels (a pass of the teacher over the validation songs) and the teacher that labels
crops (--pseudo-targets crop / crop_noised)."""
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..checkpoint import load_checkpoint
from ..formats.pseudo_label_shard import read_pseudo_labels
from ..formats.split_folder import read_split
from ..formats.mel_store import MelStore
from ..inference.device import inference_model
from .teacher_trust import teacher_tag_weights
from ..config import TrainConfig
from .batches import CropDataset, EpochBatchPlan
from .processes import Processes


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


def loader_workers(workers: int | None, device: torch.device, threads: int | None) -> int:
    """--workers, or by default 4 loader processes on CUDA (none on the CPU, where the step
    wants the cores), within the job's --threads: the main process keeps one of them."""
    if workers is not None:
        return workers
    if device.type != "cuda":
        return 0
    return 4 if threads is None else max(0, min(4, threads - 1))


@dataclass
class TrainingData:
    plan: EpochBatchPlan
    loader: DataLoader
    valid_store: MelStore
    valid_ids: list
    valid_labels: np.ndarray
    tag_weights: torch.Tensor | None = None  # --pseudo-tag-weights, on the device
    crop_teacher: torch.nn.Module | None = None  # --pseudo-targets crop / crop_noised


def build_data(config: TrainConfig, files, tags: list, frames: int, processes: Processes,
               precision: str) -> TrainingData:
    device = processes.device
    store = MelStore(files.mels)
    train_ids, train_labels = store.keep_stored(*read_split(files.train, tags), "train")
    if config.label_blend > 0:
        teacher = teacher_predictions(files.labeled_pseudo_labels, tags, train_ids)
        train_labels = (1 - config.label_blend) * train_labels + config.label_blend * teacher
    valid_ids, valid_labels = store.keep_stored(*read_split(files.valid, tags), "valid")
    if not valid_ids:
        raise ValueError(f"{files.valid}: no validation song has a stored mel")
    pseudo = pseudo_labeled_songs(files, tags, store) if files.is_student else None
    tag_weights = crop_teacher = None
    if files.is_student and config.pseudo_tag_weights == "teacher_valid_auc":
        weights = teacher_tag_weights(files.teacher_checkpoint, tags, store, valid_ids,
                                      valid_labels, device, config.valid_chunks,
                                      precision=precision)
        tag_weights = torch.from_numpy(weights).to(device)
        processes.log("pseudo-label tag weights (teacher's validation ROC-AUC): " + ", ".join(
            f"{t} {w:.2f}" for t, w in zip(tags, weights)))
    if files.is_student and config.pseudo_targets != "song":
        teacher, _ = load_checkpoint(files.teacher_checkpoint)
        crop_teacher = inference_model(teacher.to(device).eval(), device, precision)
    plan = EpochBatchPlan(len(train_ids), len(pseudo[1]) if pseudo else 0, config.batch_size,
                          config.labeled_ratio, config.steps_per_epoch, config.seed,
                          processes.rank, processes.world)
    workers = loader_workers(config.workers, device, config.threads)
    loader = DataLoader(CropDataset(frames, (store, train_ids, train_labels), pseudo),
                        batch_sampler=plan, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        # its own generator: the loader must not draw from the global RNG (crop
                        # positions come from the plan), or a resumed run with persistent
                        # workers would diverge
                        generator=torch.Generator().manual_seed(config.seed))
    processes.log(f"train: {len(train_ids)} labeled songs"
                  + (f" + {len(pseudo[1])} pseudo-labeled" if pseudo else "")
                  + f", {len(plan)} steps/epoch of {plan.n_labeled} labeled"
                  + (f" + {plan.n_pseudo} pseudo-labeled" if pseudo else "")
                  + f" crops of {frames} frames; valid: {len(valid_ids)} songs")
    return TrainingData(plan, loader, store, valid_ids, valid_labels, tag_weights, crop_teacher)


def pseudo_labeled_songs(files, tags: list, store: MelStore) -> tuple:
    """(their mel store, track IDs, the teacher's probabilities) of a student's pseudo-labeled
    songs that have a stored mel."""
    pseudo_store = MelStore(files.unlabeled_mels) if files.unlabeled_mels else store
    pseudo_ids, pseudo_probs = pseudo_store.keep_stored(
        *read_pseudo_labels(files.pseudo_labels, tags), "pseudo-labeled")
    if not pseudo_ids:
        raise ValueError("no pseudo-labeled song has a stored mel; pass the unlabeled songs' "
                         "shards with --unlabeled-mels")
    return pseudo_store, pseudo_ids, pseudo_probs
