"""engine/anchoring.py: the explicit anchors that keep generated audio at the context's level,
on the grid, and at the track's bandwidth and stereo image."""
from __future__ import annotations

import numpy as np

from engine import anchoring
from engine import representation as rep
from engine.long_eval import width_db


def _tokens(seed: int, n: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(-0.2, 0.3, (1, 1, rep.N_BINS))
    hits = np.zeros((n, rep.FRAMES_PER_TOKEN, 1))
    hits[:, 0] = 1.0                                  # an attack at every 16th, decaying
    decay = np.cumsum(hits, axis=1) * np.exp(-np.arange(rep.FRAMES_PER_TOKEN))[None, :, None]
    return (base + decay + rng.normal(0, 0.05, (n, rep.FRAMES_PER_TOKEN, rep.N_BINS))).astype(np.float32)


def _db(tokens: np.ndarray) -> float:
    return float(10 * np.log10(np.exp(2 * rep.LOG_SCALE * tokens.astype(np.float64)).mean()))


def test_a_bar_10_db_too_loud_comes_back_to_the_reference_level_and_a_tolerance_leaves_small_changes():
    reference = _tokens(1)
    loud = reference + 10 / 20 * np.log(10) / rep.LOG_SCALE
    assert abs(_db(loud) - _db(reference) - 10) < 0.1
    assert abs(_db(anchoring.match_band_moments(loud, reference)) - _db(reference)) <= 0.3
    assert abs(_db(anchoring.match_band_moments(loud, reference, tolerance_db=3.0)) - _db(reference) - 3.0) <= 0.3
    slight = reference + 1 / 20 * np.log(10) / rep.LOG_SCALE
    assert abs(_db(anchoring.match_band_moments(slight, reference, tolerance_db=2.0)) - _db(slight)) < 0.3
    assert anchoring.match_band_moments(loud, None) is loud


def test_smeared_contrast_is_restored_towards_the_reference():
    reference = _tokens(2)
    mean = reference.mean(axis=1, keepdims=True)
    smeared = mean + 0.4 * (reference - mean)
    restored = anchoring.match_band_moments(smeared, reference)
    spread = lambda t: float(t.std(axis=1).mean())  # noqa: E731
    assert spread(restored) > 1.3 * spread(smeared)


def test_an_attack_between_two_16ths_is_removed_and_on_grid_attacks_are_kept():
    tokens = _tokens(3)
    off_grid = tokens.copy()
    off_grid[5, 5] += 2.0                             # an attack late in the 6th 16th
    gated = anchoring.grid_gate(off_grid)
    assert gated[5, 5].mean() < off_grid[5, 5].mean() - 1.5
    assert np.abs(gated[:, :anchoring.ONSET_FRAMES] - off_grid[:, :anchoring.ONSET_FRAMES]).max() < 1e-4
    assert np.abs(anchoring.grid_gate(tokens) - tokens).max() < 0.05   # decaying notes pass


def test_replication_keeps_the_sources_high_band_and_stereo_width():
    rate, bar = 48000, 48000
    rng = np.random.default_rng(4)
    hats = np.fft.irfft(np.fft.rfft(rng.standard_normal(bar)) * (np.fft.rfftfreq(bar, 1 / rate) > 8000), bar)
    mid, side = 0.3 * hats + 0.2 * np.sin(2 * np.pi * 110 * np.arange(bar) / rate), 0.1 * rng.standard_normal(bar)
    source = np.stack([mid + side, mid - side]).astype(np.float32)
    generated = (0.2 * np.sin(2 * np.pi * 110 * np.arange(2 * bar) / rate)).astype(np.float32)  # 16 kHz-model content
    ones = (np.ones(40), np.ones(40))
    out = anchoring.replicate(generated, anchoring.anchor_bar(source, bar), 2, ones, 0.05, rate)
    assert out.shape == (2, 2 * bar)
    assert abs(width_db(out) - width_db(source)) < 1.0
    def high(x):  # mean power per sample above 8 kHz (Parseval)
        spectrum = np.fft.rfft(x.mean(axis=0))[np.fft.rfftfreq(x.shape[1], 1 / rate) > 8000]
        return (np.abs(spectrum) ** 2).sum() / x.shape[1] ** 2
    assert abs(10 * np.log10(high(out) / high(source))) < 1.0
    mono = anchoring.replicate(generated, anchoring.anchor_bar(np.repeat(mid[None], 2, 0).astype(np.float32), bar), 2, ones,
                                0.05, rate)
    assert np.array_equal(mono[0], mono[1])
    silent = anchoring.replicate(generated, anchoring.anchor_bar(np.zeros((2, bar), np.float32), bar), 2, ones, 0.05, rate)
    assert np.allclose(silent[0], generated, atol=1e-6)


def test_a_16th_the_model_barely_changes_keeps_its_prior_and_a_real_change_is_kept_whole():
    prior = _tokens(5)
    step = anchoring.CHANGE_GATE
    change = np.zeros_like(prior)
    change[0] = 0.5 * step                    # blur: under the gate
    change[1] = 1.5 * step                    # half-way: scaled by a half
    change[2] = -3.0 * step                   # a drop: kept whole
    change[3, :, :100] = 6.0 * step           # a few bins moved far (a chord's partials), the rest not: RMS 2.6 steps
    change[5, :, :100] = 1.0 * step           # the same bins moved a little: RMS 0.44 steps, blur
    out = anchoring.keep_small_changes(prior + change, prior)
    assert out.dtype == np.float32
    assert np.array_equal(out[0], prior[0]) and np.array_equal(out[5], prior[5])
    np.testing.assert_allclose(out[1] - prior[1], 0.5 * change[1], atol=1e-5)
    np.testing.assert_allclose(out[2:4], prior[2:4] + change[2:4], atol=1e-5)
    np.testing.assert_array_equal(out[4], prior[4])
    np.testing.assert_array_equal(out[6:], prior[6:])
