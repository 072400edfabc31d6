"""The engine's INFO log is for people: one line per session (host, rate, tempo, generator), one
per epoch change with its cause, underruns at most every few seconds, no line per window. A
session a host opens and drops unused (pedalboard's throwaway instances) stays out of it."""
from __future__ import annotations

import logging
import re
import threading

import pytest

from bridge.client import Client
from bridge.server import Engine
from conftest import wait_until
from test_server import BAR, TEMPO, HealthySession


@pytest.fixture
def engine_in_process(private_endpoint, caplog):
    caplog.set_level(logging.INFO, logger="livediff")
    engine = Engine(private_endpoint)
    stop = threading.Event()
    thread = threading.Thread(target=engine.serve, args=(stop,))
    thread.start()
    yield engine
    stop.set()
    thread.join()


def info_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("livediff")]


def test_one_line_per_session_and_epoch_and_rate_limited_underruns(engine_in_process, private_endpoint, caplog):
    unused = Client(private_endpoint)
    unused.hello(44100, 2, offline=True)
    unused.bye()
    unused.close()
    session = HealthySession(private_endpoint)
    instance = f"{session.client.instance:016x}"
    for _ in range(4):
        session.feed_bar()
    session.wait_window(3)
    # a seek back to bar 1: a new epoch
    session.client.transport(pos_samples=BAR, tempo=TEMPO, offline=True, epoch=1)
    # twenty reports of more underruns within a second: one line
    for n in range(1, 21):
        session.client.transport(pos_samples=BAR, tempo=TEMPO, offline=True, epoch=1, underruns=n)
    assert wait_until(lambda: any("more block(s) played without generated audio" in m for m in info_lines(caplog)))
    session.close()
    # behind twenty queued TRANSPORTs (the engine reads 16 at a time): once, under CI load, not within 5 s
    assert wait_until(lambda: any(m.endswith("closed (bye)") and instance in m for m in info_lines(caplog)), 15.0)

    lines = [m for m in info_lines(caplog) if not m.startswith(("serving on", "removed stale"))]
    mine = [m for m in lines if instance in m]
    assert len(lines) == len(mine), f"the unused session is in the INFO log: {lines}"
    assert re.fullmatch(rf"session {instance}: harness host, 44100 Hz, 2 ch, 120 BPM 4/4, loop generator, "
                        r"offline render", mine[0]), mine
    # bars 1-3 were heard: the jump back reads as a loop the host did not announce
    assert [m for m in mine if ": epoch " in m] == [f"session {instance}: epoch 1: jumped back from bar 3 to bar 1, "
                                                    f"into what was heard: a loop without loop points (beats 4-16); "
                                                    f"its bars continue what played before the jump, and the next "
                                                    f"jump back is predicted"], mine
    assert len([m for m in mine if "more block(s)" in m]) == 1, mine
    assert len(mine) == 4, mine     # session, epoch, underruns, closed: nothing per window
