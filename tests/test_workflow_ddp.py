"""Multi-process training from the workflow: `resources.train.processes` launches torchrun."""
import re

import pandas as pd
import pytest

from conftest import TINY, snakemake
from mtt.checkpoint import load_checkpoint

TWO_PROCESSES = """
resources:
  train: {mem_mb: 2000, runtime: 10, threads: 1, gpu: 1, processes: 2}
"""


def rule_blocks(output: str) -> dict:
    blocks = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            blocks.setdefault(rule.group(1), block)
    return blocks


def test_two_processes_plan_torchrun_and_one_job_with_two_gpus(tmp_path):
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text(TWO_PROCESSES)
    result = snakemake("-n", "-p", "--cores", "2", "--configfile", TINY, overlay,
                       workdir=tmp_path / "run")
    blocks = rule_blocks(result.stdout)
    for rule in ("train_teacher", "train_student"):
        assert "torchrun --standalone --nproc-per-node 2 -m mtt.cli train" in blocks[rule]
        assert "--threads 1 " in blocks[rule]
        resources = re.search(r"resources: (.*)", blocks[rule]).group(1)
        assert "gpu=2" in resources and "cpus_per_gpu=1" in resources, resources
    assert "torchrun" not in blocks["evaluate"]
    assert "gpu=1" in re.search(r"resources: (.*)", blocks["evaluate"]).group(1)


def test_local_gpu_command_limits_the_gpu_stages_and_batches_follow_the_device(tmp_path):
    """`snakemake --cores all --resources gpu=1` (docs/WORKFLOW.md): every GPU stage declares
    `gpu`, so the limit holds locally; `pseudo_label.batch_size: auto` leaves the batch to the
    command (256 inputs on CUDA)."""
    overlay = tmp_path / "auto.yaml"
    overlay.write_text("pseudo_label: {batch_size: auto}\n")
    result = snakemake("-n", "-p", "--cores", "all", "--resources", "gpu=1", "--configfile",
                       TINY, overlay, workdir=tmp_path / "run")
    blocks = rule_blocks(result.stdout)
    for rule in ("train_teacher", "train_student", "pseudo_label", "evaluate"):
        assert "gpu=1" in re.search(r"resources: (.*)", blocks[rule]).group(1), rule
    assert "--batch-size auto" in blocks["pseudo_label"]


@pytest.mark.slow
def test_one_process_is_the_plain_command(tmp_path):
    result = snakemake("-n", "-p", "--cores", "2", "--configfile", TINY, workdir=tmp_path)
    blocks = rule_blocks(result.stdout)
    assert "python -m mtt.cli train --fresh-unless-interrupted --threads 1" in \
        blocks["train_teacher"]
    assert "cpus_per_gpu" not in blocks["train_teacher"]


@pytest.mark.slow
def test_tiny_teacher_trains_with_two_gloo_processes(tmp_path):
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text(TWO_PROCESSES)
    work = tmp_path / "run"
    snakemake("results/models/teacher/best.ckpt", "--cores", "2", "--configfile", TINY, overlay,
              workdir=work, timeout=900)
    history = pd.read_csv(work / "results" / "models" / "teacher" / "history.csv")
    assert len(history) == 2  # tiny.yaml: 2 epochs
    load_checkpoint(work / "results" / "models" / "teacher" / "best.ckpt")
    log = (work / "results" / "logs" / "train_teacher" / "teacher.log").read_text()
    assert "1 steps/epoch" in log  # the epoch's 2 steps shared by the 2 ranks
