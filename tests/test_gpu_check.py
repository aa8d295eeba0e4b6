"""bench/gpu_check.sh: on a machine without CUDA it stops at once with one line, never on CPU."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run the check itself")
def test_gpu_check_fails_loudly_without_cuda():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", ROOT / "bench" / "gpu_check.sh"], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "gpu_check: CUDA was asked for and is not available")
    assert "train:" not in result.stdout  # nothing ran


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_train_refuses_cuda_it_does_not_have(tmp_path):
    result = subprocess.run([sys.executable, ROOT / "bench" / "gpu_train.py", "--work", tmp_path,
                             "--device", "cuda"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "gpu_train: --device cuda: CUDA is not available on this machine"
    assert not any(tmp_path.iterdir())  # refused before building anything


def test_gpu_fidelity_on_cpu_meets_its_tolerances(reference_dir):
    """bench/gpu_fidelity.py, the GPU check's fidelity part, with the CPU standing in for the
    device: the reference checkpoint within 1e-5 of the original in fp32, 2e-2 in bf16."""
    result = subprocess.run([sys.executable, ROOT / "bench" / "gpu_fidelity.py", "--device", "cpu",
                             "--reference", reference_dir],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = {k: float(v) for k, v in
               (pair.split("=") for pair in result.stdout.strip().splitlines()[-1].split())}
    assert figures["fidelity_cpu_fp32_vs_reference"] <= 1e-5
    assert figures["fidelity_cpu_bf16_vs_reference"] <= 2e-2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_fidelity_refuses_cuda_it_does_not_have():
    result = subprocess.run([sys.executable, ROOT / "bench" / "gpu_fidelity.py", "--device", "cuda"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip() == "gpu_fidelity: --device cuda: CUDA is not available on this machine"
