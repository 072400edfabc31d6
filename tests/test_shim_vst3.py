"""The VST3 build in pedalboard (the in-CI host): loading, parameter names and exact values,
offline rendering with and without an engine."""
from __future__ import annotations

import time

import numpy as np
import pytest

from bridge.protocol import PARAM
from engine.context import window_seed
from tests.host.build import built_plugin

import pedalboard
RATE = 44100


@pytest.fixture
def plugin(private_endpoint):
    """A fresh plugin instance whose endpoint is private (no engine unless a test starts one)."""
    instance = pedalboard.load_plugin(str(built_plugin()["VST3"]))
    yield instance
    del instance


def loop_input(bars: int, bpm: float = 100.0) -> np.ndarray:
    """A click on every beat plus a low tone: stereo float32, `bars` bars of 4/4."""
    beat = int(RATE * 60 / bpm)
    signal = 0.2 * np.sin(2 * np.pi * 110 * np.arange(bars * 4 * beat) / RATE)
    signal[::beat] += 0.8
    return np.stack([signal, signal]).astype(np.float32)


def test_loads_as_an_effect_with_exactly_the_protocol_parameters(plugin):
    assert plugin.is_effect
    assert list(plugin.parameters) == sorted(PARAM, key=PARAM.get)   # ld_param names in id order, no units
    assert all(not p.label for p in plugin.parameters.values())


def test_parameters_take_exactly_the_values_set(plugin):
    plugin.tempo_bpm = 100
    plugin.seed = 7
    plugin.generator = "loop"
    plugin.underrun_policy = "hold"
    plugin.mix = 35
    assert (plugin.tempo_bpm, plugin.seed, plugin.mix) == (100.0, 7.0, 35.0)
    assert (plugin.generator, plugin.underrun_policy) == ("loop", "hold")
    raw = plugin.parameters["tempo_bpm"].raw_value          # normalized, through a 32-bit float
    assert abs(20 + 280 * raw - 100) < 1e-4
    plugin.tempo_bpm = 92.5                                  # any tempo is kept (shown in whole BPM)
    assert abs(20 + 280 * plugin.parameters["tempo_bpm"].raw_value - 92.5) < 1e-4
    with pytest.raises(ValueError):
        plugin.tempo_bpm = 1000
    with pytest.raises(ValueError):
        plugin.generator = "banjo"


def test_mix_zero_passes_the_input_through(plugin):
    plugin.mix = 0
    audio = loop_input(1)
    out = plugin.process(audio, RATE)
    np.testing.assert_allclose(out, audio, atol=1e-6)


def test_offline_without_an_engine_is_silent_and_bounded(plugin):
    audio = loop_input(4)
    started = time.monotonic()
    out = plugin.process(audio, RATE, buffer_size=4096)     # 23 blocks
    elapsed = time.monotonic() - started
    assert out.shape == audio.shape
    assert np.all(out == 0), "no engine: the bounce must be silent, not dry or garbage"
    assert elapsed < 10, f"waited {elapsed:.1f} s: the wait must end once the engine is known absent"


def test_engine_renders_and_sees_the_parameters(plugin, engine):
    plugin.tempo_bpm = 100
    plugin.seed = 7
    plugin.generator = "loop"
    audio = loop_input(8)
    first = plugin.process(audio, RATE)
    second = plugin.process(audio, RATE)
    bar = int(RATE * 60 / 100) * 4
    np.testing.assert_array_equal(first[:, :2 * bar], audio[:, :2 * bar],
                                  err_msg="bars 0-1 have no context yet (preroll): the dry input plays")
    assert np.abs(first[:, 3 * bar:]).max() > 0.1, "later bars carry generated audio"
    np.testing.assert_array_equal(first, second)            # offline renders are deterministic
    generated = [w for w in engine.windows() if w["generator"] == "loop" and w["seed"] is not None]
    assert generated, "the engine generated no window"
    assert all(w["tempo"] == 100.0 for w in generated)
    assert all(w["seed"] == window_seed(7, w["bar_index"]) for w in generated)
