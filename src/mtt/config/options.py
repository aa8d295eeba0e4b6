"""`OptionSet`: a dataclass whose fields are command-line options described by their metadata
(`option`): from it derive the argparse flags, the range checks and the run identity. The fields
themselves are `TrainConfig` (training.py)."""
import argparse
import math
import types
import typing
from dataclasses import field, fields

# Where the workflow's config sets an option (the `config` metadata): a key of the schema's
# `train_options` (sections training, each of teachers, noisy_student and its students) or
# `student_options` (noisy_student and its students), a top-level key, the train resources, or
# the training rules themselves.
TRAIN_OPTIONS, STUDENT_OPTIONS = "train_options", "student_options"
TOP_LEVEL, TRAIN_THREADS, RULE = "top level", "resources.train.threads", "rule"

_UNSET = object()


def option(default, help=None, *, group, choices=None, allowed=None, config=TRAIN_OPTIONS,
           identity=True, when=None, older=_UNSET):
    """A field of an OptionSet. `allowed`: the values `mtt train` accepts, in interval notation
    ("[1, inf)", "(0, 1]"); `identity`: True (the value is part of the run identity), False, or
    the name of the identity entry that stands for it (`model_config`, `crop_frames`); `when`:
    (predicate(config, student), value the identity holds when the option does not act);
    `older`: the value a last.ckpt written before this option was in the identity ran with."""
    metadata = {"help": help, "group": group, "choices": choices, "allowed": allowed,
                "config": config, "identity": identity, "when": when}
    if older is not _UNSET:
        metadata["older"] = older
    return field(default=default, metadata=metadata)


class OptionSet:
    """Flags, range checks and identity of a dataclass of `option` fields."""

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
    def from_args(cls, args: argparse.Namespace) -> "OptionSet":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def check_ranges(self) -> None:
        """Each option's `allowed` range; ValueError naming the flag."""
        for f in fields(self):
            value, allowed = getattr(self, f.name), f.metadata["allowed"]
            if allowed is not None and value is not None and not _within(value, allowed):
                raise ValueError(f"--{f.name.replace('_', '-')} must be {_wording(allowed)}")

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
