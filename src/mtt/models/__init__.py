"""Model registry: `build_model(kind, n_tags, **config)`, a model of one of the families of
`mtt.config.FAMILIES` (each family's class lives in its own file here).

What every family's model has (training, checkpoints and inference use nothing else):
`kind` (its key in FAMILIES) and `default_crop_seconds` (class attributes), `config` (the
constructor's keywords, n_tags included: a checkpoint rebuilds the model from it),
`embed(mel)` ((batch, n_mels, frames) dB log-mel -> (batch, dim) song embedding) and
`head(embedding)` (-> (batch, n_tags) logits); `forward(mel)` is `head(embed(mel))`."""
import importlib

import torch

from ..config import FAMILIES


def model_class(kind: str):
    """The nn.Module of family `kind`: `Family.model_class` in mtt/models/<Family.module>.py."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown model kind {kind!r}; choose from {sorted(FAMILIES)}")
    family = FAMILIES[kind]
    return getattr(importlib.import_module(f"{__name__}.{family.module}"), family.model_class)


def build_model(kind: str, n_tags: int, preset: str | None = None, **config):
    """A model of `kind`; `preset` (of the family's presets) fills defaults that `config` may
    override."""
    cls = model_class(kind)
    if preset is not None:
        presets = FAMILIES[kind].presets
        if preset not in presets:
            raise ValueError(f"unknown preset {preset!r} for {kind}; presets: {sorted(presets)}")
        config = {**presets[preset], **config}
    config.pop("n_tags", None)
    return cls(n_tags=n_tags, **config)


def to_channels_last(model):
    """`model` with its convolution weights in channels-last (NHWC) memory format, in place:
    the 2-D convolutions, batch norms and poolings then run on NHWC activations (oneDNN's and
    cuDNN's native layout). The parameters keep their shapes and values; state dicts load and
    save as before."""
    return model.to(memory_format=torch.channels_last)


__all__ = ["build_model", "model_class", "to_channels_last"]
