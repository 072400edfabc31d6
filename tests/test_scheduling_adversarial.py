"""Adversarial transport against a real engine over the real protocol: garbage tempos, a time
signature of 0, a position jumping backwards every block. Each case gets one clear log line (not
one per block), the engine stays up and the session goes on making windows afterwards."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from bridge.client import Client
from bridge.layout import const
from bridge.shm import TimelineReader

SR, TEMPO, BLOCK = 22050, 120.0, 1024
BAR = SR * 2


class Host:
    """An offline plugin session sending whatever transport it is told to."""

    def __init__(self, endpoint: str):
        self.client = Client(endpoint)
        welcome = self.client.hello(SR, 1, offline=True, generator=const("LD_GENERATOR_LOOP"))
        self.reader = TimelineReader(welcome["shm_name"])
        self.epoch = 0

    def block(self, pos: int, tempo=TEMPO, tsig=(4, 4), epoch=None, beats=None):
        beats = pos * TEMPO / 60 / SR if beats is None else beats
        flags = const("LD_TRANSPORT_PLAYING") | const("LD_TRANSPORT_TEMPO_VALID") | const("LD_TRANSPORT_TSIG_VALID")
        self.epoch = self.epoch if epoch is None else epoch
        self.client.send("transport", epoch=self.epoch, flags=flags, tempo=tempo, pos_samples=pos, pos_beats=beats,
                         bar_start_beats=0.0, tsig_num=tsig[0], tsig_den=tsig[1], loop_start_beats=0.0,
                         loop_end_beats=0.0, process_mode=const("LD_MODE_OFFLINE"), underruns=0, offline_timeouts=0,
                         dropped_frames=0, grid=0)
        self.client.audio(pos_samples=pos, tempo=TEMPO, epoch=self.epoch,
                          audio=np.full((1, BLOCK), 0.25, np.float32))

    def play(self, start: int, end: int, **garbage):
        for pos in range(start, end, BLOCK):
            self.block(pos, **garbage)

    def has_window(self, bar: int, timeout=5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, covered = self.reader.render(self.epoch, bar * BAR, BAR)
            if covered.all():
                return True
            time.sleep(0.01)
        return False

    def close(self):
        self.client.bye()
        self.reader.close()
        self.client.close()


CASES = [
    ("tempo 0", dict(tempo=0.0), "tempo 0.0 BPM ignored; allowed: 20..300 BPM"),
    ("negative tempo", dict(tempo=-5.0), "tempo -5.0 BPM ignored"),
    ("NaN tempo", dict(tempo=math.nan), "tempo nan BPM ignored"),
    ("10,000 BPM", dict(tempo=10_000.0), "tempo 10000.0 BPM ignored"),
    ("time signature 0", dict(tsig=(0, 4)), "time signature 0/4 ignored"),
]


def test_garbage_transport_is_logged_once_and_the_session_goes_on(capfd, engine_factory):
    engine = engine_factory()
    for name, garbage, line in CASES:
        host = Host(engine.endpoint)
        try:
            host.play(0, 2 * BAR)
            assert host.has_window(2), name
            host.play(2 * BAR, 4 * BAR, **garbage)            # two bars of garbage, 86 blocks
            host.play(4 * BAR, 6 * BAR)
            assert host.has_window(6), f"{name}: the session stopped making windows"
        finally:
            host.close()
        log = capfd.readouterr().err
        assert log.count(line) == 1, f"{name}: expected one log line '{line}', got:\n{log}"
    assert engine.process.poll() is None


@pytest.mark.parametrize("new_epochs", [True, False], ids=["epoch-per-jump", "same-epoch"])
def test_a_position_jumping_backwards_every_block(capfd, engine_factory, new_epochs):
    engine = engine_factory()
    host = Host(engine.endpoint)
    try:
        host.play(0, 2 * BAR)
        for k in range(40):                                     # each block starts before the last one
            host.block(2 * BAR - k * BLOCK // 2, epoch=host.epoch + 1 if new_epochs else None)
        host.play(2 * BAR, 5 * BAR, epoch=host.epoch + 1)
        assert host.has_window(5), "the session stopped making windows"
    finally:
        host.close()
    log = capfd.readouterr().err
    words = "epoch changes within" if new_epochs else "position went back"
    assert log.count(words) == 1, log
    assert engine.process.poll() is None
