"""The workflow's side of issue 33 (docs/RELIABILITY.md): no config value reaches a shell
unquoted, and no config edit leaves stale results. Both through real Snakemake runs of the first
stages (demo data, split, mel shards) on a small demo."""
import json
import shutil

import numpy as np
import pytest
import soundfile
import yaml

from conftest import REPO, TINY, VENV_BIN, planned_jobs, snakemake, snakemake_env

pytestmark = pytest.mark.slow

FIRST_STAGES = ["--until", "preprocess_mel"]
SMALL_DEMO = {"dataset": {"format": "demo", "demo_songs": 400, "demo_seconds": 1},
              "split": {"fractions": [0.5, 0.25, 0.25]},
              "preprocess": {"shards": {"train": 1, "valid": 1, "test": 1, "student": 1}}}


def hostile_results(markers):
    """A results folder whose name holds every character a shell treats specially: spaces,
    single and double quotes, `;`, `$(...)`, backticks, `&`, `|`, `>` and a newline. Each way
    of running a command writes one of `markers` (in the working folder, where jobs run) if it
    ever reaches a shell unquoted."""
    m = [p.name for p in markers]
    return (f"my results $(touch {m[0]}) `touch {m[1]}` 'q' \"dq\"; touch {m[2]}"
            f" & touch {m[3]} | x > y\nnewline")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The first stages, finished, with a hostile results folder."""
    workdir = tmp_path_factory.mktemp("hostile")
    markers = [workdir / f"INJECTED_{i}" for i in range(4)]
    config = {**SMALL_DEMO, "results": hostile_results(markers)}
    configfile = workdir / "hostile.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = snakemake("--cores", "2", "--configfile", TINY, configfile, *FIRST_STAGES,
                       workdir=workdir, timeout=900)
    return workdir, config, configfile, markers, result


def test_every_value_reaches_the_command_as_one_argument(finished_run):
    """A results folder with spaces, quotes, `;`, `$(...)`, backticks and a newline: demo data,
    split and every mel shard are made inside it, no injected command ran, and no stray file
    (the old failure: a file named `my` holding mtt's error) was written beside it."""
    workdir, config, _, markers, _ = finished_run
    results = workdir / config["results"]
    for marker in markers:
        assert not marker.exists(), f"an injected command ran: {marker}"
    assert sorted(p.name for p in workdir.iterdir() if not p.name.startswith(".")) == \
        sorted([config["results"], "hostile.yaml"])
    assert (results / "data" / "demo" / "track_metadata.db").is_file()
    report = json.loads((results / "split" / "report.json").read_text())
    assert report["sets"]["test"]["tracks"] > 0
    for split in ("train", "valid", "test", "student"):
        assert (results / "mels" / split / "1-of-1.h5").is_file()
    assert (results / "logs" / "build_splits" / "log.log").is_file()


def test_a_project_folder_with_shell_characters_runs_as_is(tmp_path):
    """The workflow itself in a folder named with a space, quotes, `$(...)` and `;`: the
    PYTHONPATH that `shell.prefix` exports is one quoted word, so the jobs run (before, the
    folder's name was split and `$(...)` ran)."""
    import subprocess
    project = tmp_path / "my project $(touch INJECTED_P) 'q'; touch INJECTED_Q"
    project.mkdir()
    shutil.copy(REPO / "Snakefile", project / "Snakefile")
    shutil.copy(REPO / "config.yaml", project / "config.yaml")
    for folder in ("workflow", "envs", "src"):
        shutil.copytree(REPO / folder, project / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = workdir / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL_DEMO))
    result = subprocess.run(
        [str(VENV_BIN / "snakemake"), "-s", str(project / "Snakefile"), "--directory",
         str(workdir), "--cores", "2", "--configfile", str(TINY), str(config), "--until",
         "build_splits"], capture_output=True, text=True, env=snakemake_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "results" / "split" / "report.json").is_file()
    assert not list(tmp_path.rglob("INJECTED_*")) and not list(workdir.rglob("INJECTED_*"))


# Each key of the dataset, split and preprocess sections that applies to the demo, a new value
# for it, and the rules that must be planned again after it changes (up to the mel shards).
DEMO = {"demo_data", "demo_unlabeled_audio", "build_splits", "preprocess_mel"}
SPLIT = {"build_splits", "preprocess_mel"}
CHANGES = [
    ("dataset", "demo_size", "small", DEMO),
    ("dataset", "demo_seed", 1, DEMO),
    ("dataset", "demo_songs", 401, DEMO),
    ("dataset", "demo_seconds", 2, DEMO),
    ("dataset", "top_tags", 2, SPLIT),
    ("dataset", "min_positives", 3, SPLIT),
    ("split", "fractions", [0.4, 0.3, 0.3], SPLIT),
    ("split", "seed", 1, SPLIT),
    ("split", "exclude_artists", "train", SPLIT),
    ("preprocess", "min_seconds", 0.5, {"preprocess_mel"}),
    ("preprocess", "shards", {"train": 2, "valid": 1, "test": 1, "student": 1},
     {"preprocess_mel"}),
]


def test_nothing_is_planned_when_nothing_changed(finished_run):
    workdir, _, configfile, _, _ = finished_run
    result = snakemake("-n", "--configfile", TINY, configfile, *FIRST_STAGES, workdir=workdir)
    assert planned_jobs(result.stdout) == {}, result.stdout[-2000:]


@pytest.mark.parametrize("section, key, value, rules", CHANGES,
                         ids=[f"{s}.{k}" for s, k, _, _ in CHANGES])
def test_every_key_replans_its_stage_and_what_follows(finished_run, section, key, value, rules):
    """The old workflow planned nothing for dataset.top_tags and min_positives (params reading
    `input`, which Snakemake leaves out of its rerun check)."""
    workdir, config, configfile, _, _ = finished_run
    changed = workdir / f"changed_{section}_{key}.yaml"
    changed.write_text(yaml.safe_dump({section: {**config.get(section, {}), key: value}}))
    try:
        result = snakemake("-n", "--configfile", TINY, configfile, changed, *FIRST_STAGES,
                           workdir=workdir)
    finally:
        changed.unlink()
    planned = planned_jobs(result.stdout)
    assert set(planned) == rules, (key, planned, result.stdout[-3000:])


# The keys that name files or folders, on a catalogue of one's own (format tsv): a new value
# replans the stage that reads it. audio_root was a param reading `input` too.
def _own_catalogue(root):
    audio = root / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["track_id\tartist_id\tpath\ttags"]
    for i in range(48):
        artist = i // 2
        soundfile.write(audio / f"t{i}.wav", rng.normal(0, 0.1, 22050).astype(np.float32), 22050)
        tags = ";".join(["a" if artist % 2 else "b", "c"] if i < 40 else [])
        lines.append(f"t{i}\tA{artist}\tt{i}.wav\t{tags}")
    (root / "catalogue.tsv").write_text("\n".join(lines) + "\n")
    return {"format": "tsv", "audio_root": str(audio), "metadata": str(root / "catalogue.tsv")}


@pytest.fixture(scope="module")
def own_catalogue_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("own")
    config = {"dataset": _own_catalogue(workdir / "data"), "split": SMALL_DEMO["split"],
              "preprocess": SMALL_DEMO["preprocess"], "results": "results"}
    configfile = workdir / "own.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake("--cores", "2", "--configfile", TINY, configfile, *FIRST_STAGES, workdir=workdir)
    return workdir, config, configfile


def _other_audio_root(workdir, config):
    other = workdir / "data" / "audio copy"
    if not other.exists():
        shutil.copytree(config["dataset"]["audio_root"], other)
    return str(other)


def _other_metadata(workdir, config):
    other = workdir / "data" / "catalogue copy.tsv"
    shutil.copy(config["dataset"]["metadata"], other)
    return str(other)


def _a_tag_list(workdir, config):
    path = workdir / "data" / "tags.txt"
    path.write_text("a\nb\n")
    return str(path)


FILE_CHANGES = [
    ("audio_root", _other_audio_root, {"preprocess_mel"}),
    ("metadata", _other_metadata, SPLIT),
    ("tag_list", _a_tag_list, SPLIT),
    ("top_tags", lambda workdir, config: 2, SPLIT),
]


@pytest.mark.parametrize("key, value, rules", FILE_CHANGES, ids=[c[0] for c in FILE_CHANGES])
def test_every_file_key_of_an_own_catalogue_replans_its_stage(own_catalogue_run, key, value,
                                                               rules):
    workdir, config, configfile = own_catalogue_run
    nothing = snakemake("-n", "--configfile", TINY, configfile, *FIRST_STAGES, workdir=workdir)
    assert planned_jobs(nothing.stdout) == {}, nothing.stdout[-2000:]
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump({"dataset": {**config["dataset"],
                                                   key: value(workdir, config)}}))
    result = snakemake("-n", "--configfile", TINY, configfile, changed, *FIRST_STAGES,
                       workdir=workdir)
    assert set(planned_jobs(result.stdout)) == rules, (key, result.stdout[-3000:])


def test_a_results_folder_with_braces_fails_the_dry_run_with_one_line(tmp_path):
    """Braces would be read as Snakemake wildcards: refused at plan time, naming the key."""
    config = tmp_path / "braces.yaml"
    config.write_text(yaml.safe_dump({**SMALL_DEMO, "results": "r{x}"}))
    result = snakemake("-n", "--configfile", TINY, config, workdir=tmp_path, check=False)
    assert result.returncode != 0
    assert "Invalid configuration at results: 'r{x}': braces" in result.stdout + result.stderr
