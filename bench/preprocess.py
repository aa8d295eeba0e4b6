"""Benchmark: songs per second of `mtt preprocess` vs decoding alone and vs a librosa pipeline.

On the same 30 s MP3s (made from the real clips in shared/audio, stereo, at 22,050 and 44,100 Hz)
it times, one worker each, median over repeats:
  decode   - mtt.audio.load_audio alone (the floor: decoding + resampling, no mel, no output);
  ours     - the whole preprocessing into a new HDF5 shard (mtt.prepare.preprocess.build_shard), a shard of
             4x as many songs as the others' lists (96 with --quick), so that starting the
             worker process (fork of a process that has imported PyTorch, its first pages
             copied: ~0.1 s once per shard) weighs a few percent, as in real shards of hundreds
             to thousands of songs;
  ours_short - the same on a shard of as many songs as the others (24 with --quick): from the
             two, the per-shard start-up cost (`shard_startup_s`);
  librosa  - librosa.load(sr=22050) + feature.melspectrogram + power_to_db, same parameters;
and ours with 2 workers vs 1, beside decoding alone in 1 vs 2 processes (how far this machine
scales two processes at all). Needs librosa (the project's `bench` extra). malloc is set up as
the `mtt` command sets it (mtt.malloc.keep_freed_memory) for every pipeline.

The methods take turns within each repeat, and each is also timed in CPU seconds (this process
plus its waited-for workers), which other jobs on a busy machine disturb far less than wall time.
`compute` (decode + LogMel, no output) shows what the shard writing costs on top.

Last line: songs_per_s=X ratio_vs_librosa=Y ratio_vs_decode=Z (22,050 Hz MP3s, one worker, wall
clock), then the 2-worker speedup, the same ratios in CPU time, the 44,100 Hz figures, the
per-shard start-up and ratio_vs_decode_short_shard (ours_short: how this script measured
ratio_vs_decode until 2026-12-04).
"""
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one worker = one core, for every pipeline

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402
import torch  # noqa: E402

from mtt import frontend  # noqa: E402
from mtt.audio import load_audio  # noqa: E402
from mtt.malloc import keep_freed_memory  # noqa: E402
from mtt.prepare.preprocess import build_shard, select_tracks  # noqa: E402

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
CLIPS = ["TRWJAZW128F42760DD_test.mp3", "gtzan_country00000.wav",
         "brahms_hungarian_dance_5.ogg", "karissa_hobbs_lets_go_fishin.ogg",
         "mtat_joram-moments_of_clarity-08-solipsism-59-88.mp3"]


def encode_mp3s(folder: Path, rate: int, unique: int) -> list[Path]:
    """30 s stereo MP3s at `rate` Hz of the first `unique` real clips."""
    folder.mkdir(parents=True)
    encoded = []
    for name in CLIPS[:unique]:
        mono = np.resize(load_audio(AUDIO / name), 30 * frontend.SAMPLE_RATE)  # loops if short
        if rate != frontend.SAMPLE_RATE:
            mono = soxr.resample(mono, frontend.SAMPLE_RATE, rate, quality="HQ")
        stereo = np.stack([mono, np.roll(mono, 300)], axis=1)  # two different channels
        path = folder / f"{Path(name).stem}.mp3"
        soundfile.write(path, stereo, rate, format="MP3", subtype="MPEG_LAYER_III")
        encoded.append(path)
    return encoded


def copies(encoded: list[Path], folder: Path, count: int) -> list[Path]:
    """`count` song files cycling through `encoded` (distinct files, as in a real collection)."""
    folder.mkdir(parents=True)
    songs = []
    for i in range(count):
        song = folder / f"song{i:04d}.mp3"
        shutil.copyfile(encoded[i % len(encoded)], song)
        songs.append(song)
    return songs


def librosa_logmel(librosa, path: Path) -> np.ndarray:
    waveform, _ = librosa.load(path, sr=frontend.SAMPLE_RATE, mono=True)
    power = librosa.feature.melspectrogram(
        y=waveform, sr=frontend.SAMPLE_RATE, n_fft=frontend.N_FFT, hop_length=frontend.HOP_LENGTH,
        win_length=frontend.N_FFT, center=True, pad_mode="reflect", power=2.0,
        n_mels=frontend.N_MELS, fmin=frontend.F_MIN, fmax=frontend.F_MAX, htk=True, norm=None)
    return librosa.power_to_db(power, ref=1.0, amin=frontend.POWER_FLOOR, top_db=None)


def timed(job) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of the worker processes it waited for)."""
    before, start = os.times(), time.perf_counter()
    job()
    wall, after = time.perf_counter() - start, os.times()
    cpu = sum(after[:4]) - sum(before[:4])  # user + system, self + waited-for children
    return wall, cpu


def interleaved_rates(jobs: dict, repeats: int) -> dict:
    """Median songs per wall second and per CPU second of each job ({name: (songs, job)} or
    {name: (songs, job, untimed preparation)}); the jobs take turns in every repeat so that the
    machine's load varies alike for all of them."""
    walls = {name: [] for name in jobs}
    cpus = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, (count, job, *prepare) in jobs.items():
            for step in prepare:
                step()
            wall, cpu = timed(job)
            walls[name].append(count / wall)
            cpus[name].append(count / cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name]))
            for name in jobs}


def preprocess_job(songs: list[Path], out_folder: Path, workers: int):
    """(job, preparation): the job writes a shard of `songs`; the preparation, untimed,
    removes the last run's shard first, since a real run writes a new file (replacing one makes
    ext4 flush the new file to disk, ~50 ms for 80 MB)."""
    tracks_tsv = out_folder / "tracks.tsv"
    pd.DataFrame({"track_id": [p.stem for p in songs], "path": [p.name for p in songs]}).to_csv(
        tracks_tsv, sep="\t", index=False)
    tracks = select_tracks(tracks_tsv)
    out, failures = out_folder / "bench.h5", out_folder / "failed.tsv"

    def job():
        stored, failed = build_shard(tracks, songs[0].parent, out, failures, workers=workers,
                                     progress_bar=False)
        assert stored == len(songs) and failed == 0

    def remove_last_run():
        out.unlink(missing_ok=True)
        failures.unlink(missing_ok=True)
    return job, remove_last_run


def decoded_length(path: Path) -> int:
    return len(load_audio(path))


def decode_pool_job(songs: list[Path], workers: int):
    """Decoding alone in `workers` forked processes: how far two processes scale on this
    machine at all (shared caches, memory bandwidth, what the host gives a VM's two CPUs)."""
    def job():
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            assert all(pool.map(decoded_length, songs, chunksize=4))
    return job


def measure_rate(librosa, songs, shard_songs, work: Path, repeats: int) -> dict:
    logmel = frontend.LogMel()
    for name in ("short", "long"):
        (work / name).mkdir()
    n = len(songs)
    return interleaved_rates({
        "decode": (n, lambda: [load_audio(p) for p in songs]),
        "compute": (n, lambda: [logmel(torch.from_numpy(load_audio(p))) for p in songs]),
        "ours": (len(shard_songs), *preprocess_job(shard_songs, work / "long", workers=1)),
        "ours_short": (n, *preprocess_job(songs, work / "short", workers=1)),
        "librosa": (n, lambda: [librosa_logmel(librosa, p) for p in songs]),
    }, repeats)


def startup_seconds(rates: dict, songs: int, shard_songs: int) -> float:
    """The per-shard fixed cost, from the wall time of the two shard sizes."""
    short, long = songs / rates["ours_short"][0], shard_songs / rates["ours"][0]
    per_song = (long - short) / (shard_songs - songs)
    return short - songs * per_song


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, under 2 minutes")
    args = parser.parse_args()
    try:
        import librosa
    except ImportError:
        print("bench/preprocess.py needs librosa for its baseline: "
              ".venv/bin/pip install librosa (the project's `bench` extra)", file=sys.stderr)
        return 2
    # each timed preprocessing run starts its worker process (~0.1 s): enough songs per shard
    # (shard_count) keep that to a few percent, as it is for real shards of thousands of songs
    unique, count, repeats, scaling_count = (2, 24, 3, 48) if args.quick else (5, 60, 5, 160)
    shard_count = 4 * count
    torch.set_num_threads(1)
    keep_freed_memory()  # as `mtt` does for every command (mtt.cli): no page faults per song
    print(f"cpus={os.cpu_count()} load_average={os.getloadavg()[0]:.2f} "
          f"torch={torch.__version__} librosa={librosa.__version__}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mtt_bench_") as tmp:
        tmp = Path(tmp)
        results, encoded = {}, {}
        for rate in (22050, 44100):
            encoded[rate] = encode_mp3s(tmp / f"encoded_{rate}", rate, unique)
            songs = copies(encoded[rate], tmp / f"songs_{rate}", count)
            shard_songs = copies(encoded[rate], tmp / f"shard_{rate}", shard_count)
            # warm-up (librosa/numba compilation, caches) and a check that both agree
            ours = frontend.LogMel()(torch.from_numpy(load_audio(songs[0]))).numpy()
            theirs = librosa_logmel(librosa, songs[0])
            difference = float(np.percentile(np.abs(ours - theirs), 99))
            work = tmp / f"work_{rate}"
            work.mkdir()
            results[rate] = r = measure_rate(librosa, songs, shard_songs, work, repeats)
            print(f"rate={rate} songs={count} shard_songs={shard_count} repeats={repeats} "
                  + " ".join(f"{name}_songs_per_s={wall:.1f} {name}_songs_per_cpu_s={cpu:.1f}"
                             for name, (wall, cpu) in r.items())
                  + f" p99_abs_db_difference_vs_librosa={difference:.2g}", flush=True)

        songs = copies(encoded[22050], tmp / "scaling", scaling_count)
        scaling_jobs = {}
        for workers in (1, 2):
            work = tmp / f"scaling_{workers}"
            work.mkdir()
            scaling_jobs[workers] = (scaling_count, *preprocess_job(songs, work, workers))
            scaling_jobs[f"decode{workers}"] = (scaling_count, decode_pool_job(songs, workers))
        scaling = interleaved_rates(scaling_jobs, repeats)
        print(" ".join(f"{'workers=' if isinstance(name, int) else 'decode_only_workers='}"
                       f"{str(name)[-1]} songs={scaling_count} songs_per_s={wall:.1f} "
                       f"songs_per_cpu_s={cpu:.1f}" for name, (wall, cpu) in scaling.items()),
              flush=True)

    (ours, ours_cpu), (decode, decode_cpu), (base, base_cpu) = (
        results[22050][name] for name in ("ours", "decode", "librosa"))
    (ours44, _), (decode44, _), (base44, _) = (
        results[44100][name] for name in ("ours", "decode", "librosa"))
    short = results[22050]["ours_short"][0]
    print(f"songs_per_s={ours:.1f} ratio_vs_librosa={ours / base:.2f} "
          f"ratio_vs_decode={ours / decode:.2f} "
          f"speedup_2_workers={scaling[2][0] / scaling[1][0]:.2f} "
          f"decode_only_speedup_2_workers={scaling['decode2'][0] / scaling['decode1'][0]:.2f} "
          f"cpu_ratio_vs_librosa={ours_cpu / base_cpu:.2f} "
          f"cpu_ratio_vs_decode={ours_cpu / decode_cpu:.2f} "
          f"songs_per_s_44k={ours44:.1f} ratio_vs_librosa_44k={ours44 / base44:.2f} "
          f"ratio_vs_decode_44k={ours44 / decode44:.2f} "
          f"shard_startup_s={startup_seconds(results[22050], count, shard_count):.3f} "
          f"ratio_vs_decode_short_shard={short / decode:.2f} load_average={os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
