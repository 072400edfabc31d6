"""The sidechain through the built plugin in both formats, with scripted hosts that feed its
aux bus (tests/host/clap_host.py, tests/host/vst3_host.py) and a real engine, offline (the shim
waits for every window, so the runs are exact): a track whose main input is silent and whose
sidechain plays music, with the loop generator and with the built-in diffusion model.

Loop generator, lookahead 1 and context 1: the window at bar b repeats bar b-1 of the context
source, so bar b of the output (after its 30 ms seam fade) says which source window b heard."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.layout import const
from engine import representation as rep
from engine.dsp import SEAM_SECONDS, resample
from engine.music import render_song
from engine.styles import load_styles
from tests.host.clap_host import ClapHost, Transport
from tests.host.vst3_host import ENUM, Vst3Host
from tests.test_scripted_host import connect

RATE = 48000
BLOCK = 512
TEMPO = 120.0
BAR = round(4 * 60 / TEMPO * RATE)
SEAM = round(SEAM_SECONDS * RATE)
FORMATS = ("clap", "vst3")


def song(bars: int, seed: int, style: int = 0) -> np.ndarray:
    """A held-out song of the built-in styles (drums, bass, chords, lead) at RATE, stereo."""
    audio = render_song(load_styles()[style], TEMPO, (4, 4), bars, 9_000_000 + seed).audio
    mono = resample(audio[None].astype(np.float32), rep.SAMPLE_RATE, RATE)[0]
    return np.ascontiguousarray(np.stack([mono, mono])[:, :bars * BAR])


def bar(audio: np.ndarray, b: int) -> np.ndarray:
    return audio[:, b * BAR:(b + 1) * BAR]


def open_host(fmt: str, aux: str = "stereo", **params: float):
    """An offline plugin instance connected to the test's engine (loop generator unless told)."""
    if fmt == "clap":
        host = ClapHost(sample_rate=RATE, max_frames=BLOCK, offline=True)
        connect(host, **params)     # loop generator, then params (a generator given here wins)
        return host
    return Vst3Host(sample_rate=RATE, max_frames=BLOCK, offline=True, aux=aux,
                    params={"generator": const("LD_GENERATOR_LOOP"), **params})


def play(host, main: np.ndarray, sidechain: np.ndarray | None, changes: dict[int, dict] | None = None) -> np.ndarray:
    """The output of playing main (and the sidechain, None = no aux buffers) from song sample 0;
    changes: {sample: {parameter: value}} set at the block that holds that sample."""
    out = []
    for pos in range(0, main.shape[1], BLOCK):
        for at, values in (changes or {}).items():
            for name, value in values.items() if pos <= at < pos + BLOCK else ():
                host.set_param(name, value)
        transport = Transport(playing=True, tempo=TEMPO, beats=pos * TEMPO / 60 / RATE, seconds=pos / RATE)
        side = None if sidechain is None else sidechain[:, pos:pos + BLOCK]
        out.append(host.process(main[:, pos:pos + BLOCK], transport, sidechain=side))
    host.close()
    return np.concatenate(out, axis=1)


def assert_bar(out: np.ndarray, b: int, wet: np.ndarray, what: str, dry: np.ndarray | None = None,
               mix: float = 1.0) -> None:
    """Bar b is `wet` blended with the dry main input as the shim does it, in float32:
    dry + mix * (wet - dry) (so at mix 100 exact only to 1 ulp where the main input sounds)."""
    dry = np.zeros_like(wet) if dry is None else dry
    expected = dry + np.float32(mix) * (wet - dry)
    np.testing.assert_array_equal(bar(out, b)[:, SEAM:], expected[:, SEAM:], err_msg=f"bar {b}: expected {what}")


# --- the buses ---------------------------------------------------------------------------

def test_the_vst3_front_end_declares_a_stereo_kaux_input():
    with Vst3Host(aux="off") as host:
        assert host.bus_info(ENUM.V3_INPUT, 0) == (ENUM.V3_MAIN, 2, "Input")
        assert host.bus_info(ENUM.V3_INPUT, 1) == (ENUM.V3_AUX, 2, "Sidechain")
        assert host.bus_info(ENUM.V3_OUTPUT, 0) == (ENUM.V3_MAIN, 2, "Output")


def test_the_clap_front_end_declares_a_second_input_port_that_is_not_main():
    with ClapHost(sample_rate=RATE, max_frames=BLOCK) as host:
        main_flag = 1   # CLAP_AUDIO_PORT_IS_MAIN
        assert host.audio_ports(True) == [("Input", main_flag, 2), ("Sidechain", 0, 2)]
        assert host.audio_ports(False) == [("Output", main_flag, 2)]


# --- the loop generator: sample-exact -----------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_main_silent_the_output_continues_the_sidechain(engine, fmt):
    drums = song(8, seed=1)
    out = play(open_host(fmt, lookahead=1, context_bars=1), np.zeros_like(drums), drums)
    assert not bar(out, 0).any(), "bar 0 has nothing to continue (preroll): silent"
    for b in range(1, 8):
        assert_bar(out, b, bar(drums, b - 1), f"sidechain bar {b - 1}")


@pytest.mark.parametrize("fmt, aux, feed", [("clap", None, "none"), ("clap", None, "zeros"),
                                            ("vst3", "off", "none"), ("vst3", "empty", "none")],
                         ids=["clap-no-buffers", "clap-silent", "vst3-inactive", "vst3-empty-arrangement"])
def test_auto_with_an_absent_or_silent_sidechain_uses_the_main_input(engine, fmt, aux, feed):
    track = song(6, seed=2)
    sidechain = np.zeros_like(track) if feed == "zeros" else None
    out = play(open_host(fmt, aux=aux or "stereo", lookahead=1, context_bars=1), track, sidechain)
    for b in range(1, 6):
        assert_bar(out, b, bar(track, b - 1), f"main bar {b - 1}", dry=bar(track, b))


@pytest.mark.parametrize("fmt", FORMATS)
def test_auto_takes_the_sidechain_from_the_bar_line_after_it_starts(engine, fmt):
    """The main input plays one song throughout; the sidechain starts another mid-bar 3."""
    track, other = song(7, seed=3), song(7, seed=4, style=3)
    sidechain = other.copy()
    sidechain[:, :3 * BAR + BAR // 2] = 0
    out = play(open_host(fmt, lookahead=1, context_bars=1), track, sidechain)
    for b in range(1, 4):
        assert_bar(out, b, bar(track, b - 1), f"main bar {b - 1}", dry=bar(track, b))
    for b in range(4, 7):
        assert_bar(out, b, bar(sidechain, b - 1), f"sidechain bar {b - 1}", dry=bar(track, b))


@pytest.mark.parametrize("fmt", FORMATS)
def test_mix_blends_the_generated_audio_with_the_main_input_not_the_sidechain(engine, fmt):
    track, drums = song(5, seed=5), song(5, seed=6, style=2)
    out = play(open_host(fmt, lookahead=1, context_bars=1, mix=25), track, drums)
    for b in range(1, 5):
        assert_bar(out, b, bar(drums, b - 1), f"sidechain bar {b - 1} at 25 %", dry=bar(track, b), mix=0.25)


# --- the built-in diffusion model ------------------------------------------------------------

def shuffled(audio: np.ndarray, seed: int) -> np.ndarray:
    """The same audio in 16th notes put in a random order: its sound without its music."""
    sixteenth = BAR // 16
    order = np.random.default_rng(seed).permutation(audio.shape[1] // sixteenth)
    return np.concatenate([audio[:, i * sixteenth:(i + 1) * sixteenth] for i in order], axis=1)


def mel_distance_per_bar(out: np.ndarray, truth: np.ndarray, bars: range) -> float:
    from engine.evaluate import mel_distance
    model_rate = lambda audio: resample(audio[:1], RATE, rep.SAMPLE_RATE)[0]  # noqa: E731
    return float(np.mean([mel_distance(model_rate(bar(out, b)), model_rate(bar(truth, b))) for b in bars]))


@pytest.mark.parametrize("fmt, seed, style", [("clap", 11, 0), ("vst3", 13, 4)])
def test_diffusion_continues_the_sidechain_closer_than_from_silence_or_a_shuffled_context(engine, fmt, seed, style):
    """Main silent; the sidechain plays a held-out song. Bars 2-7 of the output, against the
    song's own bars 2-7 (log-mel distance), beat the same session fed a silent or a
    16th-shuffled sidechain."""
    truth = song(8, seed=seed, style=style)
    distances = {}
    for name, sidechain in (("sidechain", truth), ("silence", np.zeros_like(truth)),
                            ("shuffled", shuffled(truth, seed))):
        host = open_host(fmt, generator=const("LD_GENERATOR_DIFFUSION"), lookahead=1, context_bars=2, style=style)
        out = play(host, np.zeros_like(truth), sidechain)
        assert np.sqrt(np.mean(bar(out, 4) ** 2)) > 1e-3, f"{name}: the model made silence"
        distances[name] = mel_distance_per_bar(out, truth, range(2, 8))
    generated = [w for w in engine.windows() if w["flags"] & const("LD_WINDOW_GENERATED")]
    assert generated and {w["generator"] for w in generated} == {"diffusion"}
    assert distances["sidechain"] < distances["silence"] and distances["sidechain"] < distances["shuffled"], distances


@pytest.mark.parametrize("fmt", FORMATS)
def test_switching_context_source_takes_effect_at_the_next_bar_line(engine, fmt):
    """Both inputs play different songs; context_source goes main -> sidechain mid-bar 3 and
    sidechain -> both mid-bar 5 (automation, as a DAW sends it)."""
    track, other = song(8, seed=7), song(8, seed=8, style=1)
    changes = {3 * BAR + BAR // 2: {"context_source": const("LD_CONTEXT_SOURCE_SIDECHAIN")},
               5 * BAR + BAR // 2: {"context_source": const("LD_CONTEXT_SOURCE_BOTH")}}
    host = open_host(fmt, lookahead=1, context_bars=1, context_source=const("LD_CONTEXT_SOURCE_MAIN"))
    out = play(host, track, other, changes)
    for b in range(1, 8):
        source = "main" if b <= 3 else "sidechain" if b <= 5 else "both"
        heard = {"main": bar(track, b - 1), "sidechain": bar(other, b - 1),
                 "both": bar(track, b - 1) + bar(other, b - 1)}[source]
        assert_bar(out, b, heard, f"{source} bar {b - 1}", dry=bar(track, b))
