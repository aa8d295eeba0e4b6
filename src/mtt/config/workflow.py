"""The workflow's config, read: the models it plans, each model's `mtt train` options, family
and teacher, and the checks across keys that the JSON schema cannot express.

Teachers are the entries of `teachers` (null, or `enabled: false`, switches one off), students
the entries of `noisy_student.students` (null removes one); each names its model family
(`model:`, a key of `FAMILIES`) and a student its teacher (`teacher:`, default `teacher`). A
student of a teacher that is off is not planned. The workflow (workflow/rules/common.smk)
builds one `WorkflowPlan` at plan time and calls `check_workflow_config` first.
"""
import re

from ..datasets import config_problem, config_schema
from .families import FAMILIES
from .training import TrainConfig, refused_sizes

DEFAULT_TEACHER = "teacher"
# Keys of the noisy_student section that are not `mtt train` options of every student.
NOISY_STUDENT_SECTION_KEYS = {"rounds", "students"}
# Keys of a model's entry that the workflow reads, not `mtt train`.
TEACHER_ENTRY_KEYS = {"enabled"}
STUDENT_ENTRY_KEYS = {"teacher", "method"}


class ConfigError(ValueError):
    """One problem of a workflow config: `Invalid configuration at <where>: <reason>`."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"Invalid configuration at {where}: {reason}")


def student_name(key: str, round_: int) -> str:
    return f"student_{key}" if round_ == 1 else f"student_{key}_round{round_}"


class WorkflowPlan:
    """The models a config plans, and what each is: its options, family, teacher, method."""

    def __init__(self, config: dict):
        self.config = config
        entries = config["teachers"]
        self.teachers = {name: entry for name, entry in entries.items()
                         if entry is not None and entry.get("enabled", True)}
        self.student_entries = {key: entry for key, entry in
                                config["noisy_student"]["students"].items() if entry is not None}
        self.students = {key: entry for key, entry in self.student_entries.items()
                         if entry.get("teacher", DEFAULT_TEACHER) in self.teachers}
        self.rounds = config["noisy_student"]["rounds"]
        # student model name -> (its entry's key, round)
        self._student_models = {student_name(key, r): (key, r)
                                for r in range(1, self.rounds + 1) for key in self.students}

    def supervised_models(self) -> list:
        return list(self.teachers)

    def student_models(self) -> list:
        return list(self._student_models)

    def all_models(self) -> list:
        return self.supervised_models() + self.student_models()

    def teacher_of(self, student: str) -> str:
        """The model that pseudo-labels for `student`: its entry's `teacher` for the first
        round, the previous round of the same student after that."""
        key, round_ = self._student_models[student]
        if round_ > 1:
            return student_name(key, round_ - 1)
        return self.students[key].get("teacher", DEFAULT_TEACHER)

    def family_of(self, model: str) -> str:
        """The family a model's results are grouped in: its first teacher's."""
        while model not in self.teachers:
            model = self.teacher_of(model)
        return self.teachers[model]["model"]

    def describe(self, model: str) -> dict:
        """Family, training method and noisy-student round of a model (`mtt summarize
        --models`)."""
        if model in self.teachers:
            return {"family": self.family_of(model), "method": "supervised", "round": 0}
        key, round_ = self._student_models[model]
        method = self.students[key].get("method", key)
        return {"family": self.family_of(model), "method": f"noisy student {method.upper()}",
                "round": round_}

    def own_entry(self, model: str) -> dict:
        """The model's entry: of `teachers`, or of `noisy_student.students` (every round)."""
        if model in self.teachers:
            return self.teachers[model]
        return self.student_entries[self._student_models[model][0]]

    def model_options(self, model: str) -> dict:
        """`mtt train` options of a model: the shared `training` settings, overridden by its
        own entry (a student's entry overrides the noisy_student settings, which override the
        shared ones). Shared sizes that the entry's family does not take do not reach it."""
        options = dict(self.config["training"])
        own = self.own_entry(model)
        if model in self.teachers:
            own = {k: v for k, v in own.items() if k not in TEACHER_ENTRY_KEYS}
        else:
            noisy = self.config["noisy_student"]
            options.update({k: v for k, v in noisy.items()
                            if k not in NOISY_STUDENT_SECTION_KEYS})
            own = {k: v for k, v in own.items() if k not in STUDENT_ENTRY_KEYS}
        family = own.get("model", options.get("model", TrainConfig.model))
        for name in refused_sizes(family, options):
            del options[name]
        options.update(own)
        return options


def check_workflow_config(config: dict) -> None:
    """Checks across keys that the schema cannot express; ConfigError naming the first problem.
    `config` has passed the schema (workflow/schemas/config.schema.yaml)."""
    if re.search(r"[{}]", str(config["results"])):
        raise ConfigError("results", f"{config['results']!r}: braces would be read as "
                                     "Snakemake wildcards")
    fractions = config["split"]["fractions"]
    if abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError("split > fractions",
                          f"{fractions} sum to {sum(fractions):g}; they must sum to 1")
    _check_dataset(config["dataset"])
    _check_families(config)
    plan = WorkflowPlan(config)
    for key, entry in plan.student_entries.items():
        where = f"noisy_student > students > {key}"
        teacher = entry.get("teacher", DEFAULT_TEACHER)
        if teacher not in config["teachers"]:
            raise ConfigError(where, f"teacher {teacher!r} is not an entry of teachers")
        if re.search(r"_round[0-9]+$", key):
            raise ConfigError(where, "a key ending _round<N> would read as a later round")
    clash = set(plan.teachers) & set(plan.student_models())
    if clash:
        raise ConfigError(f"teachers > {sorted(clash)[0]}", "the name of a student model")
    where = {model: f"teachers > {model}" for model in plan.supervised_models()}
    where.update({student_name(key, 1): f"noisy_student > students > {key}"
                  for key in plan.students})
    for model, at in where.items():
        _check_model(plan.model_options(model), at, own=plan.own_entry(model))


def _check_dataset(dataset: dict) -> None:
    """The `dataset:` section against the formats' own declarations (mtt.datasets): the schema
    they make (jsonschema, which the workflow has, is imported only here) and what it cannot say."""
    from jsonschema import Draft202012Validator, ValidationError

    try:
        Draft202012Validator(config_schema()).validate(dataset)
    except ValidationError as error:
        raise ConfigError(" > ".join(["dataset", *(str(p) for p in error.absolute_path)]),
                          error.message) from None
    problem = config_problem(dataset)
    if problem:
        raise ConfigError(f"dataset > {problem[0]}", problem[1])


def _check_families(config: dict) -> None:
    """Every `model:` names a family of FAMILIES (the schema leaves that to this list)."""
    noisy = config["noisy_student"]
    sections = {"training": config["training"], "noisy_student": noisy}
    sections.update({f"teachers > {name}": entry for name, entry in config["teachers"].items()})
    sections.update({f"noisy_student > students > {key}": entry
                     for key, entry in noisy["students"].items()})
    for where, section in sections.items():
        family = (section or {}).get("model")
        if family is not None and family not in FAMILIES:
            raise ConfigError(f"{where} > model", f"{family!r} is not a model family; "
                              f"choose from {', '.join(FAMILIES)} (mtt.config.FAMILIES)")


def _check_model(options: dict, where: str, own: dict) -> None:
    threshold = options.get("pseudo_threshold")
    if options.get("pseudo_mode") == "threshold" and not 0.5 < (threshold or 0) < 1:
        raise ConfigError(where, "pseudo_mode threshold needs pseudo_threshold in (0.5, 1), "
                          + ("none is given" if threshold is None else f"not {threshold:g}"))
    family = options["model"]
    refused = refused_sizes(family, own)  # a family's own entry only: shared sizes are dropped
    if refused:
        raise ConfigError(where, f"the {family} family does not take {', '.join(refused)}")
    preset, presets = options.get("preset"), FAMILIES[family].presets
    if preset is not None and presets and preset not in presets:
        raise ConfigError(where, f"preset {preset!r} is not one of the {family} family's: "
                          + ", ".join(presets))
    check = FAMILIES[family].check
    reason = check(options) if check else None
    if reason:
        raise ConfigError(where, reason)
