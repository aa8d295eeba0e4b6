"""`mtt split --format mtg-jamendo --official-split DIR`: the dataset's own split, in our format."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

SPLIT0 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mtg-jamendo" / "split-0"


def test_mtg_jamendo_official_split_0(tmp_path):
    out = tmp_path / "split"
    result = subprocess.run([sys.executable, "-m", "mtt.cli", "split", "--format", "mtg-jamendo",
                             "--official-split", SPLIT0, "--out", out],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for ours, theirs in (("train", "train"), ("valid", "validation"), ("test", "test")):
        table = pd.read_csv(out / f"{ours}.tsv", sep="\t", dtype=str)
        lines = next(SPLIT0.glob(f"*-{theirs}.tsv")).read_text().splitlines()[1:]
        assert set(table.track_id) == {line.split("\t")[0] for line in lines if line}
    assert len(pd.read_csv(out / "student.tsv", sep="\t")) == 0
    tags = (out / "tags.txt").read_text().split()
    assert len(tags) == 56 and all(t.startswith("mood/theme---") for t in tags)
    report = json.loads((out / "report.json").read_text())
    assert abs(report["mean_mad"] - 0.0062) < 0.0005  # the official split's own imbalance


def test_official_split_needs_mtg_jamendo(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtt.cli", "split", "--format", "tsv",
                             "--official-split", SPLIT0, "--out", tmp_path / "s"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "official-split" in result.stderr
