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
from .datasets.vocabulary import MSD_TOP50

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
    except Exception as err:  # noqa: BLE001 - whatever the file is: one line
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({one_line(err)})") from None
    try:
        if isinstance(payload, dict) and payload.get("format") == FORMAT:
            model, info = _load_ours(payload)
        elif isinstance(payload, dict) and any(isinstance(k, str) and k.startswith("network.")
                                               for k in payload):
            model, info = _load_published(path, payload)
        else:
            raise ValueError("neither an mtt checkpoint nor a published-layout state dict")
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except Exception as err:  # noqa: BLE001 - wrong shapes, missing keys, wrong types
        raise ValueError(f"{path}: inconsistent checkpoint ({type(err).__name__}: "
                         f"{one_line(err)})") from None
    return model.eval(), info


def read_checkpoint_meta(path) -> dict:
    """The metadata `mtt train` recorded in a checkpoint (kept epoch, why it stopped), without
    building the model; {} when it has none."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from None
    meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
    return meta if isinstance(meta, dict) else {}


def one_line(err: BaseException) -> str:
    """An exception's message on one line; torch's six-line weights_only advice becomes one."""
    text = str(err).strip()
    if text.startswith("Weights only load failed"):
        return "it holds Python objects beyond tensors and plain types, refused unread"
    if isinstance(err, KeyError):
        return f"missing {text}"
    lines = text.splitlines()
    return " ".join(lines[0].split())[:300] if lines else type(err).__name__


def _load_ours(payload):
    for key in ("kind", "config", "tags", "state_dict"):
        if key not in payload:
            raise ValueError(f"no {key!r} entry")
    if not isinstance(payload["config"], dict) or not isinstance(payload["state_dict"], dict):
        raise ValueError("'config' and 'state_dict' must be dicts")
    tags = payload["tags"]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("'tags' is not a list of tag names")
    _check_meta(payload.get("meta", {}))
    model = _build_checked("ours", payload["kind"], payload["config"], payload["state_dict"],
                           n_tags=len(tags))
    info = {k: payload.get(k, {}) for k in ("kind", "config", "tags", "frontend", "meta")}
    info["format"] = FORMAT
    return model, info


# Sane bounds on what a checkpoint's config may declare, checked before any model is built:
# every integer of the config (widths, channels, tags, lengths), the number of layers, and the
# crop a checkpoint asks its users to read (`meta.training.crop_frames`, ~25 min at most).
MAX_CONFIG_INT = 65_536
MAX_LAYERS = 64
MAX_CROP_FRAMES = 65_536


def _check_config_bounds(config: dict) -> None:
    for key, value in config.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        limit = MAX_LAYERS if key == "layers" else MAX_CONFIG_INT
        if not 0 <= value <= limit:
            raise ValueError(f"its config declares {key} {value}, outside the sane range "
                             f"0-{limit}")


def _check_meta(meta) -> None:
    training = meta.get("training", {}) if isinstance(meta, dict) else {}
    frames = training.get("crop_frames") if isinstance(training, dict) else None
    if frames is None:
        return
    if isinstance(frames, bool) or not isinstance(frames, int) or \
            not 1 <= frames <= MAX_CROP_FRAMES:
        raise ValueError(f"its meta declares a crop of {frames!r} frames; expected an integer "
                         f"in 1-{MAX_CROP_FRAMES}")


def _build_checked(layout, kind, config, state_dict, n_tags=None):
    """The model `config` describes, with the weights of `state_dict`, built only after its
    shapes were checked against the file's: the model is first laid out on the meta device
    (shapes, no memory), so a small file declaring a large model is refused before anything
    of that size is allocated. Bounds on the config's integers come first (a layout of
    millions of layers would itself take memory and time)."""
    _check_config_bounds(config)
    try:
        with torch.device("meta"):
            planned = build_model(kind, **config)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - unknown keys, wrong types
        raise ValueError(f"its config does not describe a {kind} "
                         f"({type(err).__name__}: {one_line(err)})") from None
    if n_tags is not None and n_tags != planned.config["n_tags"]:
        raise ValueError(f"{n_tags} tag names for a model with {planned.config['n_tags']} "
                         "outputs")
    _check_weights(planned, state_dict)  # every shape equal: the model is as large as the file
    del planned
    model = build_model(kind, **config)
    _load_weights(model, state_dict)
    return model


def _check_weights(model, state_dict):
    """The names and shapes of `state_dict` against `model`'s, one line for the first problem."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state_dict]
    unexpected = [k for k in state_dict if k not in ours]
    if missing or unexpected:
        raise ValueError(f"{len(missing)} missing and {len(unexpected)} unexpected weights "
                         f"(e.g. {(missing or unexpected)[0]!r})")
    for key, value in ours.items():
        given = state_dict[key]
        if not isinstance(given, torch.Tensor) or given.shape != value.shape:
            shape = tuple(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__
            raise ValueError(f"weight {key!r} is {shape}, the config's model needs "
                             f"{tuple(value.shape)}")


def _load_weights(model, state_dict):
    """load_state_dict with its multi-line report cut to the first problem."""
    _check_weights(model, state_dict)
    model.load_state_dict(state_dict)


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
    model = _build_checked("published", "transformer", config, state)
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
