"""Random-crop batches of the training songs, planned up front for each epoch.

Batches are planned from (seed, epoch) alone: which songs, in which
order, and a seed for each crop's position. A data-loader worker only executes the plan, so the
data order does not depend on the number of workers, and a run resumed at an epoch boundary sees
exactly the batches an uninterrupted run would have seen.
"""
import math

import numpy as np
import torch
from torch.utils.data import Dataset

LABELED, PSEUDO = 0, 1


class CropDataset(Dataset):
    """Random crops of labeled and pseudo-labeled songs; items are keyed (source, index, seed).

    Mel stores open their files lazily, so the dataset can be sent to worker processes.
    """

    def __init__(self, frames: int, labeled: tuple, pseudo: tuple | None = None):
        """labeled / pseudo: (MelStore, track_ids, targets (N, n_tags))."""
        self.frames = frames
        self.sources = {LABELED: labeled}
        if pseudo is not None:
            self.sources[PSEUDO] = pseudo

    def __getitem__(self, key):
        source, index, crop_seed = key
        store, track_ids, targets = self.sources[source]
        mel = store.read_crop(track_ids[index], self.frames, np.random.default_rng(crop_seed))
        return (torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)),
                torch.from_numpy(targets[index]), source)

    def __len__(self):
        return sum(len(ids) for _, ids, _ in self.sources.values())


class EpochBatchPlan:
    """Batch sampler: each batch holds `n_labeled` labeled and `n_pseudo` pseudo-labeled items.

    Songs are drawn without replacement from successive shuffles of each set. One epoch has
    `steps` global batches; with several processes, rank r takes batches r, r + world, ... (the
    count is cut to a multiple of `world` so every rank does the same number of steps).
    """

    def __init__(self, n_labeled_songs: int, n_pseudo_songs: int, batch_size: int,
                 labeled_ratio: float, steps: int | None, seed: int, rank: int = 0, world: int = 1):
        if n_labeled_songs == 0:
            raise ValueError("no labeled training songs with stored mels")
        if n_pseudo_songs > 0:
            if not 0.0 < labeled_ratio < 1.0:
                raise ValueError(f"--labeled-ratio must be in (0, 1), got {labeled_ratio}")
            if batch_size < 2:
                raise ValueError("a mixed labeled/pseudo-labeled batch needs --batch-size >= 2")
            self.n_labeled = min(batch_size - 1, max(1, round(batch_size * labeled_ratio)))
        else:
            self.n_labeled = batch_size
        self.n_pseudo = batch_size - self.n_labeled if n_pseudo_songs > 0 else 0
        self.n_labeled_songs, self.n_pseudo_songs = n_labeled_songs, n_pseudo_songs
        self.steps = steps or math.ceil(n_labeled_songs / self.n_labeled)
        if self.steps < world:
            raise ValueError(f"{self.steps} steps per epoch cannot be shared by {world} processes")
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return self.steps // self.world

    @staticmethod
    def _stream(rng, n_songs, count):
        reps = math.ceil(count / n_songs)
        return np.concatenate([rng.permutation(n_songs) for _ in range(reps)])[:count]

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        labeled = self._stream(rng, self.n_labeled_songs, self.steps * self.n_labeled)
        labeled = labeled.reshape(self.steps, self.n_labeled)
        if self.n_pseudo:
            pseudo = self._stream(rng, self.n_pseudo_songs, self.steps * self.n_pseudo)
            pseudo = pseudo.reshape(self.steps, self.n_pseudo)
        crop_seeds = rng.integers(0, 2**63 - 1, size=(self.steps, self.n_labeled + self.n_pseudo))
        for step in range(self.rank, len(self) * self.world, self.world):
            seeds = iter(crop_seeds[step].tolist())
            batch = [(LABELED, int(i), next(seeds)) for i in labeled[step]]
            if self.n_pseudo:
                batch += [(PSEUDO, int(i), next(seeds)) for i in pseudo[step]]
            yield batch
