"""The CLAP build driven by the cffi host: parameters and state, the song-position/epoch
rules of docs/protocol.md, garbage transport values, and realtime play against the engine."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tests.host.clap_host import ClapHost, Transport

RATE = 48000
BLOCK = 512


@pytest.fixture
def host(private_endpoint):
    with ClapHost(sample_rate=RATE, max_frames=BLOCK) as plugin:
        yield plugin


def play(host, transport, blocks, audio=None):
    """Process `blocks` blocks from `transport` on; returns the next transport and the output."""
    outputs = []
    for _ in range(blocks):
        outputs.append(host.process(audio, transport, frames=BLOCK))
        transport = transport.advanced(BLOCK, RATE)
    return transport, np.concatenate(outputs, axis=1)


def test_parameters_and_state_round_trip(host):
    host.set_param("seed", 7)
    host.set_param("tempo_bpm", 92.5)
    host.set_param("mix", 1000)                     # out of range: clamped, not trusted
    host.process(None, None, frames=64)
    assert (host.param("seed"), host.param("tempo_bpm"), host.param("mix")) == (7, 92.5, 100)
    saved = host.save_state()
    host.set_param("seed", 9)
    host.process(None, None, frames=64)
    assert host.param("seed") == 9
    assert host.load_state(saved)                   # read back through 7-byte partial reads
    assert host.param("seed") == 7
    assert not host.load_state(b"not a livediff state")


def test_epoch_bumps_on_jumps_not_on_tempo(host):
    transport, _ = play(host, Transport(playing=True, tempo=120.0), 4)
    epoch = host.stats()["epoch"]
    transport, _ = play(host, Transport(playing=True, tempo=90.0, beats=transport.beats,
                                        seconds=transport.beats * 60 / 120), 4)
    assert host.stats()["epoch"] == epoch, "a tempo change is not a discontinuity"
    play(host, Transport(playing=True, tempo=90.0, beats=64.0), 2)       # seek
    assert host.stats()["epoch"] == epoch + 1
    play(host, Transport(playing=True, tempo=90.0, beats=64.0, tsig=(3, 4)), 1)
    assert host.stats()["epoch"] == epoch + 2, "a time-signature change starts a new epoch"


def test_stopped_host_stands_still_and_pedalboard_like_host_free_runs(host):
    host.set_param("underrun_policy", 2)            # dry: a stopped host passes the input through
    host.set_param("mix", 100)
    audio = np.full((2, BLOCK), 0.25, np.float32)
    # Never playing (like pedalboard): the shim runs its own clock; no engine -> silence.
    for _ in range(3):
        out = host.process(audio, Transport(playing=False, tempo=120.0, beats=0.0))
    assert host.stats()["underruns"] == 3
    epoch = host.stats()["epoch"]
    play(host, Transport(playing=True, tempo=120.0, beats=8.0), 3, audio)
    assert host.stats()["epoch"] == epoch + 1, "switching to the host clock is a jump"
    underruns = host.stats()["underruns"]
    out = host.process(audio, Transport(playing=False, tempo=120.0, beats=9.0))
    assert host.stats()["underruns"] == underruns, "stopped is not an underrun"
    np.testing.assert_allclose(out, audio)


def test_free_running_host_without_transport(host):
    for _ in range(5):
        host.process(None, None, frames=BLOCK)
    epoch = host.stats()["epoch"]
    for _ in range(5):
        host.process(None, None, frames=BLOCK)
    assert host.stats()["epoch"] == epoch


@pytest.mark.parametrize("garbage", [
    {"tempo": 0.0}, {"tempo": -5.0}, {"tempo": math.nan}, {"tempo": 1e12}, {"tsig": (0, 4)}, {"tsig": (4, 3)},
    {"beats": math.inf}, {"beats": -4.0, "seconds": -2.0},        # the last one is a legal pre-roll
])
def test_garbage_host_values_do_not_crash(host, garbage):
    transport = Transport(playing=True, **garbage)
    for _ in range(4):
        out = host.process(np.ones((2, BLOCK), np.float32), transport, frames=BLOCK)
        assert np.all(np.isfinite(out))
        transport = transport.advanced(BLOCK, RATE) if "tempo" not in garbage else transport


def test_realtime_plays_generated_audio_from_the_engine(private_endpoint, engine):
    """Realtime, paced like a DAW: after the preroll bars, generated audio plays."""
    with ClapHost(sample_rate=RATE, max_frames=4096) as plugin:
        plugin.set_param("generator", 1)            # LD_GENERATOR_LOOP
        beat = RATE // 2                            # 120 BPM
        audio = np.zeros((2, 4096), np.float32)
        transport = Transport(playing=True, tempo=120.0)
        outputs = []
        started = time.monotonic()
        for index in range(int(5 * 4 * beat / 4096)):   # 5 bars
            t = index * 4096
            audio[:] = 0
            audio[:, (beat - t % beat) % beat::beat] = 0.9          # a click per beat
            outputs.append(plugin.process(audio, transport))
            transport = transport.advanced(4096, RATE)
            time.sleep(max(0.0, started + (t + 4096) / RATE - time.monotonic()))
        out = np.concatenate(outputs, axis=1)
        assert plugin.stats()["engine_state"] == 1
    bar = 4 * beat
    assert np.abs(out[:, 3 * bar:]).max() > 0.1, "bars after the preroll carry generated audio"
