"""config/own-catalogue.yaml, as a user brings a catalogue: it plans the whole workflow on a
4-column TSV, its vocabulary keys reach `mtt split`, and `snakemake --report` says when the
results folder it reports is not the run the user means."""
import json

import pytest

from conftest import REPO, TINY, planned_jobs, snakemake

OWN = REPO / "config" / "own-catalogue.yaml"


def catalogue(tmp_path, extra=""):
    """A catalogue TSV and audio folder (the workflow reads the TSV at plan time, not the audio),
    and a config laying their paths over config/own-catalogue.yaml."""
    audio = tmp_path / "audio"
    audio.mkdir()
    table = tmp_path / "catalogue.tsv"
    table.write_text("track_id\tartist_id\tpath\ttags\n" + "".join(
        f"s{i}\ta{i % 5}\ts{i}.mp3\t{'rock' if i % 2 else ''}\n" for i in range(20)))
    paths = tmp_path / "paths.yaml"
    paths.write_text(f"dataset:\n  audio_root: {audio}\n  metadata: {table}\n{extra}")
    return paths


def test_own_catalogue_config_plans_every_stage(tmp_path):
    paths = catalogue(tmp_path, "  top_tags: 30\n")
    result = snakemake("-n", "-p", "--cores", "2", "--configfile", OWN, paths, workdir=tmp_path)
    jobs = planned_jobs(result.stdout)
    assert "demo_data" not in jobs and jobs["build_splits"] == 1
    assert jobs["train_teacher"] == 1 and jobs["train_student"] == 2 and jobs["evaluate"] == 3
    assert "mtt.cli split --format tsv" in result.stdout
    split = next(line for line in result.stdout.splitlines() if "mtt.cli split" in line)
    assert "--min-positives 10" in split and "--top-tags 30" in split
    assert "results/own-catalogue/evaluation/summary.html" in result.stdout


@pytest.mark.slow
def test_a_wrong_min_positives_is_one_clear_error(tmp_path):
    paths = catalogue(tmp_path, "  min_positives: 0\n")
    result = snakemake("-n", "--cores", "2", "--configfile", OWN, paths, workdir=tmp_path,
                       check=False)
    assert result.returncode != 0
    assert "Invalid configuration at dataset > min_positives" in result.stdout + result.stderr


def test_report_without_the_runs_config_warns(tmp_path):
    """The user ran config/own-catalogue.yaml and asks for the report without its --configfile:
    the report's config (the demo's) has no run in results/, and the warning names the run."""
    split = tmp_path / "results" / "own-catalogue" / "split"
    split.mkdir(parents=True)
    (split / "report.json").write_text(json.dumps({"format": "tsv", "seed": 0}))
    result = snakemake("--report", "report.html", workdir=tmp_path, check=False)
    assert ("Warning: results/, the results folder of this config, holds no finished run; runs "
            "found in results/own-catalogue: for the report of one, give the config it ran with, "
            "snakemake --report report.html --configfile <that config>") in result.stderr


@pytest.mark.slow
def test_report_of_a_run_split_otherwise_warns(tmp_path):
    split = tmp_path / "results" / "split"
    split.mkdir(parents=True)
    (split / "report.json").write_text(json.dumps({"format": "msd", "seed": 4}))
    result = snakemake("--report", "report.html", "--configfile", TINY, workdir=tmp_path,
                       check=False)
    assert "Warning: the run in results/ was split with seed 4 (this config: 0)" in result.stderr


@pytest.mark.slow
def test_report_of_our_split_with_an_official_split_config_warns(tmp_path):
    split = tmp_path / "results" / "split"
    split.mkdir(parents=True)
    (split / "report.json").write_text(json.dumps({"format": "mtg-jamendo", "seed": 0}))
    config = tmp_path / "official.yaml"
    config.write_text(f"dataset:\n  format: mtg-jamendo\n  audio_root: {tmp_path}\n"
                      f"  official_split: {tmp_path}\n")
    result = snakemake("--report", "report.html", "--configfile", TINY, config, workdir=tmp_path,
                       check=False)
    assert (f"Warning: the run in results/ was split with official_split None (this config: "
            f"{tmp_path})") in result.stderr
