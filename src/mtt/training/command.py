"""`mtt train`: train a teacher, or a noisy student on labeled plus pseudo-labeled songs.

Random crops from the mel shards, binary cross-entropy, Adam. Each epoch ends with a song-level
validation (loss, macro ROC-AUC and PR-AUC), a row in `history.csv`, `best.ckpt` when the
validation score chosen by `--select-by` improved (loss by default), and a resumable `last.ckpt`
(model, optimizer, scheduler, RNG states, counters), all written atomically. Rerunning the
command resumes from `last.ckpt`; a finished run (early-stopped or at the epoch limit) is left as
it is. Several GPUs: start with `torchrun`.

Noisy student (`--pseudo-labels`): every batch holds labeled and pseudo-labeled crops
(`--labeled-ratio`), loss = BCE(labeled) + `--pseudo-weight` * BCE(pseudo-labeled), and the
student's inputs are noised in the mel domain (`mtt.training.noise`) while dropout / stochastic depth noise
the model (`mtt.training.objective`).

The options of a run are `TrainConfig` (`mtt.config`); the files are `TrainFiles`.
"""
import argparse
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from ..checks import output_folder
from ..config import TrainConfig
from .loop import Trainer
from .resume import input_files_stamp


@dataclass(frozen=True)
class TrainFiles:
    """The files of a training run, arguments of `mtt train` beside its options: what it reads
    (stamped into last.ckpt: other files, another run) and where it writes (`out`)."""
    train: Path
    valid: Path
    tags: Path
    mels: list
    out: Path
    pseudo_labels: list = ()
    unlabeled_mels: list = ()
    labeled_pseudo_labels: list = ()
    teacher_checkpoint: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "TrainFiles":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @property
    def is_student(self) -> bool:
        return bool(self.pseudo_labels)

    def stamp(self) -> list:
        return input_files_stamp([self.train, self.valid, self.tags, *self.mels,
                                  *self.pseudo_labels, *self.unlabeled_mels,
                                  *self.labeled_pseudo_labels])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, type=Path, help="training split TSV")
    data.add_argument("--valid", required=True, type=Path, help="validation split TSV")
    data.add_argument("--tags", required=True, type=Path, help="tag list (model output order)")
    data.add_argument("--mels", required=True, nargs="+", type=Path,
                      help="mel shards holding the train and valid songs")
    data.add_argument("--out", required=True, type=output_folder, help="output folder")
    groups = {title: parser.add_argument_group(title)
              for title in ("model", "optimisation", "noisy student")}
    student = groups["noisy student"]
    student.add_argument("--pseudo-labels", nargs="+", type=Path, default=[],
                         help="pseudo-label shards from `mtt pseudo-label` (makes this a student)")
    student.add_argument("--unlabeled-mels", nargs="+", type=Path, default=[],
                         help="mel shards of the pseudo-labeled songs (default: --mels)")
    student.add_argument("--labeled-pseudo-labels", nargs="+", type=Path, default=[],
                         help="the teacher's predictions for the labeled training songs "
                         "(`mtt pseudo-label` on their shards), for --label-blend")
    student.add_argument("--teacher-checkpoint", type=Path,
                         help="the checkpoint that made the pseudo-labels")
    TrainConfig.add_arguments(groups)  # every option of the run


def check_options(config: TrainConfig, files: TrainFiles) -> None:
    """The options' own checks, and the files they need."""
    config.check(student=files.is_student)
    if files.unlabeled_mels and not files.pseudo_labels:
        raise ValueError("--unlabeled-mels needs --pseudo-labels")
    if (readers := config.teacher_readers()) and not (files.pseudo_labels and
                                                      files.teacher_checkpoint):
        raise ValueError(f"{readers[0]} needs --pseudo-labels and --teacher-checkpoint")
    if config.label_blend > 0 and not files.labeled_pseudo_labels:
        raise ValueError("--label-blend needs --labeled-pseudo-labels")


def run(args) -> int:
    try:
        config, files = TrainConfig.from_args(args), TrainFiles.from_args(args)
        check_options(config, files)
        return Trainer(config, files).fit()
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"mtt train: error: {err}", file=sys.stderr)
        return 2
