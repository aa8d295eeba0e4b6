"""`mtt split --format mtg-jamendo --official-split DIR`: the dataset's own split, in our format."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import SHARED, TINY, planned_jobs, snakemake

SPLIT0 = SHARED / "datasets" / "mtg-jamendo" / "split-0"


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


def test_mtat_official_split_files_without_unpickling(tmp_path):
    import numpy as np
    paths = [f"{d}/artist{a}-album-0{k}-song-{s}-{s + 29}.mp3" for a, d in ((1, "a"), (2, "b"), (3, "c"), (4, "d"))
             for k in range(2) for s in (0, 30)]
    rows = ["clip_id\tguitar\tclassical\tmp3_path"]
    rows += [f"{i}\t{i % 2}\t{1 - i % 2}\t{p}" for i, p in enumerate(paths)]
    (tmp_path / "annotations_final.csv").write_text("\n".join(rows) + "\n")
    split = tmp_path / "mtat"
    split.mkdir()
    np.save(split / "train.npy", np.array([f"{i}\t{p}" for i, p in enumerate(paths[:8])]))
    np.save(split / "valid.npy", np.array([f"{i + 8}\t{p}" for i, p in enumerate(paths[8:12])]))
    np.save(split / "test.npy", np.array([f"{i + 12}\t{p}" for i, p in enumerate(paths[12:15])]))
    out = tmp_path / "split"
    args = ["split", "--format", "mtat", "--metadata", tmp_path / "annotations_final.csv",
            "--official-split", split, "--out", out]
    result = subprocess.run([sys.executable, "-m", "mtt.cli", *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    sizes = {s: len(pd.read_csv(out / f"{s}.tsv", sep="\t")) for s in ("train", "valid", "test", "none")}
    assert sizes == {"train": 8, "valid": 4, "test": 3, "none": 1}
    assert set(pd.read_csv(out / "test.tsv", sep="\t", dtype=str).path) == set(paths[12:15])
    np.save(split / "test.npy", np.array([{"x": 1}], dtype=object))  # a pickle: refused
    result = subprocess.run([sys.executable, "-m", "mtt.cli", *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "test.npy" in result.stderr


@pytest.mark.slow
def test_workflow_plans_and_splits_on_the_official_mtg_jamendo_split(tmp_path):
    """`dataset: official_split` in a config: the plan runs `mtt split --official-split`, and the
    split job turns the real split-0 into our split folder."""
    config = tmp_path / "official.yaml"
    config.write_text(f"dataset:\n  format: mtg-jamendo\n  audio_root: {tmp_path}\n"
                      f"  official_split: {SPLIT0}\n")
    plan = snakemake("-n", "-p", "--cores", "1", "--configfile", TINY, config, workdir=tmp_path)
    assert planned_jobs(plan.stdout)["build_splits"] == 1
    split = next(line for line in plan.stdout.splitlines() if "mtt.cli split" in line)
    assert f"--format mtg-jamendo --official-split {SPLIT0} --out results/split" in split
    assert "--metadata" not in split
    snakemake("--cores", "1", "--configfile", TINY, config, "--until", "build_splits",
              workdir=tmp_path)
    report = json.loads((tmp_path / "results" / "split" / "report.json").read_text())
    assert report["official_split"] == str(SPLIT0) and len(report["tags"]) == 56


def test_workflow_plans_the_official_mtat_split_with_its_annotations(tmp_path):
    (tmp_path / "mtat").mkdir()
    (tmp_path / "annotations_final.csv").write_text("")
    config = tmp_path / "official.yaml"
    config.write_text(f"dataset:\n  format: mtat\n  audio_root: {tmp_path}\n  top_tags: 50\n"
                      f"  metadata: {tmp_path}/annotations_final.csv\n"
                      f"  official_split: {tmp_path}/mtat\n")
    plan = snakemake("-n", "-p", "--cores", "1", "--configfile", TINY, config, workdir=tmp_path)
    split = next(line for line in plan.stdout.splitlines() if "mtt.cli split" in line)
    assert (f"--format mtat --official-split {tmp_path}/mtat --metadata "
            f"{tmp_path}/annotations_final.csv" in split) and "--top-tags 50" in split


@pytest.mark.slow
def test_official_split_with_min_positives_is_one_clear_error(tmp_path):
    config = tmp_path / "official.yaml"
    config.write_text(f"dataset:\n  format: mtg-jamendo\n  audio_root: {tmp_path}\n"
                      f"  official_split: {SPLIT0}\n  min_positives: 5\n")
    result = snakemake("-n", "--configfile", TINY, config, workdir=tmp_path, check=False)
    assert result.returncode != 0 and ("Invalid configuration at dataset > min_positives: it is "
                                       "for our split, not an official_split") in result.stdout
