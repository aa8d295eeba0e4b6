"""Resuming a training run: last.ckpt, the run's identity and its input files' stamps.

`mtt train` writes `last.ckpt` after every epoch (atomically) and reads it back with
`torch.load(weights_only=True)`, so that no file runs code: it holds tensors and plain types only.

- `identity`: the settings a resumed run must share (`TrainConfig.identity`); a file written
  before a setting joined the identity ran with its value in `IDENTITY_DEFAULTS`
- `inputs`: (path, size, modification time in ns) of every input file (`input_files_stamp`)
- `state`: `RunState` as a dict: `epoch`, `best_epoch`, `best_score`, `best_valid_loss`,
  `epochs_since_best`, `history` (the rows of history.csv)
- `model`, `best_model` (the kept epoch's weights, on CPU), `ema`, `optimizer`, `scheduler`
  (`WarmupPlateauLR`, with its decay so far `scale` and its `plateau` counter): state dicts. A
  file from before the schedule kept its own counters holds them in `state` (`lr_scale`,
  `plateau`) and a `LambdaLR`'s state dict as `scheduler`; it resumes the same run.
- `rng`: `ranks`, one entry per process of the run (gathered to rank 0 before it saves), each
  `torch`, `cuda` (the state of that process's own GPU, or None), `numpy` (the key array as a
  tensor), `python`, `noise` (`MelNoise`). A file from before per-process states holds one such
  entry at the top level (with `cuda` a list over every visible GPU): rank 0's.

A run resumed with another number of processes restores every stream it has a state for and
says so; a process without one starts fresh streams from (seed, rank, epoch).
"""
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..atomic import atomic_path
from ..checkpoint import one_line
from ..config import IDENTITY_DEFAULTS, RUN_IDENTITY
from .state import RunState


def input_files_stamp(paths) -> list:
    """(path, size, modification time) of every input file: a rebuilt shard or a new split
    changes it, as it makes a workflow manager rerun the job."""
    stamp = []
    for path in paths:
        info = Path(path).stat()
        stamp.append((str(Path(path).resolve()), info.st_size, info.st_mtime_ns))
    return stamp


def rng_state(noise, device: torch.device | None = None) -> dict:
    """This process's RNG streams: torch (CPU), its own GPU's, numpy, python, the noise's."""
    cuda = None
    if device is not None and device.type == "cuda":
        cuda = torch.cuda.get_rng_state(device)
    return {"torch": torch.get_rng_state(), "cuda": cuda,
            "numpy": _numpy_state_plain(np.random.get_state()), "python": random.getstate(),
            "noise": noise.rng_state()}


def save_last(path, *, identity, inputs, state, model, best_model, ema, optimizer, scheduler,
              noise, rank_rngs: list | None = None) -> None:
    """last.ckpt; `rank_rngs`: every process's `rng_state`, in rank order (None: this process
    alone, on the CPU)."""
    payload = {
        "identity": identity,
        "inputs": inputs,
        "state": state.as_dict(),
        "model": model.state_dict(),
        "best_model": best_model,
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {"ranks": list(rank_rngs) if rank_rngs is not None else [rng_state(noise)]},
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


def resume_run(folder, *, identity: dict, inputs: list, config, processes, model, ema, optimizer,
               scheduler, noise) -> tuple[RunState, dict | None] | None:
    """The run in `folder`'s last.ckpt (`outputs.RunFolder`), restored (`restore`); None when
    there is none to resume: no file, or with --fresh-unless-interrupted a stale one (deleted)."""
    rank, world, path = processes.rank, processes.world, folder.last
    fresh = config.fresh_unless_interrupted
    payload = load_last(path, fresh=fresh, rank=rank, world=world)
    if fresh:
        payload = discard_stale(
            path, payload, identity=identity, inputs=inputs, rank=rank, world=world,
            finished=lambda saved: RunState.from_dict(saved).stop_reason(config))
    if payload is None:
        return None
    return restore(path, payload, identity=identity, model=model, ema=ema, optimizer=optimizer,
                   scheduler=scheduler, noise=noise, best_path=folder.best, rank=rank,
                   world=world, device=processes.device, seed=config.seed)


def restore(path: Path, payload: dict, *, identity: dict, model, ema, optimizer, scheduler,
            noise, best_path: Path, rank: int = 0, world: int = 1,
            device: torch.device | None = None, seed: int = 0) -> tuple[RunState, dict | None]:
    """Restore the run saved in last.ckpt's `payload` (at `path`) into the model, its moving
    average, optimizer, scheduler and this process's RNG streams (`restore_rng`); returns
    (state, the kept epoch's weights). A run with other settings is refused with the settings
    that differ."""
    stored = stored_identity(payload)
    if stored != identity:
        changed = [k for k in RUN_IDENTITY if stored.get(k) != identity.get(k)]
        raise ValueError(f"{path}: left by a run with other settings ({changed}); "
                         "use another --out or delete the folder to start over")
    model.load_state_dict(payload["model"])
    if ema is not None:
        ema.load_state_dict(payload["ema"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(scheduler_state(payload))
    state = RunState.from_dict(payload["state"])
    best_weights = payload.get("best_model")
    if best_weights is None and best_path.exists():  # written by an older version
        try:
            best_weights = torch.load(best_path, map_location="cpu",
                                      weights_only=True)["state_dict"]
        except Exception as err:  # noqa: BLE001
            raise ValueError(f"{best_path}: not a readable mtt checkpoint "
                             f"({one_line(err)})") from None
    for line in restore_rng(payload["rng"], noise=noise, rank=rank, world=world, device=device,
                            seed=seed, epoch=state.epoch):
        if rank == 0 or line.startswith("rank "):
            print(f"{path}: {line}", file=sys.stderr)
    return state, best_weights


def scheduler_state(payload: dict) -> dict:
    """last.ckpt's scheduler state; an older file's `LambdaLR` state with the decay counters
    its run state held."""
    saved = payload["scheduler"]
    if "scale" in saved:
        return saved
    older = {k: v for k, v in saved.items() if k != "lr_lambdas"}
    return {**older, "scale": payload["state"].get("lr_scale", 1.0),
            "plateau": payload["state"].get("plateau", 0)}


def rank_states(rng: dict) -> list:
    """The per-process RNG states of last.ckpt's `rng`, in rank order (one for an older file)."""
    return list(rng["ranks"]) if "ranks" in rng else [rng]


def restore_rng(rng: dict, *, noise, rank: int = 0, world: int = 1,
                device: torch.device | None = None, seed: int = 0, epoch: int = 0) -> list:
    """Set this process's RNG streams from last.ckpt's `rng`: its own rank's entry. What cannot
    be restored (a process the saved run did not have, a GPU it had no state for) starts from
    (seed, rank, epoch) instead; returns lines saying what was not restored (rank 0 prints
    the lines about every rank; a line starting "rank N:" only rank N can know)."""
    states = rank_states(rng)
    notes = []
    if len(states) != world:
        saved = len(states)
        what = (f"the RNG streams of rank(s) {', '.join(map(str, range(saved, world)))} start "
                "fresh" if world > saved else
                f"the saved RNG streams of rank(s) {', '.join(map(str, range(world, saved)))} "
                "are dropped")
        notes.append(f"saved by {saved} process(es), resumed with {world}: {what}; the data "
                     "order of the remaining epochs follows the new process count, so the run "
                     "goes on as a different one from here")
    if rank >= len(states):
        torch.manual_seed(fresh_seed(seed, rank, epoch))
        noise.reseed([seed, rank, epoch])
        return notes
    own = states[rank]
    torch.set_rng_state(own["torch"])
    cuda = own.get("cuda")
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        if isinstance(cuda, (list, tuple)):  # an older file: every visible GPU's state
            cuda = cuda[index] if index < len(cuda) else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        else:
            notes.append(f"rank {rank}: no saved CUDA RNG state for {device} (saved on the CPU "
                         "or with fewer GPUs visible): its CUDA stream starts fresh")
            torch.cuda.manual_seed(fresh_seed(seed, rank, epoch))
    np.random.set_state(_numpy_state_tuple(own["numpy"]))
    random.setstate(own["python"])
    noise.set_rng_state(own["noise"])
    return notes


def fresh_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """A torch seed of its own for each (seed, rank, epoch)."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, np.uint64)[0]
               % (2**63 - 1))


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
