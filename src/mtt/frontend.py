"""The log-mel front end shared by preprocessing, training and tagging.

Exactly the published model's input: power mel spectrogram (n_fft 1024, Hann 1024, hop 512,
centred reflect padding, 128 HTK mel bands 0-11,025 Hz, no filter normalisation) followed by
10*log10(max(power, 1e-10)) with no top-dB clipping: silence is the dB floor, -100 dB.
"""
import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

SAMPLE_RATE = 22050
N_FFT = 1024
HOP_LENGTH = 512
N_MELS = 128
F_MIN = 0.0
F_MAX = 11025.0
POWER_FLOOR = 1e-10
DB_FLOOR = 10.0 * math.log10(POWER_FLOOR)  # -100.0: silence, and the padding of short songs
CROP_SECONDS = 10.0


def frontend_params() -> dict:
    """Every front-end parameter, as stored in mel shards and checkpoints."""
    return {
        "sample_rate": SAMPLE_RATE,
        "n_fft": N_FFT,
        "win_length": N_FFT,
        "hop_length": HOP_LENGTH,
        "n_mels": N_MELS,
        "f_min": F_MIN,
        "f_max": F_MAX,
        "mel_scale": "htk",
        "power_floor": POWER_FLOOR,
        "db_floor": DB_FLOOR,
    }


def num_frames(num_samples: int) -> int:
    """Frames the centred STFT gives for a waveform of `num_samples` samples."""
    return num_samples // HOP_LENGTH + 1


def seconds_to_frames(seconds: float) -> int:
    return num_frames(int(round(seconds * SAMPLE_RATE)))


MEL_GROUPS = 8  # the filterbank is applied as this many band-diagonal blocks (LogMel)
FRAME_BLOCK = 256  # frames windowed and transformed at a time (LogMel): 1 MiB each


class LogMel(nn.Module):
    """(batch, samples) or (samples,) float waveform at 22,050 Hz -> (..., 128, frames) dB.

    The window and filterbank are torchaudio's MelSpectrogram buffers (the published model's
    `spec.*` entries); the forward pass is the same STFT written as frames -> rfft -> |.|^2 ->
    filterbank -> dB, equal to MelSpectrogram + AmplitudeToDB within 2e-5 dB and 2.3x as fast
    on CPU (docs/OPTIMIZATION_LOG.md). Frames are windowed and transformed in blocks of `FRAME_BLOCK`, so a
    block's spectrum is still in cache when it is squared. The filterbank is almost empty
    (each FFT bin feeds at most two of the 128 triangles: 1,011 of its 65,664 weights are not
    zero), so it is applied as `MEL_GROUPS` products of a group of bands with only the bins
    they cover: the same non-zero terms (summed in another order, float32 rounding) for 1/8 of
    the dense product's multiply-adds.
    """

    def __init__(self):
        super().__init__()
        self.spec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP_LENGTH,
            f_min=F_MIN, f_max=F_MAX, n_mels=N_MELS, power=2.0, center=True,
            pad_mode="reflect", norm=None, mel_scale="htk",
        )
        self._blocks_of = None  # (filterbank identity, blocks), see _mel_blocks

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        leading, samples = waveform.shape[:-1], waveform.shape[-1]
        db = self.frames_db(reflect_pad(waveform.float().reshape(-1, samples)))
        return db.transpose(-1, -2).reshape(*leading, N_MELS, -1)

    @torch.no_grad()
    def frames_db(self, padded: torch.Tensor) -> torch.Tensor:
        """(..., samples) waveform already padded by N_FFT // 2 on both sides (as the centred
        STFT pads) -> (..., frames, 128) dB, contiguous: the frames every hop of it."""
        window, fb = self.spec.spectrogram.window, self.spec.mel_scale.fb
        frames = padded.unfold(-1, N_FFT, HOP_LENGTH)  # a view: windowed a block at a time
        power = torch.empty(*frames.shape[:-1], N_FFT // 2 + 1, dtype=window.dtype,
                            device=window.device)
        for start in range(0, frames.shape[-2], FRAME_BLOCK):
            spectrum = torch.fft.rfft(frames[..., start:start + FRAME_BLOCK, :] * window)
            squares = torch.view_as_real(spectrum).square_()  # re^2, im^2 side by side
            torch.add(squares[..., 0], squares[..., 1],
                      out=power[..., start:start + FRAME_BLOCK, :])
        mel = torch.cat([power[..., k0:k1] @ fb[k0:k1, b0:b1]
                         for b0, b1, k0, k1 in self._mel_blocks(fb)], dim=-1)
        return torch.log10(mel.clamp_min_(POWER_FLOOR)).mul_(10.0)

    def _mel_blocks(self, fb: torch.Tensor) -> list[tuple[int, int, int, int]]:
        """(first band, end band, first bin, end bin) of each group of bands: the bins with a
        non-zero weight in that group. Recomputed if the filterbank tensor is replaced or
        changed in place."""
        key = (fb.data_ptr(), fb._version, fb.shape, fb.device)
        if self._blocks_of is None or self._blocks_of[0] != key:
            self._blocks_of = (key, mel_blocks(fb, MEL_GROUPS))
        return self._blocks_of[1]


def mel_blocks(fb: torch.Tensor, groups: int) -> list[tuple[int, int, int, int]]:
    """Split the (bins, bands) filterbank's bands into `groups` consecutive groups; each group
    with the range of bins where any of its bands has a non-zero weight."""
    nonzero = (fb != 0).cpu()
    bands = fb.shape[1]
    edges = [round(bands * g / groups) for g in range(groups + 1)]
    blocks = []
    for b0, b1 in zip(edges[:-1], edges[1:]):
        if b1 == b0:
            continue
        bins = nonzero[:, b0:b1].any(dim=1).nonzero().flatten()
        k0, k1 = (int(bins.min()), int(bins.max()) + 1) if len(bins) else (0, 1)
        blocks.append((b0, b1, k0, k1))
    return blocks


def reflect_pad(waveform: torch.Tensor) -> torch.Tensor:
    """(..., samples) -> (..., samples + N_FFT): the centred STFT's reflect padding by
    N_FFT // 2 each side (F.pad's `reflect`, which is 8x slower on a long 1-D signal)."""
    half = N_FFT // 2
    if waveform.shape[-1] <= half:  # F.pad raises its own error for too short an input
        return F.pad(waveform.unsqueeze(-2), (half, half), mode="reflect").squeeze(-2)
    return torch.cat([waveform[..., 1:half + 1].flip(-1), waveform,
                      waveform[..., -half - 1:-1].flip(-1)], dim=-1)
