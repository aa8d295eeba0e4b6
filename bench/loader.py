"""Benchmark: random 10 s crops per second from HDF5 mel shards through `MelStore`.

Writes shards of 30 s songs (1,292 frames, random values) with the preprocessing writer, then
times, median over repeats:
  crop          - MelStore.read_crop of a random song, one process;
  whole_song    - the baseline: read the whole song (MelStore.read_song), then crop in memory;
  dataloader    - MelStore.read_crop inside a torch DataLoader, 2 persistent workers, batches
                  of 32 (steady state: worker start-up not counted).
The shards were just written, so they are in the page cache: this measures the reader, not
the disk. Last line: crops_per_s=X ratio_vs_whole_song=Y dataloader_crops_per_s=Z.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mtt.formats.mel_shard import ShardWriter, shard_attributes
from mtt.frontend import CROP_SECONDS, seconds_to_frames
from mtt.formats.mel_store import MelStore

SONG_FRAMES = 1292  # 30 s
CROP_FRAMES = seconds_to_frames(CROP_SECONDS)  # 431


def write_shards(folder: Path, shards: int, songs_per_shard: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for shard in range(shards):
        path = folder / f"shard{shard}.h5"
        writer = ShardWriter(path, shard_attributes(1.0, "bench"))
        for song in range(songs_per_shard):
            mel = rng.uniform(-100, 40, size=(SONG_FRAMES, 128)).astype(np.float16)
            writer.add(f"S{shard:02d}_{song:05d}", mel, SONG_FRAMES * 512)
        writer.close()
        paths.append(path)
    return paths


def rate(job, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


class RandomCrops(Dataset):
    def __init__(self, store: MelStore, count: int):
        self.store, self.count = store, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        rng = np.random.default_rng(index)
        track_id = self.store.track_ids[int(rng.integers(len(self.store)))]
        return torch.from_numpy(self.store.read_crop(track_id, CROP_FRAMES, rng))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, under 2 minutes")
    args = parser.parse_args()
    shards, songs_per_shard, crops, repeats = (4, 100, 1000, 3) if args.quick else (8, 250, 5000, 5)
    torch.set_num_threads(1)
    print(f"cpus={os.cpu_count()} load_average={os.getloadavg()[0]:.2f} "
          f"shards={shards} songs={shards * songs_per_shard} crop_frames={CROP_FRAMES}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mtt_bench_loader_") as tmp:
        paths = write_shards(Path(tmp), shards, songs_per_shard)
        store = MelStore(paths)
        rng = np.random.default_rng(1)
        ids = store.track_ids

        def crop_job():
            for _ in range(crops):
                store.read_crop(ids[rng.integers(len(ids))], CROP_FRAMES, rng)

        def whole_song_job():
            for _ in range(crops):
                song = store.read_song(ids[rng.integers(len(ids))])
                start = rng.integers(song.shape[1] - CROP_FRAMES + 1)
                np.ascontiguousarray(song[:, start:start + CROP_FRAMES])

        loader = DataLoader(RandomCrops(store, crops), batch_size=32, num_workers=2,
                            multiprocessing_context="fork", persistent_workers=True)

        def dataloader_job():
            for _ in loader:
                pass

        crop_job()  # warm-up: opens the files
        dataloader_job()  # starts the workers: the timed passes are steady state
        ours = rate(crop_job, crops, repeats)
        baseline = rate(whole_song_job, crops, repeats)
        through_loader = rate(dataloader_job, crops, repeats)
        del loader
        print(f"crop_crops_per_s={ours:.0f} whole_song_crops_per_s={baseline:.0f} "
              f"dataloader_2_workers_crops_per_s={through_loader:.0f}", flush=True)
    print(f"crops_per_s={ours:.0f} ratio_vs_whole_song={ours / baseline:.2f} "
          f"dataloader_crops_per_s={through_loader:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
