"""bench/semi_supervised.py --oracle: the regime measured before any student exists."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("semi_supervised",
                                                  ROOT / "bench" / "semi_supervised.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_runs_over_two_splits_of_the_same_chains_keep_their_own_results(monkeypatch, tmp_path):
    """Two splits of one demo dataset share every key but the split: their results files (and
    split folders) must differ, or the second run overwrites the first one's figures."""
    bench = load_bench()
    common = ["--work", str(tmp_path), "--demo-seeds", "21", "--seeds", "0"]
    monkeypatch.setattr(sys, "argv", ["semi_supervised.py", *common])
    default = bench.parse_args()
    monkeypatch.setattr(sys, "argv", ["semi_supervised.py", *common,
                                      "--fractions", "0.03125", "0.25", "0.71875"])
    halved = bench.parse_args()
    assert bench.split_name(default) == ""
    assert bench.split_name(halved) == "fractions_0.03125_0.25_0.71875"
    assert bench.results_path(default) != bench.results_path(halved)
    assert bench.results_path(halved).parent == tmp_path


@pytest.mark.slow
def test_oracle_runs_on_the_small_demo(tmp_path):
    result = subprocess.run(
        [sys.executable, ROOT / "bench" / "semi_supervised.py", "--quick", "--oracle",
         "--labeled-share", "0.5", "--work", tmp_path],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    last = dict(pair.split("=") for pair in result.stdout.strip().splitlines()[-1].split())
    for key in ("teacher_valid_roc_auc", "oracle_valid_roc_auc", "headroom_roc_auc",
                "headroom_pr_auc"):
        assert -1 <= float(last[key]) <= 1
    assert float(last["headroom_roc_auc"]) == pytest.approx(
        float(last["oracle_valid_roc_auc"]) - float(last["teacher_valid_roc_auc"]), abs=2e-4)
    assert last["labeled_share"] == "0.5" and last["runs"] == "1"
    # the oracle's training set: the kept half of the train artists + labeled student songs
    split = next(tmp_path.glob("demo_small_seed0/split"))
    train = pd.read_csv(split / "train.tsv", sep="\t", keep_default_na=False)
    kept = pd.read_csv(split / "train_share0.5.tsv", sep="\t", keep_default_na=False)
    oracle = pd.read_csv(split / "oracle_train_share0.5.tsv", sep="\t", keep_default_na=False)
    student = pd.read_csv(split / "student.tsv", sep="\t", keep_default_na=False)
    assert set(kept["artist_id"]) < set(train["artist_id"])
    assert set(oracle["track_id"]) == set(kept["track_id"]) | set(student["track_id"])
    assert (oracle.set_index("track_id").loc[student["track_id"], "tags"] != "").mean() > 0.8
    results = json.loads(next(tmp_path.glob("results_*_oracle.json")).read_text())
    assert set(results[0]) >= {"teacher", "oracle"}


@pytest.mark.slow
def test_student_run_reports_paired_intervals_the_oracle_on_test_and_a_figure(tmp_path):
    """The held-out evidence: each student (and the oracle) against the teacher on the same test
    songs with a paired interval, and the bar chart of the models."""
    figure = tmp_path / "bars.png"
    result = subprocess.run(
        [sys.executable, ROOT / "bench" / "semi_supervised.py", "--quick", "--students", "ke",
         "--with-oracle", "--select-by", "valid_auc", "--figure", figure, "--work", tmp_path],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads(next(tmp_path.glob("results_*.json")).read_text())
    row = results[0]
    assert set(row) >= {"teacher", "ke", "oracle"} and "kd" not in row
    for model in ("ke", "oracle"):
        for metric in ("roc_auc", "pr_auc"):
            estimate, low, high = row[model]["paired"][metric]
            assert low <= estimate <= high
            assert estimate == pytest.approx(row[model][metric] - row["teacher"][metric],
                                             abs=1e-6)
    last = dict(pair.split("=") for pair in result.stdout.strip().splitlines()[-1].split())
    assert {"ke_gain_roc_auc", "oracle_gain_pr_auc", "runs"} <= last.keys()
    assert "per run, model - teacher on the same test songs" in result.stdout


def test_a_students_own_learning_rate_keeps_its_runs_apart(monkeypatch):
    """--kd-lr / --ke-lr: the students' runs are cached by their rate (a run at another rate is
    never reused), and a rate equal to --lr is the default's own cache."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import semi_supervised as bench

    def key(*flags):
        monkeypatch.setattr(sys, "argv", ["semi_supervised.py", *flags])
        args = bench.parse_args()
        return bench.teacher_key(args), bench.student_key(args)

    default = key()
    assert key("--kd-lr", "0.002") == (default[0], default[1] + "_kdlr0.002")
    assert key("--ke-lr", "0.002") == (default[0], default[1] + "_kelr0.002")
    assert key("--kd-lr", "0.001") == default  # the --lr default itself
    assert len({key("--kd-lr", "0.002")[1], key("--kd-lr", "0.003")[1],
                key("--kd-lr", "0.002", "--ke-lr", "0.002")[1]}) == 3
