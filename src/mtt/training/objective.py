"""What a training step minimises, chosen once per run: a teacher's `SupervisedObjective` or a
noisy student's `NoisyStudentObjective`. Each turns a batch (mels, targets, sources) into the
loss, noising the inputs (`mtt.training.noise`) and, for a student, making the pseudo-label targets."""
import torch
import torch.nn.functional as F

from .noise import MelNoise
from ..inference.device import autocast
from ..config import TrainConfig
from .batches import LABELED


def pseudo_targets(probs: torch.Tensor, mode: str, threshold: float, temperature: float = 1.0):
    """Targets and per-element loss weights from teacher probabilities.

    soft: the probabilities themselves, sharpened as sigmoid(logit(p) / temperature) when the
    temperature is not 1. hard: 1 where p >= threshold, else 0. threshold: 1 where
    p >= threshold, 0 where p <= 1 - threshold, and the uncertain rest left out of the loss.
    """
    ones = torch.ones_like(probs)
    if mode == "soft":
        if temperature != 1.0:
            probs = torch.sigmoid(torch.logit(probs.float(), eps=1e-6) / temperature).to(probs.dtype)
        return probs, ones
    if mode == "hard":
        return (probs >= threshold).to(probs.dtype), ones
    if mode == "threshold":
        if not 0.5 < threshold < 1.0:
            raise ValueError("--pseudo-mode threshold needs --pseudo-threshold in (0.5, 1)")
        confident = (probs >= threshold) | (probs <= 1.0 - threshold)
        return (probs >= threshold).to(probs.dtype), confident.to(probs.dtype)
    raise ValueError(f"unknown pseudo-label mode {mode!r}")


def student_loss(logits, labeled_targets, pseudo_targets, pseudo_weights, pseudo_weight: float,
                 tag_weights=None):
    """BCE of the labeled crops (the first `len(labeled_targets)` rows of `logits`) plus
    `pseudo_weight` times the pseudo-labeled crops' BCE, each element weighted by its tag's
    weight (`tag_weights`, --pseudo-tag-weights) and its own (`pseudo_weights`: 0 where threshold
    mode leaves it out), over the sum of the own weights (at least 1: a tag weight of 0 adds
    nothing and takes nothing from the denominator)."""
    n = len(labeled_targets)
    loss = F.binary_cross_entropy_with_logits(logits[:n], labeled_targets)
    pseudo = F.binary_cross_entropy_with_logits(logits[n:], pseudo_targets, reduction="none")
    if tag_weights is not None:
        pseudo = pseudo * tag_weights
    pseudo = (pseudo * pseudo_weights).sum() / pseudo_weights.sum().clamp_min(1.0)
    return loss + pseudo_weight * pseudo


class SupervisedObjective:
    """A teacher's: BCE of its (by default clean) labeled crops."""
    role = "teacher"

    def __init__(self, noise: MelNoise, device: torch.device, precision: str):
        self.noise, self.device, self.precision = noise, device, precision

    def logits(self, model, x) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return model(x).float()

    def __call__(self, model, mels, targets, sources) -> torch.Tensor:
        x, y, _ = self.noise(mels, targets)
        return F.binary_cross_entropy_with_logits(self.logits(model, x), y)


class NoisyStudentObjective(SupervisedObjective):
    """A noisy student's: `student_loss` of noised labeled crops (a batch's first `n_labeled`)
    and noised pseudo-labeled crops, whose targets are the song's pseudo-labels or the teacher's
    on the crop (--pseudo-targets), made by --pseudo-mode."""
    role = "student"

    def __init__(self, config: TrainConfig, noise: MelNoise, device: torch.device, precision: str,
                 n_labeled: int, tag_weights=None, crop_teacher=None):
        super().__init__(noise, device, precision)
        self.config, self.n_labeled = config, n_labeled
        self.tag_weights, self.crop_teacher = tag_weights, crop_teacher

    def __call__(self, model, mels, targets, sources) -> torch.Tensor:
        x, y, y_pseudo, w_pseudo = self.batch(mels, targets, sources)
        return student_loss(self.logits(model, x), y, y_pseudo, w_pseudo,
                            self.config.pseudo_weight, self.tag_weights)

    def batch(self, mels, targets, sources):
        """The noised inputs (labeled crops first), the labeled targets, the pseudo-label
        targets and their per-element weights."""
        c, n = self.config, self.n_labeled
        if not (sources[:n] == LABELED).all() or (sources[n:] == LABELED).any():  # on the host
            raise RuntimeError("a batch's labeled crops must come first")
        x_l, y_l, _ = self.noise(mels[:n], targets[:n])
        x_p, y_p = mels[n:], targets[n:]
        if c.pseudo_targets == "crop":
            y_p = self.teacher_probs(x_p)
        y_p, w_p = pseudo_targets(y_p, c.pseudo_mode, c.pseudo_threshold, c.pseudo_temperature)
        x_p, y_p, w_p = self.noise(x_p, y_p, w_p)
        if c.pseudo_targets == "crop_noised":
            y_p, w_p = pseudo_targets(self.teacher_probs(x_p), c.pseudo_mode,
                                      c.pseudo_threshold, c.pseudo_temperature)
        return torch.cat([x_l, x_p]), y_l, y_p, w_p

    @torch.no_grad()
    def teacher_probs(self, x) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return torch.sigmoid(self.crop_teacher(x).float())


def choose_objective(student: bool, config: TrainConfig, noise: MelNoise, device: torch.device,
                     precision: str, data) -> SupervisedObjective:
    """The run's objective, chosen once: a student's or a teacher's (`data`: the run's
    `TrainingData`, where a student's batch plan and teacher are)."""
    if not student:
        return SupervisedObjective(noise, device, precision)
    return NoisyStudentObjective(config, noise, device, precision, data.plan.n_labeled,
                                 data.tag_weights, data.crop_teacher)
