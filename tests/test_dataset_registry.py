"""The dataset registry (mtt.datasets): importable without numpy, pandas or torch; each format's
declarations agree with its loader and reader; the config schema it makes accepts every shipped
config; and a format added as docs/EXTENDING.md shows it (one module, one registry line) splits
with `mtt split` and plans in the workflow."""
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import import_module

import jsonschema
import pytest
import yaml

from conftest import REPO, TINY, VENV_BIN, planned_jobs, snakemake_env
from mtt.datasets import FORMATS, SPLIT_OPTIONS, config_schema, format_options

HEAVY = ("numpy", "pandas", "torch", "torchaudio", "h5py", "scipy", "sklearn")


def test_the_registry_imports_with_the_standard_library_alone():
    code = ("import sys\n"
            f"for name in {HEAVY!r}: sys.modules[name] = None  # import fails\n"
            "import mtt.datasets as datasets\n"
            "datasets.config_schema()\n"
            "print(' '.join(datasets.FORMATS))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["demo", "msd", "mtg-jamendo", "mtat", "tsv"]


def _function(name):
    module, function = name.split(":")
    return getattr(import_module(module), function)


@pytest.mark.parametrize("name", [name for name, f in FORMATS.items() if f.loader])
def test_a_formats_loader_and_reader_take_its_declared_options(name):
    dataset = FORMATS[name]
    options = {option.name for option in dataset.options}
    assert set(dataset.required) <= options
    parameters = inspect.signature(_function(dataset.loader)).parameters
    assert options | {"tags", "top_tags"} == set(parameters)
    if dataset.official_split:
        parameters = inspect.signature(_function(dataset.official_split.reader)).parameters
        assert set(dataset.official_split.reads) <= options
        assert set(dataset.official_split.reads) | {"tags", "top_tags"} == set(parameters) - {
            "folder"}


def test_options_shared_by_formats_are_declared_alike():
    merged = format_options(FORMATS)  # raises if two formats declare one name differently
    assert merged["metadata"].help.startswith("mtg-jamendo: ")
    assert not set(merged) & {option.name for option in SPLIT_OPTIONS}


def configs():
    """Each shipped config's dataset section as the workflow sees it: laid over config.yaml's."""
    default = yaml.safe_load((REPO / "config.yaml").read_text())["dataset"]
    yield "config.yaml", default
    for path in [*sorted((REPO / "config").glob("*.yaml")), TINY]:
        yield path.name, {**default, **(yaml.safe_load(path.read_text()).get("dataset") or {})}


@pytest.mark.parametrize("name, dataset", list(configs()),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_every_shipped_config_satisfies_the_dataset_schema(name, dataset):
    jsonschema.validate(dataset, config_schema())


@pytest.mark.parametrize("dataset, where", [
    ({"format": "msd", "audio_root": "a", "track_metadata": "t"}, "lastfm_tags"),
    ({"format": "tsv", "audio_root": "a", "metadata": "m", "catalog": "c"}, "catalog"),
    ({"format": "mtat", "audio_root": "a", "official_split": "d"}, "metadata"),
    ({"format": "demo", "demo_seconds": 0.5}, "demo_seconds"),
])
def test_the_dataset_schema_refuses_what_the_formats_do_not_declare(dataset, where):
    with pytest.raises(jsonschema.ValidationError, match=where):
        jsonschema.validate(dataset, config_schema())


def extending_example():
    """(module text, registry line) of docs/EXTENDING.md's "Adding a dataset format"."""
    text = (REPO / "docs" / "EXTENDING.md").read_text()
    section = text.split("## Adding a dataset format", 1)[1].split("\n## ", 1)[0]
    module, line = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    return module, line


@pytest.fixture(scope="module")
def project_with_jsonl(tmp_path_factory):
    """A copy of the project with docs/EXTENDING.md's JSON-lines format added: its module and its
    one line in the registry."""
    root = tmp_path_factory.mktemp("project")
    for part in ("src", "workflow", "envs"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / part, root / part)
    module, line = extending_example()
    (root / "src/mtt/datasets/jsonl.py").write_text(module)
    registry = root / "src/mtt/datasets/__init__.py"
    start = "FORMATS = {f.name: f for f in (\n"
    assert start in registry.read_text()
    registry.write_text(registry.read_text().replace(start, start + line))
    catalogue = root / "tracks.jsonl"
    catalogue.write_text("".join(
        json.dumps({"track_id": f"t{i}", "artist_id": f"a{i % 12}", "path": f"t{i}.mp3",
                    "tags": ["rock"] if i % 3 else ["jazz", "rock"]}) + "\n" for i in range(48)))
    return root, catalogue


def test_a_format_added_as_extending_shows_splits(project_with_jsonl, tmp_path):
    root, catalogue = project_with_jsonl
    out = tmp_path / "split"
    result = subprocess.run([sys.executable, "-m", "mtt.cli", "split", "--format", "jsonl",
                             "--catalogue", catalogue, "--out", out],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root / "src")})
    assert result.returncode == 0, result.stderr
    assert (out / "tags.txt").read_text().split() == ["rock", "jazz"]
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "jsonl"
    assert sum(report["sets"][s]["tracks"] for s in ("train", "valid", "test")) == 48


def test_a_format_added_as_extending_shows_plans_in_the_workflow(project_with_jsonl, tmp_path):
    root, catalogue = project_with_jsonl
    config = tmp_path / "jsonl.yaml"
    config.write_text(f"dataset:\n  format: jsonl\n  audio_root: {tmp_path}\n"
                      f"  catalogue: {catalogue}\n  top_tags: 1\n")
    command = [str(VENV_BIN / "snakemake"), "-s", str(root / "Snakefile"), "--directory",
               str(tmp_path), "-n", "-p", "--cores", "1", "--configfile", TINY, config]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True,
                            env=snakemake_env(), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert planned_jobs(result.stdout)["build_splits"] == 1
    split = next(line for line in result.stdout.splitlines() if "mtt.cli split" in line)
    assert f"--format jsonl --catalogue {catalogue} --top-tags 1 --out" in split
    config.write_text(f"dataset:\n  format: jsonl\n  audio_root: {tmp_path}\n")
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True,
                            env=snakemake_env(), timeout=300)
    assert result.returncode != 0
    assert "Invalid configuration at dataset: 'catalogue' is a required property" in result.stdout
