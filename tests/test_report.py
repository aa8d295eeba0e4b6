"""`snakemake --report` works after the README's install (`pip install -e .`, no test extra)."""
import importlib.metadata
import re
import tomllib
from pathlib import Path

import snakemake

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_package_the_report_needs_is_a_declared_dependency():
    """Snakemake's report refuses to run ("Python package X must be installed to create
    reports") unless X is importable; X must come from our dependencies or Snakemake's own
    (non-extra) requirements, not from whatever pytest happens to pull in."""
    report_dir = Path(snakemake.__file__).parent / "report"
    needed = set()
    for source in report_dir.rglob("*.py"):
        needed |= {m.lower() for m in re.findall(r"Python package (\w+) must be installed", source.read_text())}
    assert {"pygments", "jinja2"} <= needed  # the check still finds what it looks for
    ours = {_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    snakemakes = {_name(r) for r in importlib.metadata.requires("snakemake") if "extra ==" not in r}
    missing = needed - ours - snakemakes
    assert not missing, f"snakemake --report needs {sorted(missing)}: add them to pyproject.toml"


def test_ci_installs_chromium_then_runs_exactly_the_readmes_test_command():
    """.ci/run is what CI runs: the README's test command, word for word, as a line of its own,
    after installing the browser the report test opens (the one system package pip cannot give);
    then the fast tier on Python 3.13 with the newest releases, and on 3.12 at every floor."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"Install and run the test suite.*?```bash\n(.*?)\n```", readme, re.S)[1]
    ci = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()
    assert command in ci
    assert any("apt-get install -y chromium" in line for line in ci[:ci.index(command)])
    after = "\n".join(ci[ci.index(command) + 1:])
    assert '"$(python_of 3.13)" -m venv .venv-newest' in after
    assert "PIP_CONSTRAINT=/dev/null .venv-newest/bin/pip install -q '.[test]'" in after
    assert "-c <(python3 .ci/floors.py test)" in after
