"""One description of a run, importable with the standard library and PyYAML alone (no torch):
the training options (`TrainConfig`), the named choices they take, the model families, the
dataset formats (declared in `mtt.datasets`, the registry every adapter is listed in), and the
workflow config's plan and checks. `mtt train` and the Snakefile both read it."""
from .choices import (EXTRA_KINDS, NOISE_KINDS, PAPER, PRECISION_HELP, PRECISIONS, SELECT_BY,
                      SPLIT_SETS, STRETCH, TAG_TRUST_MODES, parse_noise_kinds)
from ..datasets import FORMATS
from .families import FAMILIES, TRANSFORMER_DEFAULTS, TRANSFORMER_PRESETS, Family
from .training import (IDENTITY_DEFAULTS, RUN_IDENTITY, SIZE_OPTIONS, TrainConfig,
                       refused_sizes)
from .workflow import ConfigError, WorkflowPlan, check_workflow_config

__all__ = ["EXTRA_KINDS", "NOISE_KINDS", "PAPER", "PRECISION_HELP", "PRECISIONS", "SELECT_BY",
           "SPLIT_SETS", "STRETCH", "TAG_TRUST_MODES", "parse_noise_kinds", "FAMILIES",
           "FORMATS", "TRANSFORMER_DEFAULTS", "TRANSFORMER_PRESETS", "Family", "IDENTITY_DEFAULTS",
           "RUN_IDENTITY", "SIZE_OPTIONS", "TrainConfig", "refused_sizes", "ConfigError",
           "WorkflowPlan", "check_workflow_config"]
