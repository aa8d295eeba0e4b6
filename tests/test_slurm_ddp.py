"""Multi-process (DDP) training through a real one-node SLURM: the tiny workflow with
`resources.train.processes: 2` submitted by `snakemake --profile profiles/slurm`.

As documented (docs/WORKFLOW.md, "Several GPUs per training job"), each training job is one SLURM
job asking for `processes x gpu` GPUs (`--gpus=2`) and `threads` CPUs per GPU (`--cpus-per-gpu=1`),
and its step runs `torchrun --standalone --nproc-per-node 2 -m mtt.cli train`; the ranks share
each epoch's batches (2 steps per epoch become 1 per rank) and rank 0 writes the outputs. The
test cluster's node has no GPU: SLURM hands out its two pretend GPUs (tests/slurm/gres.conf.in)
and the ranks, which see no CUDA, train on the CPU with gloo (tiny.yaml: `device: cpu`).

The cluster is started and stopped with tests/slurm/start_slurm.sh and stop_slurm.sh, as in
tests/test_slurm.py (installs slurm-wlm and munge with apt-get when missing; needs root).
"""
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import REPO, SNAKEFILE, TINY, VENV_BIN, snakemake_env
from mtt.checkpoint import load_checkpoint

SCRIPTS = REPO / "tests" / "slurm"
RUN_LIMIT_S = 1500
TWO_PROCESSES = """
resources:
  train: {mem_mb: 2000, runtime: 10, threads: 1, gpu: 1, processes: 2}
"""
TRAINING_LOGS = {"teacher": "train_teacher/log.log", "student_kd": "train_student/student_kd.log",
                 "student_ke": "train_student/student_ke.log"}  # under results/logs

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("starting SLURM daemons and writing /etc/slurm needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    state = tmp_path_factory.mktemp("slurm_state")
    # finished jobs stay visible for an hour, so the test can read every job's request
    env = {**os.environ, "MTT_SLURM_MIN_JOB_AGE": "3600"}
    start = subprocess.run(["bash", str(SCRIPTS / "start_slurm.sh"), str(state)],
                           capture_output=True, text=True, timeout=900, env=env)
    try:
        assert start.returncode == 0, f"SLURM did not start:\n{start.stdout}\n{start.stderr}"
        yield state
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh"), str(state)], timeout=120)


def sbatch_calls(log: str) -> dict:
    """rule -> the sbatch command lines the executor plugin logged (with --verbose)."""
    calls = {}
    for call in re.findall(r"sbatch call: (.*)", log):
        rule = re.search(r"--comment[= ]'?rule_(\w+?)(_wildcards_\S*?)?'?(\s|$)", call)
        if rule:
            calls.setdefault(rule.group(1), []).append(call)
    return calls


def slurm_jobs() -> dict:
    """rule -> the `scontrol show job` records of its jobs."""
    lines = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    jobs = {}
    for line in lines:
        rule = re.search(r"Comment=rule_(\w+?)(_wildcards_\S*)?(\s|$)", line)
        if rule:
            jobs.setdefault(rule.group(1), []).append(line)
    return jobs


def test_tiny_workflow_trains_with_two_processes_per_job_through_slurm(slurm_cluster, tmp_path):
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text(TWO_PROCESSES)
    workdir = tmp_path / "run"
    workdir.mkdir()
    command = [
        "timeout", "-k", "30", str(RUN_LIMIT_S),
        str(VENV_BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir),
        "--profile", str(REPO / "profiles" / "slurm"),
        "--configfile", str(TINY), str(overlay),
        # test-cluster overrides, as in test_slurm.py
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--latency-wait", "5",
        "--jobs", "4",
        "--verbose",  # the plugin logs every sbatch command line
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=snakemake_env(),
                            timeout=RUN_LIMIT_S + 60)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"exit {result.returncode}:\n{log[-8000:]}"

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
