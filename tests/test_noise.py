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
