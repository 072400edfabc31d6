"""`livediff bounce` through the real VST3 in pedalboard, with the loop generator, whose output is
exactly predictable: the preroll bars play the dry input, every window after them is input bar 0
(the only bar of context the first generated window has), joined by the engine's seam crossfade;
the first one crossfades in from the dry input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bridge.bounce import PLUGIN
from bridge.layout import const
from bridge.shm import SHM_DIR
from conftest import REPO

LOOP = REPO / "tests" / "data" / "loop_100bpm.wav"
SR, BPM, BARS = 44100, 100, 8
BAR = SR * 60 * 4 // BPM    # 105840 frames, exact
SEAM = round(0.03 * SR)     # the engine's seam length (docs/protocol.md, "Seams")

@pytest.fixture
def built_plugin():
    """The suite runs after `livediff build-plugin` (make test); a missing build is a failure, not a skip."""
    assert (PLUGIN / "Contents" / "x86_64-linux" / "livediff.so").is_file(), "run `livediff build-plugin` first"


def read(path):
    from pedalboard.io import AudioFile
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.samplerate


def bounce(out, window_log):
    """Run the bounce; the windows of the instance that rendered (pedalboard creates and drops
    instances while loading the plugin and setting parameters; the rendering one comes last)."""
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "bounce", str(LOOP), "-o", str(out), "--bpm", str(BPM),
                             "--bars", str(BARS), "--seed", "7", "--generator", "loop", "--window-log", str(window_log)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "LD_ERR_OFFLINE_TIMEOUT" not in result.stderr, result.stderr
    windows = [json.loads(line) for line in window_log.read_text().splitlines()]
    return [w for w in windows if w["instance"] == windows[-1]["instance"]]


def expected_output() -> np.ndarray:
    loop, _ = read(LOOP)
    bar0 = loop[:, :BAR].astype(np.float64)
    out = np.zeros((2, BARS * BAR))
    out[:, :2 * BAR] = loop[:, :2 * BAR]     # the preroll plays the dry input
    turn = np.arange(SEAM) / SEAM * np.pi / 2
    for bar in range(2, BARS):      # bars 0 and 1 are preroll (lookahead 2: horizon <= song start)
        window = bar0.copy()
        # the previous window's tail continues bar 0 periodically, so the seam keeps bar 0 as it is
        # (the crossfade keeps the amplitude of what both sides share); the engine fades the first in
        # from silence (and the shim adds the dry input's fade-out)
        if bar == 2:
            window[:, :SEAM] *= np.sin(turn)
        out[:, bar * BAR:(bar + 1) * BAR] = window
    out[:, 2 * BAR:2 * BAR + SEAM] += loop[:, 2 * BAR:2 * BAR + SEAM] * np.cos(turn)   # ...and fades out
    return out


def test_plugin_loads_in_pedalboard(built_plugin, private_endpoint):
    import pedalboard
    plugin = pedalboard.load_plugin(str(PLUGIN))
    assert plugin.is_effect
    assert {"tempo_bpm", "seed", "generator", "window_bars", "lookahead", "context_bars", "mix"} <= set(plugin.parameters)


def test_bounce_is_complete_bar_aligned_repeatable_and_correct(built_plugin, private_endpoint, tmp_path):
    first = bounce(tmp_path / "a.wav", tmp_path / "a.jsonl")
    second = bounce(tmp_path / "b.wav", tmp_path / "b.jsonl")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes(), "two runs differ"

    out, rate = read(tmp_path / "a.wav")
    loop, _ = read(LOOP)
    assert rate == SR and out.shape == loop.shape == (2, BARS * BAR), "output length differs from the input's"

    for window in first + second:
        assert abs(window["start_sample"] - window["bar_index"] * BAR) <= 1, window
        assert window["frames"] == BAR and window["tempo"] == BPM, window
    by_bar = {w["bar_index"]: w["flags"] for w in first}
    assert all(by_bar.get(bar) == const("LD_WINDOW_PREROLL") for bar in (0, 1)), by_bar
    assert all(by_bar.get(bar) == const("LD_WINDOW_GENERATED") for bar in range(2, BARS)), by_bar

    rms = np.sqrt((out.reshape(2, BARS, BAR) ** 2).mean(axis=(0, 2)))
    assert (rms > 0.05).all(), f"silent bars: {rms}"
    np.testing.assert_allclose(out, expected_output(), atol=1e-5)
    instances = {w["instance"] for w in first + second}
    assert not [p for p in SHM_DIR.glob("livediff-*") if p.name.split("-")[-1] in instances], "segments left behind"




def test_bounce_with_a_sidechain_continues_the_sidechain_file(built_plugin, private_endpoint, tmp_path):
    """IN is silent, the loop plays as the sidechain: lookahead 1, context 1, so bar b of the output
    is bar b-1 of the sidechain (looped to the bounce's length like IN), after its 30 ms seam."""
    from pedalboard.io import AudioFile
    silent = tmp_path / "silent.wav"
    with AudioFile(str(silent), "w", SR, 2, bit_depth=32) as f:
        f.write(np.zeros((2, BAR), np.float32))
    out = tmp_path / "out.wav"
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "bounce", str(silent), "-o", str(out), "--bpm",
                             str(BPM), "--bars", "6", "--generator", "loop", "--lookahead", "1", "--context-bars", "1",
                             "--sidechain", str(LOOP)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rendered, _ = read(out)
    loop, _ = read(LOOP)
    sidechain = np.tile(loop, (1, -(-6 * BAR // loop.shape[1])))[:, :6 * BAR]
    assert not rendered[:, :BAR].any(), "bar 0 has nothing to continue (preroll)"
    for bar in range(1, 6):
        np.testing.assert_array_equal(rendered[:, bar * BAR + SEAM:(bar + 1) * BAR],
                                      sidechain[:, (bar - 1) * BAR + SEAM:bar * BAR], err_msg=f"bar {bar}")


def test_a_preset_sets_this_instances_sound_on_an_engine_already_running(built_plugin, engine_factory, tmp_path,
                                                                         monkeypatch):
    """With --endpoint (an engine started without a preset, as a DAW's is) `--preset NAME` sets the
    plugin's `sound` parameter, and that engine gives this instance the preset's steps, FX and gain.
    Your own house preset here, only -12 dB of gain: the generated bars are exactly the plain
    bounce's, 12 dB down."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))       # both processes read your presets there
    (tmp_path / "livediff" / "presets").mkdir(parents=True)
    (tmp_path / "livediff" / "presets" / "house.toml").write_text('style = "house"\ngain_db = -12.0\n')
    engine = engine_factory()

    def run(name, *options):
        result = subprocess.run([sys.executable, "-m", "bridge.cli", "bounce", str(LOOP), "-o", str(tmp_path / name),
                                 "--bpm", str(BPM), "--bars", "6", "--seed", "7", "--generator", "loop",
                                 "--endpoint", engine.endpoint, *options],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "applies its own preset" not in result.stdout + result.stderr
        return read(tmp_path / name)[0]

    shaped, plain = run("house.wav", "--preset", "house"), run("plain.wav", "--style", "house")
    generated = slice(3 * BAR, 6 * BAR)      # after the preroll and the first seam
    assert np.sqrt(np.mean(plain[:, generated] ** 2)) > 0.05
    np.testing.assert_allclose(shaped[:, generated], plain[:, generated] * 10 ** (-12 / 20), atol=2e-4)
    # --sound sets the parameter itself, as in a DAW: the house chain without the preset, and
    # over a preset's own engine part
    np.testing.assert_allclose(run("sound.wav", "--style", "house", "--sound", "house")[:, generated],
                               shaped[:, generated], atol=2e-4)
    np.testing.assert_allclose(run("over.wav", "--preset", "house", "--sound", "engine")[:, generated],
                               plain[:, generated], atol=2e-4)
