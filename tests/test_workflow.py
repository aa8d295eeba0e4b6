"""The Snakemake workflow: config validation, planning, lint, `mtt summarize` / `mtt plots`, and
the whole pipeline on tests/tiny.yaml (real stages end to end, a few minutes on 2 cores)."""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from conftest import (REPO, SNAKEFILE, TINY, TINY_RESNET, VENV_BIN, planned_jobs, slow_case,
                      snakemake, snakemake_env)
from mtt.report import plots


def student_teachers(output: str) -> dict:
    """student -> the model whose pseudo-label shards its planned `mtt train` reads (-p)."""
    pairs = re.findall(r"--pseudo-labels \S+/pseudo_labels/(\w+)/\S+ .*?--out \S+/models/(\w+) ",
                       output)
    return {student: teacher for teacher, student in pairs}


FAMILY_TEACHERS = {"student_kd": "teacher", "student_ke": "teacher",
                   "student_resnet_kd": "resnet_teacher", "student_resnet_ke": "resnet_teacher"}


# ---- planning, validation, lint (seconds) -------------------------------------------------

def test_default_config_plans_the_whole_demo_pipeline(tmp_path):
    result = snakemake("-n", "--cores", "2", workdir=tmp_path)
    assert planned_jobs(result.stdout) == {
        "demo_data": 1, "demo_unlabeled_audio": 1, "build_splits": 1, "preprocess_mel": 5,
        "train_teacher": 1,
        "pseudo_label": 2, "train_student": 2, "evaluate": 3, "summarize": 1, "report": 1,
        "all": 1,
    }


@pytest.mark.slow
def test_the_resnet_family_is_off_by_default_and_learns_from_its_own_teacher(tmp_path):
    """teachers.resnet_teacher.enabled switches on the ResNet teacher and its students, which read the
    ResNet teacher's pseudo-label shards; the transformer students read the teacher's."""
    result = snakemake("-n", "-p", "--cores", "2", workdir=tmp_path)
    assert student_teachers(result.stdout) == {"student_kd": "teacher", "student_ke": "teacher"}
    assert "resnet_teacher" not in result.stdout and "student_resnet" not in result.stdout

    on = tmp_path / "resnet.yaml"
    on.write_text("teachers:\n  resnet_teacher:\n    enabled: true\n")
    result = snakemake("-n", "-p", "--cores", "2", "--configfile", on, workdir=tmp_path)
    jobs = planned_jobs(result.stdout)
    assert jobs["train_teacher"] == 2 and jobs["train_student"] == 4
    assert jobs["pseudo_label"] == 4 and jobs["evaluate"] == 6
    assert student_teachers(result.stdout) == FAMILY_TEACHERS
    for shard in ("1-of-2", "2-of-2"):
        assert (f"--checkpoint results/models/resnet_teacher/best.ckpt --mels "
                f"results/mels/student/{shard}.h5 --out results/pseudo_labels/resnet_teacher/"
                f"{shard}.h5") in result.stdout
    # a ResNet student gets the ResNet options, not the students' shared transformer ones
    kd = re.search(r"--out results/models/student_resnet_kd (.*)", result.stdout).group(1)
    assert "--model resnet --conv-channels 8 --device" in kd and "--drop-path" not in kd


def test_rounds_resnet_and_shards_shape_the_plan(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("preprocess:\n  shards: {train: 3, valid: 2, test: 1, student: 4}\n"
                     "noisy_student:\n  rounds: 2\n  students:\n    ke: null\n"
                     "    resnet_ke: null\n"
                     "teachers:\n  resnet_teacher:\n    enabled: true\n    model: resnet\n")
    result = snakemake("-n", "-p", "--cores", "2", "--configfile", TINY, extra, workdir=tmp_path)
    jobs = planned_jobs(result.stdout)
    assert jobs["preprocess_mel"] == 3 + 2 + 1 + 4
    # round 1 of each family labels with its teacher, round 2 with its round-1 KD student:
    # teacher, resnet_teacher, student_kd, student_resnet_kd, 4 shards each
    assert jobs["pseudo_label"] == 16
    assert jobs["train_student"] == 4
    assert jobs["train_teacher"] == 2
    assert jobs["evaluate"] == 6  # the two teachers, 2 rounds of student_kd, student_resnet_kd
    assert student_teachers(result.stdout) == {
        "student_kd": "teacher", "student_kd_round2": "student_kd",
        "student_resnet_kd": "resnet_teacher", "student_resnet_kd_round2": "student_resnet_kd"}


@pytest.mark.slow
def test_previous_demo_config_plans_its_recipe(tmp_path):
    result = snakemake("-n", "-p", "--cores", "2", "--configfile",
                       REPO / "config" / "demo-previous.yaml", workdir=tmp_path)
    assert planned_jobs(result.stdout)["train_student"] == 2
    assert result.stdout.count("--max-epochs 150 --patience 10") == 3
    assert result.stdout.count("--select-by valid_loss") == 3
    assert "--songs 2000 --seconds 20" in result.stdout


@pytest.mark.slow
def test_default_demo_trains_every_model_by_the_same_rule(tmp_path):
    """Teacher, KD and KE: the same epoch limit, patience and kept-epoch rule; the students
    noised by the paper's chain; one thread a job, so the students train side by side."""
    result = snakemake("-n", "-p", "--cores", "2", workdir=tmp_path)
    assert result.stdout.count("--max-epochs 20 --patience 4 --select-by valid_auc") == 3
    trains = [line for line in result.stdout.splitlines() if "mtt.cli train " in line]
    students = [line for line in trains if "--pseudo-labels" in line]
    assert len(trains) == 3 and len(students) == 2
    assert all("--threads 1 " in line and "--noise paper " in line for line in students)
    teacher, = set(trains) - set(students)
    assert "--threads 1 " in teacher and "--noise specaugment,gain,mixup,shift " in teacher
    assert "--songs 6000 --seconds 5" in result.stdout
    assert "--fractions 0.0625 0.25 0.6875" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("config", ["msd", "mtg-jamendo"])
def test_real_data_configs_validate_and_plan(tmp_path, config):
    """The paper-setting configs are valid; with their metadata present they plan every stage."""
    dataset = tmp_path / "data"
    dataset.mkdir()
    for name in ("track_metadata.db", "lastfm_tags.db", "autotagging.tsv", "top50_tags.txt"):
        (dataset / name).write_text("")
    overrides = tmp_path / "paths.yaml"
    overrides.write_text(
        f"dataset:\n  audio_root: {dataset}\n  track_metadata: {dataset}/track_metadata.db\n"
        f"  lastfm_tags: {dataset}/lastfm_tags.db\n  metadata: {dataset}/autotagging.tsv\n"
        f"  tag_list: {dataset}/top50_tags.txt\n")
    result = snakemake("-n", "-p", "--cores", "2", "--configfile", REPO / "config" / f"{config}.yaml",
                       overrides, workdir=tmp_path)
    jobs = planned_jobs(result.stdout)
    assert jobs["train_teacher"] == 2
    # both families, KD and KE for each: the paper's comparison
    assert jobs["train_student"] == 4 and jobs["evaluate"] == 6
    assert student_teachers(result.stdout) == FAMILY_TEACHERS
    resnets = re.findall(r"--out \S+/models/(\w+) --crop-seconds 3.69 .* --model resnet "
                         r"--conv-channels (\d+) --device", result.stdout)
    assert sorted(resnets) == [("resnet_teacher", "128"), ("student_resnet_kd", "64"),
                               ("student_resnet_ke", "128")]
    assert "demo_data" not in jobs
    assert "--preset teacher --conv-channels 128 --width 256" in result.stdout
    assert "--lr 0.0001" in result.stdout and "--batch-size 32" in result.stdout
    assert "--crop-seconds 10.0" in result.stdout and "--patience 40" in result.stdout


@pytest.mark.parametrize("content, where, what", [
    ("teachers:\n  teacher:\n    widht: 64\n", "teachers > teacher", "'widht' was unexpected"),
    slow_case("evalute:\n  chunks: 3\n", "the top level", "'evalute' was unexpected"),
    slow_case("noisy_student:\n  students:\n    kd: {model: transformer, noise: blur}\n",
              "noisy_student > students > kd > noise", "'blur' does not match"),
    slow_case("training:\n  lr: -1\n", "training > lr", "less than or equal to the minimum"),
    slow_case("dataset:\n  format: msd\n", "dataset", "'audio_root' is a required property"),
    slow_case("noisy_student:\n  students:\n    kd: {model: resnet, teacher: resnet}\n",
              "noisy_student > students > kd", "teacher 'resnet' is not an entry of teachers"),
    slow_case("noisy_student:\n  students:\n    kd: {model: fcn}\n",
              "noisy_student > students > kd > model", "'fcn' is not a model family"),
])
def test_a_wrong_key_or_value_fails_with_one_clear_message(tmp_path, content, where, what):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = snakemake("-n", "--cores", "1", "--configfile", bad, workdir=tmp_path, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "Invalid configuration" in line]
    assert len(lines) == 1, output
    assert f"Invalid configuration at {where}:" in lines[0] and what in lines[0], lines[0]


def test_lint_finds_nothing(tmp_path):
    result = snakemake("--lint", workdir=tmp_path)
    output = result.stdout + result.stderr
    assert "Lints for" not in output
    assert "Congratulations, your workflow is in a good condition!" in output


def test_profile_slurm_typed_in_the_repository_root_is_the_projects(tmp_path):
    """`snakemake --profile slurm` in the repository root takes profiles/slurm (Snakemake looks for
    a profile name in the current folder first); elsewhere the name alone finds nothing."""
    assert (REPO / "slurm").resolve() == (REPO / "profiles" / "slurm").resolve()
    command = [str(VENV_BIN / "snakemake"), "--profile", "slurm", "-n", "--directory", str(tmp_path)]
    planned = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                             env=snakemake_env(), timeout=300)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "Using profiles slurm and workflow specific profile" in planned.stdout + planned.stderr
    elsewhere = subprocess.run([*command, "-s", str(SNAKEFILE)], cwd=tmp_path, capture_output=True,
                               text=True, env=snakemake_env(), timeout=300)
    assert elsewhere.returncode != 0
    assert "no profile.yaml (or config.yaml) found" in elsewhere.stderr


def test_conda_environment_asks_what_the_package_asks():
    """`snakemake --sdm conda` must ask for the same software as `pip install -e .`: the pip
    requirements of envs/mtt.yaml are the runtime ranges of pyproject.toml (less Snakemake, which runs the
    workflow rather than its jobs), and every rule's conda: file exists."""
    import tomllib
    import yaml
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {pin for pin in project if not pin.startswith("snakemake")}
    env = yaml.safe_load((REPO / "envs" / "mtt.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == wanted
    for rules in (REPO / "workflow" / "rules").glob("*.smk"):
        for path in re.findall(r'^\s+"(.+\.yaml)"$', rules.read_text(), re.M):
            assert (rules.parent / path).resolve().is_file(), f"{rules.name}: {path}"


def test_gpu_stages_request_a_gpu_and_cpu_stages_do_not(tmp_path):
    result = snakemake("-n", "--cores", "2", workdir=tmp_path)
    blocks = re.split(r"\n(?=rule \w+:)", result.stdout)
    for block in blocks:
        rule = re.match(r"rule (\w+):", block)
        if rule is None or rule.group(1) == "all":
            continue
        resources = re.search(r"resources: (.*)", block).group(1)
        assert "mem_mb=" in resources and "runtime=" in resources, block
        wants_gpu = rule.group(1) in {"train_teacher", "train_student", "pseudo_label", "evaluate"}
        assert ("gpu=1" in resources) == wants_gpu, block


# ---- mtt summarize / mtt plots on made-up evaluation outputs ------------------------------

TAGS = ["rock", "pop", "jazz", "ambient"]


def fake_model_outputs(root: Path, model: str, seed: int):
    """What `mtt evaluate` and `mtt train` leave for one model (values are random)."""
    rng = np.random.default_rng(seed)
    evaluation = root / "evaluation" / model
    evaluation.mkdir(parents=True)
    labels = rng.random((40, len(TAGS))) < 0.3
    labels[0], labels[1] = True, False
    probs = np.clip(labels * 0.3 + rng.random(labels.shape) * 0.7, 0, 1)
    metrics = {
        "n_songs": 40, "n_tags_evaluated": 4, "excluded_tags": [],
        "roc_auc": {"macro": 0.8 + seed / 100, "ci_low": 0.75, "ci_high": 0.85},
        "pr_auc": {"macro": 0.5 + seed / 100, "ci_low": 0.45, "ci_high": 0.55},
        "prediction": "mean of 8 chunks",
        "per_tag": {t: {"roc_auc": 0.8, "pr_auc": 0.5, "positives": int(labels[:, i].sum())}
                    for i, t in enumerate(TAGS)},
    }
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame([{"tag": t, **v} for t, v in metrics["per_tag"].items()]).to_csv(
        evaluation / "per_tag.tsv", sep="\t", index=False)
    with h5py.File(evaluation / "predictions.h5", "w") as f:
        f["track_id"] = np.array([f"song{i}" for i in range(len(labels))], dtype=object)
        f["probs"] = probs.astype(np.float32)
        f["labels"] = labels.astype(np.uint8)
    training = root / "models" / model
    training.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.6, 0.5],
                  "valid_loss": [0.65, 0.55, 0.58], "valid_roc_auc": [0.6, 0.7, 0.72],
                  "valid_pr_auc": [0.3, 0.4, 0.41], "seconds": [60.0, 60.0, 60.0]}).to_csv(
        training / "history.csv", index=False)
    return evaluation, training


def test_summarize_writes_one_row_per_model_and_the_paper_comparison(tmp_path):
    models = ["teacher", "resnet_teacher", "student_kd", "student_ke", "student_kd_round2"]
    for seed, model in enumerate(models):
        fake_model_outputs(tmp_path, model, seed)
    described = {"teacher": ("transformer", "supervised", 0),
                 "resnet_teacher": ("resnet", "supervised", 0),
                 "student_kd": ("transformer", "noisy student KD", 1),
                 "student_ke": ("transformer", "noisy student KE", 1),
                 "student_kd_round2": ("transformer", "noisy student KD", 2)}
    described = {m: dict(zip(("family", "method", "round"), d)) for m, d in described.items()}
    args = ["--metrics", *[tmp_path / "evaluation" / m / "metrics.json" for m in models],
            "--histories", *[tmp_path / "models" / m / "history.csv" for m in models],
            "--models", json.dumps(described),
            "--out", tmp_path / "summary.tsv", "--comparison", tmp_path / "comparison.tsv"]
    from mtt.cli import main
    assert main(["summarize", *map(str, args)]) == 0

    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t")
    assert list(summary["model"]) == models
    assert list(summary["method"]) == ["supervised", "supervised", "noisy student KD",
                                       "noisy student KE", "noisy student KD"]
    assert list(summary["round"]) == [0, 0, 1, 1, 2]
    assert list(summary["family"]) == ["transformer", "resnet", "transformer", "transformer",
                                       "transformer"]
    teacher = summary.set_index("model").loc["teacher"]
    assert teacher["roc_auc"] == pytest.approx(0.80) and teacher["pr_auc_ci_high"] == 0.55
    assert teacher["epochs"] == 3 and teacher["best_epoch"] == 2
    assert teacher["train_minutes"] == pytest.approx(3.0)

    comparison = pd.read_csv(tmp_path / "comparison.tsv", sep="\t", keep_default_na=False)
    assert list(comparison.columns) == ["model", "metric", "supervised", "noisy student KD",
                                        "noisy student KE"]
    first = comparison.iloc[0]
    assert (first["model"], first["metric"]) == ("Music Tagging Transformer", "ROC-AUC")
    assert first["supervised"] == "0.8000 [0.7500, 0.8500]"
    assert first["noisy student KD"].startswith("0.8200")
    assert first["noisy student KE"].startswith("0.8300")
    round2 = comparison[comparison["model"] == "Music Tagging Transformer, round 2"]
    assert list(round2["supervised"]) == ["", ""]
    assert round2.iloc[0]["noisy student KD"].startswith("0.8400")
    resnet = comparison[comparison["model"] == "ResNet"]
    assert resnet.iloc[1]["supervised"].startswith("0.5100") and resnet.iloc[1]["noisy student KD"] == ""


def test_summarize_names_a_file_that_is_not_an_evaluation(tmp_path, capsys):
    bad = tmp_path / "evaluation" / "teacher" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"n_songs": 3}))
    from mtt.cli import main
    assert main(["summarize", "--metrics", str(bad), "--out", str(tmp_path / "s.tsv")]) == 2
    assert f"{bad}: no macro roc_auc" in capsys.readouterr().err
    assert not (tmp_path / "s.tsv").exists()


def test_plots_draws_every_figure(tmp_path):
    models = ["teacher", "student_kd"]
    for seed, model in enumerate(models):
        fake_model_outputs(tmp_path, model, seed)
    split = tmp_path / "split"
    split.mkdir()
    (split / "tags.txt").write_text("\n".join(TAGS) + "\n")
    rng = np.random.default_rng(0)
    for name, n in [("train", 70), ("valid", 15), ("test", 15), ("student", 50), ("none", 5)]:
        labeled = name in ("train", "valid", "test")
        rows = [{"track_id": f"{name}{i}", "artist_id": f"a{i % 9}", "path": f"{name}{i}.mp3",
                 "tags": ";".join(t for t in TAGS if labeled and rng.random() < 0.4)}
                for i in range(n)]
        pd.DataFrame(rows).to_csv(split / f"{name}.tsv", sep="\t", index=False)
    out = tmp_path / "report"
    from mtt.cli import main
    code = main(["plots", "--per-tag", *[str(tmp_path / "evaluation" / m / "per_tag.tsv") for m in models],
                 "--predictions", *[str(tmp_path / "evaluation" / m / "predictions.h5") for m in models],
                 "--histories", *[str(tmp_path / "models" / m / "history.csv") for m in models],
                 "--split-dir", str(split), "--out-dir", str(out)])
    assert code == 0
    for name in plots.FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    stats = plots.split_statistics(split, chunksize=7)
    assert stats["sets"]["train"]["songs"] == 70 and stats["sets"]["train"]["artists"] == 9
    assert stats["sets"]["student"]["positives"].sum() == 0
    train = pd.read_csv(split / "train.tsv", sep="\t", keep_default_na=False)
    assert stats["sets"]["train"]["positives"][0] == train["tags"].str.contains("rock").sum()


# ---- the whole workflow on tests/tiny.yaml -------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One complete local run of the workflow on the tiny config (shared by the tests below)."""
    workdir = tmp_path_factory.mktemp("tiny_workflow")
    snakemake("--cores", "2", "--configfile", TINY, workdir=workdir, timeout=900)
    return workdir


@pytest.mark.slow
def test_tiny_workflow_runs_every_stage(tiny_run):
    results = tiny_run / "results"
    summary = pd.read_csv(results / "evaluation" / "summary.tsv", sep="\t")
    assert list(summary["model"]) == ["teacher", "student_kd", "student_ke"]
    for column in ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "pr_auc", "pr_auc_ci_low",
                   "pr_auc_ci_high"):
        assert summary[column].between(0, 1).all(), column
    assert (summary["roc_auc_ci_low"] <= summary["roc_auc_ci_high"]).all()
    assert (summary["epochs"] == 2).all()
    comparison = pd.read_csv(results / "evaluation" / "comparison.tsv", sep="\t")
    assert list(comparison.columns) == ["model", "metric", "supervised", "noisy student KD",
                                        "noisy student KE", "noisy student KD - supervised",
                                        "noisy student KE - supervised"]
    assert comparison["noisy student KE - supervised"].str.match(
        r"^[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]$").all()
    assert summary["stopped"].str.startswith("reached --max-epochs 2").all()
    for name in plots.FIGURES:
        assert (results / "report" / f"{name}.png").stat().st_size > 1000
    # every job left a log and a benchmark
    assert len(list((results / "logs" / "preprocess_mel").rglob("*.log"))) == 6
    assert len(list((results / "benchmarks").rglob("*.tsv"))) == 19  # demo in two parts
    with h5py.File(results / "pseudo_labels" / "teacher" / "1-of-2.h5", "r") as f:
        assert f["probs"].shape[1] == len((results / "split" / "tags.txt").read_text().split("\n")) - 1


@pytest.mark.slow
def test_complete_run_has_nothing_left_to_do(tiny_run):
    result = snakemake("-n", "--cores", "2", "--configfile", TINY, workdir=tiny_run)
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_forcerun_teacher_plans_only_the_teacher_and_downstream(tiny_run):
    result = snakemake("-n", "--cores", "2", "--configfile", TINY, "--forcerun", "train_teacher",
                       workdir=tiny_run)
    assert planned_jobs(result.stdout) == {
        "train_teacher": 1, "pseudo_label": 2, "train_student": 2, "evaluate": 3,
        "summarize": 1, "report": 1, "all": 1,
    }


@pytest.mark.slow
def test_changing_one_stage_setting_reruns_that_stage_and_downstream(tiny_run, tmp_path):
    evaluate = tmp_path / "evaluate.yaml"
    evaluate.write_text("evaluate:\n  bootstrap: 20\n")
    result = snakemake("-n", "--cores", "2", "--configfile", TINY, evaluate, workdir=tiny_run)
    assert planned_jobs(result.stdout) == {"evaluate": 3, "summarize": 1, "report": 1, "all": 1}

    student = tmp_path / "student.yaml"
    student.write_text("noisy_student:\n  students:\n    kd: {width: 24}\n")
    result = snakemake("-n", "--cores", "2", "--configfile", TINY, student, workdir=tiny_run)
    assert planned_jobs(result.stdout) == {"train_student": 1, "evaluate": 1, "summarize": 1,
                                           "report": 1, "all": 1}


# What switching the ResNet family on adds to a finished tiny run, and what forcing the ResNet
# teacher's checkpoint replans: the ResNet chain and the tables, nothing else.
RESNET_CHAIN = {"train_teacher": 1, "pseudo_label": 2, "train_student": 2, "evaluate": 3,
                "summarize": 1, "report": 1, "all": 1}


@pytest.fixture(scope="module")
def tiny_resnet_run(tiny_run, tmp_path_factory):
    """The finished tiny run, then the same with tests/tiny_resnet.yaml: the ResNet family runs
    end to end beside the transformer's (its plan first, then the run)."""
    workdir = tmp_path_factory.mktemp("tiny_resnet") / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    args = ["--cores", "2", "--configfile", TINY, TINY_RESNET]
    plan = snakemake("-n", *args, workdir=workdir)
    snakemake(*args, workdir=workdir, timeout=900)
    return workdir, planned_jobs(plan.stdout)


@pytest.mark.slow
def test_tiny_resnet_family_runs_end_to_end(tiny_resnet_run):
    workdir, plan = tiny_resnet_run
    assert plan == RESNET_CHAIN  # the transformer family's outputs are kept
    results = workdir / "results"
    summary = pd.read_csv(results / "evaluation" / "summary.tsv", sep="\t")
    assert list(summary["model"]) == ["teacher", "resnet_teacher", "student_kd", "student_ke",
                                      "student_resnet_kd", "student_resnet_ke"]
    assert list(summary["family"]) == ["transformer", "resnet", "transformer", "transformer",
                                       "resnet", "resnet"]
    assert summary["roc_auc"].between(0, 1).all() and (summary["epochs"] == 2).all()
    comparison = pd.read_csv(results / "evaluation" / "comparison.tsv", sep="\t")
    assert list(comparison["model"]) == ["Music Tagging Transformer"] * 2 + ["ResNet"] * 2
    interval = r"^[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]$"
    for column in ("noisy student KD - supervised", "noisy student KE - supervised"):
        assert comparison[column].str.match(interval).all(), column
    # the ResNet teacher labeled the student set in its own shards, on its own 2 s input
    with h5py.File(results / "pseudo_labels" / "resnet_teacher" / "2-of-2.h5", "r") as f:
        assert f.attrs["checkpoint"].endswith("models/resnet_teacher/best.ckpt")
    import torch
    frames = {model: torch.load(results / "models" / model / "best.ckpt", map_location="cpu",
                                weights_only=True)["meta"]["training"]["crop_frames"]
              for model in ("teacher", "resnet_teacher", "student_resnet_kd")}
    assert frames["resnet_teacher"] == frames["student_resnet_kd"] < frames["teacher"]


@pytest.mark.slow
def test_forcerun_resnet_teacher_replans_only_the_resnet_chain(tiny_resnet_run):
    workdir, _ = tiny_resnet_run
    args = ["--cores", "2", "--configfile", TINY, TINY_RESNET]
    done = snakemake("-n", *args, workdir=workdir)
    assert "Nothing to be done" in done.stdout + done.stderr
    result = snakemake("-n", "-p", *args, "--forcerun", "results/models/resnet_teacher/best.ckpt",
                       workdir=workdir)
    assert planned_jobs(result.stdout) == RESNET_CHAIN
    assert student_teachers(result.stdout) == {"student_resnet_kd": "resnet_teacher",
                                               "student_resnet_ke": "resnet_teacher"}


@pytest.mark.slow
def test_report_html_holds_the_table_and_figures(tiny_run):
    snakemake("--report", "report.html", "--configfile", TINY, workdir=tiny_run)
    html = (tiny_run / "report.html").read_text()
    for name in ["summary.tsv", "comparison.tsv", *[f"{n}.png" for n in plots.FIGURES]]:
        assert name in html, name


CHROMIUM = shutil.which("chromium")
FIGURE_TITLES = ["Per-tag ROC-AUC", "Per-tag PR-AUC", "PR curves", "Training curves",
                 "Split statistics"]  # the report labels of workflow/rules/evaluation.smk


def chromium(page: Path, profile: Path, *args) -> str:
    """Headless Chromium on a local page, offline and with a throwaway profile; its stdout."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=30000",
               "--window-size=1400,900", *args, page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it: "
                    "apt-get install -y chromium)")
def test_report_renders_the_table_and_figures_in_chromium(tiny_run, tmp_path):
    """The report opened in a real browser: clicking each figure in the menu shows a decoded
    PNG, clicking the summary shows the table, and the screenshot of that view is not blank."""
    snakemake("--report", "report.html", "--configfile", TINY, workdir=tiny_run)
    html = (tiny_run / "report.html").read_text()
    driver = (REPO / "tests" / "report_browser.js").read_text()
    page = tmp_path / "report.html"
    head, body_end, tail = html.rpartition("</body>")
    page.write_text(f"{head}<script>const FIGURES = {json.dumps(FIGURE_TITLES)};\n{driver}"
                    f"</script>\n{body_end}{tail}")
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    notes = json.loads(re.search(r'<pre id="browser-check">(\{.*?\})</pre>', dom).group(1))
    assert notes["errors"] == []
    assert "Figures" in notes["menu"] and "Results" in notes["menu"]
    for title in FIGURE_TITLES:
        figure = notes["figures"][title]
        assert figure and figure["png"] and figure["width"] > 300 and figure["height"] > 300, title
    assert notes["table"] and notes["table"]["html"] and notes["table"]["width"] > 300

    # the page the table view shows, as the browser renders it: one row per model
    results = json.loads(re.search(r"^\s*var results = (\{.*\});$", html, re.M).group(1))
    uri = next(r["data_uri"] for path, r in results.items() if path.endswith("summary.html"))
    table = tmp_path / "summary.html"
    table.write_bytes(base64.b64decode(uri.split("base64,", 1)[1]))
    rows = re.findall(r"<tr>\s*<td>([^<]*)</td>", chromium(table, tmp_path / "profile", "--dump-dom"))
    assert rows == ["teacher", "student_kd", "student_ke"]

    shot = tmp_path / "shot.png"
    chromium(page, tmp_path / "profile", f"--screenshot={shot}")
    pixels = (plt.imread(shot)[..., :3] * 255).round().astype(int)
    pane = pixels[:, pixels.shape[1] // 3:]  # right of the menu: the table
    assert len(np.unique(pane.reshape(-1, 3), axis=0)) > 50  # text, not a blank page
    header = (np.abs(pane - [232, 238, 245]).sum(axis=-1) <= 3).sum()  # summary_html's <th>
    assert header > 5000, header


@pytest.mark.slow
def test_a_failing_job_is_reported_and_its_outputs_removed(tiny_run, tmp_path):
    """A corrupt test shard makes the evaluations fail: Snakemake reports the rule and its log,
    exits non-zero, removes the outputs of every failed job, and still knows what is outdated."""
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    shard = workdir / "results" / "mels" / "test" / "1-of-1.h5"
    shard.write_bytes(b"this is not an HDF5 file")
    result = snakemake("--cores", "2", "--configfile", TINY, workdir=workdir, check=False)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    failed = re.findall(r"Error in rule evaluate:.*?\n\s+output: (.*?)\n\s+log: (\S+)", log,
                        re.S)
    assert failed, log[-4000:]
    for outputs, job_log in failed:
        for output in outputs.split(", "):
            assert not (workdir / output).exists(), output
        assert "1-of-1.h5" in (workdir / job_log).read_text()
    # the jobs that did not get to run are still planned, none is taken as done
    plan = snakemake("-n", "--cores", "2", "--configfile", TINY, workdir=workdir)
    assert planned_jobs(plan.stdout) == {"evaluate": 3, "summarize": 1, "report": 1, "all": 1}


@pytest.mark.slow
def test_training_resumes_after_snakemake_is_killed(tiny_run, tmp_path):
    """Snakemake and its training job killed with SIGKILL: started again (after the --unlock
    Snakemake asks for; profiles/default reruns the incomplete job), the teacher resumes from
    last.ckpt instead of starting over."""
    workdir = tmp_path / "killed"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    longer = tmp_path / "longer.yaml"
    longer.write_text("training:\n  max_epochs: 14\n  patience: 100\n")
    args = ["--cores", "2", "--configfile", TINY, longer, "--until", "train_teacher"]
    history = workdir / "results" / "models" / "teacher" / "history.csv"
    command = [str(VENV_BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir),
               *map(str, args)]
    process = subprocess.Popen(command, env=snakemake_env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) - 1 >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the training finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job, as a lost node would
    process.wait()
    epochs_at_kill = len(history.read_text().splitlines()) - 1 if history.exists() else 0
    assert 3 <= epochs_at_kill < 14

    snakemake("--unlock", *args, workdir=workdir)
    snakemake(*args, workdir=workdir)
    log = (workdir / "results" / "logs" / "train_teacher" / "teacher.log").read_text()
    resumed = re.search(r"resuming from \S+last\.ckpt after epoch (\d+)", log)
    assert resumed and int(resumed.group(1)) >= epochs_at_kill - 1, log[-2000:]
    assert "starting over" not in log
    assert len(history.read_text().splitlines()) - 1 == 14
