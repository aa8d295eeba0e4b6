import numpy as np
import pytest
import soundfile

from conftest import REAL_CLIPS, sine, write_bad_files
from mtt.audio import AudioError, load_audio
from mtt.frontend import SAMPLE_RATE


@pytest.mark.parametrize("name", sorted(REAL_CLIPS))
def test_real_clips_decode_to_mono_float32_at_22050(audio_dir, name):
    wave = load_audio(audio_dir / name)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.flags.c_contiguous
    assert np.isfinite(wave).all()
    assert abs(len(wave) / SAMPLE_RATE - REAL_CLIPS[name]) < 0.5
    assert 0.01 < np.abs(wave).max() <= 1.0  # real music, not silence or garbage


def test_stereo_wav_is_the_mono_average_of_the_reference(reference_dir):
    wave = load_audio(reference_dir / "TRABCDE128F111GH11.wav")
    expected = np.load(reference_dir / "clip_mono_22050.npy")
    assert wave.shape == expected.shape
    np.testing.assert_allclose(wave, expected, atol=1e-7)


def test_16khz_mp3_is_resampled_to_22050(audio_dir):
    path = audio_dir / "mtat_joram-moments_of_clarity-08-solipsism-59-88.mp3"
    native, rate = soundfile.read(path, dtype="float32")
    assert rate == 16000
    wave = load_audio(path)
    assert abs(len(wave) - len(native) * SAMPLE_RATE / rate) <= 1


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_resampling_keeps_a_sine_exact(tmp_path, rate):
    path = tmp_path / f"sine_{rate}.wav"
    soundfile.write(path, sine(440.0, rate, 2.0), rate, subtype="FLOAT")
    wave = load_audio(path)
    assert abs(len(wave) - 2.0 * SAMPLE_RATE) <= 1
    expected = sine(440.0, SAMPLE_RATE, 2.0)[:len(wave)]
    middle = slice(1000, len(wave) - 1000)  # away from the resampler's edge transients
    assert np.abs(wave[middle] - expected[middle]).max() < 2e-3


def test_8bit_wav(tmp_path):
    path = tmp_path / "u8.wav"
    soundfile.write(path, sine(440.0, SAMPLE_RATE, 1.0), SAMPLE_RATE, subtype="PCM_U8")
    wave = load_audio(path)
    assert len(wave) == SAMPLE_RATE
    assert np.abs(wave - sine(440.0, SAMPLE_RATE, 1.0)).max() < 1.5 / 128  # 8-bit steps


def test_six_channels_are_averaged(tmp_path):
    path = tmp_path / "six.wav"
    channels = np.zeros((SAMPLE_RATE, 6))
    channels[:, 0] = 0.6
    channels[:, 3] = -0.3
    soundfile.write(path, channels, SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), 0.05, atol=1e-7)


def test_silence_is_valid_audio(tmp_path):
    path = tmp_path / "silence.flac"
    soundfile.write(path, np.zeros(SAMPLE_RATE * 2), SAMPLE_RATE)
    wave = load_audio(path)
    assert len(wave) == 2 * SAMPLE_RATE and not wave.any()


def test_error_names_the_file_and_the_reason(tmp_path):
    path = tmp_path / "gone.mp3"
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert caught.value.path == str(path)
    assert caught.value.reason == "file not found"
    assert str(caught.value) == f"{path}: file not found"


def test_bad_files_raise_audio_error(tmp_path, audio_dir):
    for name, reason_word in write_bad_files(tmp_path, audio_dir).items():
        with pytest.raises(AudioError) as caught:
            load_audio(tmp_path / name)
        assert reason_word in caught.value.reason, (name, caught.value.reason)
        assert str(caught.value).startswith(f"{tmp_path / name}: ")


def test_zero_sample_wav_raises(tmp_path):
    path = tmp_path / "zero.wav"
    soundfile.write(path, np.zeros(0), SAMPLE_RATE)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)
