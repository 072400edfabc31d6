"""An offline render started before its engine: the blocks wait for the engine (the shim keeps
saying HELLO), and the render is the same, sample for sample, as one with the engine there
from the start. Issue #9: the first block waited 2.5 s, then all the rest came out silent."""
from __future__ import annotations

import threading
import time

import numpy as np

from tests.host.clap_host import ClapHost, Transport

RATE, BLOCK, TEMPO = 48000, 1024, 240.0     # 1 s bars
BARS = 6


def render(engine_factory, delay: float) -> tuple[np.ndarray, dict]:
    started = []
    starter = threading.Timer(delay, lambda: started.append(engine_factory()))
    with ClapHost(sample_rate=RATE, max_frames=BLOCK, offline=True) as host:
        host.set_param("generator", 1)      # LD_GENERATOR_LOOP
        starter.start()
        audio = np.random.default_rng(1).uniform(-0.3, 0.3, (2, BARS * RATE)).astype(np.float32)
        transport, outputs = Transport(playing=True, tempo=TEMPO), []
        for at in range(0, audio.shape[1], BLOCK):
            outputs.append(host.process(audio[:, at:at + BLOCK], transport))
            transport = transport.advanced(BLOCK, RATE)
        stats = host.stats()
    starter.join()
    for engine in started:
        engine.stop()
    return np.concatenate(outputs, axis=1), stats


def test_an_offline_render_waits_for_an_engine_started_after_the_plugin(engine_factory):
    on_time, _ = render(engine_factory, 0.0)
    began = time.monotonic()
    late, stats = render(engine_factory, 3.0)           # past the 2.5 s the shim gives a first answer
    assert time.monotonic() - began >= 3.0
    assert stats["offline_timeouts"] == 0 and stats["dropped_frames"] == 0, stats
    bars = late[:, :BARS * RATE].reshape(2, BARS, RATE)
    assert np.all(np.abs(bars[:, 2:]).max(axis=(0, 2)) > 0.1), "every bar after the two preroll bars plays"
    np.testing.assert_array_equal(late, on_time)
