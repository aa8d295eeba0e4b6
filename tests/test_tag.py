"""`mtt tag` on real audio: formats, rates, channels, batching, chunking, failures, memory."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from conftest import SHARED, mtt_tag
from mtt.inference.songs import chunk_starts

CLIPS = sorted((SHARED / "audio").iterdir())  # MP3 16 kHz mono, MP3 22.05 kHz stereo, WAV, Ogg


def test_chunks_cover_the_song_with_last_aligned_to_end():
    assert chunk_starts(300, 431) == [0]
    assert chunk_starts(431, 431) == [0]
    assert chunk_starts(862, 431) == [0, 431]
    assert chunk_starts(1292, 431) == [0, 431, 861]


def test_n_chunks_are_evenly_spaced_from_start_to_end():
    assert chunk_starts(300, 431, 3) == [0, 0, 0]  # one padded chunk, N times
    assert chunk_starts(1292, 431, 1) == [0]
    assert chunk_starts(1292, 431, 3) == [0, 430, 861]
    assert chunk_starts(1292, 431, 4) == [0, 287, 574, 861]


@pytest.mark.slow
def test_published_checkpoint_on_reference_clip_matches_original_model():
    wav = SHARED / "reference" / "TRABCDE128F111GH11.wav"  # 16-bit stereo, under 10 s: one pass
    result = mtt_tag(wav, "--checkpoint", SHARED / "reference" / "teacher_format.ckpt",
                     "--format", "json", "--all-tags", "--device", "cpu", "--precision", "fp32")
    assert result.returncode == 0, result.stderr
    probs = json.loads(result.stdout)[str(wav)]
    assert len(probs) == 50
    from mtt.datasets.vocabulary import MSD_TOP50
    expected = np.load(SHARED / "reference" / "clip_teacher_probs.npy")[0]
    ours = np.array([probs[t] for t in MSD_TOP50])
    assert np.abs(ours - expected).max() <= 2e-5  # 1e-5 model agreement plus 6-digit rounding


@pytest.mark.slow
def test_tags_every_real_clip_and_reports_a_corrupt_file_without_stopping(tmp_path, small_checkpoint):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"ID3" + bytes(range(256)) * 20)
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(CLIPS[0], folder / CLIPS[0].name)
    result = mtt_tag(*CLIPS, corrupt, folder, "--checkpoint", small_checkpoint, "--format", "json", "--top-k", "2")
    assert result.returncode == 1
    assert f"{corrupt}: not readable as audio" in result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {str(c) for c in CLIPS} | {str(folder / CLIPS[0].name)}
    for probs in out.values():
        assert len(probs) == 2 and all(0.0 <= p <= 1.0 for p in probs.values())
        assert list(probs.values()) == sorted(probs.values(), reverse=True)
    assert out[str(CLIPS[0])] == out[str(folder / CLIPS[0].name)]


@pytest.mark.slow
def test_batching_across_files_does_not_change_predictions(small_checkpoint):
    one_by_one = {}
    for clip in CLIPS:
        result = mtt_tag(clip, "--checkpoint", small_checkpoint, "--format", "json", "--all-tags")
        one_by_one |= json.loads(result.stdout)
    batched = json.loads(mtt_tag(*CLIPS, "--checkpoint", small_checkpoint, "--format", "json",
                                 "--all-tags", "--batch-size", "5").stdout)
    for clip in CLIPS:
        for tag, p in one_by_one[str(clip)].items():
            assert batched[str(clip)][tag] == pytest.approx(p, abs=1e-5)


@pytest.mark.slow
def test_text_output_and_missing_file(tmp_path, small_checkpoint):
    result = mtt_tag(CLIPS[0], tmp_path / "nope.wav", "--checkpoint", small_checkpoint, "--top-k", "3")
    assert result.returncode == 1
    assert f"{tmp_path / 'nope.wav'}: file not found" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(CLIPS[0]) and len(lines) == 4


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    result = mtt_tag(CLIPS[0], "--checkpoint", tmp_path / "none.ckpt")
    assert result.returncode == 2 and "none.ckpt" in result.stderr


@pytest.mark.slow
def test_each_bad_file_is_one_line_and_the_others_are_still_tagged(tmp_path, small_checkpoint):
    tiny = tmp_path / "tiny.wav"  # 500 samples at 44.1 kHz: 250 at the model's rate
    soundfile.write(tiny, np.full(500, 0.1, np.float32), 44100)
    mp3 = SHARED / "audio" / "TRWJAZW128F42760DD_test.mp3"  # 30 s, with a Xing header
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(mp3.read_bytes()[: mp3.stat().st_size // 2])
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all\n" * 100)
    good = [CLIPS[1], CLIPS[2]]
    result = mtt_tag(good[0], tiny, truncated, text, good[1], "--checkpoint", small_checkpoint,
                     "--format", "json")
    assert result.returncode == 1
    assert list(json.loads(result.stdout)) == [str(g) for g in good]
    errors = [line for line in result.stderr.splitlines() if line.startswith("mtt tag:")]
    assert errors == [
        f"mtt tag: error: {tiny}: too short to tag (250 samples at 22050 Hz; at least 513 needed)",
        f"mtt tag: error: {truncated}: truncated: decoded 14.87 s of the 29.95 s its header declares",
        f"mtt tag: error: {text}: not readable as audio (unrecognised format or corrupt data)",
    ]
    assert "Traceback" not in result.stderr


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across execve, so a child of a
# 2 GB pytest process would report 2 GB however little it used itself.
PEAK_RSS = """import re, sys
from mtt.cli import main
code = main(sys.argv[1:])
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(f"peak_rss_mb {peak_kb / 1024:.0f}", file=sys.stderr)
sys.exit(code)
"""


def peak_rss_mb(*args):
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, "tag", "--device", "cpu", *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return float(result.stderr.split("peak_rss_mb")[-1])


@pytest.mark.slow  # about 25 s, a minute on a busy machine
def test_a_ten_minute_file_is_streamed_in_bounded_memory(tmp_path, small_checkpoint):
    """10 min of stereo 44.1 kHz is 212 MB as float32 samples (106 MB mono, 53 MB resampled): a
    whole-file decode would show; streamed, tagging it costs about what a 20 s file does."""
    rate = 44100
    block = (0.1 * np.random.default_rng(0).standard_normal((10 * rate, 2))).astype(np.float32)
    paths = {}
    for seconds in (20, 600):
        paths[seconds] = tmp_path / f"{seconds}s.wav"
        with soundfile.SoundFile(paths[seconds], "w", rate, 2, "PCM_16") as f:
            for _ in range(seconds // 10):
                f.write(block)
    short, long = (peak_rss_mb(paths[s], "--checkpoint", small_checkpoint) for s in (20, 600))
    assert long - short < 60, (short, long)
    assert long < 800, long
