"""The log-mel front end shared by preprocessing, training and tagging.

Exactly the published model's input: power mel spectrogram (n_fft 1024, Hann 1024, hop 512,
centred reflect padding, 128 HTK mel bands 0-11,025 Hz, no filter normalisation) followed by
10*log10(max(power, 1e-10)) with no top-dB clipping.
"""
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
POWER_FLOOR = 1e-10  # dB floor = 10*log10(POWER_FLOOR) = -100 dB
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
        "db_floor": 10.0 * torch.log10(torch.tensor(POWER_FLOOR)).item(),
    }


def num_frames(num_samples: int) -> int:
    """Frames the centred STFT gives for a waveform of `num_samples` samples."""
    return num_samples // HOP_LENGTH + 1


def seconds_to_frames(seconds: float) -> int:
    return num_frames(int(round(seconds * SAMPLE_RATE)))


class LogMel(nn.Module):
    """(batch, samples) or (samples,) float waveform at 22,050 Hz -> (..., 128, frames) dB.

    The window and filterbank are torchaudio's MelSpectrogram buffers (the published model's
    `spec.*` entries); the forward pass is the same STFT written as frames -> rfft -> |.|^2 ->
    filterbank -> dB, which is twice as fast on CPU as MelSpectrogram's stft/abs/pow chain
    (bench/preprocess.py) and equal to it within 1e-5 dB.
    """

    def __init__(self):
        super().__init__()
        self.spec = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP_LENGTH,
            f_min=F_MIN, f_max=F_MAX, n_mels=N_MELS, power=2.0, center=True,
            pad_mode="reflect", norm=None, mel_scale="htk",
        )

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        leading, samples = waveform.shape[:-1], waveform.shape[-1]
        padded = F.pad(waveform.float().reshape(-1, 1, samples), (N_FFT // 2, N_FFT // 2),
                       mode="reflect")[:, 0]
        frames = padded.unfold(-1, N_FFT, HOP_LENGTH) * self.spec.spectrogram.window
        spectrum = torch.fft.rfft(frames)
        power = spectrum.real.square() + spectrum.imag.square()  # (batch, frames, n_fft/2 + 1)
        mel_db = 10.0 * torch.log10((power @ self.spec.mel_scale.fb).clamp_min(POWER_FLOOR))
        return mel_db.transpose(-1, -2).reshape(*leading, N_MELS, -1)
