"""Mel-domain noise for the student: shapes kept, each transform does its job on a known input
(the paper's chain too), off at eval, the same for a seed and after a resume."""
import math

import numpy as np
import pytest
import torch

from mtt.config import NOISE_KINDS, parse_noise_kinds
from mtt.training.noise import MelNoise, freq_shift, mixup, random_gain, spec_augment


def batch(b=6, frames=50):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 128, frames, generator=g) * 10 - 50, torch.rand(b, 4, generator=g)


def test_every_kind_keeps_shapes_and_dtype():
    x, y = batch()
    noise = MelNoise(prob=1.0, seed=0)
    nx, ny, nw = noise(x, y, torch.ones_like(y))
    assert nx.shape == x.shape and nx.dtype == x.dtype
    assert ny.shape == y.shape and nw.shape == y.shape
    assert not torch.equal(nx, x)
    assert torch.isfinite(nx).all()


def test_noise_is_off_in_eval_mode_and_at_probability_zero():
    x, y = batch()
    noise = MelNoise(prob=1.0).eval()
    nx, ny, _ = noise(x, y)
    assert nx is x and ny is y
    nx, ny, _ = MelNoise(prob=0.0).train()(x, y)
    assert torch.equal(nx, x) and torch.equal(ny, y)


def test_spec_augment_masks_bands_and_frames_with_the_mean():
    x, _ = batch(b=1, frames=200)
    out = spec_augment(x, np.random.default_rng(1), prob=1.0, max_time=0.2, max_freq=20)
    changed = out != x
    assert changed.any()
    assert torch.allclose(out[changed], x.mean().expand(int(changed.sum())))
    rows = changed[0].all(dim=1)  # a masked band is masked in every frame
    cols = changed[0].all(dim=0)
    assert (changed[0] == (rows[:, None] | cols[None, :])).all()


def test_gain_adds_one_offset_per_example():
    x, _ = batch()
    out = random_gain(x, np.random.default_rng(2), prob=1.0, max_db=6.0)
    diff = out - x
    per_example = diff[:, 0, 0]
    assert torch.allclose(diff, per_example[:, None, None].expand_as(diff), atol=1e-4)
    assert per_example.abs().max() <= 6.0 and per_example.abs().min() > 0


def test_freq_shift_moves_bands_and_repeats_the_edge():
    x = torch.arange(128.0)[None, :, None].repeat(3, 1, 5)
    out = freq_shift(x, np.random.default_rng(3), prob=1.0, max_bins=4)
    for b in range(3):
        shift = int(out[b, 64, 0] - 64) * -1  # out[f] = x[f - shift]
        assert abs(shift) <= 4
        assert torch.equal(out[b, 10:118, 0], x[b, 10 - shift:118 - shift, 0])


def test_mixup_mixes_targets_and_masks_consistently():
    x, y = batch()
    w = torch.ones_like(y)
    w[0] = 0  # example 0's targets are not to be trusted
    nx, ny, nw = mixup(x, y, np.random.default_rng(4), prob=1.0, weights=w)
    assert ((ny >= y.min() - 1e-6) & (ny <= y.max() + 1e-6)).all()
    assert not torch.equal(ny, y)
    assert nw[0].sum() == 0  # a mix with example 0 stays masked
    assert torch.isfinite(nx).all() and nx.max() <= x.max() + 1e-3


def test_same_seed_same_noise_and_state_round_trip():
    x, y = batch()
    a, b = MelNoise(seed=5), MelNoise(seed=5)
    assert torch.equal(a(x, y)[0], b(x, y)[0])
    state = a.rng_state()
    first = a(x, y)[0]
    a.set_rng_state(state)
    assert torch.equal(a(x, y)[0], first)


def test_parse_noise_kinds():
    assert parse_noise_kinds("specaugment, gain") == ("specaugment", "gain")
    assert parse_noise_kinds("none") == ()
    with pytest.raises(ValueError, match="reverb"):
        parse_noise_kinds("gain,reverb")


def _spec_augment_per_example(x, rng, prob, max_time=0.1, max_freq=16, n_masks=2):
    """SpecAugment as it was written before the masks were vectorized: a loop per example and
    per mask (the reference the vectorized masks must equal, draw for draw)."""
    batch, n_mels, frames = x.shape
    chosen = rng.random(batch) < prob
    if not chosen.any():
        return x
    mask = torch.zeros(batch, n_mels, frames, dtype=torch.bool)
    freq_idx, time_idx = torch.arange(n_mels), torch.arange(frames)
    max_t = max(1, int(max_time * frames))
    for b in np.flatnonzero(chosen):
        for _ in range(n_masks):
            width = int(rng.integers(0, max_freq + 1))
            start = int(rng.integers(0, n_mels - width + 1))
            mask[b] |= ((freq_idx >= start) & (freq_idx < start + width))[:, None]
            width = int(rng.integers(0, max_t + 1))
            start = int(rng.integers(0, frames - width + 1))
            mask[b] |= ((time_idx >= start) & (time_idx < start + width))[None, :]
    return torch.where(mask, x.mean(dim=(1, 2), keepdim=True).expand_as(x), x)


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_vectorized_masks_equal_the_per_example_loop_draw_for_draw(prob):
    x, _ = batch(b=16, frames=120)
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    assert torch.equal(spec_augment(x, a, prob), _spec_augment_per_example(x, b, prob))
    assert a.random() == b.random()  # the generator is left where the loop left it


def test_the_module_applies_the_transforms_of_the_separate_functions():
    """MelNoise draws every parameter first and sends them in one copy: the same result, and
    the same generator state after, as the transforms called one after the other."""
    x, y = batch(b=8, frames=60)
    w = (torch.rand(8, 4, generator=torch.Generator().manual_seed(1)) > 0.3).float()
    for seed in range(5):
        noise = MelNoise(prob=0.5, seed=seed)
        got = noise(x, y, w)
        rng = np.random.default_rng(seed)
        ex = freq_shift(x, rng, 0.5)
        ex = random_gain(ex, rng, 0.5)
        ex, ey, ew = mixup(ex, y, rng, 0.5, weights=w)
        ex = spec_augment(ex, rng, 0.5)
        for g, e in zip(got, (ex, ey, ew)):
            assert torch.equal(g, e)
        assert noise.rng.random() == rng.random()


# ---- the paper's chain (`--noise paper`) and `stretch`: each transform on a known input ------

from mtt.training import noise as paper  # noqa: E402  (the module, for its paper-chain names)
from mtt.frontend import DB_FLOOR, HOP_LENGTH, LogMel, SAMPLE_RATE  # noqa: E402

CPU = torch.device("cpu")


def band_db(power: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(power.clamp_min(1e-10))


def one_band(band=100, frames=20, level=0.0):
    """One band at `level` dB in every frame, every other band silent (-100 dB)."""
    x = torch.full((1, 128, frames), DB_FLOOR)
    x[0, band] = level
    return x


def test_white_noise_is_a_floor_at_the_drawn_snr():
    """A quiet band rises to ratio^2 x the crop's power x its share of a white spectrum; a loud
    band is unchanged; a white crop gains 10 log10(1 + ratio^2) dB in every band."""
    share = paper.mel_tables(CPU)["share"]
    x = one_band(level=0.0)  # 1 unit of power per frame
    out = paper.apply_white_noise(x, torch.tensor([0.4]))
    floor = band_db(0.16 * share + 1e-10)
    quiet = torch.arange(128) != 100
    assert torch.allclose(out[0, quiet], floor[quiet, None].expand(-1, 20), atol=1e-3)
    assert (out[0, 100] - x[0, 100]).abs().max() < 0.05  # loud: ~unchanged
    spread = torch.pow(10, out[0, quiet, 0] / 10).sum()  # the noise: 0.16 of the power
    assert torch.allclose(spread, 0.16 * (1 - share[100]), rtol=1e-3)
    white = band_db(share)[None, :, None].expand(1, 128, 5) + 30.0
    out = paper.apply_white_noise(white, torch.tensor([0.5]))
    assert torch.allclose(out - white, torch.full_like(white, 10 * math.log10(1.25)), atol=1e-3)
    ratio = paper.draw_white_noise(np.random.default_rng(0), 20000, 0.3)
    chosen = ratio > 0
    assert abs(chosen.mean() - 0.3) < 0.015
    assert ratio[chosen].min() >= 0.3 and ratio[chosen].max() <= 0.5


def test_white_noise_floor_matches_noise_added_to_the_waveform():
    """A 1 kHz tone plus white noise at 0.4 x its std, through the front end: the bands away
    from the tone sit at the floor apply_white_noise predicts from the clean tone's mel."""
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    noisy = tone + rng.normal(0, 0.4 * tone.std(), tone.shape)
    logmel = LogMel()
    clean = logmel(torch.tensor(tone, dtype=torch.float32))[None]
    real = logmel(torch.tensor(noisy, dtype=torch.float32))
    predicted = paper.apply_white_noise(clean, torch.tensor([0.4]))[0]
    mean_db = lambda m: band_db(torch.pow(10, m / 10).mean(-1))  # noqa: E731
    far = torch.cat([torch.arange(5, 40), torch.arange(60, 125)])  # away from the tone
    assert (mean_db(real)[far] - mean_db(predicted)[far]).abs().max() < 1.0


def test_paper_gain_is_one_quieter_offset_per_example_down_to_the_floor():
    x = one_band(level=-10.0).repeat(4, 1, 1)
    gain = paper.draw_paper_gain(np.random.default_rng(1), 4, 1.0)
    assert (gain >= -20).all() and (gain <= -1).all()
    out = paper.apply_paper_gain(x, torch.as_tensor(gain))
    assert torch.allclose(out[:, 100], (-10 + torch.as_tensor(gain, dtype=torch.float32))[:, None]
                          .expand(-1, 20))
    assert (out[:, :100] == DB_FLOOR).all()  # silence stays at the floor, not below
    none = paper.apply_paper_gain(x, torch.zeros(4, dtype=torch.float64))
    assert torch.equal(none, x)


def test_filters_are_shelves_of_the_published_filters_response():
    """Low-pass at 2200 Hz: ~0 dB well below, -6 dB about the cutoff, the stop band -60 dB and
    lower from 1.5 x; the high-pass at 1000 Hz its mirror. Frequency-dependent, the same curve
    in every frame."""
    centre = paper.mel_tables(CPU)["centre_hz"]
    curves = paper.filter_curve_db(torch.tensor([2200.0, -1000.0]), CPU)
    low, high = curves
    assert low[centre < 1700].abs().max() < 0.1 and high[centre > 1300].abs().max() < 0.1
    assert low[centre > 3300].max() < -60 and high[centre < 500].max() < -60
    at = lambda hz: int((centre - hz).abs().argmin())  # noqa: E731
    assert -9 < low[at(2200)] < -3 and -9 < high[at(1000)] < -3
    x = torch.zeros(2, 128, 7)
    out = paper.apply_filter(x, torch.tensor([2200.0, -1000.0]))
    assert torch.allclose(out, curves.clamp_min(DB_FLOOR)[:, :, None].expand_as(out))
    cutoff = paper.draw_filter(np.random.default_rng(2), 20000, 0.8)
    assert abs((cutoff != 0).mean() - 0.8) < 0.015
    assert abs((cutoff < 0).mean() - 0.4) < 0.015
    assert (-cutoff[cutoff < 0]).min() >= 200 and (-cutoff[cutoff < 0]).max() <= 1200
    assert cutoff[cutoff > 0].min() >= 2200 and cutoff[cutoff > 0].max() <= 4000


def test_filter_curve_matches_the_filter_applied_to_the_waveform():
    """White noise low-passed at 3000 Hz with the published filter's taps (julius's
    windowed sinc), through the front end: each band's power ratio is the curve within 1 dB
    down to -40 dB."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.1, SAMPLE_RATE * 3)
    cutoff = 3000 / SAMPLE_RATE
    half = int(8 / cutoff / 2)
    time = np.arange(-half, half + 1)
    taps = 2 * cutoff * np.hanning(2 * half + 1) * np.sinc(2 * cutoff * time)
    filtered = np.convolve(noise, taps / taps.sum(), mode="same")
    logmel = LogMel()

    def mean_power(wave):
        return torch.pow(10, logmel(torch.tensor(wave, dtype=torch.float32)) / 10).mean(-1)
    measured = band_db(mean_power(filtered)) - band_db(mean_power(noise))
    curve = paper.filter_curve_db(torch.tensor([3000.0]), CPU)[0]
    keep = curve > -40
    assert (measured[keep] - curve[keep]).abs().max() < 1.0


def impulse(frames=60, at=5, level=0.0):
    """Every band silent (-100 dB) except one frame at `level` dB: an impulse along time."""
    x = torch.full((1, 128, frames), DB_FLOOR)
    x[0, :, at] = level
    return x


def test_delay_adds_a_later_echo_12_db_down_and_halves_the_amplitude():
    x = impulse(at=5)
    out = paper.apply_delay(x, torch.tensor([200.0]))  # 4410 samples: 8.61 frames
    assert (out[0, :, :5] == DB_FLOOR).all()  # nothing before the impulse
    assert torch.allclose(out[0, :, 5], torch.full((128,), 10 * math.log10(0.25)))
    power = torch.pow(10, out[0, 0] / 10)
    echo = power[6:]
    d = 4410 / HOP_LENGTH
    assert torch.allclose(echo.sum(), torch.tensor(0.0625), rtol=1e-3)  # 0.5^2 / 4
    assert set(torch.nonzero(echo > 1e-6).flatten().add(6).tolist()) == {13, 14}
    assert torch.allclose(power[13] / 0.0625, torch.tensor(1 - (d - 8)), atol=1e-3)
    steady = paper.apply_delay(torch.zeros(1, 128, 40), torch.tensor([450.0]))[0, 0]
    assert torch.allclose(steady[:19], torch.full((19,), 10 * math.log10(0.25)), atol=1e-4)
    assert torch.allclose(steady[20:], torch.full((20,), 10 * math.log10(0.3125)), atol=1e-4)
    ms = paper.draw_delay(np.random.default_rng(4), 20000, 0.5)
    assert abs((ms > 0).mean() - 0.5) < 0.015
    assert set(np.unique(ms[ms > 0]).tolist()) == {200, 250, 300, 350, 400, 450}


def test_reverb_smears_power_forward_in_time_and_high_bands_decay_faster():
    x = impulse(frames=80, at=5)
    settings = torch.tensor([[1.0], [90.0], [80.0], [30.0]])  # chosen, reverberance, damping, room
    out = paper.apply_reverb(x, settings)
    background = paper.apply_reverb(torch.full_like(x, DB_FLOOR), settings)  # the floor's own
    assert torch.allclose(out[0, :, :5], background[0, :, :5], atol=1e-4)  # never earlier
    assert torch.allclose(out[0, :, 5], torch.zeros(128), atol=0.5)  # the dry impulse
    tail = torch.pow(10, out[0, :, 6:] / 10)
    assert (tail[:32, :10] > 1e-3).all() and (tail[:, 0] > 1e-5).all()  # later frames: the tail
    assert (tail[:, 3:].diff(dim=-1) <= 1e-12).all()  # decaying
    low, high = tail[10].sum(), tail[120].sum()
    assert high < low  # the damping in the combs' loop: high frequencies die first
    kernel = paper.reverb_kernel(settings[1:].double(), 4000, paper.mel_tables(CPU)["centre_hz"])
    a = -1 / math.log(1 - 0.3)
    b = 100 / (math.log(1 - 0.98) * a + 1)
    g = 1 - math.exp((90 - b) / (a * b))  # sox's comb feedback at reverberance 90
    assert 0.97 < g < 0.98
    total = kernel[0].sum(-1) - 1  # the wet energy: the whole tail, SOX_WET_POWER / (1 - rho)
    rho = 1 - paper.SOX_WET_POWER / total  # the power a comb's round trip keeps, per band
    assert (rho[:-1] >= rho[1:]).all() and abs(rho[0] - g ** 2) < 1e-3 and rho[-1] < 0.6
    steady = paper.apply_reverb(torch.zeros(1, 128, 400), settings)[0]  # a constant input
    assert (steady.diff(dim=-1) >= -1e-4).all()  # powers add up over time, never cancel
    assert torch.allclose(steady[:, -1], band_db(kernel[0, :, :400].sum(-1)).float(), atol=1e-3)
    draws = paper.draw_reverb(np.random.default_rng(5), 20000, 0.3)
    assert abs(draws[0].mean() - 0.3) < 0.015
    assert draws[1:].min() == 0 and draws[1:].max() == 99


def test_pitch_shift_moves_a_band_along_the_mel_axis():
    tables = paper.mel_tables(CPU)
    centre = tables["centre_hz"]
    x = one_band(band=80, frames=3, level=0.0)
    for cents in (700, -700, 300):
        out = paper.apply_pitch(x, torch.tensor([float(cents)]))
        expected = int((centre - centre[80] * 2 ** (cents / 1200)).abs().argmin())
        assert int(out[0, :, 0].argmax()) == expected, cents
        assert out[0, expected, 0] > -60 and (out[0, :, 0] > -60).sum() <= 2  # moved, kept
    assert int((centre - centre[80] * 2 ** (7 / 12)).abs().argmin()) - 80 >= 10
    down = paper.apply_pitch(torch.zeros(1, 128, 3), torch.tensor([-700.0]))
    silent = centre * 2 ** (7 / 12) > 11025  # their source lies above what was recorded
    assert (down[0, silent] == DB_FLOOR).all() and (down[0, ~silent] == 0).all()


def test_pitch_shift_lands_where_the_shifted_tone_is():
    """A 700 Hz tone shifted +500 cents in the mel domain peaks where a tone at 700 x 2^(5/12)
    Hz does through the front end."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    logmel = LogMel()
    mel = lambda hz: logmel(torch.tensor(0.3 * np.sin(2 * np.pi * hz * t),  # noqa: E731
                                         dtype=torch.float32))
    moved = paper.apply_pitch(mel(700.0)[None], torch.tensor([500.0]))[0]
    target = mel(700.0 * 2 ** (5 / 12))
    assert abs(int(moved.mean(-1).argmax()) - int(target.mean(-1).argmax())) <= 1
    cents = paper.draw_pitch(np.random.default_rng(6), 20000, 0.4)
    assert abs((cents != 0).mean() - 0.4) < 0.015
    assert cents.min() == -700 and cents.max() == 700


def test_stretch_slows_the_crop_and_keeps_its_frame_count():
    frames = 50
    x = torch.arange(float(frames))[None, None, :].expand(2, 128, frames).contiguous()
    params = torch.tensor([[0.8, 1.0], [0.5, 0.0]], dtype=torch.float64)  # part, start
    out = paper.apply_stretch(x, params)
    assert out.shape == x.shape
    steps = out[0, 0].diff()
    assert torch.allclose(steps, torch.full_like(steps, 0.8), atol=1e-4)  # 0.8 x the speed
    assert abs(float(out[0, 0, 0]) - 0.5 * 49 * 0.2) < 1e-4  # its window starts mid-room
    assert torch.equal(out[1], x[1])  # part 1: untouched
    params = paper.draw_stretch(np.random.default_rng(7), 20000, 0.5)
    assert abs((params[0] < 1).mean() - 0.5) < 0.015 and params[0].min() >= 0.8


def test_paper_kinds_are_chosen_by_name_and_not_part_of_the_default():
    assert parse_noise_kinds("paper") == ("paper",)
    assert parse_noise_kinds("paper, stretch") == ("paper", "stretch")
    assert "paper" not in NOISE_KINDS and "stretch" not in NOISE_KINDS
    assert MelNoise().kinds == NOISE_KINDS == ("specaugment", "gain", "mixup", "shift")
    assert list(paper.PAPER_CHAIN) == ["white_noise", "paper_gain", "filter", "delay", "pitch",
                                       "reverb"]
    assert [p for _, _, p in paper.PAPER_CHAIN.values()] == [0.3, 0.2, 0.8, 0.5, 0.4, 0.3]


def test_paper_noise_is_deterministic_resumable_and_the_chain_of_its_transforms():
    x, y = batch(b=8, frames=60)
    a, b = MelNoise(("paper",), prob=0.5, seed=3), MelNoise(("paper",), prob=0.5, seed=3)
    first = a(x, y)[0]
    assert torch.equal(first, b(x, y)[0])
    assert not torch.equal(first, x) and torch.isfinite(first).all() and first.dtype == x.dtype
    state = a.rng_state()
    second = a(x, y)[0]
    a.set_rng_state(state)
    assert torch.equal(a(x, y)[0], second)
    for seed in range(4):
        noise = MelNoise(("paper",), prob=0.5, seed=seed)
        got, gy, _ = noise(x, y)
        rng = np.random.default_rng(seed)
        assert torch.equal(got, paper.paper_noise(x, rng)) and gy is y
        assert noise.rng.random() == rng.random()
    both = MelNoise(("stretch", "paper", "gain"), prob=0.5, seed=9)
    rng = np.random.default_rng(9)
    expected = random_gain(paper.paper_noise(paper.time_stretch(x, rng, 0.5), rng), rng, 0.5)
    assert torch.equal(both(x, y)[0], expected)
    assert torch.equal(MelNoise(("paper",)).eval()(x, y)[0], x)


def test_a_student_trains_with_the_paper_noise(tmp_path):
    """`mtt train --noise paper` for a student: a short run on the toy with pseudo-labels
    written directly (no teacher), the noise recorded in the checkpoint."""
    from conftest import TOY_TAGS, make_toy, read_history, train_args
    from mtt.checkpoint import load_checkpoint
    from mtt.cli import main
    from mtt.formats.pseudo_label_shard import write_pseudo_labels
    toy = make_toy(tmp_path / "toy", n_train=16, n_valid=8, n_test=4, n_unlabeled=16)
    labels = tmp_path / "unlabeled.labels.h5"
    probs = np.random.default_rng(0).random((16, len(TOY_TAGS))).astype(np.float32)
    write_pseudo_labels(labels, [f"unl{i:03d}" for i in range(16)], probs, TOY_TAGS, "none")
    out = tmp_path / "student"
    assert main(train_args(toy, out, "--max-epochs", "1", "--steps-per-epoch", "2",
                           "--pseudo-labels", str(labels), "--unlabeled-mels",
                           str(toy / "unlabeled.h5"), "--noise", "paper")) == 0
    _, info = load_checkpoint(out / "best.ckpt")
    assert info["meta"]["role"] == "student"
    assert info["meta"]["training"]["noise"] == ["paper"]
    assert len(read_history(out)) == 1
