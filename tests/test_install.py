"""What users install: Python 3.11+, dependency ranges with tested floors, the exact CI set."""
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pins(path):
    lines = (REPO / path).read_text().splitlines()
    return {Requirement(line).name.lower().replace("_", "-"): Version(line.split("==")[1])
            for line in lines if line.strip() and not line.startswith("#")}


def test_any_python_from_3_11_and_ranges_not_pins():
    assert PROJECT["requires-python"] == ">=3.11"
    for requirement in map(Requirement, PROJECT["dependencies"]):
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">="}, f"{requirement}: a floor, no pin or ceiling"
    torch = next(r for r in map(Requirement, PROJECT["dependencies"]) if r.name == "torch")
    assert Version("2.11") in torch.specifier  # the GPU image's torch


def test_floors_script_pins_each_floor():
    printed = subprocess.run([sys.executable, REPO / ".ci" / "floors.py", "test"], check=True,
                             capture_output=True, text=True).stdout.split()
    wanted = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]
    assert printed == [str(Requirement(r)).replace(">=", "==") for r in wanted]


def test_the_exact_ci_set_pins_every_dependency_inside_its_range():
    locked = pins("envs/constraints.txt")
    for requirement in map(Requirement, PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]):
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"envs/constraints.txt has no pin for {name}"
        assert locked[name] in requirement.specifier, f"{name}=={locked[name]} is outside {requirement}"
