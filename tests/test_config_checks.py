"""Config and CLI agree: what `mtt` would reject fails `snakemake -n` at plan time, one line
naming the key and the reason (issue 18; docs/RELIABILITY.md, "Config and CLI agree"). The checks
are `mtt.config.check_workflow_config`, which the Snakefile imports without torch."""
import argparse
import inspect
import json
import re
import shlex
import subprocess
import sys
from dataclasses import fields

import pytest
import yaml

from conftest import REPO, TINY, planned_jobs, slow_case, snakemake
from mtt.config import (FAMILIES, TRANSFORMER_DEFAULTS, TRANSFORMER_PRESETS, ConfigError,
                        TrainConfig, WorkflowPlan, check_workflow_config)
from mtt.models.transformer import MusicTaggingTransformer
from mtt.training.command import TrainFiles, add_arguments, check_options

DEFAULTS = inspect.signature(MusicTaggingTransformer).parameters
WIDTH = {None: DEFAULTS["width"].default,
         **{p: s["width"] for p, s in TRANSFORMER_PRESETS.items()}}
HEADS = DEFAULTS["heads"].default


def test_the_config_package_imports_without_torch_numpy_or_pandas():
    """The Snakefile imports mtt.config where only the standard library and PyYAML may be."""
    code = ("import sys\n"
            "for name in ('torch', 'numpy', 'pandas', 'sklearn', 'h5py'):\n"
            "    sys.modules[name] = None  # `import torch` raises ImportError\n"
            "import mtt.config\n"
            "mtt.config.check_workflow_config(__import__('yaml').safe_load("
            "open(sys.argv[1])))\n")
    result = subprocess.run([sys.executable, "-c", code, str(REPO / "config.yaml")],
                            capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 0, result.stderr


def test_the_transformer_sizes_the_checks_assume_are_the_constructors():
    assert TRANSFORMER_DEFAULTS == {"width": WIDTH[None], "heads": HEADS}


def config_with(extra: str = "") -> dict:
    """config.yaml, tests/tiny.yaml and `extra` merged as Snakemake merges --configfile."""
    config = {}
    for text in ((REPO / "config.yaml").read_text(), TINY.read_text(), extra):
        merge(config, yaml.safe_load(text) or {})
    return config


def merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def test_a_plan_takes_each_models_family_and_method_from_its_entries():
    """No name decides anything: a student keyed `small` of a ResNet teacher keyed `cnn` is of
    the ResNet family, with the method its entry names."""
    plan = WorkflowPlan(config_with(
        "teachers:\n  cnn: {model: resnet, conv_channels: 4}\n"
        "noisy_student:\n  rounds: 2\n  students:\n"
        "    small: {teacher: cnn, method: kd, model: resnet, conv_channels: 2}\n"))
    assert plan.supervised_models() == ["teacher", "cnn"]
    assert plan.teacher_of("student_small_round2") == "student_small"
    assert plan.describe("student_small_round2") == {
        "family": "resnet", "method": "noisy student KD", "round": 2}
    assert plan.describe("student_ke") == {
        "family": "transformer", "method": "noisy student KE", "round": 1}
    assert plan.describe("cnn") == {"family": "resnet", "method": "supervised", "round": 0}
    # the shared sizes that a ResNet does not take do not reach it
    assert "heads" not in plan.model_options("student_small") and \
        plan.model_options("student_kd")["heads"] == 2
    off = WorkflowPlan(config_with("teachers:\n  resnet_teacher: {enabled: false}\n"
                                   "noisy_student:\n  students:\n"
                                   "    r: {teacher: resnet_teacher, model: resnet}\n"))
    assert off.all_models() == ["teacher", "student_kd", "student_ke"]


@pytest.mark.parametrize("extra, message", [
    ("results: 'a{b}'\n", "results: 'a{b}': braces would be read as Snakemake wildcards"),
    ("teachers:\n  teacher: {model: fcn}\n",
     "teachers > teacher > model: 'fcn' is not a model family; choose from transformer, resnet "
     "(mtt.config.FAMILIES)"),
    ("teachers:\n  teacher: {preset: large}\n",
     "teachers > teacher: preset 'large' is not one of the transformer family's: teacher, "
     "compact_student"),
    ("teachers:\n  teacher: {model: resnet}\n",
     "teachers > teacher: the resnet family does not take width, layers, heads, drop_path"),
    ("noisy_student:\n  students:\n    kd: {teacher: nobody}\n",
     "noisy_student > students > kd: teacher 'nobody' is not an entry of teachers"),
    ("noisy_student:\n  students:\n    kd_round2: {model: transformer}\n",
     "noisy_student > students > kd_round2: a key ending _round<N> would read as a later round"),
    ("teachers:\n  student_kd: {model: resnet}\n",
     "teachers > student_kd: the name of a student model"),
    ("dataset:\n  format: demo\n  audio_ext: wav\n",
     "dataset > audio_ext: the demo writes its own audio (flac); audio_ext is for format msd"),
])
def test_check_workflow_config_names_the_key_and_the_reason(extra, message):
    with pytest.raises(ConfigError) as err:
        check_workflow_config(config_with(extra))
    assert str(err.value) == f"Invalid configuration at {message}"


def test_the_shipped_configs_pass_the_checks():
    for path in (REPO / "config").glob("*.yaml"):
        check_workflow_config(config_with(path.read_text()))
    assert set(FAMILIES) == {"transformer", "resnet"}


def only(entry, settings=""):
    """A config with the one student `s`, so that the students of config.yaml and tiny.yaml do
    not mask the case; `settings` are noisy_student settings of every student."""
    return (f"noisy_student:\n{settings}  students:\n    kd: null\n    ke: null\n"
            f"    s: {{model: transformer, {entry}}}\n")


def dry_run(tmp_path, content, *args):
    extra = tmp_path / "extra.yaml"
    extra.write_text(content)
    return snakemake("-n", "--cores", "1", *args, "--configfile", TINY, extra,
                     workdir=tmp_path, timeout=120, check=False)


@pytest.mark.parametrize("content, where, reason", [
    ("split:\n  fractions: [0.5, 0.2, 0.2]\n", "split > fractions",
     "[0.5, 0.2, 0.2] sum to 0.9; they must sum to 1"),
    slow_case("split:\n  fractions: [0.7, 0.3, 0.3]\n", "split > fractions",
              "[0.7, 0.3, 0.3] sum to 1.3; they must sum to 1"),
    slow_case("noisy_student:\n  pseudo_mode: threshold\n", "noisy_student > students > kd",
              "pseudo_mode threshold needs pseudo_threshold in (0.5, 1), none is given"),
    slow_case("noisy_student:\n  pseudo_mode: threshold\n  pseudo_threshold: 0.3\n",
              "noisy_student > students > kd",
              "pseudo_mode threshold needs pseudo_threshold in (0.5, 1), not 0.3"),
    slow_case("noisy_student:\n  pseudo_threshold: 1.5\n", "noisy_student > pseudo_threshold",
              "1.5 is greater than or equal to the maximum of 1"),
    ("teachers:\n  teacher:\n    width: 30\n    heads: 4\n", "teachers > teacher",
     "transformer width 30 is not divisible by heads 4"),
    slow_case("noisy_student:\n  students:\n    ke: {heads: 3}\n",
              "noisy_student > students > ke", "transformer width 32 is not divisible by heads 3"),
    # the noisy_student settings are merged into each student before the check
    slow_case(only("width: 48", settings="  heads: 5\n"),
              "noisy_student > students > s", "transformer width 48 is not divisible by heads 5"),
    # mtt train's own sizes where the config gives none: the default, each preset
    slow_case(only("heads: 3"), "noisy_student > students > s",
              f"transformer width {WIDTH[None]} is not divisible by heads 3"),
    *[slow_case(only(f"preset: {preset}, heads: 3"), "noisy_student > students > s",
                f"transformer width {WIDTH[preset]} is not divisible by heads 3")
      for preset in TRANSFORMER_PRESETS],
    slow_case(only(f"width: {HEADS * 4 + 1}"), "noisy_student > students > s",
              f"transformer width {HEADS * 4 + 1} is not divisible by heads {HEADS}"),
    # a ResNet's own entry may not give what only a transformer takes (the shared settings
    # of every student do not reach it)
    ("teachers:\n  resnet_teacher:\n    enabled: true\n    heads: 4\n",
     "teachers > resnet_teacher", "the resnet family does not take heads"),
    slow_case("teachers:\n  resnet_teacher:\n    enabled: true\nnoisy_student:\n  students:\n"
              "    resnet_kd: {drop_path: 0.1, width: 8}\n",
              "noisy_student > students > resnet_kd",
              "the resnet family does not take width, drop_path"),
    slow_case("dataset:\n  demo_seconds: 0.5\n", "dataset > demo_seconds",
              "0.5 is less than the minimum of 1"),
])
def test_a_config_mtt_would_reject_fails_the_dry_run_with_one_line(tmp_path, content, where,
                                                                   reason):
    result = dry_run(tmp_path, content)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    lines = [line for line in output.splitlines() if "Invalid configuration" in line]
    assert lines == [f"Invalid configuration at {where}: {reason}"], output
    assert "Traceback" not in output


def test_threshold_mode_with_its_threshold_plans_and_reaches_mtt_train(tmp_path):
    result = dry_run(tmp_path, "split:\n  fractions: [0.8, 0.1, 0.1]\n"
                               "dataset:\n  demo_seconds: 1\n"
                               "noisy_student:\n  pseudo_mode: threshold\n"
                               "  pseudo_threshold: 0.7\n", "-p")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("--pseudo-mode threshold --pseudo-threshold 0.7") == 2  # kd, ke
    assert "--seconds 1" in result.stdout


def test_a_student_started_from_its_teachers_front_end_is_given_the_teachers_checkpoint(tmp_path):
    result = dry_run(tmp_path, "noisy_student:\n  students:\n    kd: {init_from_teacher: frontend}\n",
                     "-p")
    assert result.returncode == 0, result.stdout + result.stderr
    kd, ke = (re.search(rf"^Shell command: (.* --out results/models/student_{name} .*?) >",
                        result.stdout, re.M).group(1) for name in ("kd", "ke"))
    assert (" --teacher-checkpoint results/models/teacher/best.ckpt " in kd
            and " --init-from-teacher frontend " in kd + " ")
    assert "--teacher-checkpoint" not in ke and "--init-from-teacher" not in ke


# A value for every option the config sets: the TrainConfig fields of the schema's train_options
# and student_options (the test asserts it, so a new option needs a value here).
TRAIN_OPTION_VALUES = {
    "model": "transformer", "preset": "compact_student", "conv_channels": 4, "width": 48,
    "layers": 1, "heads": 4, "dropout": 0.2, "drop_path": 0.05, "crop_seconds": 1.5,
    "batch_size": 4, "lr": 0.002, "warmup_steps": 10, "lr_decay": 0.5, "lr_patience": 2,
    "lr_anneal_epochs": 3,
    "ema_decay": 0.9, "select_by": "valid_pr_auc", "max_epochs": 3, "patience": 2,
    "steps_per_epoch": 5, "valid_chunks": 3, "workers": 1, "seed": 7, "noise": "paper,shift",
    "noise_prob": 0.3}
STUDENT_OPTION_VALUES = {
    "labeled_ratio": 0.25, "pseudo_weight": 0.5, "pseudo_mode": "threshold",
    "pseudo_threshold": 0.7, "pseudo_temperature": 0.5, "pseudo_tag_weights": "teacher_valid_auc",
    "pseudo_targets": "crop", "init_from_teacher": "frontend", "label_blend": 0.3}


def test_every_training_option_in_the_config_reaches_mtt_train(tmp_path):
    """Each option set in the config is planned as its `mtt train` flag, with the files it needs
    (the teacher's checkpoint, its predictions for the training songs); `mtt train` parses and
    accepts the planned commands."""
    sections = {f.name: f.metadata["config"] for f in fields(TrainConfig)}
    assert set(TRAIN_OPTION_VALUES) == {k for k, v in sections.items() if v == "train_options"}
    assert set(STUDENT_OPTION_VALUES) == {k for k, v in sections.items() if v == "student_options"}
    teacher = json.dumps(TRAIN_OPTION_VALUES)  # YAML too
    student = json.dumps({**TRAIN_OPTION_VALUES, **STUDENT_OPTION_VALUES})
    result = dry_run(tmp_path, f"teachers:\n  teacher: {teacher}\nnoisy_student:\n  students:\n"
                               f"    kd: null\n    ke: null\n    s: {student}\n", "-p")
    assert result.returncode == 0, result.stdout + result.stderr
    assert planned_jobs(result.stdout)["pseudo_label_train"] == 2  # one per training shard
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_with()
    for model, values in (("teacher", TRAIN_OPTION_VALUES),
                          ("student_s", {**TRAIN_OPTION_VALUES, **STUDENT_OPTION_VALUES})):
        command = re.search(rf"^Shell command: (.* --out results/models/{model} .*?) >",
                            result.stdout, re.M).group(1)
        for key, value in values.items():
            assert f" --{key.replace('_', '-')} {value} " in command, (key, command)
        for f in fields(TrainConfig):  # the options the rules pass from elsewhere
            given = {"top level": lambda name: config[name],
                     "resources.train.threads": lambda name: config["resources"]["train"][name],
                     "rule": lambda name: ""}.get(f.metadata["config"])
            if given is not None:
                assert f" --{f.name.replace('_', '-')} {given(f.name)}".rstrip() + " " in \
                    command + " ", (f.name, command)
        args = parser.parse_args(shlex.split(command.split(" mtt.cli train ")[1]))
        check_options(TrainConfig.from_args(args), TrainFiles.from_args(args))
        assert TrainConfig.from_args(args).seed == 7
    assert (" --teacher-checkpoint results/models/teacher/best.ckpt --labeled-pseudo-labels "
            "results/labeled_pseudo_labels/teacher/1-of-2.h5 "
            "results/labeled_pseudo_labels/teacher/2-of-2.h5 ") in command
