import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from conftest import REAL_CLIPS, sine, write_bad_files
from mtt.audio import load_audio
from mtt.cli import main
from mtt.frontend import SAMPLE_RATE, LogMel, frontend_params, num_frames

REFERENCE_WAV = "../reference/TRABCDE128F111GH11.wav"  # relative to shared/audio


def write_tracks(path: Path, rows) -> Path:
    pd.DataFrame(rows, columns=["track_id", "path"]).to_csv(path, sep="\t", index=False)
    return path


def preprocess(audio_root, tracks, out, failures, *options) -> int:
    return main(["preprocess", "--audio-root", str(audio_root), "--tracks", str(tracks),
                 "--out", str(out), "--failures", str(failures), *map(str, options)])


def read_failures(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def float16_close(stored, expected):
    """Stored float16 values are the float32 ones rounded: within half a float16 step."""
    return np.all(np.abs(stored - expected) <= np.abs(expected) * 2.0 ** -11 + 1e-6)


@pytest.fixture(scope="module")
def real_shard(tmp_path_factory, audio_dir):
    """The real clips (and the reference WAV) preprocessed once for this module."""
    folder = tmp_path_factory.mktemp("real")
    rows = [(f"REAL{i}", name) for i, name in enumerate(sorted(REAL_CLIPS))]
    rows.append(("REFWAV", REFERENCE_WAV))
    tracks = write_tracks(folder / "tracks.tsv", rows)
    code = preprocess(audio_dir, tracks, folder / "shard.h5", folder / "failed.tsv")
    assert code == 0
    return folder, rows


def test_real_clips_are_stored_with_the_documented_layout(real_shard, audio_dir):
    folder, rows = real_shard
    assert len(read_failures(folder / "failed.tsv")) == 0
    with h5py.File(folder / "shard.h5", "r") as shard:
        assert list(shard["track_id"].asstr()[()]) == [track_id for track_id, _ in rows]
        offsets, samples, mel = shard["offset"][()], shard["num_samples"][()], shard["mel"]
        assert mel.dtype == np.float16 and mel.shape == (offsets[-1], 128)
        assert mel.chunks[1] == 128 and mel.chunks[0] < 1024
        assert offsets[0] == 0 and offsets.dtype == np.int64
        for i, (_, path) in enumerate(rows):
            assert samples[i] == len(load_audio(audio_dir / path))
            assert offsets[i + 1] - offsets[i] == num_frames(samples[i]) == samples[i] // 512 + 1
        for key, value in frontend_params().items():
            assert shard.attrs[key] == value
        assert shard.attrs["format"] == "mtt-mel-shard" and shard.attrs["format_version"] == 1


def test_stored_mel_is_the_front_end_output_in_float16(real_shard, audio_dir, reference_dir):
    folder, rows = real_shard
    with h5py.File(folder / "shard.h5", "r") as shard:
        offsets = shard["offset"][()]
        songs = {track_id: shard["mel"][offsets[i]:offsets[i + 1]].T.astype(np.float32)
                 for i, track_id in enumerate(shard["track_id"].asstr()[()])}
    # the published front end's output for the reference clip, and ours on its waveform
    published = np.load(reference_dir / "clip_logmel.npy")[0]
    ours = LogMel()(torch.from_numpy(np.load(reference_dir / "clip_mono_22050.npy"))).numpy()
    assert songs["REFWAV"].shape == published.shape == (128, 84)
    assert float16_close(songs["REFWAV"], ours)
    assert np.abs(songs["REFWAV"] - published).max() < 0.05 + 1e-3
    for track_id, path in rows[:3]:
        expected = LogMel()(torch.from_numpy(load_audio(audio_dir / path))).numpy()
        assert float16_close(songs[track_id], expected)


def test_rerun_on_a_complete_shard_changes_nothing(real_shard, audio_dir):
    folder, _ = real_shard
    before = {name: ((folder / name).read_bytes(), (folder / name).stat().st_mtime_ns)
              for name in ("shard.h5", "failed.tsv")}
    assert preprocess(audio_dir, folder / "tracks.tsv", folder / "shard.h5",
                      folder / "failed.tsv") == 0
    for name, (content, mtime) in before.items():
        assert (folder / name).read_bytes() == content
        assert (folder / name).stat().st_mtime_ns == mtime


def test_changed_input_rebuilds_the_shard(tmp_path, audio_dir):
    out, failed = tmp_path / "shard.h5", tmp_path / "failed.tsv"
    first = write_tracks(tmp_path / "a.tsv", [("A", "gtzan_country00000.wav")])
    second = write_tracks(tmp_path / "b.tsv", [("B", "gtzan_country00000.wav")])
    assert preprocess(audio_dir, first, out, failed) == 0
    assert preprocess(audio_dir, second, out, failed) == 0
    with h5py.File(out, "r") as shard:
        assert list(shard["track_id"].asstr()[()]) == ["B"]


def make_odd_and_bad_files(folder: Path, audio_dir: Path):
    """Odd but valid audio (stored) and unusable files (failures, with a reason word)."""
    good = {
        "u8.wav": (sine(440, SAMPLE_RATE, 2.0), SAMPLE_RATE, "PCM_U8"),
        "8k.wav": (sine(440, 8000, 2.0), 8000, "PCM_16"),
        "48k.flac": (sine(440, 48000, 2.0, channels=2), 48000, "PCM_24"),
        "six.wav": (sine(440, 44100, 1.5, channels=6), 44100, "PCM_16"),
        "silence.wav": (np.zeros(3 * SAMPLE_RATE), SAMPLE_RATE, "PCM_16"),
    }
    for name, (data, rate, subtype) in good.items():
        soundfile.write(folder / name, data, rate, subtype=subtype)
    bad = write_bad_files(folder, audio_dir)
    soundfile.write(folder / "short.wav", sine(440, SAMPLE_RATE, 0.5), SAMPLE_RATE)
    bad["short.wav"] = "too short"
    (folder / "real.mp3").symlink_to(audio_dir / "TRWJAZW128F42760DD_test.mp3")
    return ["real.mp3", *good], bad


def test_bad_files_are_listed_and_good_ones_stored_whatever_the_workers(tmp_path, audio_dir):
    good, bad = make_odd_and_bad_files(tmp_path, audio_dir)
    names = sorted([*good, *bad])  # interleave good and bad files
    rows = [(f"T{i:02d}", name) for i, name in enumerate(names)]
    rows.append(("T00", "real.mp3"))  # a duplicate track ID
    tracks = write_tracks(tmp_path / "tracks.tsv", rows)
    for workers in (1, 2):
        out, failed = tmp_path / f"w{workers}.h5", tmp_path / f"w{workers}.tsv"
        assert preprocess(tmp_path, tracks, out, failed, "--workers", workers) == 0
        failures = read_failures(failed)
        assert list(failures.columns) == ["track_id", "path", "reason"]
        reasons = dict(zip(failures["path"], failures["reason"]))
        assert set(reasons) == set(bad) | {"real.mp3"}
        for name, word in bad.items():
            assert word in reasons[name]
        assert "duplicate" in reasons["real.mp3"]
        with h5py.File(out, "r") as shard:
            stored = list(shard["track_id"].asstr()[()])
            assert stored == [track_id for track_id, name in rows[:-1] if name in good]
            silence = stored.index(rows[names.index("silence.wav")][0])
            offsets = shard["offset"][()]
            assert (shard["mel"][offsets[silence]:offsets[silence + 1]] == -100).all()
    assert (tmp_path / "w1.h5").read_bytes() == (tmp_path / "w2.h5").read_bytes()
    assert (tmp_path / "w1.tsv").read_bytes() == (tmp_path / "w2.tsv").read_bytes()


def test_mels_handed_over_in_shared_memory_or_through_the_pipe_are_the_songs_own(
        tmp_path, audio_dir, monkeypatch):
    """Workers hand mels to the writer in shared-memory slots (`MelSlots`), one per task in
    flight and reused; a mel larger than a slot goes through the result pipe. With more songs
    than slots and slots that fit only the shorter songs, every stored mel is its own song's."""
    import mtt.prepare.preprocess
    names = sorted(REAL_CLIPS) * 3  # 15 songs, 8 slots with 2 workers
    rows = [(f"R{i:02d}", name) for i, name in enumerate(names)]
    tracks = write_tracks(tmp_path / "tracks.tsv", rows)
    logmel = LogMel()
    expected = {name: logmel(torch.from_numpy(load_audio(audio_dir / name))).T.numpy()
                .astype(np.float16) for name in REAL_CLIPS}
    slot_bytes = sorted(m.nbytes for m in expected.values())[2]  # the 3 shortest fit
    monkeypatch.setattr(mtt.prepare.preprocess.MelSlots, "SLOT_BYTES", slot_bytes)
    out, failed = tmp_path / "s.h5", tmp_path / "f.tsv"
    assert preprocess(audio_dir, tracks, out, failed, "--workers", 2) == 0
    with h5py.File(out, "r") as shard:
        assert list(shard["track_id"].asstr()[()]) == [track_id for track_id, _ in rows]
        offsets = shard["offset"][()]
        for i, name in enumerate(names):
            assert np.array_equal(shard["mel"][offsets[i]:offsets[i + 1]], expected[name])


def test_without_shared_memory_every_mel_goes_through_the_pipe(tmp_path, audio_dir,
                                                               monkeypatch):
    """Where the shared mapping is refused (strict overcommit), the run still stores every
    song, byte-identical to a run with slots."""
    import mmap
    rows = [(f"P{i}", name) for i, name in enumerate(sorted(REAL_CLIPS))]
    tracks = write_tracks(tmp_path / "tracks.tsv", rows)
    assert preprocess(audio_dir, tracks, tmp_path / "slots.h5", tmp_path / "a.tsv") == 0

    def refuse(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(mmap, "mmap", refuse)
    assert preprocess(audio_dir, tracks, tmp_path / "pipe.h5", tmp_path / "b.tsv") == 0
    assert (tmp_path / "slots.h5").read_bytes() == (tmp_path / "pipe.h5").read_bytes()


def test_shard_index_takes_every_nth_row(tmp_path, audio_dir):
    rows = [(f"S{i}", "gtzan_country00000.wav" if i % 2 else "missing.wav") for i in range(7)]
    tracks = write_tracks(tmp_path / "tracks.tsv", rows)
    seen = []
    for index in range(3):
        out, failed = tmp_path / f"{index}.h5", tmp_path / f"{index}.tsv"
        assert preprocess(audio_dir, tracks, out, failed,
                          "--shard-index", index, "--num-shards", 3) == 0
        with h5py.File(out, "r") as shard:
            stored = list(shard["track_id"].asstr()[()])
        failures = list(read_failures(failed)["track_id"])
        expected = [track_id for track_id, _ in rows[index::3]]
        assert sorted(stored + failures) == sorted(expected)
        seen += stored + failures
    assert sorted(seen) == sorted(track_id for track_id, _ in rows)


def test_empty_track_list_gives_an_empty_shard(tmp_path, audio_dir):
    tracks = write_tracks(tmp_path / "tracks.tsv", [])
    assert preprocess(audio_dir, tracks, tmp_path / "s.h5", tmp_path / "f.tsv") == 0
    with h5py.File(tmp_path / "s.h5", "r") as shard:
        assert shard["mel"].shape == (0, 128) and list(shard["offset"][()]) == [0]


@pytest.mark.parametrize("problem", ["no tracks file", "no path column", "bad shard index",
                                     "no audio root", "zero workers"])
def test_unusable_arguments_exit_2(tmp_path, audio_dir, problem, capsys):
    tracks = write_tracks(tmp_path / "tracks.tsv", [("A", "gtzan_country00000.wav")])
    root, options = audio_dir, []
    if problem == "no tracks file":
        tracks = tmp_path / "nope.tsv"
    elif problem == "no path column":
        tracks.write_text("track_id\tfile\nA\tgtzan_country00000.wav\n")
    elif problem == "bad shard index":
        options = ["--shard-index", 3, "--num-shards", 3]
    elif problem == "no audio root":
        root = tmp_path / "no_such_folder"
    elif problem == "zero workers":
        options = ["--workers", 0]
    code = preprocess(root, tracks, tmp_path / "s.h5", tmp_path / "f.tsv", *options)
    assert code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "s.h5").exists()


def test_unwritable_output_exits_1(tmp_path, audio_dir, capsys):
    tracks = write_tracks(tmp_path / "tracks.tsv", [("A", "gtzan_country00000.wav")])
    (tmp_path / "a_file").write_text("")
    code = preprocess(audio_dir, tracks, tmp_path / "a_file" / "s.h5", tmp_path / "f.tsv")
    assert code == 1
    assert "cannot write" in capsys.readouterr().err


def _largest(folder: Path, pattern: str) -> int:
    sizes = []
    for path in folder.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            sizes.append(path.stat().st_size)
    return max(sizes, default=-1)


def start_and_kill_mid_way(command, partial: str, threshold: int, folder: Path) -> bool:
    """Run `command`, SIGKILL it and its workers once a file matching `partial` in `folder`
    exceeds `threshold` bytes (each writer has its own temporary name).
    False when the run finished first (the machine was too fast or the poller too slow)."""
    job = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _largest(folder, partial) <= threshold:
        if job.poll() is not None:
            return False
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.002)
    os.killpg(job.pid, signal.SIGKILL)  # the job and its decoding workers, like a scheduler
    job.wait()
    return True


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path, audio_dir):
    rows = [(f"K{i:03d}", name) for i in range(24)
            for name in ("TRWJAZW128F42760DD_test.mp3", "gtzan_country00000.wav")]
    tracks = write_tracks(tmp_path / "tracks.tsv", rows)  # a ~16 MiB shard
    assert preprocess(audio_dir, tracks, tmp_path / "whole.h5", tmp_path / "whole.tsv") == 0

    out, failed = tmp_path / "killed.h5", tmp_path / "killed.tsv"
    partial = ".killed.h5.*.partial"  # this writer's temporary name
    command = [str(Path(sys.executable).with_name("mtt")), "preprocess",
               "--audio-root", str(audio_dir), "--tracks", str(tracks), "--out", str(out),
               "--failures", str(failed), "--workers", "2"]
    for _attempt in range(3):  # kill once at least one 2 MiB block of songs has been written
        out.unlink(missing_ok=True)
        failed.unlink(missing_ok=True)
        if start_and_kill_mid_way(command, partial, threshold=2 * 2**20, folder=tmp_path):
            break
    else:
        pytest.fail("three runs finished before they could be killed")
    assert list(tmp_path.glob(partial))  # the killed writer's temporary file, which no reader opens
    assert not out.exists() and not failed.exists()  # nothing looks complete

    assert preprocess(audio_dir, tracks, out, failed) == 0
    assert out.read_bytes() == (tmp_path / "whole.h5").read_bytes()
    assert failed.read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    # the rerun removed the killed writer's temporary file and left none of its own
    assert not list(tmp_path.glob(partial))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_that_crashes_its_decoder_is_a_failure(tmp_path, audio_dir, monkeypatch, workers):
    """Fault injection: decoding `crash.wav` kills the worker process, as a decoder segfault
    would. The run must list it as a failure and store every other song."""
    real_load_audio = load_audio

    def load_or_die(path):
        if str(path).endswith("crash.wav"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_load_audio(path)

    monkeypatch.setattr("mtt.prepare.preprocess.load_audio", load_or_die)  # inherited by forked workers
    (tmp_path / "crash.wav").symlink_to(audio_dir / "gtzan_country00000.wav")
    (tmp_path / "good.wav").symlink_to(audio_dir / "gtzan_country00000.wav")
    rows = [(f"C{i}", "crash.wav" if i == 3 else "good.wav") for i in range(8)]
    tracks = write_tracks(tmp_path / "tracks.tsv", rows)
    out, failed = tmp_path / "s.h5", tmp_path / "f.tsv"
    assert preprocess(tmp_path, tracks, out, failed, "--workers", workers) == 0
    failures = read_failures(failed)
    assert list(failures["track_id"]) == ["C3"] and "crashed" in failures["reason"][0]
    with h5py.File(out, "r") as shard:
        assert list(shard["track_id"].asstr()[()]) == [f"C{i}" for i in range(8) if i != 3]
