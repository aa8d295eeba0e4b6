"""Resuming a training run: last.ckpt, the run's identity and its input files' stamps.

`mtt train` writes `last.ckpt` after every epoch (atomically) and reads it back with
`torch.load(weights_only=True)`, so that no file runs code: it holds tensors and plain types only.

- `identity`: the settings a resumed run must share (`TrainConfig.identity`); a file written
  before a setting joined the identity ran with its value in `IDENTITY_DEFAULTS`
- `inputs`: (path, size, modification time in ns) of every input file (`input_files_stamp`)
- `state`: `epoch`, `best_epoch`, `best_score`, `best_valid_loss`, `epochs_since_best`,
  `history` (the rows of history.csv), `lr_scale`, `plateau`
- `model`, `best_model` (the kept epoch's weights, on CPU), `ema`, `optimizer`, `scheduler`:
  state dicts
- `rng`: `torch`, `cuda`, `numpy` (the key array as a tensor), `python`, `noise` (`MelNoise`)
"""
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .atomic import atomic_path
from .checkpoint import one_line
from .train_config import IDENTITY_DEFAULTS, RUN_IDENTITY


def input_files_stamp(paths) -> list:
    """(path, size, modification time) of every input file: a rebuilt shard or a new split
    changes it, as it makes a workflow manager rerun the job."""
    stamp = []
    for path in paths:
        info = Path(path).stat()
        stamp.append((str(Path(path).resolve()), info.st_size, info.st_mtime_ns))
    return stamp


def save_last(path, *, identity, inputs, state, model, best_model, ema, optimizer, scheduler,
              noise) -> None:
    payload = {
        "identity": identity,
        "inputs": inputs,
        "state": state,
        "model": model.state_dict(),
        "best_model": best_model,
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": _numpy_state_plain(np.random.get_state()),
            "python": random.getstate(),
            "noise": noise.rng_state(),
        },
    }  # tensors and plain types only: read back with torch.load(weights_only=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_last(path: Path, *, fresh: bool, rank: int = 0, world: int = 1) -> dict | None:
    """last.ckpt's payload, read with weights_only=True so that no file runs code.

    A file that cannot be read that way (written by an mtt before this format, truncated,
    or not ours) is an error of one line; with `fresh` (--fresh-unless-interrupted) it is stale
    and removed, like a finished run's."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or not {"identity", "state", "model",
                                                 "rng"} <= payload.keys():
            raise ValueError("not a last.ckpt of mtt train")
    except Exception as err:  # noqa: BLE001 - any failure: one line, never a traceback
        reason = one_line(err)
        if fresh:
            _remove(path, f"{path}: not a resumable checkpoint ({reason}); starting over",
                    rank, world, missing_ok=True)
            return None
        raise ValueError(f"{path}: not a resumable checkpoint ({reason}); "
                         "delete it (or use --fresh-unless-interrupted) to start over") from None
    return payload


def stored_identity(payload: dict) -> dict:
    return {**IDENTITY_DEFAULTS, **payload["identity"]}


def discard_stale(path: Path, payload: dict | None, *, identity: dict, inputs: list, finished,
                  rank: int = 0, world: int = 1) -> dict | None:
    """--fresh-unless-interrupted: delete last.ckpt unless it is an unfinished run of these
    settings on these input files, the one case where resuming is what a rerun means
    (`finished(state)`: why a run in that state has stopped, or None). Returns the payload to
    resume from, or None."""
    if payload is None:
        return None
    reason = None
    if stored_identity(payload) != identity:
        reason = "a run with other settings"
    elif payload.get("inputs") != inputs:
        reason = "a run on other input files"
    elif (stopped := finished(payload["state"])) is not None:
        reason = f"a finished run ({stopped})"
    if reason is None:
        return payload
    # every rank reaches the same verdict from the same file
    _remove(path, f"{path}: left by {reason}; starting over", rank, world)
    return None


def restore(path: Path, payload: dict, *, identity: dict, model, ema, optimizer, scheduler,
            noise, best_path: Path) -> tuple[dict, dict | None]:
    """Restore the run saved in last.ckpt's `payload` (at `path`) into the model, its moving
    average, optimizer, scheduler and every RNG; returns (state, the kept epoch's weights). A
    run with other settings is refused with the settings that differ."""
    stored = stored_identity(payload)
    if stored != identity:
        changed = [k for k in RUN_IDENTITY if stored.get(k) != identity.get(k)]
        raise ValueError(f"{path}: left by a run with other settings ({changed}); "
                         "use another --out or delete the folder to start over")
    model.load_state_dict(payload["model"])
    if ema is not None:
        ema.load_state_dict(payload["ema"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    state = {"lr_scale": 1.0, "plateau": 0, **payload["state"]}
    best_weights = payload.get("best_model")
    if best_weights is None and best_path.exists():  # written by an older version
        try:
            best_weights = torch.load(best_path, map_location="cpu",
                                      weights_only=True)["state_dict"]
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{best_path}: not a readable mtt checkpoint "
                             f"({one_line(err)})") from None
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(_numpy_state_tuple(rng["numpy"]))
    random.setstate(rng["python"])
    noise.set_rng_state(rng["noise"])
    return state, best_weights


def _remove(path: Path, message: str, rank: int, world: int, missing_ok: bool = False) -> None:
    """Rank 0 removes `path` once every rank has read it; no rank goes on before it is gone."""
    if world > 1:
        dist.barrier()
    if rank == 0:
        print(message, file=sys.stderr)
        path.unlink(missing_ok=missing_ok)
    if world > 1:
        dist.barrier()


def _numpy_state_plain(state: tuple) -> dict:
    """np.random.get_state() with its key array as a tensor (weights_only loads it)."""
    kind, keys, pos, has_gauss, gauss = state
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _numpy_state_tuple(state: dict) -> tuple:
    return (state["kind"], state["keys"].numpy().astype(np.uint32), state["pos"],
            state["has_gauss"], state["gauss"])
