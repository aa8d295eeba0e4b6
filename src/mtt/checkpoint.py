"""Self-describing checkpoints, and loading of files in the published layout.

Our file is a dict: model kind and constructor config, tag names, front-end parameters,
free-form training metadata and the state dict. A published file is a plain dict of tensors keyed
`network.<module path>` (a student file also holds `teacher_network.*`); its architecture is
inferred from tensor shapes.
"""
import re

import torch

from .atomic import atomic_path
from .frontend import LogMel, frontend_params
from .models import build_model
from .tags import MSD_TOP50

FORMAT = "mtt-checkpoint"
VERSION = 1
PUBLISHED_HEADS = 8  # not recoverable from shapes; every published model uses 8


def save_checkpoint(path, model, tags, meta=None):
    """Write `model` with everything needed to rebuild it, atomically."""
    if len(tags) != model.config["n_tags"]:
        raise ValueError(f"{len(tags)} tag names for a model with {model.config['n_tags']} outputs")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": model.kind,
        "config": dict(model.config),
        "tags": list(tags),
        "frontend": frontend_params(),
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, map_location="cpu"):
    """(model in eval mode, info) from our format or the published layout."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: checkpoint not found") from None
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        model = build_model(payload["kind"], **payload["config"])
        model.load_state_dict(payload["state_dict"])
        info = {k: payload[k] for k in ("kind", "config", "tags", "frontend", "meta")}
        info["format"] = FORMAT
    elif isinstance(payload, dict) and any(k.startswith("network.") for k in payload):
        model, info = _load_published(path, payload)
    else:
        raise ValueError(f"{path}: neither an mtt checkpoint nor a published-layout state dict")
    return model.eval(), info


def published_config(state_dict) -> dict:
    """Transformer config recovered from the shapes of a published (prefix-free) state dict."""
    layer_ids = {int(m.group(1)) for k in state_dict if (m := re.match(r"transformer\.layers\.(\d+)\.", k))}
    conv_channels = state_dict["frontend.layer1.conv_1.weight"].shape[0]
    return dict(
        n_tags=state_dict["mlp_head.1.weight"].shape[0],
        conv_channels=conv_channels,
        width=state_dict["cls_token"].shape[0],
        layers=max(layer_ids) + 1,
        heads=PUBLISHED_HEADS,
        max_len=state_dict["pos_embedding"].shape[1] - 1,
        n_mels=state_dict["frontend.fc.weight"].shape[1] // conv_channels * 8,
    )


def _load_published(path, payload):
    state = {k[len("network."):]: v for k, v in payload.items() if k.startswith("network.")}
    _check_published_frontend(path, state)
    state = {k: v for k, v in state.items() if not k.startswith("spec.")}
    config = published_config(state)
    model = build_model("transformer", **config)
    model.load_state_dict(state)
    n_tags = config["n_tags"]
    tags = list(MSD_TOP50) if n_tags == len(MSD_TOP50) else [f"tag_{i}" for i in range(n_tags)]
    info = {"kind": "transformer", "config": config, "tags": tags, "frontend": frontend_params(),
            "meta": {"source": str(path)}, "format": "published"}
    return model, info


def _check_published_frontend(path, state):
    """The published file carries its mel filterbank; refuse one our front end does not match."""
    fb = state.get("spec.mel_scale.fb")
    if fb is None:
        return
    ours = LogMel().spec.mel_scale.fb
    if fb.shape != ours.shape or not torch.allclose(fb.float(), ours, atol=1e-6):
        raise ValueError(f"{path}: its mel filterbank differs from this front end "
                         "(22,050 Hz, n_fft 1024, 128 HTK bands 0-11,025 Hz)")


def _unwrap(model):
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile
