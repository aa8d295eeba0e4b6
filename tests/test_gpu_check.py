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
