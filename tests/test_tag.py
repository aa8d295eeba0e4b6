"""`mtt tag` on real audio: formats, rates, channels, batching, chunking, failures."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtt.checkpoint import save_checkpoint
from mtt.models import build_model
from mtt.tag import chunk_starts

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = sorted((SHARED / "audio").iterdir())  # MP3 16 kHz mono, MP3 22.05 kHz stereo, WAV, Ogg


def mtt_tag(*args):
    return subprocess.run([sys.executable, "-m", "mtt.cli", "tag", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("transformer", 4, conv_channels=8, width=32, layers=1)
    path = tmp_path_factory.mktemp("ckpt") / "small.ckpt"
    save_checkpoint(path, model.eval(), ["rock", "jazz", "calm", "piano"])
    return path


def test_chunks_cover_the_song_with_last_aligned_to_end():
    assert chunk_starts(300, 431) == [0]
    assert chunk_starts(431, 431) == [0]
    assert chunk_starts(862, 431) == [0, 431]
    assert chunk_starts(1292, 431) == [0, 431, 861]


def test_published_checkpoint_on_reference_clip_matches_original_model():
    wav = SHARED / "reference" / "TRABCDE128F111GH11.wav"  # 16-bit stereo, under 10 s: one pass
    result = mtt_tag(wav, "--checkpoint", SHARED / "reference" / "teacher_format.ckpt",
                     "--format", "json", "--all-tags")
    assert result.returncode == 0, result.stderr
    probs = json.loads(result.stdout)[str(wav)]
    assert len(probs) == 50
    from mtt.tags import MSD_TOP50
    expected = np.load(SHARED / "reference" / "clip_teacher_probs.npy")[0]
    ours = np.array([probs[t] for t in MSD_TOP50])
    assert np.abs(ours - expected).max() <= 2e-5  # 1e-5 model agreement plus 6-digit rounding


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


def test_text_output_and_missing_file(tmp_path, small_checkpoint):
    result = mtt_tag(CLIPS[0], tmp_path / "nope.wav", "--checkpoint", small_checkpoint, "--top-k", "3")
    assert result.returncode == 1
    assert f"{tmp_path / 'nope.wav'}: file not found" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(CLIPS[0]) and len(lines) == 4


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    result = mtt_tag(CLIPS[0], "--checkpoint", tmp_path / "none.ckpt")
    assert result.returncode == 2 and "none.ckpt" in result.stderr
