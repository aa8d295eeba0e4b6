"""Decoding: any audio file libsndfile reads -> mono float32 waveform at the front end's rate.

libsndfile (through soundfile) reads WAV, FLAC, Ogg Vorbis/Opus and MP3. Other sample rates are
converted with soxr at high quality; multi-channel audio is averaged to mono.
"""
from pathlib import Path

import numpy as np
import soundfile
import soxr

from mtt.frontend import SAMPLE_RATE


class AudioError(Exception):
    """A file that cannot be used as audio; `str()` is "PATH: reason"."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def load_audio(path) -> np.ndarray:
    """Decode `path` to a 1-D float32 waveform at `SAMPLE_RATE` Hz, channels averaged.

    Raises `AudioError` for a missing, unreadable or non-audio file, a file without samples, or
    samples that are not finite (NaN or infinity in a float file).
    """
    path = _existing_file(path)
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise AudioError(path, f"not readable as audio ({_libsndfile_reason(error)})") from error
    except Exception as error:  # e.g. a decoder failing half-way through
        raise AudioError(path, f"not readable as audio ({_one_line(error)})") from error
    if samples.shape[0] == 0:
        raise AudioError(path, "no audio samples")
    _check_rate(path, rate)
    mono = _average_channels(samples)
    if not np.isfinite(mono).all():
        raise AudioError(path, "non-finite samples (NaN or infinity)")
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _existing_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    return path


BLOCK_FRAMES = 1 << 18  # frames decoded at a time by stream_audio (about 6 s at 44.1 kHz)
# Sample rates read (a header's claim: 1 Hz would make resampling to 22,050 Hz multiply a small
# file's samples 22,050-fold, issue 33), and at most this many samples of all channels per block.
MIN_RATE, MAX_RATE = 1_000, 768_000
BLOCK_SAMPLES = 2 * BLOCK_FRAMES


def _check_rate(path, rate) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(path, f"sample rate {rate} Hz, outside the {MIN_RATE:,}-{MAX_RATE:,} Hz "
                               "read")
TRUNCATED = 0.95  # decoding fewer than this share of the frames the header declares: truncated


def stream_audio(path, block_frames=BLOCK_FRAMES):
    """Yield `path` as consecutive 1-D float32 blocks at `SAMPLE_RATE` Hz, channels averaged,
    decoded and resampled a block at a time: the same samples as `load_audio`, in bounded memory.

    Raises `AudioError` as `load_audio` does, and for a file that ends well before the length its
    header declares (a truncated MP3 decodes only up to the cut).
    """
    path = _existing_file(path)
    try:
        with soundfile.SoundFile(path) as f:
            rate, declared, decoded = f.samplerate, f.frames, 0
            _check_rate(path, rate)
            # a header's channel count (up to 1024) does not scale the buffer
            block_frames = max(1, min(block_frames, BLOCK_SAMPLES // max(1, f.channels)))
            resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(
                rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            buffer = np.empty((block_frames, f.channels), np.float32)  # reused (blocks are copies)
            while True:
                block = f.read(block_frames, dtype="float32", always_2d=True, out=buffer)
                last = block.shape[0] < block_frames
                decoded += block.shape[0]
                mono = _average_channels(block)
                if not np.isfinite(mono).all():
                    raise AudioError(path, "non-finite samples (NaN or infinity)")
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                if mono.size:
                    yield np.ascontiguousarray(mono, dtype=np.float32)
                if last:
                    break
    except AudioError:
        raise
    except soundfile.LibsndfileError as error:
        raise AudioError(path, f"not readable as audio ({_libsndfile_reason(error)})") from error
    except Exception as error:  # e.g. a decoder failing half-way through
        raise AudioError(path, f"not readable as audio ({_one_line(error)})") from error
    if decoded == 0:
        raise AudioError(path, "no audio samples")
    if decoded < TRUNCATED * declared:
        raise AudioError(path, f"truncated: decoded {decoded / rate:.2f} s of the "
                               f"{declared / rate:.2f} s its header declares")


def _average_channels(samples: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,). Adds columns: numpy's mean over the short last axis
    is ~40x slower, a third of the whole preprocessing time for stereo MP3s."""
    mono = samples[:, 0].copy()
    for channel in range(1, samples.shape[1]):
        mono += samples[:, channel]
    if samples.shape[1] > 1:
        mono /= np.float32(samples.shape[1])
    return mono


def _libsndfile_reason(error: soundfile.LibsndfileError) -> str:
    # libsndfile answers "file does not exist or is not a regular file" for data it cannot parse
    # at all; the file was checked to exist above, so say what it really means.
    if "does not exist" in error.error_string:
        return "unrecognised format or corrupt data"
    return _one_line(error.error_string)


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__
