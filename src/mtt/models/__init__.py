"""Model registry: `build_model(kind, n_tags, **config)`."""
import torch

from .resnet import ShortChunkResNet
from .transformer import PRESETS, MusicTaggingTransformer

MODELS = {"transformer": MusicTaggingTransformer, "resnet": ShortChunkResNet}


def build_model(kind: str, n_tags: int, preset: str | None = None, **config):
    """A model of `kind`; `preset` (transformer only) fills defaults that `config` may override."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; choose from {sorted(MODELS)}")
    if preset is not None:
        if kind != "transformer" or preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r} for {kind}; presets: {sorted(PRESETS)}")
        config = {**PRESETS[preset], **config}
    config.pop("n_tags", None)
    return MODELS[kind](n_tags=n_tags, **config)


def to_channels_last(model):
    """`model` with its convolution weights in channels-last (NHWC) memory format, in place:
    the 2-D convolutions, batch norms and poolings then run on NHWC activations (oneDNN's and
    cuDNN's native layout). The parameters keep their shapes and values; state dicts load and
    save as before."""
    return model.to(memory_format=torch.channels_last)


__all__ = ["MODELS", "PRESETS", "build_model", "to_channels_last", "MusicTaggingTransformer",
           "ShortChunkResNet"]
