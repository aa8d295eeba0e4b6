"""Shared helpers: config validation, model names, command-line options from config entries."""
import json
import re
from pathlib import Path

from jsonschema import ValidationError
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from mtt.config import (SPLIT_SETS, ConfigError, TrainConfig, WorkflowPlan,
                        check_workflow_config)
from mtt.datasets import DEMO_SPLIT, FORMATS, SPLIT_OPTIONS


def validate_config():
    """Check config against the schema (its structure), then with mtt.config (what crosses keys:
    families, teachers, sizes); a bad key or value fails with one line naming it."""
    try:
        validate(config, "../schemas/config.schema.yaml")
    except WorkflowError as error:
        cause = error.__context__
        if not isinstance(cause, ValidationError):
            raise
        where = " > ".join(str(p) for p in cause.absolute_path) or "the top level"
        raise WorkflowError(f"Invalid configuration at {where}: {cause.message}") from None
    try:
        check_workflow_config(config)
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


validate_config()

RESULTS = config["results"]
SPLITS = list(SPLIT_SETS)  # the split folder's sets
DEMO = config["dataset"]["format"] == "demo"
# The models the config plans: teachers, students, and each one's options, family and teacher.
PLAN = WorkflowPlan(config)


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

def model_dir(model):
    return f"{RESULTS}/models/{model}"


def train_options(model, files=None):
    """`mtt train` options of a model; `files`: the files a student's options make `mtt train`
    read ({"teacher_checkpoint": [...], "labeled_pseudo_labels": [...]}), given where there are
    any. A function of the wildcards only, so that Snakemake sees a changed option (params that
    read `input` are left out of its rerun check)."""
    options = PLAN.model_options(model)
    for key, paths in (files or {}).items():
        if paths:
            options[key] = list(paths)
    return cli_options(options)


def teacher_train_options(wildcards):
    return train_options(wildcards.teacher)


def student_train_options(wildcards):
    return train_options(wildcards.student, {
        "teacher_checkpoint": teacher_checkpoint(wildcards),
        "labeled_pseudo_labels": labeled_pseudo_labels(wildcards)})


def teacher_checkpoint(wildcards):
    """A student's teacher checkpoint, when its options read it (`TrainConfig.teacher_readers`:
    pseudo_targets crop or crop_noised, pseudo_tag_weights, init_from_teacher); none otherwise."""
    if not TrainConfig(**PLAN.model_options(wildcards.student)).teacher_readers():
        return []
    return [f"{model_dir(PLAN.teacher_of(wildcards.student))}/best.ckpt"]


def labeled_pseudo_labels(wildcards):
    """The teacher's predictions for the labeled training songs (one file per training mel
    shard, `pseudo_label_train`), when the student's label_blend uses them; none otherwise."""
    if PLAN.model_options(wildcards.student).get("label_blend", 0) == 0:
        return []
    teacher = PLAN.teacher_of(wildcards.student)
    return scatter.train(f"{RESULTS}/labeled_pseudo_labels/{teacher}/{{scatteritem}}.h5")


def model_descriptions():
    """Each model's family, method and round, as `mtt summarize --models` reads them (JSON)."""
    return json.dumps({model: PLAN.describe(model) for model in PLAN.all_models()})


def one_of(names):
    """A wildcard constraint matching exactly `names` (none: nothing)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


# ---- data --------------------------------------------------------------------------------


def demo_dir():
    """The demo's tables and its labeled songs' audio (`mtt demo-data --part labeled`)."""
    return f"{RESULTS}/data/demo"


def demo_rest_dir():
    """The demo's whole collection: the unlabeled songs' audio and links to the labeled ones'."""
    return f"{RESULTS}/data/demo_unlabeled"


def split_settings():
    """(format, [(option, value)]) of `mtt split`: the options the format's reader takes (ours
    or its official split's) and those of every format, as the config gives them, files first.
    The demo is the MSD layout in its folder."""
    dataset = config["dataset"]
    if DEMO:
        msd = FORMATS[DEMO_SPLIT["format"]]
        files = {o.name for o in (*SPLIT_OPTIONS, *msd.options) if o.tracked}
        dataset = {**dataset, **{key: f"{demo_dir()}/{value}" if key in files else value
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
    """The demo is a workflow output (the student set's songs in its second part, so the labeled
    sets and the teacher need not wait for it); real audio is read in place, untracked."""
    if not DEMO:
        return {}
    return {"demo": demo_rest_dir() if wildcards.split == "student" else demo_dir()}


def audio_root(wildcards):
    """A function of the config only (not of `input`): a new audio_root replans preprocess."""
    if not DEMO:
        return str(config["dataset"]["audio_root"])
    return str(Path(audio_inputs(wildcards)["demo"]) / "audio")


def shard_index(wildcards):
    """Snakemake scatter items are `1-of-N`; `mtt preprocess` counts shards from 0."""
    return int(wildcards.scatteritem.split("-of-")[0]) - 1


def mel_shards(*splits):
    return [path for split in splits for path in getattr(scatter, split)(
        f"{RESULTS}/mels/{split}/{{scatteritem}}.h5")]


def pseudo_label_shards(teacher):
    return scatter.student(f"{RESULTS}/pseudo_labels/{teacher}/{{scatteritem}}.h5")
