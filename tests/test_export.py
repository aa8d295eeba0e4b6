"""`mtt export --onnx`: onnxruntime matches PyTorch within 1e-4 (a tiny model; the published
teacher on the reference clip, with dynamic batch and length)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtt.inference.tagger import Tagger
from mtt.inference.export import export_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
REF = Path(__file__).resolve().parents[2] / "shared" / "reference"


def test_a_small_checkpoint_exports_and_matches_pytorch(tmp_path, small_checkpoint):
    path = tmp_path / "small.onnx"
    info = export_onnx(small_checkpoint, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tags = json.loads(session.get_modelmeta().custom_metadata_map["tags"])
    assert tags == info["tags"]
    wave = np.random.default_rng(0).standard_normal(22050 * 3).astype(np.float32) * 0.1
    probs, _ = session.run(None, {"waveform": wave[None]})
    expected = Tagger.from_checkpoint(small_checkpoint, device="cpu", precision="fp32").tag(wave)
    assert np.abs(probs[0] - np.array([expected[t] for t in tags])).max() <= 1e-4


@pytest.mark.slow
def test_onnx_export_matches_pytorch_on_the_reference_clip(tmp_path):
    path = tmp_path / "teacher.onnx"
    result = subprocess.run([sys.executable, "-m", "mtt.cli", "export", "--checkpoint",
                             REF / "teacher_format.ckpt", "--onnx", path],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tags = json.loads(session.get_modelmeta().custom_metadata_map["tags"])
    wave = np.load(REF / "clip_mono_22050.npy")
    probs, emb = session.run(None, {"waveform": wave[None]})
    tagger = Tagger.from_checkpoint(REF / "teacher_format.ckpt", device="cpu", precision="fp32")
    expected = tagger.tag(wave)
    assert np.abs(probs[0] - np.array([expected[t] for t in tags])).max() <= 1e-4
    assert np.abs(probs[0] - np.load(REF / "clip_teacher_probs.npy")[0]).max() <= 1e-4
    assert np.abs(emb[0] - tagger.embed(wave)[0]).max() <= 1e-3
    # dynamic axes: another batch size and length
    batch = np.stack([wave[:30000], wave[5000:35000], wave[:30000]])
    probs3, _ = session.run(None, {"waveform": batch})
    assert probs3.shape == (3, 50)
    assert np.abs(probs3[0] - probs3[2]).max() <= 1e-6
    assert np.abs(probs3[0] - np.array(list(dict(sorted(
        tagger.tag(wave[:30000]).items(), key=lambda kv: tags.index(kv[0]))).values()))).max() <= 1e-4
