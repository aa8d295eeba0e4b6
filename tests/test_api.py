"""mtt.Tagger: fidelity on the reference clip, arrays at any rate and channel layout, chunked
(streamed) log-mel equal to the whole song's, embeddings, and `mtt tag`'s new outputs."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
import torch

import mtt
from conftest import SHARED, mtt_tag
from mtt.inference.tagger import Tagger
from mtt.frontend import LogMel
from mtt.datasets.vocabulary import MSD_TOP50

REF = SHARED / "reference"


@pytest.fixture(scope="module")
def published():
    return Tagger.from_checkpoint(REF / "teacher_format.ckpt", device="cpu", precision="fp32")


def test_published_checkpoint_reproduces_the_original_model(published):
    expected = np.load(REF / "clip_teacher_probs.npy")[0]
    wave = np.load(REF / "clip_mono_22050.npy")
    for audio in (REF / "TRABCDE128F111GH11.wav", wave):
        probs = published.tag(audio)
        assert list(probs) != MSD_TOP50 and len(probs) == 50  # sorted by probability
        assert np.abs(np.array([probs[t] for t in MSD_TOP50]) - expected).max() <= 1e-5
    assert mtt.Tagger is Tagger
    top = published.tag(wave, top_k=3)
    assert list(top.values()) == sorted(top.values(), reverse=True) and len(top) == 3


@pytest.mark.slow
def test_stereo_any_layout_and_other_rates(published, tmp_path):
    stereo, rate = soundfile.read(REF / "TRABCDE128F111GH11.wav", dtype="float32")  # (samples, 2)
    ref = published.tag(stereo.mean(1), top_k=None)
    for audio in (stereo, stereo.T, torch.from_numpy(stereo.T.copy())):
        got = published.tag(audio, sample_rate=rate)
        assert max(abs(got[t] - ref[t]) for t in ref) <= 1e-6
    at_44k = soxr.resample(stereo, rate, 44100, quality="HQ")  # up and back down: nearly lossless
    soundfile.write(tmp_path / "44k.wav", at_44k, 44100, subtype="FLOAT")
    from_file = published.tag(tmp_path / "44k.wav")  # the decoder's resampling path
    got = published.tag(at_44k, sample_rate=44100)
    assert max(abs(got[t] - from_file[t]) for t in ref) <= 1e-6


def test_streamed_chunks_equal_slices_of_the_whole_songs_log_mel(published):
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(22050 * 25).astype(np.float32) * 0.1
    whole = LogMel()(torch.from_numpy(wave))
    starts = published._starts(wave)
    assert len(starts) == 3 and starts[-1] + published.chunk_frames == whole.shape[-1]
    for s in starts:
        chunk = published._chunk_mel(wave, s)
        assert torch.allclose(chunk, whole[:, s:s + published.chunk_frames], atol=1e-3)


def test_blocks_of_any_size_give_the_chunks_of_the_whole_song(published):
    from mtt.inference.tagger import _Chunker
    rng = np.random.default_rng(1)
    for seconds in (0.5, 10.0, 31.3):
        wave = (rng.standard_normal(int(22050 * seconds)) * 0.1).astype(np.float32)
        chunker, got, at = _Chunker(published), [], 0
        while at < wave.size:
            size = int(rng.integers(1, 90_000))
            got += chunker.feed(wave[at:at + size])
            at += size
        got += chunker.end("song")
        assert [s for s, _ in got] == published._starts(wave)
        assert chunker.wave.size <= 3 * published.chunk_frames * 512  # about two chunks held
        for start, mel in got:
            assert torch.equal(mel, published._chunk_mel(wave, start))


@pytest.mark.slow
def test_a_streamed_file_equals_the_whole_file_path(tmp_path, small_checkpoint):
    """Decoded and resampled in blocks, chunks cut as they come: the same probabilities and
    embeddings as decoding the whole file, one log-mel of the whole song, and slicing it."""
    from mtt.inference.songs import chunk_starts, features
    from mtt.audio import load_audio
    rng = np.random.default_rng(2)
    path = tmp_path / "stereo_44k.wav"
    t = np.arange(int(44100 * 150.3)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 330 * t * (1 + 0.1 * np.sin(t)))
    stereo = np.stack([tone, 0.5 * tone], 1) + 0.05 * rng.standard_normal((t.size, 2))
    soundfile.write(path, stereo.astype(np.float32), 44100, subtype="PCM_16")
    tagger = Tagger.from_checkpoint(small_checkpoint, device="cpu")
    whole = LogMel()(torch.from_numpy(load_audio(path)))
    starts = chunk_starts(whole.shape[-1], tagger.chunk_frames)
    with torch.inference_mode():
        emb, logits = features(tagger.model, torch.stack([whole[:, s:s + tagger.chunk_frames] for s in starts]))
    got_starts, probs = tagger.taggram(path)
    _, embs = tagger.embed(path)
    assert len(starts) == 16 and np.allclose(got_starts * 22050 / 512, starts)
    assert np.abs(probs - torch.sigmoid(logits).numpy()).max() <= 1e-5
    assert np.abs(embs - emb.numpy()).max() <= 1e-5


@pytest.mark.slow
def test_taggram_and_embeddings(published):
    wave = np.tile(np.load(REF / "clip_mono_22050.npy"), 6)  # 11.6 s -> 2 chunks
    starts, probs = published.taggram(wave)
    assert probs.shape == (2, 50) and starts[0] == 0.0 and 1.0 < starts[1] < 2.0
    song = published.tag(wave)
    assert song[MSD_TOP50[0]] == pytest.approx(probs[:, 0].mean(), abs=1e-6)
    emb, chunk_embs = published.embed(wave)
    assert emb.shape == (256,) and chunk_embs.shape == (2, 256)
    logits = published.model.mlp_head(torch.from_numpy(chunk_embs))
    assert np.allclose(torch.sigmoid(logits).detach().numpy(), probs, atol=1e-5)
    many = published.tag([wave, np.load(REF / "clip_mono_22050.npy")])
    assert len(many) == 2 and many[0] == pytest.approx(song, abs=1e-6)


def test_too_short_input_is_a_clear_error(published):
    with pytest.raises(mtt.audio.AudioError, match="too short"):
        published.tag(np.zeros(512, np.float32))
    assert len(published.tag(np.zeros(513, np.float32))) == 50


@pytest.mark.slow
def test_cli_formats_taggram_embeddings_out_and_a_too_short_file(tmp_path, small_checkpoint):
    short = tmp_path / "short.wav"
    soundfile.write(short, np.zeros(400, np.float32), 22050)
    clip = REF / "TRABCDE128F111GH11.wav"
    out, emb = tmp_path / "tags.json", tmp_path / "emb.h5"
    result = mtt_tag(clip, short, "--checkpoint", small_checkpoint, "--format", "json", "--taggram",
                     "--out", out, "--embeddings", emb)
    assert result.returncode == 1 and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(short) in errors[0] and "too short" in errors[0]
    doc = json.loads(out.read_text())
    assert list(doc) == [str(clip)] and doc[str(clip)]["taggram"]["start_seconds"] == [0.0]
    import h5py
    with h5py.File(emb) as f:
        assert f["song"].shape == (1, 32) and f["chunks"].shape == (1, 32)
        assert f["paths"].asstr()[0] == str(clip)
    npy = tmp_path / "emb.npy"
    tsv = mtt_tag(clip, "--checkpoint", small_checkpoint, "--format", "tsv", "--embeddings", npy)
    assert tsv.returncode == 0, tsv.stderr
    rows = tsv.stdout.splitlines()
    assert rows[0] == "path\ttag\tprobability" and len(rows) == 5 and np.load(npy).shape == (1, 32)
    text = mtt_tag(clip, "--checkpoint", small_checkpoint, "--taggram")
    assert text.returncode == 0 and "@    0.00 s" in text.stdout


@pytest.mark.slow
def test_readme_python_example_runs(monkeypatch):
    import re
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    exec(compile(block, "README.md", "exec"), {})


def test_tagger_in_fp32_makes_float32_exact_as_the_other_commands(small_checkpoint, monkeypatch):
    """The Tagger resolves its precision with the commands' `select_precision` (which turns TF32
    off in cuDNN on CUDA for fp32); the batch size follows the device when none is given."""
    import mtt.inference.tagger as tagger_module
    from mtt.inference.device import select_precision
    calls = []
    monkeypatch.setattr(tagger_module, "select_precision", lambda precision, device, model=None:
                        calls.append((precision, device)) or select_precision(precision, device))
    tagger = Tagger.from_checkpoint(small_checkpoint, device="cpu", precision="fp32")
    assert tagger.precision == "fp32" and tagger.batch_size == 4
    assert Tagger.from_checkpoint(small_checkpoint, device="cpu", precision="bf16",
                                  batch_size=7).batch_size == 7
    assert calls == [("fp32", torch.device("cpu")), ("bf16", torch.device("cpu"))]
