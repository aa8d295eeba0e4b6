"""The processes of a run: one, or several started by torchrun (DDP), each on its device.

Rank 0 writes the files and prints; the others train, validate their share of the songs and
send it, and their RNG streams, to it."""
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .resume import rng_state


def distributed_context():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def validation_share(n_songs: int, rank: int, world: int) -> range:
    """The validation songs (indices) rank `rank` of `world` predicts: contiguous, in order,
    the first ones one song longer when they do not divide evenly."""
    base, extra = divmod(n_songs, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


@dataclass
class Processes:
    rank: int
    world: int
    device: torch.device

    @classmethod
    def start(cls, device: torch.device) -> "Processes":
        """This process's place in the run; with several, its GPU and the process group."""
        rank, world, local_rank = distributed_context()
        if world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", local_rank)
                torch.cuda.set_device(device)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world, device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        if self.is_main:
            print(message, file=sys.stderr)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as the steps run it: under DDP with several processes."""
        if self.world == 1:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor)
        return tensor

    def share_main_weights(self, model: torch.nn.Module) -> None:
        """Rank 0's weights and buffers on every rank (batch-norm statistics and their moving
        average are each rank's own between DDP's broadcasts)."""
        if self.world == 1:
            return
        for tensor in model.state_dict().values():
            if tensor.device == self.device:
                dist.broadcast(tensor, src=0)
            else:  # e.g. the moving average's CPU counter: NCCL sends device tensors
                on_device = tensor.to(self.device)
                dist.broadcast(on_device, src=0)
                tensor.copy_(on_device)

    def gather_rows(self, rows: np.ndarray, total: int) -> np.ndarray:
        """Every rank's `rows` (its `validation_share` of `total`, in rank order), on every
        rank."""
        if self.world == 1:
            return rows
        longest = -(-total // self.world)
        padded = torch.zeros(longest, rows.shape[1], dtype=torch.float32, device=self.device)
        padded[:len(rows)] = torch.from_numpy(rows).to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return np.concatenate([
            part[:len(validation_share(total, r, self.world))].cpu().numpy()
            for r, part in enumerate(parts)])

    def gather_rng_states(self, noise) -> list | None:
        """Every rank's RNG streams (`resume.rng_state`), in rank order, on rank 0 (None on
        the others)."""
        own = rng_state(noise, self.device)
        if self.world == 1:
            return [own]
        states = [None] * self.world if self.is_main else None
        dist.gather_object(own, states, dst=0)
        return states

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()
