"""`mtt export --onnx model.onnx`: a checkpoint with its log-mel front end as one ONNX graph.

Input `waveform` (batch, samples) float32 mono at 22,050 Hz (more than 512 samples; at most the
model's positional table, 10 s chunks as `mtt tag` uses are safe); outputs `probabilities`
(batch, n_tags) and `embedding` (batch, dim); batch and samples are dynamic axes. The STFT is
written as a strided convolution with the windowed DFT basis, which every onnxruntime build runs.
The tag names are stored in the model's metadata (`tags`, JSON).
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checks import input_file, output_file, positive_int
from ..checkpoint import load_checkpoint
from ..frontend import HOP_LENGTH, N_FFT, POWER_FLOOR, LogMel
from .songs import features

OPSET = 18


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, type=input_file, help="an mtt or published-layout checkpoint")
    parser.add_argument("--onnx", required=True, metavar="FILE", type=output_file, help="the ONNX file to write")
    parser.add_argument("--opset", type=positive_int, default=OPSET, help=f"ONNX opset (default {OPSET})")


class WaveformTagger(nn.Module):
    """(batch, samples) waveform -> (probabilities, embedding), log-mel included."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()
        spec = LogMel().spec
        window = spec.spectrogram.window.double()
        n = torch.arange(N_FFT, dtype=torch.float64)
        k = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)
        angle = 2 * torch.pi * k[:, None] * n[None] / N_FFT
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2 * bins, n_fft)
        self.register_buffer("basis", basis.float()[:, None, :])
        self.register_buffer("fb", spec.mel_scale.fb.clone())

    def forward(self, waveform):
        x = nn.functional.pad(waveform[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        spectrum = nn.functional.conv1d(x, self.basis, stride=HOP_LENGTH)  # (B, 2 * bins, frames)
        bins = N_FFT // 2 + 1
        power = spectrum[:, :bins].square() + spectrum[:, bins:].square()
        mel = 10.0 * torch.log10(torch.matmul(power.transpose(1, 2), self.fb).clamp_min(POWER_FLOOR))
        embedding, logits = features(self.model, mel.transpose(1, 2))
        return torch.sigmoid(logits), embedding


def export_onnx(checkpoint, path, opset=OPSET):
    model, info = load_checkpoint(checkpoint)
    wrapper = WaveformTagger(model).eval()
    example = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 22050 * 5)).astype(np.float32))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(path), input_names=["waveform"],
                          output_names=["probabilities", "embedding"], opset_version=opset,
                          dynamic_axes={"waveform": {0: "batch", 1: "samples"},
                                        "probabilities": {0: "batch"}, "embedding": {0: "batch"}},
                          dynamo=False)
    import onnx
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "tags", json.dumps(info["tags"])
    onnx.save(proto, str(path))
    return info


def run(args) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("mtt export: needs the onnx extra: pip install 'mtt[onnx]'", file=sys.stderr)
        return 2
    try:
        info = export_onnx(args.checkpoint, args.onnx, args.opset)
    except (FileNotFoundError, ValueError) as err:
        print(f"mtt export: {err}", file=sys.stderr)
        return 2
    print(f"mtt export: wrote {args.onnx} ({len(info['tags'])} tags, opset {args.opset})", file=sys.stderr)
    return 0
