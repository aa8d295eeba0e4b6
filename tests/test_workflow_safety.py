"""The workflow's side of issue 33 (docs/RELIABILITY.md): no config value reaches a shell
unquoted, and no config edit leaves stale results. Both through real Snakemake runs of the first
stages (demo data, split, mel shards) on a small demo."""
import json

import pytest
import yaml

from conftest import TINY, planned_jobs, snakemake

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


# Each key of the dataset, split and preprocess sections that applies to the demo, a new value
# for it, and the rules that must be planned again after it changes (up to the mel shards).
DEMO = {"demo_data", "build_splits", "preprocess_mel"}
SPLIT = {"build_splits", "preprocess_mel"}
CHANGES = [
    ("dataset", "demo_size", "small", DEMO),
    ("dataset", "demo_seed", 1, DEMO),
    ("dataset", "demo_songs", 401, DEMO),
    ("dataset", "demo_seconds", 2, DEMO),
    ("dataset", "audio_ext", "wav", SPLIT),
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
