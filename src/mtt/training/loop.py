"""The epoch loop of `mtt train` (`Trainer.fit`) and its step (`Trainer.step`).

Everything a run is made of is built in `Trainer.__init__`: its processes (`processes`), the
model, the data (`data`), the objective (`objective`), the optimizer and its schedule
(`schedule`), the state (`state`) and its folder (`outputs`); `fit` resumes (`resume`) and loops.
"""
import math
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from ..config import TrainConfig
from ..formats.split_folder import read_tag_list
from ..inference.device import channels_last_faster, resolve_device, select_precision, set_threads
from ..inference.songs import crop_frames
from ..models import build_model, to_channels_last
from .noise import MelNoise
from . import resume
from .data import build_data
from .objective import choose_objective
from .outputs import RunFolder, add_scalars, epoch_line, history_row, tensorboard_writer
from .processes import Processes
from .schedule import WarmupPlateauLR
from .state import RunState, selection_score
from .validation import validate
from .warm_start import copy_teacher_frontend

LOG_EVERY = 50  # steps between reads of the running training loss (a host-device sync on a GPU)


def build_run_model(config: TrainConfig, n_tags: int, device: torch.device, rank: int):
    """(the model on `device`, its precision, its crop length in frames); every rank starts from
    the same weights, and draws its own dropout and drop-path masks after."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, n_tags, preset=config.preset,
                        **config.model_config()).to(device)
    if rank > 0:  # rank 0, and a single process, keep the stream of config.seed
        torch.manual_seed(resume.fresh_seed(config.seed, rank))
    # "fp32" or "bf16"; auto knows the model (small CNNs stay fp32 on bf16 CPUs)
    precision = select_precision(config.precision, device, model=model)
    if channels_last_faster(model, device, precision):
        to_channels_last(model)  # same weights, NHWC activations: faster small CNNs
    return model, precision, crop_frames(model, config.crop_seconds)


class Trainer:
    """One process's part of a run."""

    def __init__(self, config: TrainConfig, files):
        """`files`: `mtt.training.command.TrainFiles`."""
        self.config = config
        set_threads(config.threads)
        self.processes = Processes.start(resolve_device(config.device))
        self.device, rank = self.processes.device, self.processes.rank
        self.tags = read_tag_list(files.tags)
        if not self.tags:
            raise ValueError(f"{files.tags}: no tags")
        self.model, self.precision, self.frames = build_run_model(config, len(self.tags),
                                                                  self.device, rank)
        if config.init_from_teacher == "frontend":
            copied = copy_teacher_frontend(self.model, files.teacher_checkpoint)
            self.processes.log(f"front end from {files.teacher_checkpoint}: {len(copied)} tensors")
        noise_kinds = config.noise_kinds(files.is_student)
        self.identity = config.identity(
            files.is_student, model_config=self.model.config, tags=self.tags,
            crop_frames=self.frames, noise=list(noise_kinds), precision=self.precision)
        self.data = build_data(config, files, self.tags, self.frames, self.processes,
                               self.precision)
        self.state = RunState()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.scheduler = WarmupPlateauLR(self.optimizer, config.warmup_steps, config.lr_decay,
                                         config.lr_patience,
                                         config.lr_anneal_epochs * len(self.data.plan))
        self.noise = MelNoise(noise_kinds, config.noise_prob, seed=[config.seed, rank])
        self.objective = choose_objective(files.is_student, config, self.noise, self.device,
                                          self.precision, self.data)
        self.ddp_model = self.processes.wrap(self.model)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                                  use_buffers=True) if config.ema_decay > 0 else None)
        # the weights validated, kept and saved as best.ckpt: with --ema-decay, the average
        self.validated_model = self.ema.module if self.ema is not None else self.model
        self.best_weights = None  # CPU copy of the best epoch's weights, also kept in last.ckpt
        self.folder = RunFolder(files.out, config=config, files=files, identity=self.identity,
                                role=self.objective.role, tags=self.tags,
                                model_config=self.model.config)
        self.inputs = files.stamp()

    def fit(self) -> int:
        """Resume or start; then train an epoch, validate, keep the best weights and save, until
        early stopping or the epoch limit."""
        resumed = self._resume()
        if (stopped := self.state.stop_reason(self.config)) is not None:
            if self.processes.is_main:
                self.processes.log(self.folder.restore_finished(self.state, self.best_weights,
                                                                stopped))
            return 0
        if resumed:
            self.processes.log(f"resuming from {self.folder.last} after epoch {self.state.epoch}")
        writer = tensorboard_writer(self.folder.out) if self.processes.is_main else None
        while (stopped := self.state.stop_reason(self.config)) is None:
            started = time.perf_counter()
            train_loss = self.train_epoch(self.state.epoch)
            lr = self.optimizer.param_groups[0]["lr"]  # after the epoch: the next step's
            valid = self.validate()  # every rank a share of the songs, every rank the scores
            improved = self._end_epoch(valid)
            rank_rngs = self.processes.gather_rng_states(self.noise)  # for rank 0 to save
            if self.processes.is_main:
                row = history_row(self.state.epoch, train_loss, valid, lr,
                                  time.perf_counter() - started)
                self._record(row, improved, writer, rank_rngs)
            self.processes.barrier()
        if self.processes.is_main:  # best.ckpt's final metadata: the whole history, the end
            self.processes.log(self.folder.finish(self.state, self.best_weights, stopped))
        if writer:
            writer.close()
        self.processes.close()
        return 0

    def train_epoch(self, epoch: int) -> float:
        """One epoch's steps; returns the mean training loss over every rank's steps. The
        losses add up on the device (in float64, as a Python float would) and are read on the
        host once per LOG_EVERY steps (the progress bar) and at the end."""
        self.ddp_model.train()
        self.noise.train()
        self.data.plan.set_epoch(epoch)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        bar = tqdm(self.data.loader, desc=f"epoch {epoch + 1}", unit="step", leave=False,
                   disable=not self.processes.is_main, mininterval=10)
        for mels, targets, sources in bar:
            loss = self.step(mels.to(self.device, non_blocking=True),
                             targets.to(self.device, non_blocking=True), sources)
            total += loss.double()
            count += 1
            if self.processes.is_main and count % LOG_EVERY == 0:
                bar.set_postfix(loss=f"{float(total) / count:.4f}", refresh=False)
        mean = self.processes.sum(torch.stack([
            total, torch.tensor(float(count), dtype=torch.float64, device=self.device)]))
        return float(mean[0] / mean[1])

    def step(self, mels, targets, sources) -> torch.Tensor:
        loss = self.objective(self.ddp_model, mels, targets, sources)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach()

    def validate(self) -> dict:
        return validate(self.validated_model, self.data, self.processes,
                        chunks=self.config.valid_chunks, frames=self.frames,
                        batch_size=self.config.batch_size, precision=self.precision)

    def _end_epoch(self, valid: dict) -> bool:
        """Count the epoch; keep its weights if its score is the best so far (returns whether
        it is); decay the learning rate on a plateau."""
        if not math.isfinite(valid["loss"]):
            raise ValueError(f"validation loss is {valid['loss']} after epoch "
                             f"{self.state.epoch + 1}: training diverged (try a lower --lr)")
        improved = self.state.end_epoch(valid["loss"],
                                        selection_score(valid, self.config.select_by))
        if improved:
            self.best_weights = {k: v.detach().cpu().clone()
                                 for k, v in self.validated_model.state_dict().items()}
        if self.scheduler.end_epoch(improved):
            self.processes.log(f"learning rate x{self.config.lr_decay:g} -> "
                               f"{self.config.lr * self.scheduler.scale:.3g}")
        return improved

    # ---------------------------------------------------------- last.ckpt and the outputs

    def _resumable(self) -> dict:
        """What last.ckpt saves and restores besides the run's state."""
        return {"model": self.model, "ema": self.ema, "optimizer": self.optimizer,
                "scheduler": self.scheduler, "noise": self.noise}

    def _resume(self) -> bool:
        """Restore the run in last.ckpt, if there is one to resume (`resume.resume_run`)."""
        resumed = resume.resume_run(
            self.folder, identity=self.identity, inputs=self.inputs, config=self.config,
            processes=self.processes, **self._resumable())
        if resumed is not None:
            self.state, self.best_weights = resumed
        return resumed is not None

    def _record(self, row: dict, improved: bool, writer, rank_rngs: list) -> None:
        """An epoch's outputs: its history row, best.ckpt if it improved, last.ckpt."""
        self.state.history.append(row)
        self.folder.save_epoch(self.state, improved, self.best_weights)
        resume.save_last(self.folder.last, identity=self.identity, inputs=self.inputs,
                         state=self.state, best_model=self.best_weights, rank_rngs=rank_rngs,
                         **self._resumable())
        self.processes.log(epoch_line(row, improved))
        add_scalars(writer, row)
