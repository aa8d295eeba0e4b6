"""Print pip constraints pinning every dependency of pyproject.toml (and the given extras) to its floor.

`pip install -e '.[test]' -c <(python .ci/floors.py test)` installs the oldest releases the project
claims to work with; .ci/run runs the fast tier and the fidelity tests on them.
"""
import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
for extra in sys.argv[1:]:
    requirements += project["optional-dependencies"][extra]
for requirement in requirements:
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)(,.*)?", requirement)
    if not match:
        sys.exit(f"floors.py: {requirement!r} has no '>=' floor")
    print(f"{match[1]}=={match[2]}")
