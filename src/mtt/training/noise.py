"""Input noise for the noisy student, in the log-mel (dB) domain.

Mels are precomputed, so audio-domain augmentation is replaced by its mel-domain counterpart:
SpecAugment time and frequency masks, a random gain (a dB offset), mixup, small shifts along the
mel axis; the random crop position comes from the data loader. Each transform is applied to each
example with its own probability. All randomness comes from one `numpy.random.Generator` (its
state is saved in the resumable checkpoint), and the transforms act only in training mode:
`MelNoise.eval()` makes the module an identity.

`paper` (not part of the default) is the published code's waveform chain (Won et al. 2021, its
data loader's torchaudio-augmentations transforms) as log-mel counterparts, in its order and with
its probabilities: white noise as a power floor, gain, a high- or low-pass filter as a dB curve
over the bands, delay and reverb as smearing of power along time, pitch shift as a resampling of
the mel axis (docs/NOISY_STUDENT.md, "The paper's noise as an option"). `stretch` is a random
resized crop along time (a slower tempo), an extra kind of its own.
"""
import functools
import math

import numpy as np
import torch
import torchaudio
from torch import nn

from ..config.choices import EXTRA_KINDS, NOISE_KINDS, PAPER, STRETCH
from ..frontend import (DB_FLOOR, F_MAX, F_MIN, HOP_LENGTH, N_FFT, N_MELS, POWER_FLOOR,
                       SAMPLE_RATE)

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


# ------------------------------------------------------------------------- the paper's chain
# Won et al.'s data loader (minzwon/semi-supervised-music-tagging-transformer, src/data_loader.py)
# noises a student's crop with torchaudio-augmentations, in this order:
#   RandomResizedCrop(n_samples)                 a plain random crop of n_samples samples, taken
#                                                from a crop of n_samples: the identity
#   RandomApply([PolarityInversion()], p=0.8)    x -> -x: the identity on a power spectrogram
#   RandomApply([Noise(min_snr=0.3, max_snr=0.5)], p=0.3)
#   RandomApply([Gain()], p=0.2)
#   RandomApply([HighLowPass(sample_rate=22050)], p=0.8)
#   RandomApply([Delay(sample_rate=22050)], p=0.5)
#   RandomApply([PitchShift(n_samples, sample_rate=22050)], p=0.4)
#   RandomApply([Reverb(sample_rate=22050)], p=0.3)
# The six that change a mel follow, each as draw_* / apply_* like the transforms above, with
# that package's default ranges (the loader passes none but Noise's).

PAPER_SNR = (0.3, 0.5)  # Noise: the noise's std over the signal's (amplitudes, not dB)
PAPER_GAIN_DB = (-20.0, -1.0)  # Gain: min_gain, max_gain
PAPER_HIGHPASS_HZ = (200, 1200)  # HighLowPass: a high-pass with even odds, else...
PAPER_LOWPASS_HZ = (2200, 4000)  # ...a low-pass; the cutoff a whole number of Hz in the range
PAPER_DELAY_MS = (200, 250, 300, 350, 400, 450)  # Delay: np.arange(200, 500, 50)
PAPER_DELAY_VOLUME = 0.5  # Delay: (x + 0.5 * x delayed) / 2
PAPER_PITCH_CENTS = (-700, 700)  # PitchShift: a whole number of cents, both ends included
STRETCH_KEPT = (0.8, 1.0)  # `stretch`: the part of the crop kept and stretched to its length

# sox's `reverb` (Reverb, through WavAugment): freeverb's 8 comb filters (lengths in samples at
# 44.1 kHz) into 4 allpass filters (feedback 0.5: an impulse's energy x 7/3 each), the wet
# signal x 0.015 added to the dry one; with a mono input and the default stereo depth it makes
# two wet channels that WavAugment's `channels(1)` averages (taken as uncorrelated: x 1/2)
SOX_COMB_SAMPLES = (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)
SOX_WET_POWER = 0.5 * len(SOX_COMB_SAMPLES) * 0.015 ** 2 * (7 / 3) ** 4

LOWPASS_TABLE_STEP = 0.002  # the low-pass response is tabulated against frequency / cutoff
LOWPASS_TABLE_END = 3.0  # up to 3 x the cutoff; beyond, the stop band's last value


def _mel(hz):
    """HTK mel, the front end's scale (numpy or torch)."""
    log10 = np.log10 if isinstance(hz, (float, np.ndarray)) else torch.log10
    return 2595.0 * log10(1.0 + hz / 700.0)


@functools.lru_cache(maxsize=1)
def lowpass_response() -> np.ndarray:
    """The amplitude response of the paper's low-pass against frequency / cutoff (0 to
    LOWPASS_TABLE_END by LOWPASS_TABLE_STEP). HighLowPass calls julius's lowpass_filter: a sinc
    windowed by a symmetric Hann window of 8 zero crossings a side, normalised to a sum of 1;
    its shape does not depend on the cutoff (-6 dB at the cutoff, -1 dB at 0.88 x, -40 dB at
    1.19 x, under -60 dB beyond 1.5 x, for any cutoff of 200-4000 Hz), so one table serves all.
    Its high-pass is x - lowpass(x): a response of 1 - this (the filter has zero phase)."""
    cutoff = PAPER_HIGHPASS_HZ[0] / SAMPLE_RATE  # the longest filter: the finest table
    half = int(8 / cutoff / 2)
    time = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.hanning(2 * half + 1) * np.sinc(2 * cutoff * time)
    taps /= taps.sum()
    ratio = np.arange(0.0, LOWPASS_TABLE_END + LOWPASS_TABLE_STEP / 2, LOWPASS_TABLE_STEP)
    return np.cos(2 * np.pi * cutoff * ratio[:, None] * time[None, :]) @ taps


@functools.lru_cache(maxsize=8)
def mel_tables(device: torch.device) -> dict:
    """The front end's filterbank and the constants the paper's transforms need, on `device`:
    fb (FFT bins, bands), weight (each band's sum of weights), share (weight / its total),
    centre_hz (each band's centre), bin_hz (each FFT bin's frequency), lowpass
    (`lowpass_response`)."""
    fb = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS,
                                               SAMPLE_RATE, norm=None, mel_scale="htk")
    weight = fb.sum(0)
    spacing = (_mel(F_MAX) - _mel(F_MIN)) / (N_MELS + 1)
    centre_mel = _mel(F_MIN) + spacing * np.arange(1, N_MELS + 1)
    tables = {"fb": fb, "weight": weight, "share": weight / weight.sum(),
              "centre_hz": torch.from_numpy(700.0 * (10.0 ** (centre_mel / 2595.0) - 1.0)),
              "bin_hz": torch.arange(N_FFT // 2 + 1) * (SAMPLE_RATE / N_FFT),
              "lowpass": torch.from_numpy(lowpass_response())}
    return {k: v.float().to(device) for k, v in tables.items()}


def _power(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, x.float() / 10.0)


def _db(power: torch.Tensor, dtype) -> torch.Tensor:
    return (10.0 * torch.log10(power.clamp_min(POWER_FLOOR))).to(dtype)


def _only(chosen: torch.Tensor, noised: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`noised` for the chosen examples, x itself (bit for bit) for the others."""
    return torch.where(chosen[:, None, None], noised, x)


def _lookup(table: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """A 1-D table read at fractional positions (linear interpolation, clamped to its ends)."""
    position = position.clamp(0, table.shape[0] - 1)
    low = position.floor()
    frac = position - low
    low = low.long()
    high = (low + 1).clamp(max=table.shape[0] - 1)
    return table[low] * (1 - frac) + table[high] * frac


def _along(values: torch.Tensor, position: torch.Tensor, dim: int,
           outside: float | None = None) -> torch.Tensor:
    """values (B, n_mels, T) read at fractional positions along `dim` (linear interpolation);
    `position` broadcasts to values' shape. A position outside the axis reads the nearest end,
    or `outside` where given."""
    n = values.shape[dim]
    low = position.floor()
    frac = (position - low).expand_as(values)
    low = low.long().expand_as(values)
    high = low + 1

    def read(index):
        got = torch.gather(values, dim, index.clamp(0, n - 1))
        if outside is not None:
            got = got.masked_fill((index < 0) | (index > n - 1), outside)
        return got
    return read(low) * (1 - frac) + read(high) * frac


def draw_white_noise(rng: np.random.Generator, batch: int, prob: float,
                     snr=PAPER_SNR) -> np.ndarray | None:
    """Per-example noise-to-signal amplitude ratios, uniform in `snr` (torchaudio-augmentations'
    Noise: the noise's std is uniform between min_snr and max_snr times the crop's), 0 for an
    example not chosen; None when none is."""
    chosen = rng.random(batch) < prob
    ratio = rng.uniform(snr[0], snr[1], batch) * chosen
    return ratio if chosen.any() else None


def apply_white_noise(x: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Add white noise's expected power at an amplitude `ratio` (B,) of the signal's: a floor
    in each band of ratio^2 x the crop's mean power per frame x the band's share of a white
    spectrum (its sum of filterbank weights over all bands'). The bands' triangles add up to 1
    across 0-11 kHz, so a frame's power summed over the bands is its spectrum's power, and the
    floor is exact in expectation for any signal; the noise's own fluctuation from frame to
    frame is left out. A band far above the floor keeps its value, one far below rises to it."""
    tables = mel_tables(x.device)
    power = _power(x)
    signal = power.sum(1).mean(1)  # (B,): the crop's mean power per frame
    floor = (ratio.float() ** 2 * signal)[:, None] * tables["share"][None, :]
    return _only(ratio > 0, _db(power + floor[:, :, None], x.dtype), x)


def draw_paper_gain(rng: np.random.Generator, batch: int, prob: float,
                    db=PAPER_GAIN_DB) -> np.ndarray | None:
    """Per-example gains in dB, uniform in `db` (Gain's -20 to -1 dB: always quieter), 0 for
    an example not chosen; None when none is."""
    chosen = rng.random(batch) < prob
    gain = rng.uniform(db[0], db[1], batch) * chosen
    return gain if chosen.any() else None


def apply_paper_gain(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """A gain is a dB offset on every bin; what falls below the front end's floor (-100 dB)
    stays there, as the waveform's power would."""
    noised = (x.float() + gain.float()[:, None, None]).clamp_min(DB_FLOOR).to(x.dtype)
    return _only(gain != 0, noised, x)


def draw_filter(rng: np.random.Generator, batch: int, prob: float, highpass_hz=PAPER_HIGHPASS_HZ,
                lowpass_hz=PAPER_LOWPASS_HZ) -> np.ndarray | None:
    """Per-example signed cutoffs in Hz: -f a high-pass at f, +f a low-pass at f, 0 none
    (HighLowPass: either with even odds, the cutoff a whole number of Hz, ends included)."""
    chosen = rng.random(batch) < prob
    high = rng.random(batch) < 0.5
    highpass = rng.integers(highpass_hz[0], highpass_hz[1] + 1, batch)
    lowpass = rng.integers(lowpass_hz[0], lowpass_hz[1] + 1, batch)
    cutoff = np.where(high, -highpass, lowpass) * chosen
    return cutoff.astype(np.float64) if chosen.any() else None


def filter_curve_db(cutoff: torch.Tensor, device) -> torch.Tensor:
    """(B,) signed cutoffs (`draw_filter`) -> (B, n_mels) each band's gain in dB: the filter's
    power response averaged over the band's FFT bins with the filterbank's weights (exact for
    a spectrum flat within a band). A low-pass is a high shelf down to the stop band (-60 dB
    and lower above 1.5 x the cutoff), a high-pass a low shelf."""
    tables = mel_tables(device)
    ratio = tables["bin_hz"][None, :] / cutoff.float().abs().clamp_min(1.0)[:, None]
    amplitude = _lookup(tables["lowpass"], ratio / LOWPASS_TABLE_STEP)
    amplitude = torch.where(cutoff[:, None] < 0, 1.0 - amplitude, amplitude)
    band = (amplitude.square() @ tables["fb"]) / tables["weight"]
    return 10.0 * torch.log10(band.clamp_min(1e-30))


def apply_filter(x: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
    """Add each example's filter curve (`filter_curve_db`) to every frame, down to the floor."""
    curve = filter_curve_db(cutoff, x.device)
    noised = (x.float() + curve[:, :, None]).clamp_min(DB_FLOOR).to(x.dtype)
    return _only(cutoff != 0, noised, x)


def draw_delay(rng: np.random.Generator, batch: int, prob: float,
               choices_ms=PAPER_DELAY_MS) -> np.ndarray | None:
    """Per-example delays in ms, one of `choices_ms` (Delay), 0 for an example not chosen."""
    chosen = rng.random(batch) < prob
    ms = np.asarray(choices_ms, dtype=np.float64)[rng.integers(0, len(choices_ms), batch)]
    return ms * chosen if chosen.any() else None


def apply_delay(x: torch.Tensor, ms: torch.Tensor, volume: float = PAPER_DELAY_VOLUME):
    """Delay's (x + volume * x delayed) / 2, in power: P(t) / 4 + volume^2 / 4 * P(t - d),
    d = int(ms * 22.05) samples as frames of 512 (8.6-19.4 frames), the echo starting from
    silence at the crop's start as the waveform's does (the echoes of a note and of its delay
    are taken as uncorrelated: their powers add). 6 dB quieter, plus an echo 12 dB down."""
    frames = torch.floor(ms.double() * SAMPLE_RATE / 1000.0) / HOP_LENGTH
    power = _power(x)
    position = torch.arange(x.shape[-1], device=x.device)[None, :] - frames[:, None]
    echo = _along(power, position.float()[:, None, :], 2, outside=0.0)
    return _only(ms > 0, _db(0.25 * power + volume ** 2 / 4 * echo, x.dtype), x)


def draw_pitch(rng: np.random.Generator, batch: int, prob: float,
               cents=PAPER_PITCH_CENTS) -> np.ndarray | None:
    """Per-example pitch shifts in cents, a whole number in `cents` (PitchShift: +-7
    semitones), 0 for an example not chosen or not moved."""
    chosen = rng.random(batch) < prob
    shift = rng.integers(cents[0], cents[1] + 1, batch) * chosen
    return shift.astype(np.float64) if chosen.any() else None


def apply_pitch(x: torch.Tensor, cents: torch.Tensor) -> torch.Tensor:
    """Resample the mel axis: band m (centre f_m) takes the value the input had at f_m / a,
    a = 2^(cents / 1200), interpolated in dB between the two nearest bands; a band whose source
    lies above 11,025 Hz (a shift down: nothing was recorded there) is silence, -100 dB; below
    the first band's centre, the first band. Band values move and keep their level (a partial
    stays a partial)."""
    tables = mel_tables(x.device)
    factor = torch.pow(2.0, cents.float() / 1200.0)
    source_hz = tables["centre_hz"][None, :] / factor[:, None]  # (B, n_mels)
    spacing = (_mel(F_MAX) - _mel(F_MIN)) / (N_MELS + 1)
    position = (_mel(source_hz) - _mel(F_MIN)) / spacing - 1.0
    moved = _along(x.float(), position.clamp(0, N_MELS - 1)[:, :, None], 1)
    moved = moved.masked_fill((source_hz > F_MAX)[:, :, None], DB_FLOOR).to(x.dtype)
    return _only(cents != 0, moved, x)


def draw_reverb(rng: np.random.Generator, batch: int, prob: float) -> np.ndarray | None:
    """(4, B): chosen (1/0), reverberance, HF damping, room scale, each a whole number 0-99
    (Reverb's torch.randint(0, 100) for each); None when no example is chosen."""
    chosen = rng.random(batch) < prob
    settings = rng.integers(0, 100, (3, batch))
    if not chosen.any():
        return None
    return np.concatenate([chosen[None], settings]).astype(np.float64)


def reverb_kernel(settings: torch.Tensor, frames: int, centre_hz: torch.Tensor) -> torch.Tensor:
    """(3, B) reverberance, HF damping, room scale -> (B, n_mels, frames) the power that an
    impulse at lag 0 leaves at lags 0, 1, ... frames (float64; lag 0 holds the dry 1).

    sox's settings as sox computes them: comb feedback g = 1 - exp((r - b) / (a b)) (0.30 at
    r 0 to 0.98 at r 100), damping d = 0.2 + 0.3 h / 100 (a one-pole low-pass in each comb's
    loop), comb lengths scaled by 0.1 + 0.9 s / 100. A round trip of a comb (L samples, their
    mean) keeps rho = g^2 |(1 - d) / (1 - d e^(-i w))|^2 of the power at the band's centre w,
    so the tail decays exponentially from lag L, faster at high frequency; its energy is
    SOX_WET_POWER / (1 - rho) of the dry sound's (-15 dB at g 0.3 to -2 dB at g 0.98), shared
    among frames by that exponential."""
    reverberance, damping, room = settings.double()
    a = -1.0 / math.log(1 - 0.3)
    b = 100.0 / (math.log(1 - 0.98) * a + 1)
    feedback = 1.0 - torch.exp((reverberance - b) / (a * b))
    d = (damping / 100.0 * 0.3 + 0.2)[:, None]
    loop = (float(np.mean(SOX_COMB_SAMPLES)) * SAMPLE_RATE / 44100.0
            * (room / 100.0 * 0.9 + 0.1) / HOP_LENGTH)  # frames
    omega = 2 * math.pi * centre_hz.double() / SAMPLE_RATE
    rho = feedback[:, None] ** 2 * (1 - d) ** 2 / (1 - 2 * d * torch.cos(omega)[None, :] + d ** 2)
    wet = SOX_WET_POWER / (1.0 - rho)  # (B, n_mels)
    lags = torch.arange(frames + 1, device=settings.device, dtype=torch.float64)
    loop = loop[:, None, None]
    arrived = 1.0 - rho[:, :, None] ** ((lags - loop).clamp_min(0) / loop)  # (B, M, frames+1)
    kernel = wet[:, :, None] * (arrived[..., 1:] - arrived[..., :-1])
    kernel[..., 0] += 1.0
    return kernel


def smear(power: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal convolution of power (B, n_mels, T) with kernel (B, n_mels or 1, T) along time:
    out[t] = sum_j kernel[j] power[t - j], in float64 by FFT (exact to ~1e-16 of the largest
    power: no energy before its cause above the -100 dB floor)."""
    frames = power.shape[-1]
    n = 2 * frames
    spectrum = torch.fft.rfft(power.double(), n) * torch.fft.rfft(kernel.double(), n)
    return torch.fft.irfft(spectrum, n)[..., :frames]


def apply_reverb(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Reverb as a smearing of each band's power forward in time (`reverb_kernel`): the dry
    sound plus its decaying tail, powers summed; the tail of what came before the crop is
    absent, as in the waveform chain (the crop is cut first)."""
    kernel = reverb_kernel(params[1:], x.shape[-1], mel_tables(x.device)["centre_hz"])
    return _only(params[0] > 0, _db(smear(_power(x), kernel), x.dtype), x)


def draw_stretch(rng: np.random.Generator, batch: int, prob: float,
                 kept=STRETCH_KEPT) -> np.ndarray | None:
    """(2, B): the part of the crop kept (uniform in `kept`; 1 for an example not chosen) and
    where it starts, as a fraction of the room left; None when no example is chosen."""
    chosen = rng.random(batch) < prob
    part = np.where(chosen, rng.uniform(kept[0], kept[1], batch), 1.0)
    start = rng.random(batch)
    return np.stack([part, start]) if chosen.any() else None


def apply_stretch(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """A random resized crop along time: a window of `part` of the crop's frames, stretched to
    all of them (linear interpolation between frames, in dB): the same frame count, the music
    slowed to `part` of its speed, its pitch kept."""
    part, start = params[0].float(), params[1].float()
    frames = x.shape[-1]
    first = start * (frames - 1) * (1 - part)
    position = first[:, None] + torch.arange(frames, device=x.device)[None, :] * part[:, None]
    stretched = _along(x.float(), position[:, None, :], 2)
    return _only(part < 1, stretched.to(x.dtype), x)


def time_stretch(x: torch.Tensor, rng: np.random.Generator, prob: float,
                 kept=STRETCH_KEPT) -> torch.Tensor:
    params = draw_stretch(rng, x.shape[0], prob, kept)
    if params is None:
        return x
    return apply_stretch(x, torch.as_tensor(params, device=x.device))


# name -> (draw, apply, probability), in the published chain's order
PAPER_CHAIN = {
    "white_noise": (draw_white_noise, apply_white_noise, 0.3),
    "paper_gain": (draw_paper_gain, apply_paper_gain, 0.2),
    "filter": (draw_filter, apply_filter, 0.8),
    "delay": (draw_delay, apply_delay, 0.5),
    "pitch": (draw_pitch, apply_pitch, 0.4),
    "reverb": (draw_reverb, apply_reverb, 0.3),
}


def paper_noise(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The paper's chain, one transform after the other, each with its own probability."""
    for draw, apply, prob in PAPER_CHAIN.values():
        params = draw(rng, x.shape[0], prob)
        if params is not None:
            x = apply(x, torch.as_tensor(params, device=x.device))
    return x


class MelNoise(nn.Module):
    """The student's input noise: the chosen transforms, each applied with probability `prob`
    (`paper`: its chain, each transform with the paper's own probability).

    The order: stretch, the paper's chain, shift, gain, mixup, specaugment. In training mode
    `forward(x, targets, weights)` returns noised (x, targets, weights); in eval mode it returns
    its inputs unchanged.
    """

    def __init__(self, kinds=NOISE_KINDS, prob: float = 0.5, seed: int = 0):
        super().__init__()
        self.kinds = tuple(kinds)
        for kind in self.kinds:
            if kind not in NOISE_KINDS + EXTRA_KINDS:
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
        if STRETCH in self.kinds:
            drawn[STRETCH] = draw_stretch(self.rng, batch, self.prob)
        if PAPER in self.kinds:
            for name, (draw, _, prob) in PAPER_CHAIN.items():
                drawn[name] = draw(self.rng, batch, prob)
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
        if STRETCH in on_device:
            x = apply_stretch(x, on_device[STRETCH])
        for name, (_, apply, _) in PAPER_CHAIN.items():
            if name in on_device:
                x = apply(x, on_device[name])
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
