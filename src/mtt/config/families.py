"""The model families, as data: each names its model file (src/mtt/models/<module>.py) and class,
the `mtt train` size options its constructor takes, its presets, its name in comparison.tsv, and
the check the workflow makes of its sizes before planning. `mtt train` (`TrainConfig`),
`mtt.models.build_model`, the workflow and `mtt summarize` all read this one table: adding a
family is one model file plus one line here (docs/EXTENDING.md)."""
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Family:
    module: str  # the model file: src/mtt/models/<module>.py
    model_class: str  # its nn.Module; the constructor takes n_tags and the keywords of `options`
    label: str  # the family's rows in comparison.tsv
    options: dict = field(default_factory=dict)  # `mtt train` size option -> constructor keyword
    presets: dict = field(default_factory=dict)  # --preset name -> constructor keywords
    check: Callable[[dict], str | None] | None = None  # a model's options -> why refused, or None


# --preset of the transformer, and the sizes its constructor (mtt.models.transformer) builds when
# the options give none (tests/test_config_checks.py compares them with the constructor's).
TRANSFORMER_PRESETS = {
    "teacher": dict(conv_channels=128, width=256),
    "compact_student": dict(conv_channels=128, width=64),
}
TRANSFORMER_DEFAULTS = {"width": 256, "heads": 8}


def check_transformer_sizes(options: dict) -> str | None:
    """The width must split into the heads (mtt.models.transformer.check_transformer_config)."""
    preset = TRANSFORMER_PRESETS.get(options.get("preset"), {})
    width = options.get("width", preset.get("width", TRANSFORMER_DEFAULTS["width"]))
    heads = options.get("heads", TRANSFORMER_DEFAULTS["heads"])
    if width % heads:
        return f"transformer width {width} is not divisible by heads {heads}"
    return None


def _same_names(*names):
    return {name: name for name in names}


FAMILIES = {
    "transformer": Family("transformer", "MusicTaggingTransformer", "Music Tagging Transformer",
                          _same_names("conv_channels", "width", "layers", "heads", "dropout",
                                      "drop_path"),
                          TRANSFORMER_PRESETS, check_transformer_sizes),
    "resnet": Family("resnet", "ShortChunkResNet", "ResNet",
                     {"conv_channels": "channels", "dropout": "dropout"}),
}
