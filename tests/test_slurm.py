"""The workflow through a real one-node SLURM: `snakemake --profile slurm`.

The test installs SLURM and munge with apt-get when they are missing (Debian; needs root), starts
munged, slurmctld and slurmd directly (tests/slurm/start_slurm.sh), runs the tiny workflow with
every job submitted by snakemake-executor-plugin-slurm, and stops the daemons by PID.
"""
import pandas as pd
import pytest

from conftest import TINY, slurm_jobs, snakemake_through_slurm

RUN_LIMIT_S = 1200

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def test_tiny_workflow_runs_through_slurm(slurm_cluster, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    snakemake_through_slurm(workdir, RUN_LIMIT_S, [TINY])

    summary = pd.read_csv(workdir / "results" / "evaluation" / "summary.tsv", sep="\t")
    assert list(summary["model"]) == ["teacher", "student_kd", "student_ke"]
    assert summary["roc_auc"].between(0, 1).all()

    # every job went through sbatch: one SLURM log per job, in the plugin's log folder
    slurm_logs = list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    rules = {p.parts[p.parts.index("slurm_logs") + 1] for p in slurm_logs}
    assert {"rule_demo_data", "rule_build_splits", "rule_preprocess_mel", "rule_train_teacher",
            "rule_pseudo_label", "rule_train_student", "rule_evaluate"} <= rules, rules
    assert len(slurm_logs) == 17  # every job except the local rules summarize, report, all

    # the GPU stages asked SLURM for the node's GPU, the others did not
    gpus = {rule: ["TresPerJob=gres:gpu:1" in record for record in records]
            for rule, records in slurm_jobs().items()}
    for rule in ("train_teacher", "train_student", "pseudo_label", "evaluate"):
        assert gpus[rule] and all(gpus[rule]), (rule, gpus)
    for rule in ("demo_data", "demo_unlabeled_audio", "build_splits", "preprocess_mel"):
        assert gpus[rule] and not any(gpus[rule]), (rule, gpus)
