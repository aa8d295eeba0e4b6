"""The GPU check one call away: bench/gpu_bundle.sh gathers what a GPU image lacks, and
bench/gpu_offline.sh installs it there with no network and runs the check.

The slow test needs an image-like interpreter (Python 3.12 with torch 2.11 and the scientific stack
of envs/gpu-image.txt, no snakemake, soundfile or soxr), named by $MTT_IMAGE_PYTHON; .ci/run builds
one. It installs the bundle offline (in a network namespace of its own where it can make one, as
root) and runs the tiny workflow on CPU, then bench/gpu_check.sh up to its "CUDA is not available"
line."""
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, TINY

IMAGE_PYTHON = os.environ.get("MTT_IMAGE_PYTHON")


def offline(command, bundle, site, image_python, timeout):
    """bench/gpu_offline.sh COMMAND with only the image's interpreter on PATH, no pip index or
    configuration, and no network where `unshare -n` can take it away."""
    env = {"HOME": os.environ["HOME"], "PIP_CONFIG_FILE": os.devnull, "MTT_GPU_BUNDLE": str(bundle),
           "MTT_GPU_SITE": str(site),
           "PATH": f"{Path(image_python).parent}{os.pathsep}/usr/local/bin:/usr/bin:/bin"}
    no_network = (["unshare", "-n"] if os.geteuid() == 0 and shutil.which("unshare") else [])
    return subprocess.run([*no_network, "bash", str(REPO / "bench" / "gpu_offline.sh"), *command],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_offline_install_without_a_bundle_says_what_to_do(tmp_path):
    result = offline([], tmp_path / "none", tmp_path / "site", shutil.which("python3"), 60)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"gpu_offline: no wheels in {tmp_path / 'none'}/wheels: run "
                                      f"bench/gpu_bundle.sh here first and carry {tmp_path / 'none'}")


@pytest.mark.slow
@pytest.mark.skipif(not IMAGE_PYTHON, reason="needs $MTT_IMAGE_PYTHON, an image-like Python 3.12")
def test_bundle_installs_offline_runs_the_tiny_workflow_and_the_gpu_check(tmp_path):
    lacks = subprocess.run([IMAGE_PYTHON, "-c", "import snakemake"], capture_output=True)
    assert lacks.returncode != 0, "the image-like Python must not have snakemake"
    bundle = tmp_path / "gpu"
    built = subprocess.run(["bash", REPO / "bench" / "gpu_bundle.sh", bundle], cwd=REPO,
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    figures = dict(pair.split("=") for pair in built.stdout.strip().splitlines()[-1].split())
    assert int(figures["travel_mib"]) < 64
    assert {p.name for p in (bundle / "reference").iterdir()} == {
        "teacher_format.ckpt", "clip_mono_22050.npy", "clip_teacher_probs.npy"}

    site, workdir = tmp_path / "site", tmp_path / "run"
    workflow = offline(["snakemake", "--cores", "2", "--directory", str(workdir),
                        "--configfile", str(TINY)], bundle, site, IMAGE_PYTHON, 1800)
    assert workflow.returncode == 0, (workflow.stdout + workflow.stderr)[-6000:]
    summary = pd.read_csv(workdir / "results" / "evaluation" / "summary.tsv", sep="\t")
    assert list(summary["model"]) == ["teacher", "student_kd", "student_ke"]

    check = offline([], bundle, site, IMAGE_PYTHON, 600)
    assert check.returncode == 1
    assert check.stderr.strip().splitlines()[-1].startswith(
        "gpu_check: CUDA was asked for and is not available")
    assert "Python 3.12" in check.stdout and "torch 2.11" in check.stdout
