"""docs/EXTENDING.md, proven: a model family is one model file plus one registry line. A copy of
the project gets a toy family that way, and the copy's `mtt` builds it, saves and loads its
checkpoint and scores with it, and its workflow plans a toy teacher and a toy student, grouped
in the toy family."""
import json
import re
import shutil
import subprocess
import sys

from conftest import REPO, TINY, VENV_BIN, planned_jobs, snakemake_env

TOY_MODEL = '''"""A toy tagger: one convolution, pooled over time and frequency."""
from torch import nn


class ToyTagger(nn.Module):
    kind = "toy"
    default_crop_seconds = 2.0

    def __init__(self, n_tags=50, channels=4, n_mels=128):
        super().__init__()
        self.config = dict(n_tags=n_tags, channels=channels, n_mels=n_mels)
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.linear = nn.Linear(channels, n_tags)

    def embed(self, mel):  # (batch, n_mels, frames) -> (batch, channels)
        return self.conv(mel.unsqueeze(1)).relu().mean(dim=(2, 3))

    def head(self, embedding):  # -> (batch, n_tags) logits
        return self.linear(embedding)

    def forward(self, mel):
        return self.head(self.embed(mel))
'''
TOY_LINE = '    "toy": Family("toy", "ToyTagger", "Toy tagger", {"conv_channels": "channels"}),\n'
TOY_CONFIG = """
teachers:
  toy_teacher: {model: toy, conv_channels: 4}
noisy_student:
  students:
    small: {teacher: toy_teacher, method: kd, model: toy, conv_channels: 2}
"""


def project_with_a_toy_family(root):
    """The project's sources and workflow, copied, plus the toy model file and its one line."""
    root.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("src", "workflow", "envs", "profiles"):
        shutil.copytree(REPO / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "src" / "mtt" / "models" / "toy.py").write_text(TOY_MODEL)
    registry = root / "src" / "mtt" / "config" / "families.py"
    text = registry.read_text()
    end = re.search(r"^FAMILIES = \{\n.*?^\}\n", text, re.M | re.S).end() - 2  # before the `}`
    registry.write_text(text[:end] + TOY_LINE + text[end:])
    return root


def test_a_new_family_is_one_model_file_and_one_registry_line(tmp_path):
    project = project_with_a_toy_family(tmp_path / "project")
    env = {**snakemake_env(), "PYTHONPATH": str(project / "src")}
    built = subprocess.run(
        [sys.executable, "-c", "import torch\n"
         "from mtt.config import TrainConfig\nfrom mtt.models import build_model\n"
         "config = TrainConfig(model='toy', conv_channels=3)\n"
         "config.check(student=False)\n"
         "model = build_model(config.model, 5, **config.model_config())\n"
         "from mtt.checkpoint import load_checkpoint, save_checkpoint\n"
         "from mtt.inference.songs import crop_frames, features\n"
         "save_checkpoint('toy.ckpt', model, list('abcde'))\n"
         "loaded, info = load_checkpoint('toy.ckpt')\n"
         "emb, logits = features(loaded, torch.zeros(2, 128, crop_frames(loaded)))\n"
         "print(tuple(logits.shape), tuple(emb.shape), info['kind'], crop_frames(loaded))"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert built.stdout.split() == ["(2,", "5)", "(2,", "3)", "toy", "87"], built.stderr

    extra = tmp_path / "toy.yaml"
    extra.write_text(TOY_CONFIG)
    result = subprocess.run(
        [str(VENV_BIN / "snakemake"), "-s", str(project / "Snakefile"), "--directory",
         str(tmp_path / "run"), "-n", "-p", "--cores", "1", "--configfile", str(TINY),
         str(extra)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["train_teacher"] == 2 and jobs["train_student"] == 3
    assert re.search(r"--out results/models/toy_teacher .*--model toy --conv-channels 4 ",
                     result.stdout)
    assert re.search(r"--pseudo-labels \S+/pseudo_labels/toy_teacher/\S+ .*"
                     r"--out results/models/student_small .*--model toy --conv-channels 2 ",
                     result.stdout)
    models = json.loads(re.search(r"--models '(\{.*?\})'", result.stdout).group(1))
    assert models["student_small"] == {"family": "toy", "method": "noisy student KD",
                                       "round": 1}
