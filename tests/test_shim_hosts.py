"""What real hosts do to the plugin, in both formats: the style list by name, the bypass and
preroll parameters, sample-accurate automation, silence flags, state round trips, sample rates,
blocks of any size, a host that renders without saying so (qtractor's export: no clap.render),
a host that stops calling process() (qtractor while stopped), an offline wait longer than the
engine's session timeout, and a deactivation between HELLO and WELCOME.

CLAP through the cffi host (tests/host/clap_host.py), VST3 through pedalboard and, for what
pedalboard cannot do (automation points, silence flags, IBStream state), tests/c/vst3_host.c.
"""
from __future__ import annotations

import subprocess
import threading
import tomllib
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.layout import const
from bridge.presets import PRESETS_DIR, SOUND_NAMES, load_preset
from bridge.protocol import PARAM
from conftest import segments_of, wait_until
from engine.styles import load_styles
from tests.host.build import built_plugin
from tests.host.clap_host import ClapHost, Transport

RATE = 48000
TEMPO = 240.0                       # one bar = 1 s = 48000 frames: short renders with whole bars
BAR = RATE
VST3_HOST_SOURCE = Path(__file__).resolve().parent / "c" / "vst3_host.c"
CLAP_BYPASS = 1 << 4                # CLAP_PARAM_IS_BYPASS
CLAP_ENUM = 1 << 16                 # CLAP_PARAM_IS_ENUM


def song(frames: int, start: int = 0) -> np.ndarray:
    """Input: a tone plus a click on every beat (stereo), song samples [start, start + frames)."""
    t = np.arange(start, start + frames)
    x = 0.2 * np.sin(2 * np.pi * 110 * t / RATE) + np.where(t % (RATE // 4) == 0, 0.7, 0.0)
    return np.stack([x, x]).astype(np.float32)


def render(host: ClapHost, frames: int, block: int, pace: float = 0.0, blocks: dict[int, int] | None = None,
           events=None) -> np.ndarray:
    """Play song samples [0, frames) at TEMPO in blocks of `block` frames (or blocks[pos] where
    given); `pace` > 0 sleeps so the host runs at that many times real time; `events(pos)` may
    queue parameter events for the block at pos."""
    out, pos, started = [], 0, time.monotonic()
    while pos < frames:
        n = min((blocks or {}).get(pos, block), frames - pos)
        if events:
            events(pos)
        out.append(host.process(song(n, pos), Transport(playing=True, tempo=TEMPO, beats=pos / RATE * TEMPO / 60)))
        pos += n
        if pace:
            time.sleep(max(0.0, started + pos / RATE / pace - time.monotonic()))
    return np.concatenate(out, axis=1)


def loop_host(**kwargs) -> ClapHost:
    host = ClapHost(sample_rate=RATE, **kwargs)
    host.set_param("generator", const("LD_GENERATOR_LOOP"))
    host.set_param("tempo_bpm", TEMPO)
    host.process(None, None, frames=1)
    return host


def wait_connected(host: ClapHost, timeout: float = 10.0) -> None:
    assert wait_until(lambda: host.stats()["engine_state"] == 1, timeout), host.stats()


@pytest.fixture(scope="module")
def vst3_host(tmp_path_factory):
    binary = tmp_path_factory.mktemp("vst3_host") / "vst3_host"
    shim = VST3_HOST_SOURCE.parents[2] / "plugin_shim"
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{shim}",
                    str(VST3_HOST_SOURCE), "-o", str(binary), "-ldl"], check=True)
    library = built_plugin()["VST3"] / "Contents" / "x86_64-linux" / "livediff.so"

    def run(scenario: str) -> list[list[str]]:
        result = subprocess.run([str(binary), str(library), scenario], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [line.split() for line in result.stdout.splitlines()]
    return run


def vst3_plugin():
    import pedalboard
    return pedalboard.load_plugin(str(built_plugin()["VST3"]))


# --- parameters ------------------------------------------------------------------------------

def test_style_is_a_list_of_the_trained_styles_by_name_in_both_formats(private_endpoint):
    names = [s.name for s in load_styles()]
    assert len(names) == const("LD_STYLE_COUNT") == const("LD_STYLE_MAX") + 1
    with ClapHost(sample_rate=RATE) as host:
        style = next(i for i in host.param_infos() if i["name"] == "style")
        assert (style["min"], style["max"]) == (0, const("LD_STYLE_COUNT") - 1)
        assert style["flags"] & CLAP_ENUM
        assert [host.value_text("style", v) for v in range(len(names))] == names
    assert vst3_plugin().parameters["style"].valid_values == names


def test_sound_is_a_list_of_the_engine_and_the_shipped_presets_by_name_in_both_formats(private_endpoint):
    presets = [load_preset(p) for p in PRESETS_DIR.glob("*.toml")]
    by_id = {tomllib.loads(p.path.read_text())["id"]: p.name for p in presets}
    assert list(SOUND_NAMES) == ["engine", *(by_id[i] for i in range(1, len(presets) + 1))]
    assert len(SOUND_NAMES) == const("LD_SOUND_COUNT")
    # the values projects saved before a preset is added stay where they are
    assert SOUND_NAMES[:7] == ("engine", "ambient", "drum_and_bass", "hiphop", "house", "rock", "techno")
    with ClapHost(sample_rate=RATE) as host:
        sound = next(i for i in host.param_infos() if i["name"] == "sound")
        assert (sound["min"], sound["max"], sound["default"]) == (0, const("LD_SOUND_COUNT") - 1, 0)
        assert sound["flags"] & CLAP_ENUM
        assert [host.value_text("sound", v) for v in range(len(SOUND_NAMES))] == list(SOUND_NAMES)
    plugin = vst3_plugin()
    assert plugin.parameters["sound"].valid_values == list(SOUND_NAMES)
    plugin.sound = "techno"
    assert plugin.sound == "techno"


def test_parameter_ids_and_bypass_is_flagged(private_endpoint):
    with ClapHost(sample_rate=RATE) as host:
        infos = host.param_infos()
    assert [i["id"] for i in infos] == sorted(PARAM.values())
    assert [i["name"] for i in infos if i["flags"] & CLAP_BYPASS] == ["bypass"]
    assert list(vst3_plugin().parameters) == [i["name"] for i in infos]


def test_state_round_trips_every_parameter_in_both_formats(private_endpoint, vst3_host):
    changed = {"tempo_bpm": 97.5, "seed": 42, "style": 3, "window_bars": 2, "lookahead": 3, "context_bars": 4,
               "underrun_policy": 1, "sync_mode": 2, "generator": 1, "mix": 35, "bypass": 1, "preroll": 1,
               "context_source": 2, "variation": 60, "sound": 4}
    assert set(changed) == set(PARAM)
    with ClapHost(sample_rate=RATE) as host:
        for name, value in changed.items():
            host.set_param(name, value)
        host.process(None, None, frames=16)
        saved = host.save_state()
    with ClapHost(sample_rate=RATE) as other:
        assert other.load_state(saved)
        assert {name: other.param(name) for name in PARAM} == changed

    lines = vst3_host("state")
    assert len(lines) == len(PARAM)
    assert all(saved == loaded for _, _, saved, loaded in lines), lines
    plugin = vst3_plugin()
    plugin.style, plugin.mix, plugin.bypass, plugin.preroll, plugin.tempo_bpm = "ambient", 35, True, "silence", 97.5
    state = plugin.raw_state
    fresh = vst3_plugin()
    fresh.raw_state = state
    assert (fresh.style, fresh.mix, fresh.bypass, fresh.preroll) == ("ambient", 35, True, "silence")
    assert fresh.parameters["tempo_bpm"].raw_value == plugin.parameters["tempo_bpm"].raw_value   # 97.5, shown as 98


def test_sample_rates_the_engine_cannot_run_are_refused_at_activation(private_endpoint):
    for rate in (22050, 44100, 48000, 96000, 192000):
        ClapHost(sample_rate=rate).close()
    for rate in (11025, 44100.5, 384000, 1234567.8):
        with pytest.raises(RuntimeError, match="activate failed"):
            ClapHost(sample_rate=rate)


# --- audio-thread behaviour without an engine -------------------------------------------------

def test_automation_points_land_at_their_sample_offsets_in_both_formats(private_endpoint, vst3_host):
    with ClapHost(sample_rate=RATE) as host:
        host.set_param("preroll", const("LD_PREROLL_SILENCE"))      # no engine: wet is silence
        host.process(None, None, frames=16)
        host.set_param("mix", 0, time=0)
        host.set_param("seed", 5, time=50)
        host.set_param("mix", 100, time=100)
        host.set_param("mix", 0, time=300)
        host.set_param("seed", 9, time=400)
        out = host.process(np.full((2, 512), 0.5, np.float32), Transport(playing=True, tempo=TEMPO))
        assert host.param("seed") == 9
    expected = np.r_[np.full(100, 0.5), np.zeros(200), np.full(212, 0.5)]
    np.testing.assert_array_equal(out[0], expected)
    lines = vst3_host("automation")
    np.testing.assert_array_equal(np.array(lines[0][1:], float), expected)
    assert lines[1] == ["seed", "9"], "points of several queues are all applied, in offset order"


def test_silence_flags_in_both_formats(private_endpoint, vst3_host):
    with ClapHost(sample_rate=RATE) as host:
        host.set_param("preroll", const("LD_PREROLL_SILENCE"))
        host.process(np.zeros((2, 256), np.float32), Transport(playing=True, tempo=TEMPO))
        assert host.constant_mask == 0b11, "silent output channels are flagged constant"
        host.set_param("mix", 0)
        host.process(np.full((2, 256), 0.25, np.float32), Transport(playing=True, tempo=TEMPO))
        assert host.constant_mask == 0
    assert [line for line in vst3_host("silence")] == [["silence_flags", "3"], ["silence_flags", "0"]]


def test_the_processor_says_which_process_context_fields_it_needs(vst3_host, private_endpoint):
    needs = int(vst3_host("requirements")[0][1])
    # project time music, bar position, cycle, tempo, time signature, transport state
    assert needs == (1 << 2) | (1 << 3) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 10)


# --- with an engine: offline renders are exact, so renders can be compared sample for sample ---

def test_preroll_plays_the_dry_input_and_the_first_window_crossfades_in(engine):
    frames = 4 * BAR
    outputs = {}
    for preroll in ("LD_PREROLL_DRY", "LD_PREROLL_SILENCE"):
        with loop_host(max_frames=4096, offline=True) as host:
            host.set_param("preroll", const(preroll))
            wait_connected(host)
            outputs[preroll] = render(host, frames, 4096)
            assert host.stats()["offline_timeouts"] == 0
    dry, silent = outputs["LD_PREROLL_DRY"], outputs["LD_PREROLL_SILENCE"]
    np.testing.assert_array_equal(dry[:, :2 * BAR], song(2 * BAR), err_msg="the preroll bars play the dry input")
    assert not silent[:, :2 * BAR].any(), "preroll silence: the preroll bars are silent"
    assert np.abs(silent[:, 2 * BAR:]).max() > 0.1, "generated audio follows the preroll"
    # The engine fades the first window in from silence with sin; the dry input fades out with cos.
    seam = round(RATE * const("LD_SEAM_MS") / 1000)
    turn = np.arange(seam) / seam * np.pi / 2
    np.testing.assert_allclose(dry[:, 2 * BAR:2 * BAR + seam] - silent[:, 2 * BAR:2 * BAR + seam],
                               song(seam, 2 * BAR) * np.cos(turn), atol=1e-6)
    np.testing.assert_array_equal(dry[:, 2 * BAR + seam:], silent[:, 2 * BAR + seam:])


def test_bypass_passes_the_dry_input_and_the_engine_keeps_going(engine):
    frames, on, off = 5 * BAR, 2 * BAR + 1000, 3 * BAR + 7000
    ramp = round(RATE * const("LD_SEAM_MS") / 1000)
    with loop_host(max_frames=1024, offline=True) as host:
        wait_connected(host)
        reference = render(host, frames, 1024)
    with loop_host(max_frames=1024, offline=True) as host:
        wait_connected(host)

        def toggle(pos):
            for at, value in ((on, 1), (off, 0)):
                if pos <= at < pos + 1024:
                    host.set_param("bypass", value, time=at - pos)
        bypassed = render(host, frames, 1024, events=toggle)
    np.testing.assert_array_equal(bypassed[:, :on], reference[:, :on])
    np.testing.assert_array_equal(bypassed[:, on + ramp:off], song(off - on - ramp, on + ramp))
    np.testing.assert_array_equal(bypassed[:, off + ramp:], reference[:, off + ramp:],
                                  err_msg="after bypass the generated audio is where it would have been")
    gain = (bypassed[0, on:on + ramp] - reference[0, on:on + ramp])
    assert np.abs(gain).max() > 0, "the bypass ramps (no click) rather than doing nothing"

    plugin = vst3_plugin()                   # VST3: bypassed from the start, exactly the input
    plugin.bypass = True
    audio = song(2 * 44100)
    np.testing.assert_array_equal(plugin.process(audio, 44100), audio)


@pytest.mark.parametrize("block", [1, 17, 4096, 16385, 65536, 1 << 20, (1 << 21) + 3])
def test_every_block_size_renders_the_same_audio_in_both_formats(engine, block):
    """One render per block size, compared with a render in 4096-frame blocks. Blocks of 1 and
    17 frames are used across the preroll/generated boundary only (hosts vary block sizes; a
    whole song in 1-frame cffi calls would take minutes). Larger blocks than LD_MAX_AUDIO_FRAMES
    are split into protocol-sized pieces."""
    frames = max(5 * BAR, block + 5)
    small = block < 4096
    blocks = {pos: block for pos in range(2 * BAR - 2000, 2 * BAR + 2000, block)} if small else None
    with loop_host(max_frames=4096 if small else block, offline=True) as host:
        wait_connected(host)
        out = render(host, frames, 4096 if small else block, blocks=blocks)
        assert host.stats()["offline_timeouts"] == 0
        assert host.stats()["dropped_frames"] == 0
    with loop_host(max_frames=4096, offline=True) as host:
        wait_connected(host)
        reference = render(host, frames, 4096)
    np.testing.assert_array_equal(out, reference)
    assert np.abs(out[:, 2 * BAR:]).max() > 0.1

    if block in (1, 17):
        return                              # pedalboard: tens of thousands of 1-frame calls are too slow
    plugin = vst3_plugin()
    plugin.generator, plugin.tempo_bpm = "loop", TEMPO
    audio = song(frames)
    rendered = plugin.process(audio, RATE, buffer_size=block)
    plugin.reset()
    reference = plugin.process(audio, RATE, buffer_size=4096)
    np.testing.assert_array_equal(rendered, reference)
    assert np.abs(rendered[:, 2 * BAR:]).max() > 0.1


# --- hosts that do not say what they do -------------------------------------------------------

def test_a_host_without_clap_render_exports_completely(engine, capfd):
    """qtractor's freewheel export: realtime-labelled blocks (no clap.render) at the ~30x real time
    qtractor exports at (../shared/qtractor's README). The shim infers the render from the speed, waits
    for every window like an offline render (same audio), says so, and goes back to realtime once
    the host stops. (Unpaced, this harness runs ~120x: the 2-bar preroll at 240 BPM is then 17 ms
    of wall time, and on 2 shared cores the I/O thread missed that deadline in 5 of 30 runs.)"""
    frames = 8 * BAR
    with loop_host(max_frames=1024, render=False) as host:
        wait_connected(host)
        inferred = {}
        exported = render(host, frames, 1024, pace=30.0,
                          events=lambda pos: inferred.update({pos: host.stats()["render_inferred"]}))
        assert all(inferred[pos] for pos in inferred if pos >= 2 * BAR), "inferred within the preroll, and kept"
        assert host.stats()["offline_timeouts"] == 0
        assert wait_until(lambda: host.stats()["render_inferred"] == 0, 5.0), "a stopped host is not a render"
    with loop_host(max_frames=1024, offline=True) as host:
        wait_connected(host)
        offline = render(host, frames, 1024)
    rms = np.sqrt((exported.reshape(2, 8, BAR) ** 2).mean(axis=(0, 2)))
    assert (rms > 0.05).all(), f"silent bars in the export: {rms}"
    np.testing.assert_array_equal(exported[:, 2 * BAR:], offline[:, 2 * BAR:])
    assert "faster than real time" in capfd.readouterr().err


def test_a_host_playing_in_real_time_is_not_taken_for_a_render(engine):
    with loop_host(max_frames=512, render=False) as host:
        wait_connected(host)
        render(host, 3 * BAR, 512, pace=1.0)
        assert host.stats()["render_inferred"] == 0


def test_no_process_calls_while_stopped_keep_the_session(engine_factory):
    """qtractor does not call process() while stopped; with the engine's session timeout at 1 s
    (standing in for 10 s), 6 s without a process call (the issue's 60 s against 10 s) must not
    close the session, and the shim never reconnects (one WELCOME since prepare)."""
    engine = engine_factory("--session-timeout", "1")
    with loop_host(max_frames=512) as host:
        wait_connected(host)
        render(host, BAR // 2, 512, pace=1.0)
        time.sleep(6.0)
        stats = host.stats()
        assert (stats["engine_state"], stats["sessions"]) == (1, 1), stats
        assert len(segments_of(engine.process.pid)) == 1, "the session (and its segment) is still there"


def test_an_offline_wait_keeps_the_session_alive(private_endpoint, monkeypatch, capfd):
    """A window that takes longer than the engine's session timeout to make: here an engine (in
    the test) that welcomes the plugin and sends its heartbeats but never publishes. While the
    audio thread waits offline, the I/O thread keeps the session alive: a message at least every
    250 ms for the whole 3 s wait (it used to stop 0.5 s into the wait)."""
    import zmq
    from bridge import protocol
    from bridge.endpoint import prepare
    from bridge.shm import TimelineStore
    monkeypatch.setenv("LIVEDIFF_OFFLINE_TIMEOUT_S", "3")
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind(prepare(private_endpoint))
    stores, arrivals, stop = [], [], threading.Event()

    def engine():
        identity, status_at = None, 0.0
        while not stop.is_set():
            if router.poll(20):
                identity, frame = router.recv_multipart()
                message = protocol.decode_message(frame)
                arrivals.append(time.monotonic())
                if isinstance(message, protocol.Hello):
                    stores.append(TimelineStore(message.instance, message.channels, message.sample_rate))
                    router.send_multipart([identity, protocol.welcome(stores[-1].name, 0, "loop")])
            if identity is not None and time.monotonic() - status_at > 0.2:
                router.send_multipart([identity, protocol.status(0, "ok", 0, 0, "loop", "main")])
                status_at = time.monotonic()
    thread = threading.Thread(target=engine)
    thread.start()
    try:
        with ClapHost(sample_rate=RATE, max_frames=4096, offline=True) as host:
            wait_connected(host)
            started = time.monotonic()
            host.process(song(4096), Transport(playing=True, tempo=TEMPO))     # a window that never comes
            ended = time.monotonic()
            assert ended - started >= 2.5 and host.stats()["offline_timeouts"] == 1, host.stats()
        during = [t for t in arrivals if started <= t <= ended]
        gaps = np.diff([started, *during, ended])
        assert gaps.max() < 0.5, f"{len(during)} messages during the wait, the longest gap {gaps.max():.2f} s"
        # the plugin's last word on the render is the total, even one block after its last report
        assert "offline render: 1 block(s) in all emitted silence" in capfd.readouterr().err
    finally:
        stop.set()
        thread.join()
        router.close(0)
        context.term()
        for store in stores:
            store.close()


def test_a_deactivation_before_welcome_still_closes_the_session(private_endpoint):
    """Hosts (pedalboard, validators) activate and deactivate at once: the HELLO may be out before
    the WELCOME is in. An engine that has not answered yet (a ROUTER that reads and never replies)
    must still get the BYE, or the session it opens lingers for the session timeout."""
    import zmq
    from bridge import protocol
    from bridge.endpoint import prepare
    context = zmq.Context()
    engine = context.socket(zmq.ROUTER)
    engine.bind(prepare(private_endpoint))
    try:
        host = ClapHost(sample_rate=RATE)
        assert engine.poll(5000), "no HELLO"
        hello = protocol.decode_message(engine.recv_multipart()[1])
        assert isinstance(hello, protocol.Hello)
        host.close()
        assert engine.poll(2000), "deactivated before WELCOME: no BYE"
        bye = protocol.decode_message(engine.recv_multipart()[1])
        assert isinstance(bye, protocol.Bye) and bye.instance == hello.instance
    finally:
        engine.close(0)
        context.term()


def test_sync_mode_switches_are_not_taken_for_a_jumping_host(engine, capfd):
    """pluginval automates sync_mode: switching onto the own clock continues from where the
    position is (no new epoch); switching onto the host's moves it (a new epoch, marked as the
    parameter's doing), so the engine does not warn about a host that jumps."""
    with loop_host(max_frames=512) as host:
        wait_connected(host)
        epochs = []
        for i in range(24):
            host.set_param("sync_mode", const("LD_SYNC_FREE") if i % 2 else const("LD_SYNC_HOST"))
            host.process(song(512), Transport(playing=False, tempo=TEMPO))    # a host that never played
            epochs.append(host.stats()["epoch"])
            time.sleep(0.02)
    assert epochs[-1] - epochs[0] == 11, "one new epoch per switch onto the (stopped) host's position"
    time.sleep(0.3)
    assert "epoch changes within" not in capfd.readouterr().err
