"""Shared helpers: config validation, model names, command-line options from config entries."""
import re
import sys
from pathlib import Path

from jsonschema import Draft202012Validator, ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def validate_config():
    """Check config against the schema; a bad key or value fails with one line naming it."""
    try:
        validate(config, "../schemas/config.schema.yaml")
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        where = " > ".join(str(p) for p in cause.absolute_path) or "the top level"
        raise WorkflowError(f"Invalid configuration at {where}: {cause.message}") from None


validate_config()

RESULTS = config["results"]
# The split folder's sets (mtt.formats.split_folder.SETS, not imported here: the workflow needs
# no mtt; tests/test_formats.py keeps the two in step).
SPLITS = ["train", "valid", "test", "student", "none"]
DEMO = config["dataset"]["format"] == "demo"
# The supervised models: the transformer teacher, and the ResNet teacher when enabled.
RESNET_FAMILY = config.get("resnet_teacher", {}).get("enabled", False)
SUPERVISED = ["teacher"] + (["resnet_teacher"] if RESNET_FAMILY else [])
# Every student entry (null removes one), and those planned: a student whose teacher is off
# (the ResNet family's, while resnet_teacher is not enabled) is not.
STUDENT_ENTRIES = {k: v for k, v in config["noisy_student"]["students"].items() if v is not None}
STUDENTS = {k: v for k, v in STUDENT_ENTRIES.items() if v.get("teacher", "teacher") in SUPERVISED}
ROUNDS = config["noisy_student"]["rounds"]
# Keys of the noisy_student section that are not `mtt train` options of every student.
NOISY_STUDENT_SECTION_KEYS = {"rounds", "students"}


def log_path(rule, name="log"):
    return f"{RESULTS}/logs/{rule}/{name}.log"


def benchmark_path(rule, name="benchmark"):
    return f"{RESULTS}/benchmarks/{rule}/{name}.tsv"


def cli_options(options):
    """`{"conv_channels": 32, "lr": 0.001}` -> `["--conv-channels", "32", "--lr", "0.001"]`; a
    list value gives its items: `{"mels": ["a.h5", "b.h5"]}` -> `["--mels", "a.h5", "b.h5"]`.

    A list of arguments, one item each: the rules put it in their shell command as
    `{params.NAME:q}`, which quotes every item on its own, so a value reaches `mtt` as exactly
    one argument whatever characters it holds (spaces, quotes, `;`, `$(...)`, newlines)."""
    return [
        item
        for key, value in options.items()
        for item in [f"--{key.replace('_', '-')}"]
        + [str(v) for v in (value if isinstance(value, list) else [value])]
    ]


def stage_resources(stage, gpu=False):
    """Resources of one stage from config; memory grows with the attempt after an OOM kill.

    GPU requests (`gpu`, `gpu_model`, `gres`) reach SLURM through the executor plugin; locally
    `gpu` limits jobs under `snakemake --resources gpu=N`.
    """
    res = config["resources"][stage]
    resources = {
        "mem_mb": lambda wildcards, attempt: res["mem_mb"] * attempt,
        "runtime": res["runtime"],
    }
    if gpu:
        if res.get("gpu", 0) > 0:
            processes = res.get("processes", 1)
            resources["gpu"] = res["gpu"] * processes
            if processes > 1:  # one SLURM job, `threads` CPUs for each GPU's process
                resources["cpus_per_gpu"] = max(1, res["threads"] // res["gpu"])
        for key in ("gpu_model", "gres"):
            if key in res:
                resources[key] = res[key]
    return resources


def train_processes():
    return config["resources"]["train"].get("processes", 1)


def train_threads():
    """CPU threads of a training job: `threads` for each of its processes."""
    return config["resources"]["train"]["threads"] * train_processes()


def train_command():
    """`mtt train`, or with `resources.train.processes` > 1 the same under torchrun (DDP, one
    process per GPU or, on CPU, gloo); each process gets `resources.train.threads` threads."""
    processes = train_processes()
    if processes == 1:
        return ["python", "-m", "mtt.cli", "train"]
    return ["env", f"OMP_NUM_THREADS={config['resources']['train']['threads']}",
            "torchrun", "--standalone", "--nproc-per-node", str(processes), "-m", "mtt.cli",
            "train"]


# ---- models ------------------------------------------------------------------------------

def student_name(kind, round_):
    return f"student_{kind}" if round_ == 1 else f"student_{kind}_round{round_}"


def parse_student(name):
    """`student_kd` -> ("kd", 1); `student_resnet_kd_round2` -> ("resnet_kd", 2)."""
    kind, round_ = re.fullmatch(r"student_(.+?)(?:_round(\d+))?", name).groups()
    return kind, int(round_ or 1)


def teacher_of(student):
    """The model that pseudo-labels for `student`: its entry's `teacher` (`teacher` unless
    given), then the previous round of the same student; each family has its own chain."""
    kind, round_ = parse_student(student)
    if kind not in STUDENTS:
        raise WorkflowError(f"{student}: no student {kind} is planned (is its entry in "
                            "noisy_student.students, and its teacher enabled?)")
    if round_ > 1:
        return student_name(kind, round_ - 1)
    return STUDENTS[kind].get("teacher", "teacher")


def supervised_models():
    return list(SUPERVISED)


def student_models():
    return [student_name(kind, r) for r in range(1, ROUNDS + 1) for kind in STUDENTS]


def all_models():
    return supervised_models() + student_models()


def model_dir(model):
    return f"{RESULTS}/models/{model}"


def model_options(model):
    """Training settings of a model: shared ones, overridden by its own entry (a student's entry
    overrides the noisy_student settings, which override the shared ones)."""
    options = dict(config["training"])
    if model in ("teacher", "resnet_teacher"):
        own = {k: v for k, v in config[model].items() if k != "enabled"}
    else:
        kind, _ = parse_student(model)
        noisy = config["noisy_student"]
        options.update({k: v for k, v in noisy.items() if k not in NOISY_STUDENT_SECTION_KEYS})
        own = {k: v for k, v in STUDENT_ENTRIES[kind].items() if k != "teacher"}
    if own.get("model") == "resnet":  # shared transformer settings do not reach a ResNet
        options = {k: v for k, v in options.items() if k not in TRANSFORMER_ONLY}
    options.update(own)
    return options


def train_options(model, files=None):
    """`mtt train` options of a model; `files`: the files a student's options make `mtt train`
    read ({"teacher_checkpoint": [...], "labeled_pseudo_labels": [...]}), given where there are
    any. A function of the wildcards only, so that Snakemake sees a changed option (params that
    read `input` are left out of its rerun check)."""
    options = model_options(model)
    for key, paths in (files or {}).items():
        if paths:
            options[key] = list(paths)
    return cli_options(options)


def student_train_options(wildcards):
    return train_options(wildcards.student, {
        "teacher_checkpoint": teacher_checkpoint(wildcards),
        "labeled_pseudo_labels": labeled_pseudo_labels(wildcards)})


def teacher_checkpoint(wildcards):
    """A student's teacher checkpoint, when its options read it (pseudo_targets crop or
    crop_noised, pseudo_tag_weights teacher_valid_auc); none otherwise."""
    options = model_options(wildcards.student)
    if options.get("pseudo_targets", "song") == "song" and \
            options.get("pseudo_tag_weights", "none") == "none":
        return []
    return [f"{model_dir(teacher_of(wildcards.student))}/best.ckpt"]


def labeled_pseudo_labels(wildcards):
    """The teacher's predictions for the labeled training songs (one file per training mel
    shard, `pseudo_label_train`), when the student's label_blend uses them; none otherwise."""
    if model_options(wildcards.student).get("label_blend", 0) == 0:
        return []
    teacher = teacher_of(wildcards.student)
    return scatter.train(f"{RESULTS}/labeled_pseudo_labels/{teacher}/{{scatteritem}}.h5")


# What `mtt train` builds when a transformer's width or heads are not given (mtt.models, not
# imported here: it needs torch; tests/test_config_checks.py keeps the two in step).
TRANSFORMER_WIDTH = {None: 256, "teacher": 256, "compact_student": 64}  # by preset
TRANSFORMER_HEADS = 8
# `mtt train` options that only a transformer takes (a ResNet refuses them).
TRANSFORMER_ONLY = {"preset", "width", "layers", "heads", "drop_path"}


def check_config():
    """Checks across keys that the schema cannot express, at plan time, one line each."""
    def fail(where, reason):
        raise WorkflowError(f"Invalid configuration at {where}: {reason}")

    if re.search(r"[{}]", str(config["results"])):
        fail("results", f"{config['results']!r}: braces would be read as Snakemake wildcards")
    fractions = config["split"]["fractions"]
    if abs(sum(fractions) - 1) > 1e-6:
        fail("split > fractions", f"{fractions} sum to {sum(fractions):g}; they must sum to 1")
    for kind, entry in STUDENT_ENTRIES.items():  # the family in comparison.tsv is the name's
        resnet = entry.get("teacher", "teacher") == "resnet_teacher"
        if resnet != kind.startswith("resnet_"):
            fail(f"noisy_student > students > {kind}",
                 "a student of resnet_teacher needs a key starting resnet_" if resnet
                 else "a key starting resnet_ needs teacher: resnet_teacher")
    where = {model: model for model in supervised_models()}
    where.update({student_name(kind, 1): f"noisy_student > students > {kind}" for kind in STUDENTS})
    for model, at in where.items():
        options = model_options(model)
        threshold = options.get("pseudo_threshold")
        if options.get("pseudo_mode") == "threshold" and not 0.5 < (threshold or 0) < 1:
            fail(at, "pseudo_mode threshold needs pseudo_threshold in (0.5, 1), "
                     + ("none is given" if threshold is None else f"not {threshold:g}"))
        given = sorted(TRANSFORMER_ONLY & options.keys())  # a ResNet's own entry only
        if options.get("model") == "resnet" and given:
            fail(at, f"{', '.join(given)}: transformer settings, not for a resnet")
        if options.get("model") == "transformer":
            width = options.get("width", TRANSFORMER_WIDTH[options.get("preset")])
            heads = options.get("heads", TRANSFORMER_HEADS)
            if width % heads:
                fail(at, f"transformer width {width} is not divisible by heads {heads}")


check_config()


# ---- data --------------------------------------------------------------------------------
# The dataset formats' declarations: mtt.datasets needs the standard library alone.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from mtt.datasets import DEMO_SPLIT, FORMATS, SPLIT_OPTIONS, config_problem, config_schema


def demo_dir():
    return f"{RESULTS}/data/demo"


def validate_dataset():
    """The dataset section against the formats' declarations (mtt.datasets), one line naming
    the key at fault."""
    try:
        Draft202012Validator(config_schema()).validate(config["dataset"])
    except ValidationError as error:
        where = " > ".join(["dataset", *(str(p) for p in error.absolute_path)])
        raise WorkflowError(f"Invalid configuration at {where}: {error.message}") from None
    problem = config_problem(config["dataset"])
    if problem:
        raise WorkflowError(f"Invalid configuration at dataset > {problem[0]}: {problem[1]}")


validate_dataset()


def split_settings():
    """(format, [(option, value)]) of `mtt split`: the options the format's reader takes (ours
    or its official split's) and those of every format, as the config gives them, files first.
    The demo is the MSD layout in its folder."""
    dataset = config["dataset"]
    if DEMO:
        dataset = {**dataset, **{key: value if key == "format" else f"{demo_dir()}/{value}"
                                 for key, value in DEMO_SPLIT.items()}}
    official = "official_split" in dataset
    folder = [o for o in SPLIT_OPTIONS if o.name == "official_split" and official]
    common = [o for o in SPLIT_OPTIONS if o.name != "official_split"]
    options = [*folder, *FORMATS[dataset["format"]].reads(official), *common]
    options.sort(key=lambda option: not option.tracked)  # stable: files first, then the rest
    return dataset["format"], [(o, dataset[o.name]) for o in options if o.name in dataset]


def split_inputs(wildcards):
    """Files `mtt split` reads (tracked, so replacing them reruns the split); the demo's are
    in its folder, a workflow output."""
    if DEMO:
        return {"demo": demo_dir()}
    return {option.name: value for option, value in split_settings()[1] if option.tracked}


def split_options(wildcards):
    """`mtt split` options naming the dataset and its vocabulary: a function of the config
    only, not of `input`, so that Snakemake sees a changed value and reruns the split (params
    that read `input` are left out of its rerun check)."""
    format, options = split_settings()
    return cli_options({"format": format, **{option.name: value for option, value in options}})


def audio_inputs(wildcards):
    """The demo is a workflow output; real audio is read in place, untracked."""
    return {"demo": demo_dir()} if DEMO else {}


def audio_root(wildcards):
    """A function of the config only (not of `input`): a new audio_root replans preprocess."""
    return str(Path(demo_dir()) / "audio") if DEMO else str(config["dataset"]["audio_root"])


def shard_index(wildcards):
    """Snakemake scatter items are `1-of-N`; `mtt preprocess` counts shards from 0."""
    return int(wildcards.scatteritem.split("-of-")[0]) - 1


def mel_shards(*splits):
    return [path for split in splits for path in getattr(scatter, split)(
        f"{RESULTS}/mels/{split}/{{scatteritem}}.h5")]


def pseudo_label_shards(teacher):
    return scatter.student(f"{RESULTS}/pseudo_labels/{teacher}/{{scatteritem}}.h5")
