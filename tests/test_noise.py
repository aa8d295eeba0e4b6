"""Mel-domain noise for the student: shapes kept, each transform does its job, off at eval."""
import numpy as np
import pytest
import torch

from mtt.noise import (MelNoise, freq_shift, mixup, parse_noise_kinds, random_gain,
                       spec_augment)


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
