"""Benchmark: songs per second of `mtt preprocess` vs decoding alone and vs a librosa pipeline.

On the same 30 s MP3s (made from the real clips in shared/audio, stereo, at 22,050 and 44,100 Hz)
it times, one worker each, median over repeats:
  decode   - mtt.audio.load_audio alone (the floor: decoding + resampling, no mel, no output);
  ours     - the whole preprocessing into an HDF5 shard (mtt.preprocess.build_shard);
  librosa  - librosa.load(sr=22050) + feature.melspectrogram + power_to_db, same parameters;
and ours with 2 workers vs 1. Needs librosa (the project's `bench` extra).

Last line: songs_per_s=X ratio_vs_librosa=Y ratio_vs_decode=Z (22,050 Hz MP3s, one worker),
then the 2-worker speedup and the 44,100 Hz figures.
"""
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one worker = one core, for every pipeline

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import soundfile  # noqa: E402
import soxr  # noqa: E402
import torch  # noqa: E402

from mtt import frontend  # noqa: E402
from mtt.audio import load_audio  # noqa: E402
from mtt.preprocess import build_shard, select_tracks  # noqa: E402

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


def songs_per_second(job, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def preprocess_job(songs: list[Path], out_folder: Path, workers: int):
    tracks_tsv = out_folder / "tracks.tsv"
    pd.DataFrame({"track_id": [p.stem for p in songs], "path": [p.name for p in songs]}).to_csv(
        tracks_tsv, sep="\t", index=False)
    tracks = select_tracks(tracks_tsv)

    def job():
        stored, failed = build_shard(tracks, songs[0].parent, out_folder / "bench.h5",
                                     out_folder / "failed.tsv", workers=workers)
        assert stored == len(songs) and failed == 0
    return job


def measure_rate(librosa, songs, work: Path, repeats: int) -> dict:
    decode = songs_per_second(lambda: [load_audio(p) for p in songs], len(songs), repeats)
    ours = songs_per_second(preprocess_job(songs, work, workers=1), len(songs), repeats)
    baseline = songs_per_second(lambda: [librosa_logmel(librosa, p) for p in songs],
                                len(songs), repeats)
    return {"decode": decode, "ours": ours, "librosa": baseline}


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
    unique, count, repeats, scaling_count = (2, 12, 3, 24) if args.quick else (5, 40, 5, 120)
    torch.set_num_threads(1)
    print(f"cpus={os.cpu_count()} load_average={os.getloadavg()[0]:.2f} "
          f"torch={torch.__version__} librosa={librosa.__version__}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mtt_bench_") as tmp:
        tmp = Path(tmp)
        results, encoded = {}, {}
        for rate in (22050, 44100):
            encoded[rate] = encode_mp3s(tmp / f"encoded_{rate}", rate, unique)
            songs = copies(encoded[rate], tmp / f"songs_{rate}", count)
            # warm-up (librosa/numba compilation, caches) and a check that both agree
            ours = frontend.LogMel()(torch.from_numpy(load_audio(songs[0]))).numpy()
            theirs = librosa_logmel(librosa, songs[0])
            difference = float(np.percentile(np.abs(ours - theirs), 99))
            work = tmp / f"work_{rate}"
            work.mkdir()
            results[rate] = measure_rate(librosa, songs, work, repeats)
            r = results[rate]
            print(f"rate={rate} songs={count} repeats={repeats} decode_songs_per_s={r['decode']:.1f} "
                  f"ours_songs_per_s={r['ours']:.1f} librosa_songs_per_s={r['librosa']:.1f} "
                  f"ratio_vs_librosa={r['ours'] / r['librosa']:.2f} "
                  f"ratio_vs_decode={r['ours'] / r['decode']:.2f} "
                  f"p99_abs_db_difference_vs_librosa={difference:.2g}", flush=True)

        songs = copies(encoded[22050], tmp / "scaling", scaling_count)
        scaling = {}
        for workers in (1, 2):
            work = tmp / f"scaling_{workers}"
            work.mkdir()
            scaling[workers] = songs_per_second(preprocess_job(songs, work, workers),
                                                len(songs), repeats)
            print(f"workers={workers} songs={scaling_count} songs_per_s={scaling[workers]:.1f}",
                  flush=True)

    r, r44 = results[22050], results[44100]
    print(f"songs_per_s={r['ours']:.1f} ratio_vs_librosa={r['ours'] / r['librosa']:.2f} "
          f"ratio_vs_decode={r['ours'] / r['decode']:.2f} "
          f"speedup_2_workers={scaling[2] / scaling[1]:.2f} "
          f"songs_per_s_44k={r44['ours']:.1f} ratio_vs_librosa_44k={r44['ours'] / r44['librosa']:.2f} "
          f"ratio_vs_decode_44k={r44['ours'] / r44['decode']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
