"""`TrainConfig`: the one description of a training run's options.

Each field is one option of `mtt train`: the field gives its name, type and default, its metadata
the help text, choices, allowed range, help group and whether (and how) it is part of the run's
identity. Derived from it (through `OptionSet`, options.py): the `mtt train` flags
(`add_arguments`), the checks (`check`), the identity a resumed run must share (`identity`,
`RUN_IDENTITY`, `IDENTITY_DEFAULTS`); the model's constructor keywords (`model_config`, by the
family's table in families.py); the `config` metadata says where the workflow's config sets the
option, and
tests/test_train_config.py proves the config schema agrees with this file key by key.

The files a run reads and writes (`--train`, `--mels`, `--out`, `--pseudo-labels`, ...) are not
options: they stay plain arguments of `mtt train` (`mtt.training.command.add_arguments`).
"""
from dataclasses import dataclass, fields

from .choices import (EXTRA_KINDS, NOISE_KINDS, PRECISION_HELP, PRECISIONS, SELECT_BY,
                      TAG_TRUST_MODES, parse_noise_kinds)
from .families import FAMILIES
from .options import RULE, STUDENT_OPTIONS, TOP_LEVEL, TRAIN_THREADS, OptionSet, option


def _students_only(value):
    """Identity rule of a student's option: a teacher's identity holds `value` instead."""
    return (lambda config, student: student), value


MODEL, OPTIMISATION, STUDENT = "model", "optimisation", "noisy student"


@dataclass(frozen=True)
class TrainConfig(OptionSet):
    """The options of one training run (teacher, or noisy student with --pseudo-labels)."""
    # ---- model
    model: str = option("transformer", group=MODEL, choices=tuple(FAMILIES))
    preset: str | None = option(
        None, "size preset of the family (transformer: teacher C128/D256, compact_student "
        "C128/D64)", group=MODEL,
        choices=tuple(sorted({p for family in FAMILIES.values() for p in family.presets})),
        identity="model_config")
    conv_channels: int | None = option(None, "CNN channels C", group=MODEL,
                                       identity="model_config")
    width: int | None = option(None, "transformer width D", group=MODEL, identity="model_config")
    layers: int | None = option(None, "transformer layers", group=MODEL, identity="model_config")
    heads: int | None = option(None, "attention heads", group=MODEL, identity="model_config")
    dropout: float | None = option(None, "dropout (model noise)", group=MODEL,
                                   identity="model_config")
    drop_path: float | None = option(None, "stochastic depth rate (model noise)", group=MODEL,
                                     identity="model_config")
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
    lr_anneal_epochs: int = option(
        0, "decay the rate linearly to 0 over this many epochs' steps, counted after the "
        "warm-up (a budgeted run: set it to --max-epochs); default 0: no annealing",
        group=OPTIMISATION, allowed="[0, inf)", older=0)
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
    init_from_teacher: str = option(
        "none", "frontend: start the CNN front end from the teacher's (--teacher-checkpoint), "
        "every tensor whose name and shape match; none: from scratch", group=STUDENT,
        choices=("none", "frontend"), config=STUDENT_OPTIONS, when=_students_only("none"),
        older="none")
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

    # ------------------------------------------------------------------------ the checks

    def check(self, student: bool) -> None:
        """Each option's range, the threshold of threshold mode, and the sizes the model's
        family does not take; ValueError naming the flag."""
        if student and self.pseudo_mode == "threshold" and \
                not 0.5 < self.pseudo_threshold < 1.0:  # at start, not on the first step
            raise ValueError(f"--pseudo-mode threshold needs --pseudo-threshold in (0.5, 1), "
                             f"not {self.pseudo_threshold:g}")
        self.check_ranges()
        refused = refused_sizes(self.model, {f.name: getattr(self, f.name) for f in fields(self)
                                             if getattr(self, f.name) is not None})
        if refused:
            raise ValueError(f"--{refused[0].replace('_', '-')} does not apply to the "
                             f"{self.model}")

    def teacher_readers(self) -> list:
        """The options set here that read the teacher's checkpoint (`--teacher-checkpoint`),
        as flags: what `mtt train` requires it for, and what makes the workflow pass it."""
        return ([f"--pseudo-targets {self.pseudo_targets}"] if self.pseudo_targets != "song"
                else []) + \
            (["--pseudo-tag-weights"] if self.pseudo_tag_weights != "none" else []) + \
            ([f"--init-from-teacher {self.init_from_teacher}"]
             if self.init_from_teacher != "none" else [])

    # ------------------------------------------------------------------------ the model

    def model_config(self) -> dict:
        """Constructor keywords from the explicit size/noise options the family takes (the
        preset is applied by `build_model`)."""
        options = FAMILIES[self.model].options
        return {keyword: getattr(self, name) for name, keyword in options.items()
                if getattr(self, name) is not None}

    def noise_kinds(self, student: bool) -> tuple:
        """--noise resolved: auto is every kind of NOISE_KINDS for a student (never paper or
        stretch), none for a teacher."""
        noise = ("all" if student else "none") if self.noise == "auto" else self.noise
        return NOISE_KINDS if noise == "all" else parse_noise_kinds(noise)

# The options that size a model: each family takes some of them (`Family.options`, `presets`).
SIZE_OPTIONS = tuple(f.name for f in fields(TrainConfig)
                     if f.metadata["identity"] == "model_config")


def refused_sizes(model: str, options: dict) -> list:
    """The size options in `options` that family `model` does not take (a preset where it has
    none), in field order."""
    family = FAMILIES[model]
    takes = set(family.options) | ({"preset"} if family.presets else set())
    return [name for name in SIZE_OPTIONS if name in options and name not in takes]


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
