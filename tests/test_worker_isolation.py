"""A bug planning or placing one session's windows pauses that session only (issue #9: one
session's ZeroDivisionError in planning stopped the windows of every session)."""
from __future__ import annotations

import time

import numpy as np

from bridge.convert import new_session
from bridge.shm import TimelineStore
from engine import planner, worker
from engine.scheduler import Scheduler
from engine.transport import InputBlock, TransportSnapshot
from tests.conftest import wait_until

SR, TEMPO = 8000, 120.0
BAR = SR * 2


def test_a_failing_session_pauses_while_the_others_keep_getting_windows(monkeypatch):
    windows, problems = [], []
    scheduler = Scheduler(on_window=lambda s, e: windows.append((s.instance, e["bar_index"])),
                          on_problem=lambda s, kind, message: problems.append((s.instance, kind, message)))
    stores = [TimelineStore(0x150_0000 + n, 1, SR) for n in range(2)]
    sick, healthy = (new_session(0x150_0000 + n, SR, 1, stores[n], offline=True, generator="loop") for n in range(2))
    broken = {"on": True}
    real_pending = planner.pending

    def pending(session, now, *rest):
        if session is sick and broken["on"]:
            raise ZeroDivisionError("planted bug")
        return real_pending(session, now, *rest)
    monkeypatch.setattr(planner, "pending", pending)
    monkeypatch.setattr(worker, "QUARANTINE_SECONDS", 0.3)
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1, BAR)).astype(np.float32)

    def play(session, bar):
        scheduler.on_transport(session, TransportSnapshot(epoch=0, playing=True, tempo=TEMPO, pos_samples=bar * BAR,
                                                          pos_beats=bar * 4.0, bar_start_beats=bar * 4.0, tsig_num=4,
                                                          tsig_den=4, offline=True), time.monotonic())
        scheduler.on_audio(session, InputBlock(epoch=0, pos_samples=bar * BAR, input=audio))

    made = lambda session, bar: (session.instance, bar) in windows   # noqa: E731
    try:
        for session in (sick, healthy):
            scheduler.add(session)
        scheduler.start()
        for bar in range(6):
            play(sick, bar)
            play(healthy, bar)
            assert wait_until(lambda: made(healthy, bar), 5.0), f"the healthy session's bar {bar} never came"
        assert not any(instance == sick.instance for instance, _ in windows)
        assert [(kind, "ZeroDivisionError: planted bug" in message) for i, kind, message in problems
                if i == sick.instance][:1] == [("internal", True)]
        assert sick.problem[0] == "internal"
        broken["on"] = False                       # the bug's trigger is gone: after the pause it goes on
        play(sick, 6)
        assert wait_until(lambda: made(sick, 6), 5.0) and sick.problem is None
    finally:
        scheduler.stop()
        for store in stores:
            store.close()
