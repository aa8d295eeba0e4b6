"""The published-layout reference checkpoint on a device against the reference probabilities.

Runs the published teacher (`teacher_format.ckpt`, shared/reference/README.md) on the reference
clip, log-mel front end included, on the CPU in fp32 and on `--device` in fp32 and bf16 autocast;
checks fp32 within 1e-5 and bf16 within 2e-2 of the original implementation's probabilities and
of the CPU's. Exit 1 with one line when a tolerance is missed or the device is missing.
Last line: key=value pairs.

    python bench/gpu_fidelity.py --device cuda [--reference DIR]

The reference folder defaults to $MTT_REFERENCE, else ../shared/reference beside the repository
(bench/gpu_bundle.sh copies the files this needs into .gpu/reference for a lent GPU).
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from mtt.checkpoint import load_checkpoint
from mtt.frontend import LogMel
from mtt.inference.device import autocast, select_precision

FILES = ("teacher_format.ckpt", "clip_mono_22050.npy", "clip_teacher_probs.npy")
TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2}


def default_reference() -> Path:
    if os.environ.get("MTT_REFERENCE"):
        return Path(os.environ["MTT_REFERENCE"])
    return Path(__file__).resolve().parents[2] / "shared" / "reference"


def probabilities(model, wave: torch.Tensor, device: torch.device, precision: str) -> np.ndarray:
    model = model.to(device)
    with torch.no_grad(), autocast(device, select_precision(precision, device)):
        mel = LogMel().to(device)(wave.to(device))
        return torch.sigmoid(model(mel)).float().cpu().numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reference", type=Path, default=default_reference())
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_fidelity: --device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 1
    missing = [name for name in FILES if not (args.reference / name).is_file()]
    if missing:
        print(f"gpu_fidelity: {args.reference}: missing {', '.join(missing)}", file=sys.stderr)
        return 1
    expected = np.load(args.reference / "clip_teacher_probs.npy")
    wave = torch.from_numpy(np.load(args.reference / "clip_mono_22050.npy"))[None]
    model, _ = load_checkpoint(args.reference / "teacher_format.ckpt")

    cpu = probabilities(model, wave, torch.device("cpu"), "fp32")
    figures = {"cpu_fp32_vs_reference": np.abs(cpu - expected).max()}
    for precision in ("fp32", "bf16"):
        on_device = probabilities(model, wave, device, precision)
        figures[f"{device.type}_{precision}_vs_reference"] = np.abs(on_device - expected).max()
        figures[f"{device.type}_{precision}_vs_cpu"] = np.abs(on_device - cpu).max()
    def tolerance(key):
        return TOLERANCE["bf16" if "bf16" in key else "fp32"]

    failed = [f"{key} {value:.2e} > {tolerance(key):.0e}" for key, value in figures.items()
              if value > tolerance(key)]
    for key, value in figures.items():
        print(f"{key}: {value:.2e}")
    print(" ".join(f"fidelity_{key}={value:.2e}" for key, value in figures.items()), flush=True)
    if failed:
        print(f"gpu_fidelity: outside tolerance: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
