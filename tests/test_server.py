"""`livediff serve` over a real ZeroMQ socket: bad input is refused with a clear ERROR while a
healthy session next to it keeps getting windows; sessions open, replace and close cleanly."""
from __future__ import annotations

import os
import stat
import time

import msgpack
import numpy as np
import pytest

from bridge import protocol
from bridge.client import Client
from bridge.layout import const
from bridge.presets import SOUND_NAMES
from bridge.protocol import ERR, KEY, MSG
from bridge.shm import SHM_DIR, TimelineReader
from engine.dsp import SEAM_SECONDS

SR, TEMPO = 44100, 120.0
BAR = SR * 2  # one 4/4 bar at 120 BPM


class HealthySession:
    """An offline plugin session fed one bar at a time; windows are read back from its segment."""

    def __init__(self, endpoint: str, **params: float):
        self.client = Client(endpoint)
        welcome = self.client.hello(SR, 2, offline=True, generator=const("LD_GENERATOR_LOOP"), seed=3, **params)
        self.reader = TimelineReader(welcome["shm_name"])
        self.input = np.random.default_rng(5).uniform(-0.5, 0.5, (2, BAR * 12)).astype(np.float32)
        self.bars_sent = 0

    def feed_bar(self) -> None:
        start = self.bars_sent * BAR
        self.client.transport(pos_samples=start, tempo=TEMPO, offline=True)
        for pos in range(start, start + BAR, 16384):
            self.client.audio(pos_samples=pos, tempo=TEMPO, audio=self.input[:, pos:min(pos + 16384, start + BAR)])
        self.bars_sent += 1

    def wait_window(self, bar: int, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.reader.slots() if s.bar_index == bar]
            if found:
                return max(found, key=lambda s: s.window_id)    # a replacement wins, as in the shim
            self.client.recv(0.02)  # drain heartbeats
        raise AssertionError(f"window at bar {bar} never arrived")

    def close(self) -> None:
        self.reader.close()
        self.client.bye()
        self.client.close(linger_ms=10_000)   # the BYE goes out even behind a queue of messages, on a loaded machine too


def _hello(version=const("LD_PROTOCOL_VERSION"), sample_rate=SR) -> dict:
    return {KEY["type"]: MSG["hello"], KEY["instance"]: 99, KEY["version"]: version, KEY["format"]: "clap",
            KEY["sample_rate"]: sample_rate, KEY["max_block"]: 512, KEY["channels"]: 2,
            KEY["process_mode"]: 0, KEY["params"]: {protocol.PARAM["generator"]: const("LD_GENERATOR_LOOP")}}


def _audio(frames: int, data: bytes) -> dict:
    return {KEY["type"]: MSG["audio"], KEY["instance"]: 99, KEY["epoch"]: 0, KEY["pos_samples"]: 0,
            KEY["pos_beats"]: 0.0, KEY["tempo"]: TEMPO, KEY["frames"]: frames, KEY["channels"]: 2,
            KEY["input"]: data, KEY["sidechain"]: None}


# (name, frame, expected code, words the message must contain); "hello first" cases run before the bad
# client has a session, the others after it said a valid hello.
BEFORE_HELLO = [
    ("malformed bytes", b"\xc1\xff not msgpack", "LD_ERR_MALFORMED", "not a msgpack map"),
    ("non-map msgpack", msgpack.packb([1, 2, 3]), "LD_ERR_MALFORMED", "msgpack list"),
    ("unknown type", msgpack.packb({KEY["type"]: 77, KEY["instance"]: 99}), "LD_ERR_UNKNOWN_MESSAGE", "TYPE 77"),
    ("wrong version", msgpack.packb(_hello(version=9)), "LD_ERR_VERSION", "VERSION 9"),
    ("unsupported rate", msgpack.packb(_hello(sample_rate=12345)), "LD_ERR_SAMPLE_RATE", "44100"),
    ("oversized frame", b"\x00" * (const("LD_MAX_MESSAGE_BYTES") + 1), "LD_ERR_OVERSIZED", "at most"),
    ("message before hello", msgpack.packb(_audio(4, bytes(32)), use_bin_type=True), "LD_ERR_UNKNOWN_SESSION", "HELLO first"),
]
AFTER_HELLO = [
    ("wrong field type", msgpack.packb({**_audio(4, bytes(32)), KEY["tempo"]: "fast"}, use_bin_type=True),
     "LD_ERR_TYPE", "TEMPO is str"),
    ("audio length mismatch", msgpack.packb(_audio(4, bytes(30)), use_bin_type=True), "LD_ERR_TYPE", "FRAMES*CHANNELS*4"),
    ("too many frames", msgpack.packb(_audio(const("LD_MAX_AUDIO_FRAMES") + 1, bytes(8)), use_bin_type=True),
     "LD_ERR_OVERSIZED", "FRAMES"),
    ("missing key", msgpack.packb({KEY["type"]: MSG["params"], KEY["instance"]: 99}), "LD_ERR_MALFORMED", "PARAMS"),
    ("parameter out of range", protocol.encode("params", instance=99, params={protocol.PARAM["lookahead"]: 42}),
     "LD_ERR_TYPE", "lookahead"),
]


def test_bad_input_gets_errors_while_a_healthy_session_keeps_receiving_windows(engine):
    healthy = HealthySession(engine.endpoint)
    bad = Client(engine.endpoint, instance=99)
    try:
        segment = SHM_DIR / healthy.reader.path.name
        assert stat.S_IMODE(os.stat(segment).st_mode) == 0o600

        def check(cases):
            for name, frame, code, words in cases:
                healthy.feed_bar()
                bad.send_raw(frame)
                reply = bad.wait_for("error", timeout=5)
                assert reply["code"] == ERR[code], (name, reply)
                assert words in reply["message"], (name, reply["message"])
                window = healthy.wait_window(healthy.bars_sent + 1)
                assert window.frames == BAR and window.start_sample == (healthy.bars_sent + 1) * BAR

        check(BEFORE_HELLO)
        bad.send_raw(msgpack.packb(_hello()))
        assert bad.wait_for("welcome")["shm_name"]
        check(AFTER_HELLO)

        # The loop generator repeats input bar 0 (the first window after the preroll has only
        # that bar of context), so the healthy session's windows carry real, placed audio.
        window = healthy.wait_window(2)
        assert window.flags == const("LD_WINDOW_GENERATED")
        expected = healthy.input[:, :BAR].copy()   # faded in over the seam: the preroll before it is silent
        seam = round(SEAM_SECONDS * SR)
        expected[:, :seam] *= np.sin(np.arange(seam) / seam * np.pi / 2).astype(np.float32)
        np.testing.assert_allclose(window.audio, expected, atol=1e-6)
        assert [s.flags for s in healthy.reader.slots() if s.bar_index < 2] == [const("LD_WINDOW_PREROLL")] * 2
    finally:
        healthy.close()
        bad.close()


def test_each_session_gets_the_sound_it_chose_and_a_change_reaches_the_windows_ahead(engine_factory, tmp_path,
                                                                                    monkeypatch, capfd):
    """The `sound` parameter picks a preset's engine part per session: two sessions on one engine
    with the same input and seed, one at `engine` (no preset), one at `house` - here your own
    house preset, only a -12 dB gain, so the difference is exact. When the first switches to
    house, the windows made after the switch are 12 dB down too; the other session is untouched."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))      # the engine process reads your presets there
    (tmp_path / "livediff" / "presets").mkdir(parents=True)
    (tmp_path / "livediff" / "presets" / "house.toml").write_text('style = "house"\ngain_db = -12.0\n')
    engine = engine_factory()
    house = SOUND_NAMES.index("house")
    plain, shaped = HealthySession(engine.endpoint), HealthySession(engine.endpoint, sound=house)
    down = np.float32(10 ** (-12 / 20))
    try:
        for _ in range(3):
            plain.feed_bar()
            shaped.feed_bar()
        before, other = plain.wait_window(3), shaped.wait_window(3)
        assert np.sqrt(np.mean(before.audio ** 2)) > 0.1
        np.testing.assert_allclose(other.audio, before.audio * down, atol=1e-6)
        plain.client.send("params", params={protocol.PARAM["sound"]: house})
        for _ in range(4):
            plain.feed_bar()
            shaped.feed_bar()
        after, other = plain.wait_window(7), shaped.wait_window(7)
        np.testing.assert_allclose(after.audio, other.audio, atol=1e-6)
        level = lambda w: 20 * np.log10(np.sqrt(np.mean(w.audio ** 2)))   # noqa: E731
        assert abs(level(after) - (level(before) - 12)) < 1.0
        assert "sound house from the next window: steps default, gain -12 dB, fx none" in capfd.readouterr().err
    finally:
        plain.close()
        shaped.close()


def test_a_sound_whose_preset_is_broken_plays_the_engines_sound_and_says_why(engine_factory, tmp_path, monkeypatch,
                                                                          capfd):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "livediff" / "presets").mkdir(parents=True)
    (tmp_path / "livediff" / "presets" / "rock.toml").write_text('style = "polka"\n')
    engine = engine_factory()
    plain, broken = HealthySession(engine.endpoint), HealthySession(engine.endpoint, sound=SOUND_NAMES.index("rock"))
    try:
        for _ in range(3):
            plain.feed_bar()
            broken.feed_bar()
        np.testing.assert_array_equal(broken.wait_window(3).audio, plain.wait_window(3).audio)
    finally:
        plain.close()
        broken.close()
    log = capfd.readouterr().err
    assert "sound rock: " in log and "style = 'polka' is not allowed" in log and "get the engine's sound" in log
    assert "sound rock cannot be read" in log and "it gets the engine's sound" in log


def test_heartbeats_replace_and_bye(engine):
    client = Client(engine.endpoint)
    first = client.hello(SR, 2, generator=const("LD_GENERATOR_LOOP"))
    assert first["generator"] == "loop" and first["layout_version"] == const("LD_SHM_LAYOUT_VERSION")
    client.hello(SR, 1, generator=const("LD_GENERATOR_LOOP"))   # a second hello replaces the session
    stamps = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        reply = client.recv(0.5)
        if reply and reply["type"] == MSG["status"]:
            stamps.append(time.monotonic())
            assert reply["generator"] == "loop"
    gaps = np.diff(stamps)
    assert len(stamps) >= 5 and np.median(gaps) <= 0.25 and gaps.max() < 0.5, gaps
    reader = TimelineReader(first["shm_name"])
    assert reader.header.channels == 1, "the replacing hello's segment has its channel count"
    reader.close()
    client.bye()
    deadline = time.monotonic() + 3
    while (SHM_DIR / first["shm_name"][1:]).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not (SHM_DIR / first["shm_name"][1:]).exists(), "BYE did not unlink the segment"
    client.close()


def test_silent_session_times_out(engine_factory):
    engine = engine_factory("--session-timeout", "0.5")
    client = Client(engine.endpoint)
    name = client.hello(SR, 2, generator=const("LD_GENERATOR_LOOP"))["shm_name"]
    assert (SHM_DIR / name[1:]).exists()
    time.sleep(1.2)
    assert not (SHM_DIR / name[1:]).exists(), "a silent session kept its segment"
    client.send("params", params={})
    assert client.wait_for("error")["code"] == ERR["LD_ERR_UNKNOWN_SESSION"]
    client.close()


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5555", "tcp://10.1.2.3:5555", "ipc://relative/path"])
def test_serve_refuses_non_local_endpoints(endpoint, caplog):
    from bridge.cli import main
    assert main(["serve", "--endpoint", endpoint]) == 2
    assert "allowed: ipc://<path> or tcp://127.0.0.1:<port>" in caplog.text
