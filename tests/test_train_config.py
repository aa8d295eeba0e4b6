"""`TrainConfig` is the one description of a training run: the `mtt train` flags come from its
fields, the config schema's training sections agree with it key by key, every option is settable
from the config, and the run identity that last.ckpt files hold is unchanged."""
import argparse
import ast
import math
import re
from dataclasses import MISSING, fields

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO
from mtt.training.command import add_arguments
from mtt.training.objective import student_loss
from mtt.config import EXTRA_KINDS, FAMILIES, NOISE_KINDS, SIZE_OPTIONS, parse_noise_kinds
from mtt.config.options import STUDENT_OPTIONS, TOP_LEVEL, TRAIN_OPTIONS, parse_range, value_type
from mtt.config.training import IDENTITY_DEFAULTS, RUN_IDENTITY, TrainConfig, refused_sizes

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
FIELDS = {f.name: f for f in fields(TrainConfig)}
INPUT_FILES = {"train", "valid", "tags", "mels", "out", "pseudo_labels", "unlabeled_mels",
               "labeled_pseudo_labels", "teacher_checkpoint"}
JSON_TYPE = {int: "integer", float: "number", str: "string", bool: "boolean"}


def resolve(node: dict) -> dict:
    """A schema node with its `$ref` (to #/$defs/...) merged in."""
    if "$ref" not in node:
        return node
    target = SCHEMA
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}


def section(name: str) -> dict:
    return {key: resolve(node) for key, node in SCHEMA["$defs"][name]["properties"].items()}


def where(f) -> str:
    return f.metadata["config"]


def test_the_schema_sections_hold_exactly_the_config_options():
    for name in (TRAIN_OPTIONS, STUDENT_OPTIONS):
        assert set(section(name)) == {n for n, f in FIELDS.items() if where(f) == name}, name


@pytest.mark.parametrize("name", [n for n, f in FIELDS.items()
                                  if where(f) in (TRAIN_OPTIONS, STUDENT_OPTIONS, TOP_LEVEL)])
def test_schema_and_dataclass_agree_on_type_choices_range_and_default(name):
    f = FIELDS[name]
    node = (section(where(f)) if where(f) != TOP_LEVEL else
            {k: resolve(v) for k, v in SCHEMA["properties"].items()})[name]
    kind, choices = value_type(f), f.metadata["choices"]
    if name in ("model", "preset"):  # FAMILIES decides, in the config checks (mtt.config)
        assert node["type"] == "string" and "enum" not in node
        assert set(choices) == ({name for name in FAMILIES} if name == "model" else
                                {p for family in FAMILIES.values() for p in family.presets})
    elif choices is not None:
        assert set(node["enum"]) == set(choices)
    elif "enum" in node:  # the config may offer fewer values than mtt train takes (--device)
        assert all(isinstance(value, kind) for value in node["enum"])
    elif name == "noise":  # comma-separated kinds, or none
        pattern = re.compile(node["pattern"])
        for value in (*NOISE_KINDS, *EXTRA_KINDS, "none", ",".join(NOISE_KINDS),
                      ",".join(EXTRA_KINDS), "paper,mixup"):
            assert pattern.fullmatch(value), value
            parse_noise_kinds(value)  # what the config accepts, mtt train accepts
        assert not pattern.fullmatch("reverb") and not pattern.fullmatch("paper,")
    else:
        assert node["type"] == JSON_TYPE[kind]
    if "default" in node:
        assert node["default"] == f.default
    if f.metadata["allowed"] is not None:  # whatever the config accepts, mtt train accepts
        low, low_in, high, high_in = parse_range(f.metadata["allowed"])
        schema_low = node.get("minimum", node.get("exclusiveMinimum", -math.inf))
        schema_low_in = "minimum" in node
        schema_high = node.get("maximum", node.get("exclusiveMaximum", math.inf))
        schema_high_in = "maximum" in node
        assert schema_low > low or schema_low == low and (low_in or not schema_low_in), node
        assert schema_high < high or schema_high == high and (high_in or not schema_high_in), node


def test_each_family_takes_its_sizes_and_refuses_the_others():
    """The family table decides what a model's size options build (and `mtt train` refuses
    the others): a ResNet takes channels and dropout, a transformer every size."""
    assert SIZE_OPTIONS == ("preset", "conv_channels", "width", "layers", "heads", "dropout",
                            "drop_path")
    assert refused_sizes("resnet", dict.fromkeys(SIZE_OPTIONS)) == [
        "preset", "width", "layers", "heads", "drop_path"]
    assert refused_sizes("transformer", dict.fromkeys(SIZE_OPTIONS)) == []
    assert TrainConfig(model="resnet", conv_channels=8, dropout=0.2).model_config() == {
        "channels": 8, "dropout": 0.2}
    assert TrainConfig(conv_channels=8, width=32, heads=4).model_config() == {
        "conv_channels": 8, "width": 32, "heads": 4}


def test_mtt_train_flags_are_the_dataclass_fields_and_the_input_files():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(actions) == set(FIELDS) | INPUT_FILES
    for name, f in FIELDS.items():
        action, meta = actions[name], f.metadata
        assert action.option_strings == ["--" + name.replace("_", "-")]
        assert f.default is not MISSING and action.default == f.default
        assert action.help == meta["help"]
        assert action.choices == (None if meta["choices"] is None else list(meta["choices"]))
        kind = value_type(f)
        assert action.type is (None if kind in (str, bool) else kind)
    config = TrainConfig.from_args(parser.parse_args(
        ["--train", "t", "--valid", "v", "--tags", "g", "--mels", "m", "--out", "o"]))
    assert config == TrainConfig()


def test_the_run_identity_is_the_one_last_ckpt_files_hold():
    """last.ckpt files written before TrainConfig resume: the same identity keys, values and
    defaults of older files."""
    assert sorted(RUN_IDENTITY) == sorted([
        "model", "model_config", "tags", "seed", "batch_size", "lr", "crop_frames",
        "steps_per_epoch", "labeled_ratio", "pseudo_weight", "pseudo_mode", "pseudo_threshold",
        "noise", "noise_prob", "warmup_steps", "lr_decay", "lr_patience", "lr_anneal_epochs",
        "label_blend",
        "ema_decay", "select_by", "precision", "pseudo_tag_weights", "pseudo_targets",
        "pseudo_temperature", "init_from_teacher"])
    assert IDENTITY_DEFAULTS == {
        "lr_decay": 1.0, "lr_patience": None, "lr_anneal_epochs": 0, "label_blend": 0.0,
        "ema_decay": 0.0, "select_by": "valid_loss", "precision": "fp32",
        "pseudo_tag_weights": "none", "pseudo_targets": "song", "pseudo_temperature": 1.0,
        "init_from_teacher": "none"}
    resolved = {"model_config": {"n_tags": 4, "width": 16}, "tags": ["a", "b", "c", "d"],
                "crop_frames": 44, "precision": "fp32"}
    teacher = TrainConfig().identity(False, noise=[], **resolved)
    assert teacher == {
        **resolved, "model": "transformer", "seed": 0, "batch_size": 32, "lr": 1e-4,
        "steps_per_epoch": None, "labeled_ratio": None, "pseudo_weight": None,
        "pseudo_mode": None, "pseudo_threshold": None, "noise": [], "noise_prob": 0.5,
        "warmup_steps": 0, "lr_decay": 1.0, "lr_patience": None, "lr_anneal_epochs": 0,
        "label_blend": 0.0,
        "ema_decay": 0.0, "select_by": "valid_loss", "pseudo_tag_weights": "none",
        "pseudo_targets": "song", "pseudo_temperature": 1.0, "init_from_teacher": "none"}
    student = TrainConfig(lr_decay=0.5, pseudo_temperature=0.5, max_epochs=3).identity(
        True, noise=list(NOISE_KINDS), **resolved)
    assert student == {**teacher, "labeled_ratio": 0.5, "pseudo_weight": 1.0,
                       "pseudo_mode": "soft", "pseudo_threshold": 0.5,
                       "noise": list(NOISE_KINDS), "lr_decay": 0.5, "lr_patience": 3,
                       "pseudo_temperature": 0.5}
    assert TrainConfig(pseudo_temperature=0.5).identity(False, noise=[], **resolved) == teacher


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"steps_per_epoch": 0}, "--steps-per-epoch must be at least 1"),
    ({"lr_decay": 0.0}, "--lr-decay must be in (0, 1]"),
    ({"ema_decay": 1.0}, "--ema-decay must be in [0, 1)"),
    ({"label_blend": 1.5}, "--label-blend must be in [0, 1]"),
    ({"pseudo_temperature": 0.0}, "--pseudo-temperature must be positive"),
    ({"model": "resnet", "drop_path": 0.1}, "--drop-path does not apply to the resnet"),
])
def test_checks_name_the_flag(options, message):
    with pytest.raises(ValueError) as err:
        TrainConfig(**options).check(student=False)
    assert str(err.value) == message
    TrainConfig().check(student=True)


def test_student_loss_weighs_tags_and_elements():
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    labeled, pseudo = torch.rand(2, 3).round(), torch.rand(3, 3)
    weights = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    tags = torch.tensor([1.0, 0.5, 0.0])
    loss = student_loss(logits, labeled, pseudo, weights, 0.7, tags)
    bce = F.binary_cross_entropy_with_logits
    expected = (bce(logits[:2], labeled) + 0.7 * (bce(logits[2:], pseudo, reduction="none")
                                                  * tags * weights).sum() / weights.sum())
    assert torch.allclose(loss, expected)
    # without tag weights, and with every element left out: the labeled loss alone
    assert torch.allclose(student_loss(logits, labeled, pseudo, torch.zeros(3, 3), 0.7),
                          bce(logits[:2], labeled))
