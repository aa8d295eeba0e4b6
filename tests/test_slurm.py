"""The workflow through a real one-node SLURM: `snakemake --profile profiles/slurm`.

The test installs SLURM and munge with apt-get when they are missing (Debian; needs root), starts
munged, slurmctld and slurmd directly (tests/slurm/start_slurm.sh), runs the tiny workflow with
every job submitted by snakemake-executor-plugin-slurm, and stops the daemons by PID.
"""
import os
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import REPO, SNAKEFILE, TINY, VENV_BIN, snakemake_env

SCRIPTS = REPO / "tests" / "slurm"
RUN_LIMIT_S = 1200

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


def test_tiny_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    command = [
        # the run is bounded: a broken status check would otherwise wait forever
        "timeout", "-k", "30", str(RUN_LIMIT_S),
        str(VENV_BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir),
        "--profile", str(REPO / "profiles" / "slurm"),
        "--configfile", str(TINY),
        # test-cluster overrides: no accounting (squeue + MinJobAge=300), quick status checks
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--latency-wait", "5",
        "--jobs", "4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=snakemake_env(),
                            timeout=RUN_LIMIT_S + 60)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"exit {result.returncode}:\n{log[-8000:]}"

    summary = pd.read_csv(workdir / "results" / "evaluation" / "summary.tsv", sep="\t")
    assert list(summary["model"]) == ["teacher", "student_kd", "student_ke"]
    assert summary["roc_auc"].between(0, 1).all()

    # every job went through sbatch: one SLURM log per job, in the plugin's log folder
    slurm_logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    rules = {p.parts[p.parts.index("slurm_logs") + 1] for p in slurm_logs}
    assert {"rule_demo_data", "rule_build_splits", "rule_preprocess_mel", "rule_train_teacher",
            "rule_pseudo_label", "rule_train_student", "rule_evaluate"} <= rules, rules
    assert len(slurm_logs) == 16  # every job except the local rules summarize, report, all

    # the GPU stages asked SLURM for the node's GPU, the others did not
    jobs = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    gpus = {}
    for line in jobs:
        rule = re.search(r"Comment=rule_(\w+?)(_wildcards_\S*)?(\s|$)", line)
        if rule:
            gpus.setdefault(rule.group(1), []).append("TresPerJob=gres:gpu:1" in line)
    for rule in ("train_teacher", "train_student", "pseudo_label", "evaluate"):
        assert gpus[rule] and all(gpus[rule]), (rule, gpus)
    for rule in ("demo_data", "build_splits", "preprocess_mel"):
        assert gpus[rule] and not any(gpus[rule]), (rule, gpus)
