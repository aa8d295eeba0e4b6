"""bench/semi_supervised.py --oracle: the regime measured before any student exists."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


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
