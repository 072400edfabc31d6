"""engine/fx.py and engine/sound.py: a preset's FX chain and gain change the generated window's
audio as configured, the same way every time."""
from __future__ import annotations

import numpy as np
import pytest

from engine import fx
from engine.sound import Sound
from engine.validate import PresetError

SR = 44100


def band_energy(audio: np.ndarray, low: float, high: float, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=0))) ** 2
    freqs = np.fft.rfftfreq(audio.shape[1], 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def two_tones(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    mono = 0.3 * np.sin(2 * np.pi * 60 * t) + 0.3 * np.sin(2 * np.pi * 5000 * t)
    return np.stack([mono, mono]).astype(np.float32)


def chain(*items: dict) -> tuple[fx.Effect, ...]:
    return fx.parse_chain(list(items), "test.toml")


def test_highpass_and_lowpass_move_the_spectrum_as_configured():
    audio = two_tones()
    low_before, high_before = band_energy(audio, 40, 80), band_energy(audio, 4000, 6000)
    high_passed = fx.apply(chain({"plugin": "HighpassFilter", "cutoff_frequency_hz": 1000.0}), audio, SR)
    assert band_energy(high_passed, 40, 80) < 0.01 * low_before
    assert band_energy(high_passed, 4000, 6000) > 0.8 * high_before
    low_passed = fx.apply(chain({"plugin": "LowpassFilter", "cutoff_frequency_hz": 500.0}), audio, SR)
    assert band_energy(low_passed, 4000, 6000) < 0.01 * high_before
    assert band_energy(low_passed, 40, 80) > 0.8 * low_before
    assert high_passed.shape == low_passed.shape == audio.shape and high_passed.dtype == np.float32


def test_gain_and_peak_filter_as_configured():
    audio = two_tones()
    louder = Sound(gain_db=6.0).process(audio, SR)
    np.testing.assert_allclose(louder, audio * 10 ** (6 / 20), rtol=1e-5)
    boosted = fx.apply(chain({"plugin": "PeakFilter", "cutoff_frequency_hz": 5000.0, "gain_db": 12.0, "q": 1.0}), audio, SR)
    ratio = band_energy(boosted, 4000, 6000) / band_energy(audio, 4000, 6000)
    assert 10 ** (10 / 10) < ratio < 10 ** (14 / 10), ratio   # +12 dB at the centre
    assert band_energy(boosted, 40, 80) == pytest.approx(band_energy(audio, 40, 80), rel=0.05)


def test_no_chain_is_the_identity():
    audio = two_tones()
    assert Sound().process(audio, SR) is audio


def test_warmup_carries_a_reverb_tail_into_the_window_and_is_dropped():
    reverb = chain({"plugin": "Reverb", "room_size": 0.9, "wet_level": 0.5, "dry_level": 0.0})
    silence = np.zeros((2, SR // 2), np.float32)
    cold = fx.apply(reverb, silence, SR)
    warm = fx.apply(reverb, silence, SR, warmup=two_tones(0.5))
    assert warm.shape == silence.shape
    assert np.abs(cold).max() == 0 and np.sqrt((warm[:, :SR // 10] ** 2).mean()) > 0.01, "no tail from the warm-up"


def test_a_long_tail_is_warmed_up_for_as_long_as_it_rings():
    """A big room rings for seconds: the warm-up is the chain's measured tail, so a window 2 s after
    a burst still carries the burst's reverb, as the stream processed in one piece does. With
    the fixed 1 s warm-up before, that burst was not in the warm-up and the window began dry."""
    room = chain({"plugin": "Reverb", "room_size": 0.95, "wet_level": 0.5, "dry_level": 0.0})
    dry = chain({"plugin": "Gain", "gain_db": -3.0})
    assert 3.0 <= fx.warmup_seconds(room, SR) <= fx.MAX_WARMUP_SECONDS
    assert fx.warmup_seconds(dry, SR) == fx.MIN_WARMUP_SECONDS
    context = np.concatenate([two_tones(0.5), np.zeros((2, 2 * SR), np.float32)], axis=1)
    window = np.zeros((2, SR), np.float32)
    whole = fx.apply(room, np.concatenate([context, window], axis=1), SR)[:, -SR:]
    windowed = fx.apply(room, window, SR, warmup=context)
    assert np.sqrt(np.mean(whole ** 2)) > 1e-3, "no tail 2 s after the burst"
    np.testing.assert_allclose(windowed, whole, atol=1e-6)


def test_an_lfo_runs_on_across_windows_in_song_time():
    """pedalboard starts an LFO at phase 0 when processing starts, so a window warmed up on its
    context had the phase of its warm-up's start, not the song's: a phase step at every seam.
    With the window's song position the warm-up starts on the LFO's period, and the window is
    the stream's (a phaser at 0.3 Hz, whose 3.33 s period divides neither the bar nor the warm-up;
    pedalboard's chorus LFO is not exactly periodic at its rate, bench/fx_seams.py)."""
    phaser = chain({"plugin": "Phaser", "rate_hz": 0.3, "depth": 0.6, "mix": 0.5})
    stream = (0.2 * np.random.default_rng(3).standard_normal((2, 9 * SR))).astype(np.float32)
    whole = fx.apply(phaser, stream, SR)[:, 8 * SR:9 * SR]
    error = lambda out: 10 * np.log10(np.mean((out - whole) ** 2) / np.mean(whole ** 2))  # noqa: E731
    window, context = stream[:, 8 * SR:9 * SR], stream[:, 4 * SR:8 * SR]
    assert error(fx.apply(phaser, window, SR, warmup=context, position=8 * SR)) < -30
    assert error(fx.apply(phaser, window, SR, warmup=context)) > -10
    period = lambda *rates: fx.lfo_period(chain(*({"plugin": "Phaser", "rate_hz": r} for r in rates)), SR)  # noqa: E731
    assert period(0.5, 1.0, 2.0) == 2 * SR and period() is None
    assert period(0.3, 0.7) is None and period(0.1) is None        # no shared period; one over 8 s


def test_a_window_sounds_the_same_whenever_it_is_made():
    sound = Sound(gain_db=-3.0, fx=chain({"plugin": "Delay", "delay_seconds": 0.1, "feedback": 0.5, "mix": 0.5},
                                        {"plugin": "Compressor", "threshold_db": -20.0, "ratio": 4.0}))
    audio, other = two_tones(), two_tones() * 0.5
    first = sound.process(audio, SR)
    sound.process(other, SR)           # a different window in between shares no state
    np.testing.assert_array_equal(sound.process(audio, SR), first)


def test_cutoffs_above_nyquist_are_lowered_not_broken():
    audio = two_tones()
    out = fx.apply(chain({"plugin": "LowpassFilter", "cutoff_frequency_hz": 20000.0}), audio, 22050)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("items, message", [
    ("HighpassFilter", r"fx = 'HighpassFilter' is not allowed; allowed: an array of tables"),
    ([{"plugin": "Autotune"}], r"test.toml \[\[fx\]\] #1: plugin = 'Autotune' is not allowed; allowed: HighpassFilter, "),
    ([{"cutoff_frequency_hz": 40.0}], r"plugin = None is not allowed"),
    ([{"plugin": "Reverb", "size": 1.0}], r"#1 \(Reverb\): unknown keys \['size'\]; allowed keys: plugin, room_size"),
    ([{"plugin": "Gain"}, {"plugin": "Reverb", "room_size": 3.0}],
     r"#2 \(Reverb\): room_size = 3.0 is out of range; allowed: a number from 0 to 1"),
    ([{"plugin": "Delay", "delay_seconds": "long"}], r"delay_seconds = 'long' is not allowed; allowed: a number"),
    ([{"plugin": "Gain"}] * 9, r"fx has 9 effects; allowed: at most 8"),
])
def test_bad_chains_name_the_entry_key_value_and_what_is_allowed(items, message):
    with pytest.raises(PresetError, match=message):
        fx.parse_chain(items, "test.toml")


# --- in the engine: a session's Sound shapes every window it publishes -----------------------

def _rig_bars(sound: Sound, monkeypatch, bars=range(2, 6), patch=None):
    """Published audio of bars 2..5 of a scheduler session (loop generator) with `sound`, and the
    steps each request asked for; `patch` = (name, function) replaces one of engine.fx's."""
    from engine.loop_generator import LoopGenerator
    from tests.test_scheduler import Rig
    steps = []
    monkeypatch.undo()      # the real generate, not the previous call's recorder
    generate = LoopGenerator.generate
    monkeypatch.setattr(LoopGenerator, "generate", lambda self, request: steps.append(request.steps) or
                        generate(self, request))
    if patch:
        monkeypatch.setattr(fx, *patch)
    rig = Rig(seed=3)
    try:
        rig.session.sound = sound
        rig.play_bars(0, 6)
        return np.concatenate([rig.published(b) for b in bars], axis=1), steps
    finally:
        rig.close()


def test_the_session_sound_shapes_published_windows_and_not_the_context(monkeypatch):
    plain, plain_steps = _rig_bars(Sound(), monkeypatch)
    quieter, steps = _rig_bars(Sound(steps=5, gain_db=-6.0), monkeypatch)
    assert set(plain_steps) == {None} and set(steps) == {5}, "the preset's steps did not reach the generator"
    # gain is linear, seams included: exactly the plain windows at -6 dB. Were the shaped audio fed
    # back as context, each window would be 6 dB quieter than the one before.
    np.testing.assert_allclose(quieter, plain * np.float32(10 ** (-6 / 20)), rtol=1e-5, atol=1e-6)
    dull, _ = _rig_bars(Sound(fx=chain({"plugin": "LowpassFilter", "cutoff_frequency_hz": 300.0})), monkeypatch)
    from tests.test_scheduler import SR as RIG_RATE
    assert band_energy(dull, 1500, 4000, RIG_RATE) < 0.02 * band_energy(plain, 1500, 4000, RIG_RATE)
    assert band_energy(dull, 20, 150, RIG_RATE) > 0.7 * band_energy(plain, 20, 150, RIG_RATE)


def test_a_failing_chain_never_stops_the_music(monkeypatch, caplog):
    """A chain pedalboard refuses at run time: the windows play as generated, with one warning."""
    plain, _ = _rig_bars(Sound(), monkeypatch)
    def refuse(*args, **kwargs):
        raise RuntimeError("no such thing at this rate")
    shaped, _ = _rig_bars(Sound(fx=chain({"plugin": "Gain", "gain_db": -6.0})), monkeypatch, patch=("apply", refuse))
    np.testing.assert_array_equal(shaped, plain)
    warnings = [r.getMessage() for r in caplog.records if "FX chain failed" in r.getMessage()]
    assert len(warnings) == 1 and "no such thing at this rate" in warnings[0] and "play without it" in warnings[0]


def test_a_bad_preset_keeps_an_engine_from_starting_with_one_line(caplog):
    from bridge.cli import main
    assert main(["serve", "--preset", "polka", "--endpoint", "ipc:///tmp/livediff-never/engine.sock"]) == 2
    assert "preset 'polka' is not allowed; allowed: ambient, drum_and_bass, hiphop, house, rock, techno" in caplog.text
