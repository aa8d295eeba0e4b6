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


# Each transform is two halves: `draw_*` takes its random parameters from the numpy generator on
# the host (the same draws, in the same order, as it always has: a resumed run replays them), and
# `apply_*` acts on the batch with them as tensors on its device, vectorized over the batch. The
# module sends one step's parameters to the device in one non-blocking copy.

def draw_spec_augment(rng: np.random.Generator, shape, prob: float, max_time: float = 0.1,
                      max_freq: int = 16, n_masks: int = 2) -> np.ndarray | None:
    """SpecAugment's masks for a batch of `shape` (B, n_mels, T): an int64 array (4, B, n_masks)
    of frequency starts, frequency widths, time starts, time widths (0 wide: no mask), or None
    when no example is chosen."""
    batch, n_mels, frames = shape
    chosen = rng.random(batch) < prob
    if not chosen.any():
        return None
    params = np.zeros((4, batch, n_masks), dtype=np.int64)
    max_t = max(1, int(max_time * frames))
    for b in np.flatnonzero(chosen):
        for m in range(n_masks):
            width = int(rng.integers(0, max_freq + 1))
            params[0, b, m], params[1, b, m] = int(rng.integers(0, n_mels - width + 1)), width
            width = int(rng.integers(0, max_t + 1))
            params[2, b, m], params[3, b, m] = int(rng.integers(0, frames - width + 1)), width
    return params


def apply_spec_augment(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Set the bands and frames of `params` (`draw_spec_augment`, on x's device) to each
    example's mean dB value."""
    f_start, f_width, t_start, t_width = params[..., None].unbind(0)  # each (B, n_masks, 1)
    freq_idx = torch.arange(x.shape[1], device=x.device)
    time_idx = torch.arange(x.shape[2], device=x.device)
    bands = ((freq_idx >= f_start) & (freq_idx < f_start + f_width)).any(1)  # (B, n_mels)
    frames = ((time_idx >= t_start) & (time_idx < t_start + t_width)).any(1)  # (B, T)
    mask = bands[:, :, None] | frames[:, None, :]
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    return torch.where(mask, fill, x)


def spec_augment(x: torch.Tensor, rng: np.random.Generator, prob: float, max_time: float = 0.1,
                 max_freq: int = 16, n_masks: int = 2) -> torch.Tensor:
    """Time and frequency masks (each up to `max_time` of the frames / `max_freq` bands) set to the
    example's mean dB value, on examples chosen with probability `prob`. x: (B, n_mels, T)."""
    params = draw_spec_augment(rng, x.shape, prob, max_time, max_freq, n_masks)
    if params is None:
        return x
    return apply_spec_augment(x, torch.as_tensor(params, device=x.device))


def draw_gain(rng: np.random.Generator, batch: int, prob: float,
              max_db: float = 6.0) -> np.ndarray:
    """Per-example dB offsets (float64; 0 for an example not chosen)."""
    return rng.uniform(-max_db, max_db, batch) * (rng.random(batch) < prob)


def random_gain(x: torch.Tensor, rng: np.random.Generator, prob: float,
                max_db: float = 6.0) -> torch.Tensor:
    """Add a uniform offset in [-max_db, max_db] dB (a volume change) to chosen examples."""
    offsets = draw_gain(rng, x.shape[0], prob, max_db)
    return x + torch.as_tensor(offsets, dtype=x.dtype, device=x.device)[:, None, None]


def draw_shift(rng: np.random.Generator, batch: int, prob: float,
               max_bins: int = 4) -> np.ndarray | None:
    """Per-example shifts in mel bins (int64), or None when none moves."""
    shifts = rng.integers(-max_bins, max_bins + 1, batch) * (rng.random(batch) < prob)
    return shifts if shifts.any() else None


def apply_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    n_mels = x.shape[1]
    source = torch.arange(n_mels, device=x.device)[None, :] - shifts[:, None]
    source = source.clamp(0, n_mels - 1)
    return torch.gather(x, 1, source[:, :, None].expand_as(x))


def freq_shift(x: torch.Tensor, rng: np.random.Generator, prob: float,
               max_bins: int = 4) -> torch.Tensor:
    """Shift chosen examples up or down the mel axis by up to `max_bins`, repeating the edge band
    (a small pitch/timbre change)."""
    shifts = draw_shift(rng, x.shape[0], prob, max_bins)
    if shifts is None:
        return x
    return apply_shift(x, torch.as_tensor(shifts, device=x.device))


def draw_mixup(rng: np.random.Generator, batch: int, prob: float,
               alpha: float = 0.4) -> np.ndarray | None:
    """(chosen, partner, lam) as a float64 array (3, B), or None when nothing is mixed."""
    chosen = rng.random(batch) < prob
    if batch < 2 or not chosen.any():
        return None
    partner = rng.permutation(batch)
    lam = np.where(chosen, rng.beta(alpha, alpha, batch), 1.0)
    lam = np.maximum(lam, 1.0 - lam)  # the example keeps being mostly itself
    return np.stack([chosen.astype(np.float64), partner.astype(np.float64), lam])


def apply_mixup(x: torch.Tensor, targets: torch.Tensor, params: torch.Tensor,
                weights: torch.Tensor | None = None):
    """Mix with `params` (`draw_mixup`, on x's device): see `mixup`."""
    chosen, partner, lam = params[0].bool(), params[1].long(), params[2].float()
    power = torch.pow(10.0, x.float() / 10.0)
    mixed = lam[:, None, None] * power + (1 - lam[:, None, None]) * power[partner]
    x = (10.0 * torch.log10(mixed.clamp_min(POWER_FLOOR))).to(x.dtype)
    targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]
    if weights is not None:
        weights = torch.where(chosen[:, None], weights * weights[partner], weights)
    return x, targets, weights


def mixup(x: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator, prob: float,
          alpha: float = 0.4, weights: torch.Tensor | None = None):
    """Mix chosen examples with another example of the batch: x and targets alike.

    The mel mix is done in the power domain (dB -> power -> mix -> dB), which is what mixing two
    recordings does; targets are mixed linearly. `weights` (a per-element loss mask, e.g. from
    thresholded pseudo-labels) is combined so that a mixed target counts only where both are valid.
    Returns (x, targets, weights).
    """
    params = draw_mixup(rng, x.shape[0], prob, alpha)
    if params is None:
        return x, targets, weights
    return apply_mixup(x, targets, torch.as_tensor(params, device=x.device), weights)


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
        # every random parameter drawn on the host first (in the order the transforms run),
        # then sent to the device in one non-blocking copy of one float64 array: no per-transform
        # blocking copies (integers up to 2**53 and the float32 factors are exact in float64)
        batch = x.shape[0]
        drawn = {}
        if "shift" in self.kinds:
            drawn["shift"] = draw_shift(self.rng, batch, self.prob)
        if "gain" in self.kinds:
            drawn["gain"] = draw_gain(self.rng, batch, self.prob)
        if "mixup" in self.kinds:
            drawn["mixup"] = draw_mixup(self.rng, batch, self.prob)
        if "specaugment" in self.kinds:
            drawn["specaugment"] = draw_spec_augment(self.rng, x.shape, self.prob)
        drawn = {k: v for k, v in drawn.items() if v is not None}
        if not drawn:
            return x, targets, weights
        flat = torch.from_numpy(np.concatenate([np.ravel(v).astype(np.float64)
                                                for v in drawn.values()]))
        if x.device.type == "cuda":
            flat = flat.pin_memory()
        flat = flat.to(x.device, non_blocking=True)
        on_device, offset = {}, 0
        for kind, value in drawn.items():
            on_device[kind] = flat[offset:offset + value.size].view(value.shape)
            offset += value.size
        if "shift" in on_device:
            x = apply_shift(x, on_device["shift"].long())
        if "gain" in on_device:
            x = x + on_device["gain"].to(x.dtype)[:, None, None]
        if "mixup" in on_device:
            x, targets, weights = apply_mixup(x, targets, on_device["mixup"], weights)
        if "specaugment" in on_device:
            x = apply_spec_augment(x, on_device["specaugment"].long())
        return x, targets, weights

    def rng_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def reseed(self, seed) -> None:
        """Start a fresh stream from `seed` (a resumed process without a saved state)."""
        self.rng = np.random.default_rng(seed)
