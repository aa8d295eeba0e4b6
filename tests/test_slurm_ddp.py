"""Multi-process (DDP) training through a real one-node SLURM: the tiny workflow with
`resources.train.processes: 2` submitted by `snakemake --profile slurm`.

As documented (docs/WORKFLOW.md, "Several GPUs per training job"), each training job is one SLURM
job asking for `processes x gpu` GPUs (`--gpus=2`) and `threads` CPUs per GPU (`--cpus-per-gpu=1`),
and its step runs `torchrun --standalone --nproc-per-node 2 -m mtt.cli train`; the ranks share
each epoch's batches (2 steps per epoch become 1 per rank) and rank 0 writes the outputs. The
test cluster's node has no GPU: SLURM hands out its two pretend GPUs (tests/slurm/gres.conf.in)
and the ranks, which see no CUDA, train on the CPU with gloo (tiny.yaml: `device: cpu`).

The cluster is started and stopped with tests/slurm/start_slurm.sh and stop_slurm.sh, as in
tests/test_slurm.py (installs slurm-wlm and munge with apt-get when missing; needs root).
"""
import re

import pandas as pd
import pytest

from conftest import TINY, slurm_jobs, snakemake_through_slurm
from mtt.checkpoint import load_checkpoint

RUN_LIMIT_S = 1500
TWO_PROCESSES = """
resources:
  train: {mem_mb: 2000, runtime: 10, threads: 1, gpu: 1, processes: 2}
"""
TRAINING_LOGS = {"teacher": "train_teacher/teacher.log",
                 "student_kd": "train_student/student_kd.log",
                 "student_ke": "train_student/student_ke.log"}  # under results/logs

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def sbatch_calls(log: str) -> dict:
    """rule -> the sbatch command lines the executor plugin logged (with --verbose)."""
    calls = {}
    for call in re.findall(r"sbatch call: (.*)", log):
        rule = re.search(r"--comment[= ]'?rule_(\w+?)(_wildcards_\S*?)?'?(\s|$)", call)
        if rule:
            calls.setdefault(rule.group(1), []).append(call)
    return calls


def test_tiny_workflow_trains_with_two_processes_per_job_through_slurm(slurm_cluster, tmp_path):
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text(TWO_PROCESSES)
    workdir = tmp_path / "run"
    workdir.mkdir()
    log = snakemake_through_slurm(workdir, RUN_LIMIT_S, [TINY, overlay],
                                  "--verbose")  # the plugin logs every sbatch command line

    summary = pd.read_csv(workdir / "results" / "evaluation" / "summary.tsv", sep="\t")
    assert list(summary["model"]) == ["teacher", "student_kd", "student_ke"]
    assert summary["roc_auc"].between(0, 1).all()

    # the request: one job per training, 2 GPUs and 1 CPU per GPU; the other GPU stages 1 GPU
    calls = sbatch_calls(log)
    for rule in ("train_teacher", "train_student"):
        assert calls.get(rule), (rule, sorted(calls))
        for call in calls[rule]:
            assert "--gpus=2" in call and "--cpus-per-gpu=1" in call, call
            assert "--cpus-per-task" not in call, call
    for rule in ("pseudo_label", "evaluate"):
        assert calls.get(rule) and all("--gpus=1" in c and "--cpus-per-gpu" not in c
                                       for c in calls[rule]), (rule, calls.get(rule))
    jobs = slurm_jobs()
    assert len(jobs["train_teacher"]) == 1 and len(jobs["train_student"]) == 2, jobs.keys()
    for rule in ("train_teacher", "train_student"):
        for record in jobs[rule]:
            assert "TresPerJob=gres:gpu:2" in record, record
            assert re.search(r"CpusPerTres=gres[:/]gpu:1\b", record), record
            assert re.search(r"\bNumCPUs=2\b", record), record  # 2 GPUs x 1 CPU each
            assert "JobState=COMPLETED" in record, record

    # the result documented for DDP: torchrun with 2 ranks, which share each epoch's 2 steps
    # (1 step per rank), every epoch run and validated, rank 0's checkpoint complete
    assert re.search(r"torchrun --standalone --nproc-per-node 2 -m mtt\.cli train", log)
    for model, log_name in TRAINING_LOGS.items():
        history = pd.read_csv(workdir / "results" / "models" / model / "history.csv")
        assert len(history) == 2, (model, history)  # tiny.yaml: 2 epochs
        load_checkpoint(workdir / "results" / "models" / model / "best.ckpt")
        train_log = (workdir / "results" / "logs" / log_name).read_text()
        assert "1 steps/epoch" in train_log, (model, train_log[-2000:])
