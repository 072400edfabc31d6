"""Many sessions on one worker: a seek is served at once, ahead of other sessions' work, and a
session whose generator cannot keep up does not starve the others (in-process, real time)."""
from __future__ import annotations

import time

import numpy as np

from bridge.convert import new_session
from bridge.shm import TimelineStore
from engine.scheduler import Scheduler
from engine.transport import InputBlock, TransportSnapshot
from tests.test_scheduling_tempo import SR, slow_model, wait_until  # noqa: F401 - slow_model is a fixture


class Player:
    """A realtime session at a fixed tempo whose transport follows the wall clock from a start sample."""

    def __init__(self, scheduler: Scheduler, instance: int, tempo: float, tsig=(4, 4), **params):
        self.scheduler, self.tempo, self.tsig = scheduler, tempo, tsig
        self.store = TimelineStore(instance, 1, SR)
        self.session = new_session(instance, SR, 1, self.store, **params)
        scheduler.add(self.session)
        self.epoch, self.origin, self.started, self.sent = 0, 0, time.monotonic(), 0
        self.input = np.random.default_rng(instance).uniform(-0.5, 0.5, (1, 120 * SR)).astype(np.float32)

    def seek(self, sample: int) -> None:
        self.epoch += 1
        self.origin, self.started, self.sent = sample, time.monotonic(), sample
        self.tick()

    def tick(self) -> int:
        """Send the transport of now and the input up to now; returns the playhead."""
        pos = self.origin + int((time.monotonic() - self.started) * SR)
        beats = pos * self.tempo / 60 / SR
        bar_beats = self.tsig[0] * 4 / self.tsig[1]
        self.scheduler.on_transport(self.session, TransportSnapshot(
            epoch=self.epoch, playing=True, tempo=self.tempo, pos_samples=pos, pos_beats=beats,
            bar_start_beats=beats // bar_beats * bar_beats, tsig_num=self.tsig[0], tsig_den=self.tsig[1]),
            time.monotonic())
        if pos > self.sent:
            self.scheduler.on_audio(self.session, InputBlock(epoch=self.epoch, pos_samples=self.sent,
                                                             input=self.input[:, self.sent:pos]))
            self.sent = pos
        return pos

    def close(self):
        self.store.close()


def run_for(players, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for player in players:
            player.tick()
        time.sleep(0.01)


def test_a_seek_is_generated_next_ahead_of_other_sessions_work(slow_model):
    slow_model.delay = 0.05
    entries = []
    scheduler = Scheduler(on_window=lambda s, e: entries.append((time.monotonic(), e)))
    busy = Player(scheduler, 0xB0, 240.0, generator="diffusion", lookahead=6)
    seeker = Player(scheduler, 0x5E, 240.0, generator="diffusion")
    scheduler.start()
    try:
        busy.seek(20 * SR)                       # mid-song: 7 windows to make, 0.05 s each
        run_for([busy], 0.12)
        seeker.seek(30 * SR + SR // 3)           # the other session jumps into bar 30
        sought = time.monotonic()
        assert wait_until(lambda: any(e["instance"] == "000000000000005e" and e["kind"] == "generate"
                                      for _, e in entries), timeout=3)
        made = [(t, e) for t, e in entries if t >= sought and e["kind"] == "generate"]
        # at most the job already running finishes first; then the seek's window
        first = next(i for i, (_, e) in enumerate(made) if e["instance"] == "000000000000005e")
        assert first <= 1, [e["instance"] for _, e in made]
        t, window = made[first]
        assert window["bar_index"] == 30 and window["start_sample"] <= 30 * SR + SR // 3
        assert t - sought < 2 * 0.05 + 0.1, "seek to first audio took longer than two generations"
        assert [e["bar_index"] for _, e in made if e["instance"] == "00000000000000b0"], "the busy session stalled"
    finally:
        scheduler.stop()
        busy.close()
        seeker.close()


def test_an_overloaded_session_does_not_starve_the_others(slow_model):
    slow_model.delay = 0.3                        # the slow session needs 0.3 s per 0.2 s window
    scheduler = Scheduler()
    slow = Player(scheduler, 0x51, 300.0, tsig=(1, 4), generator="diffusion")
    # A job that runs is not preempted, so the others' lookahead (3 x 0.2 s) must cover one slow job (0.3 s).
    fast = [Player(scheduler, 0xF0 + i, 300.0, tsig=(1, 4), generator="loop", lookahead=3)
            for i in range(3)]
    scheduler.start()
    try:
        for player in [slow, *fast]:
            player.seek(10 * SR)
        run_for([slow, *fast], 2.5)
    finally:
        scheduler.stop()
    try:
        for player in fast:
            assert player.session.late == 0, "a fast session missed deadlines because of the slow one"
            assert player.session.published >= 2.5 / 0.2
        assert slow.session.published >= 3, "the slow session was starved in turn"
    finally:
        for player in [slow, *fast]:
            player.close()
