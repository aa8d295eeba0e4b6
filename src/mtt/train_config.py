"""`TrainConfig`: the one description of a training run's options.

Each field is one option of `mtt train`: the field gives its name, type and default, its metadata
the help text, choices, allowed range, help group and whether (and how) it is part of the run's
identity. Derived from it: the `mtt train` flags (`add_arguments`), the checks (`check`), the
identity a resumed run must share (`identity`, `RUN_IDENTITY`, `IDENTITY_DEFAULTS`); the
`config` metadata says where the workflow's config sets the option, and
tests/test_train_config.py proves the config schema agrees with this file key by key.

The files a run reads and writes (`--train`, `--mels`, `--out`, `--pseudo-labels`, ...) are not
options: they stay plain arguments of `mtt train` (`mtt.train.add_arguments`).
"""
import argparse
import math
import types
import typing
from dataclasses import dataclass, field, fields

from .noise import EXTRA_KINDS, NOISE_KINDS, parse_noise_kinds
from .inference.device import PRECISION_HELP, PRECISIONS
from .tag_trust import MODES as TAG_TRUST_MODES

# --select-by: the validation score that picks the kept epoch and counts the patience
SELECT_BY = {"valid_loss": "lowest validation loss",
             "valid_roc_auc": "highest validation macro ROC-AUC",
             "valid_pr_auc": "highest validation macro PR-AUC",
             "valid_auc": "highest mean of validation macro ROC-AUC and PR-AUC"}

# Where the workflow's config sets an option (the `config` metadata): a key of the schema's
# `train_options` (sections training, teacher, resnet_teacher, noisy_student and its students) or
# `student_options` (noisy_student and its students), a top-level key, the train resources, or
# the training rules themselves.
TRAIN_OPTIONS, STUDENT_OPTIONS = "train_options", "student_options"
TOP_LEVEL, TRAIN_THREADS, RULE = "top level", "resources.train.threads", "rule"


def _students_only(value):
    """Identity rule of a student's option: a teacher's identity holds `value` instead."""
    return (lambda config, student: student), value


_UNSET = object()


def option(default, help=None, *, group, choices=None, allowed=None, config=TRAIN_OPTIONS,
           identity=True, when=None, older=_UNSET, transformer_only=False):
    """A TrainConfig field. `allowed`: the values `mtt train` accepts, in interval notation
    ("[1, inf)", "(0, 1]"); `identity`: True (the value is part of the run identity), False, or
    the name of the identity entry that stands for it (`model_config`, `crop_frames`); `when`:
    (predicate(config, student), value the identity holds when the option does not act);
    `older`: the value a last.ckpt written before this option was in the identity ran with;
    `transformer_only`: a ResNet refuses it."""
    metadata = {"help": help, "group": group, "choices": choices, "allowed": allowed,
                "config": config, "identity": identity, "when": when,
                "transformer_only": transformer_only}
    if older is not _UNSET:
        metadata["older"] = older
    return field(default=default, metadata=metadata)


MODEL, OPTIMISATION, STUDENT = "model", "optimisation", "noisy student"


@dataclass(frozen=True)
class TrainConfig:
    """The options of one training run (teacher, or noisy student with --pseudo-labels)."""
    # ---- model
    model: str = option("transformer", group=MODEL, choices=("transformer", "resnet"))
    preset: str | None = option(
        None, "transformer size preset (teacher C128/D256, compact_student C128/D64)",
        group=MODEL, choices=("teacher", "compact_student"), identity="model_config",
        transformer_only=True)
    conv_channels: int | None = option(None, "CNN channels C", group=MODEL,
                                       identity="model_config")
    width: int | None = option(None, "transformer width D", group=MODEL, identity="model_config",
                               transformer_only=True)
    layers: int | None = option(None, "transformer layers", group=MODEL, identity="model_config",
                                transformer_only=True)
    heads: int | None = option(None, "attention heads", group=MODEL, identity="model_config",
                               transformer_only=True)
    dropout: float | None = option(None, "dropout (model noise)", group=MODEL,
                                   identity="model_config")
    drop_path: float | None = option(None, "stochastic depth rate (model noise)", group=MODEL,
                                     identity="model_config", transformer_only=True)
    crop_seconds: float | None = option(
        None, "training crop / validation chunk length (default: the model's, 10 s for the "
        "transformer)", group=MODEL, identity="crop_frames")
    # ---- optimisation
    batch_size: int = option(32, group=OPTIMISATION, allowed="[1, inf)")
    lr: float = option(1e-4, group=OPTIMISATION)
    warmup_steps: int = option(0, "linear learning-rate warm-up", group=OPTIMISATION)
    lr_decay: float = option(
        1.0, "multiply the learning rate by this after --lr-patience epochs without a lower "
        "validation loss (default 1: a constant rate)", group=OPTIMISATION, allowed="(0, 1]",
        older=1.0)
    lr_patience: int = option(
        3, "epochs without a lower validation loss before the rate decays", group=OPTIMISATION,
        allowed="[1, inf)", when=(lambda config, student: config.lr_decay < 1, None), older=None)
    ema_decay: float = option(
        0.0, "validate and keep an exponential moving average of the weights, updated every "
        "step with this decay (e.g. 0.98); default 0: the raw weights", group=OPTIMISATION,
        allowed="[0, 1)", older=0.0)
    select_by: str = option(
        "valid_loss", "the epoch kept as best.ckpt, and the one early stopping counts from: "
        + "; ".join(f"{k}: {v}" for k, v in SELECT_BY.items()), group=OPTIMISATION,
        choices=tuple(sorted(SELECT_BY)), older="valid_loss")
    max_epochs: int = option(200, group=OPTIMISATION, allowed="[1, inf)", identity=False)
    patience: int = option(40, "stop after this many epochs without a lower validation loss",
                           group=OPTIMISATION, allowed="[1, inf)", identity=False)
    steps_per_epoch: int | None = option(
        None, "batches per epoch (default: one pass over the labeled training songs)",
        group=OPTIMISATION, allowed="[1, inf)")
    valid_chunks: int = option(
        8, "evenly spaced chunks per validation song (predictions averaged)",
        group=OPTIMISATION, allowed="[1, inf)", identity=False)
    workers: int | None = option(None, "data-loader processes (default: 0 on CPU, 4 on GPU)",
                                 group=OPTIMISATION, identity=False)
    seed: int = option(0, group=OPTIMISATION)
    fresh_unless_interrupted: bool = option(
        False, "start over (deleting last.ckpt) unless it holds an unfinished run with these "
        "settings and these input files (same sizes and modification times); for workflow "
        "managers, which rerun a finished job only to redo it", group=OPTIMISATION, config=RULE,
        identity=False)
    device: str = option("auto", "auto, cpu, cuda or cuda:N", group=OPTIMISATION,
                         config=TOP_LEVEL, identity=False)
    precision: str = option("auto", PRECISION_HELP, group=OPTIMISATION, choices=PRECISIONS,
                            config=TOP_LEVEL, older="fp32")
    threads: int | None = option(None, "CPU threads (default: torch's choice)",
                                 group=OPTIMISATION, config=TRAIN_THREADS, identity=False)
    # ---- noisy student (with --pseudo-labels)
    labeled_ratio: float = option(0.5, "share of labeled crops in a batch", group=STUDENT,
                                  config=STUDENT_OPTIONS, when=_students_only(None))
    pseudo_weight: float = option(1.0, "weight of the pseudo-label loss", group=STUDENT,
                                  config=STUDENT_OPTIONS, when=_students_only(None))
    pseudo_mode: str = option("soft", group=STUDENT, choices=("soft", "hard", "threshold"),
                              config=STUDENT_OPTIONS, when=_students_only(None))
    pseudo_temperature: float = option(
        1.0, "soft mode: sharpen pseudo-labels as sigmoid(logit(p) / T) (default 1: the "
        "teacher's probabilities)", group=STUDENT, allowed="(0, inf)", config=STUDENT_OPTIONS,
        when=_students_only(1.0), older=1.0)
    pseudo_threshold: float = option(
        0.5, "hard: positive at p >= T; threshold: keep p >= T and p <= 1 - T", group=STUDENT,
        config=STUDENT_OPTIONS, when=_students_only(None))
    pseudo_tag_weights: str = option(
        "none", "teacher_valid_auc: weight each tag's pseudo-label loss by clip(2 * ROC-AUC - 1, "
        "0, 1) of the teacher on the validation split (needs --teacher-checkpoint); none: every "
        "tag weight 1", group=STUDENT, choices=TAG_TRUST_MODES, config=STUDENT_OPTIONS,
        when=_students_only("none"), older="none")
    pseudo_targets: str = option(
        "song", "song: the pseudo-label shard's song-level labels; crop: the teacher "
        "(--teacher-checkpoint) labels the same clean crop the student sees noised; "
        "crop_noised: the teacher sees the noised crop too", group=STUDENT,
        choices=("song", "crop", "crop_noised"), config=STUDENT_OPTIONS,
        when=_students_only("song"), older="song")
    label_blend: float = option(
        0.0, "labeled targets = (1 - B) * labels + B * teacher predictions (default 0: the "
        "labels alone)", group=STUDENT, allowed="[0, 1]", config=STUDENT_OPTIONS, older=0.0)
    noise: str = option(
        "auto", f"input noise kinds, comma-separated from {', '.join(NOISE_KINDS + EXTRA_KINDS)}, "
        "or none (default: all of the first four for a student, none for a teacher); paper: the "
        "published code's chain as log-mel transforms, each with its own probability; stretch: "
        "a random resized crop in time", group=STUDENT)
    noise_prob: float = option(
        0.5, "probability of each noise kind per example (not of paper's transforms: the "
        "paper's own)", group=STUDENT)

    # ---------------------------------------------------------------- flags and checks

    @classmethod
    def add_arguments(cls, groups: dict) -> None:
        """One flag per field, in the argparse group its metadata names (`groups`: title ->
        group)."""
        for f in fields(cls):
            meta, kind = f.metadata, value_type(f)
            flag = "--" + f.name.replace("_", "-")
            if kind is bool:
                groups[meta["group"]].add_argument(flag, action="store_true", help=meta["help"])
                continue
            kwargs = {"default": f.default, "help": meta["help"]}
            if kind is not str:
                kwargs["type"] = kind
            if meta["choices"] is not None:
                kwargs["choices"] = list(meta["choices"])
            groups[meta["group"]].add_argument(flag, **kwargs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainConfig":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def check(self, student: bool) -> None:
        """Each option's range, the threshold of threshold mode, and what a ResNet refuses;
        ValueError naming the flag."""
        if student and self.pseudo_mode == "threshold" and \
                not 0.5 < self.pseudo_threshold < 1.0:  # at start, not on the first step
            raise ValueError(f"--pseudo-mode threshold needs --pseudo-threshold in (0.5, 1), "
                             f"not {self.pseudo_threshold:g}")
        for f in fields(self):
            value, allowed = getattr(self, f.name), f.metadata["allowed"]
            if allowed is not None and value is not None and not _within(value, allowed):
                raise ValueError(f"--{f.name.replace('_', '-')} must be {_wording(allowed)}")
        for f in fields(self):
            if self.model == "resnet" and f.metadata["transformer_only"] and \
                    getattr(self, f.name) is not None:
                raise ValueError(f"--{f.name.replace('_', '-')} does not apply to the resnet")

    # ------------------------------------------------------------------------ the model

    def model_config(self) -> dict:
        """Constructor keywords from the explicit size/noise options (the preset is applied by
        `build_model`)."""
        if self.model == "resnet":
            config = {"channels": self.conv_channels, "dropout": self.dropout}
        else:
            config = {"conv_channels": self.conv_channels, "width": self.width,
                      "layers": self.layers, "heads": self.heads, "dropout": self.dropout,
                      "drop_path": self.drop_path}
        return {k: v for k, v in config.items() if v is not None}

    def noise_kinds(self, student: bool) -> tuple:
        """--noise resolved: auto is every kind of NOISE_KINDS for a student (never paper or
        stretch), none for a teacher."""
        noise = ("all" if student else "none") if self.noise == "auto" else self.noise
        return NOISE_KINDS if noise == "all" else parse_noise_kinds(noise)

    # ---------------------------------------------------------------------- the identity

    def identity(self, student: bool, **resolved) -> dict:
        """The settings a resumed run must share with the run that wrote last.ckpt: each
        option whose metadata says so, as the run resolved it. `resolved` holds the entries
        that stand for options (`model_config`, `crop_frames`), resolved values of options
        (`noise`, `precision`) and `tags`."""
        identity = {}
        for f in fields(self):
            kind = f.metadata["identity"]
            if kind is False:
                continue
            if isinstance(kind, str):  # an entry that stands for this option (and others)
                identity[kind] = resolved[kind]
                continue
            value = resolved.get(f.name, getattr(self, f.name))
            if f.metadata["when"] is not None:
                acts, otherwise = f.metadata["when"]
                if not acts(self, student):
                    value = otherwise
            identity[f.name] = value
        identity["tags"] = resolved["tags"]
        return identity


def _identity_keys() -> list:
    keys = []
    for f in fields(TrainConfig):
        kind = f.metadata["identity"]
        if kind is not False and (key := f.name if kind is True else kind) not in keys:
            keys.append(key)
    return keys + ["tags"]


# Settings a resumed run must share with the run that wrote last.ckpt (others, like the epoch
# limit, patience, workers or device, may change between attempts).
RUN_IDENTITY = _identity_keys()
# Settings added after last.ckpt files were first written: an older file ran with these values.
IDENTITY_DEFAULTS = {f.name: f.metadata["older"] for f in fields(TrainConfig)
                     if "older" in f.metadata}


def value_type(f) -> type:
    """int for `int` and `int | None`, and so on."""
    if isinstance(f.type, types.UnionType) or typing.get_origin(f.type) is typing.Union:
        return next(t for t in typing.get_args(f.type) if t is not type(None))
    return f.type


def parse_range(text: str) -> tuple:
    """'(0, 1]' -> (0.0, False, 1.0, True): low, low included, high, high included."""
    low, high = (part.strip() for part in text[1:-1].split(","))
    return float(low), text[0] == "[", float(high), text[-1] == "]"


def _within(value, text: str) -> bool:
    low, low_in, high, high_in = parse_range(text)
    return ((value >= low if low_in else value > low)
            and (value <= high if high_in else value < high))


def _wording(text: str) -> str:
    low, low_in, high, _ = parse_range(text)
    if math.isinf(high):
        return f"at least {low:g}" if low_in else ("positive" if low == 0 else f"above {low:g}")
    return f"in {text}"
