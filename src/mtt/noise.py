"""Input noise for the noisy student, in the log-mel (dB) domain.

Mels are precomputed, so audio-domain augmentation is replaced by its mel-domain counterpart:
SpecAugment time and frequency masks, a random gain (a dB offset), mixup, small shifts along the
mel axis; the random crop position comes from the data loader. Each transform is applied to each
example with its own probability. All randomness comes from one `numpy.random.Generator` (its
state is saved in the resumable checkpoint), and the transforms act only in training mode:
`MelNoise.eval()` makes the module an identity.
"""
import numpy as np
import torch
from torch import nn

from .frontend import POWER_FLOOR

NOISE_KINDS = ("specaugment", "gain", "mixup", "shift")


def parse_noise_kinds(text: str | None) -> tuple[str, ...]:
    """'specaugment,gain' -> ('specaugment', 'gain'); '' or 'none' -> ()."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in NOISE_KINDS]
    if unknown:
        raise ValueError(f"unknown noise kind(s) {unknown}; choose from {', '.join(NOISE_KINDS)}")
    return kinds


def spec_augment(x: torch.Tensor, rng: np.random.Generator, prob: float, max_time: float = 0.1,
                 max_freq: int = 16, n_masks: int = 2) -> torch.Tensor:
    """Time and frequency masks (each up to `max_time` of the frames / `max_freq` bands) set to the
    example's mean dB value, on examples chosen with probability `prob`. x: (B, n_mels, T)."""
    batch, n_mels, frames = x.shape
    chosen = rng.random(batch) < prob
    if not chosen.any():
        return x
    mask = torch.zeros(batch, n_mels, frames, dtype=torch.bool, device=x.device)
    freq_idx = torch.arange(n_mels, device=x.device)
    time_idx = torch.arange(frames, device=x.device)
    max_t = max(1, int(max_time * frames))
    for b in np.flatnonzero(chosen):
        for _ in range(n_masks):
            width = int(rng.integers(0, max_freq + 1))
            start = int(rng.integers(0, n_mels - width + 1))
            mask[b] |= ((freq_idx >= start) & (freq_idx < start + width))[:, None]
            width = int(rng.integers(0, max_t + 1))
            start = int(rng.integers(0, frames - width + 1))
            mask[b] |= ((time_idx >= start) & (time_idx < start + width))[None, :]
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    return torch.where(mask, fill, x)


def random_gain(x: torch.Tensor, rng: np.random.Generator, prob: float,
                max_db: float = 6.0) -> torch.Tensor:
    """Add a uniform offset in [-max_db, max_db] dB (a volume change) to chosen examples."""
    batch = x.shape[0]
    offsets = rng.uniform(-max_db, max_db, batch) * (rng.random(batch) < prob)
    return x + torch.as_tensor(offsets, dtype=x.dtype, device=x.device)[:, None, None]


def freq_shift(x: torch.Tensor, rng: np.random.Generator, prob: float,
               max_bins: int = 4) -> torch.Tensor:
    """Shift chosen examples up or down the mel axis by up to `max_bins`, repeating the edge band
    (a small pitch/timbre change)."""
    batch, n_mels, _ = x.shape
    shifts = rng.integers(-max_bins, max_bins + 1, batch) * (rng.random(batch) < prob)
    if not shifts.any():
        return x
    source = torch.arange(n_mels, device=x.device)[None, :] - torch.as_tensor(
        shifts, device=x.device)[:, None]
    source = source.clamp(0, n_mels - 1)
    return torch.gather(x, 1, source[:, :, None].expand_as(x))


def mixup(x: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator, prob: float,
          alpha: float = 0.4, weights: torch.Tensor | None = None):
    """Mix chosen examples with another example of the batch: x and targets alike.

    The mel mix is done in the power domain (dB -> power -> mix -> dB), which is what mixing two
    recordings does; targets are mixed linearly. `weights` (a per-element loss mask, e.g. from
    thresholded pseudo-labels) is combined so that a mixed target counts only where both are valid.
    Returns (x, targets, weights).
    """
    batch = x.shape[0]
    chosen = rng.random(batch) < prob
    if batch < 2 or not chosen.any():
        return x, targets, weights
    partner = rng.permutation(batch)
    lam = np.where(chosen, rng.beta(alpha, alpha, batch), 1.0)
    lam = np.maximum(lam, 1.0 - lam)  # the example keeps being mostly itself
    lam_t = torch.as_tensor(lam, dtype=torch.float32, device=x.device)
    partner_t = torch.as_tensor(partner, device=x.device)
    power = torch.pow(10.0, x.float() / 10.0)
    mixed = lam_t[:, None, None] * power + (1 - lam_t[:, None, None]) * power[partner_t]
    x = (10.0 * torch.log10(mixed.clamp_min(POWER_FLOOR))).to(x.dtype)
    targets = lam_t[:, None] * targets + (1 - lam_t[:, None]) * targets[partner_t]
    if weights is not None:
        weights = torch.where(torch.as_tensor(chosen, device=x.device)[:, None],
                              weights * weights[partner_t], weights)
    return x, targets, weights


class MelNoise(nn.Module):
    """The student's input noise: the chosen transforms, each applied with probability `prob`.

    In training mode `forward(x, targets, weights)` returns noised (x, targets, weights); in eval
    mode it returns its inputs unchanged.
    """

    def __init__(self, kinds=NOISE_KINDS, prob: float = 0.5, seed: int = 0):
        super().__init__()
        self.kinds = tuple(kinds)
        for kind in self.kinds:
            if kind not in NOISE_KINDS:
                raise ValueError(f"unknown noise kind {kind!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"noise probability must be in [0, 1], got {prob}")
        self.prob = prob
        self.rng = np.random.default_rng(seed)

    def forward(self, x, targets, weights=None):
        if not self.training or not self.kinds:
            return x, targets, weights
        if "shift" in self.kinds:
            x = freq_shift(x, self.rng, self.prob)
        if "gain" in self.kinds:
            x = random_gain(x, self.rng, self.prob)
        if "mixup" in self.kinds:
            x, targets, weights = mixup(x, targets, self.rng, self.prob, weights=weights)
        if "specaugment" in self.kinds:
            x = spec_augment(x, self.rng, self.prob)
        return x, targets, weights

    def rng_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
