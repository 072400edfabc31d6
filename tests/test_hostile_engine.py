"""One session never hurts another (issue #9): a healthy realtime session keeps full coverage
while other identities send each hostile case of tests/hostile.py and while a flood is
throttled; absurd positions are refused at the wire; sessions are capped, bound to their
connection and cost no file descriptor of their own; refusal logs stay short; a failure
handling one session closes that session only."""
from __future__ import annotations

import multiprocessing
import re
import threading
import time

import pytest

from bridge import protocol, server
from bridge.client import Client
from bridge.layout import const
from bridge.protocol import ERR
from bridge.server import Engine
from bridge.shm import SHM_DIR, segment_name
from tests import hostile
from tests.conftest import start_engine

# Cases the wire refuses outright (ERROR LD_ERR_TYPE naming the field); the others are valid
# messages the engine must absorb (1-frame audio far apart, a loop shorter than a sample).
REFUSED = {
    "positions 1e306 then 2e306 beats": "POS_BEATS is 1e+306; allowed: finite quarter notes -1073741824..1073741824",
    "a loop of (1e306, 2e306) beats": "LOOP_START_BEATS is 1e+306",
    "1e300 beats, then a meter change": "POS_BEATS is 1e+300",
    "+-1e300 beats": "POS_BEATS is -1e+300",
    "INT64_MAX samples": "POS_SAMPLES is 9223372036854775807; allowed: -1099511627776..1099511627776",
    "INT64_MIN samples": "POS_SAMPLES is -9223372036854775808",
    "NaN and Inf positions": "POS_BEATS is nan",
    "garbage bytes": "not a msgpack map",
}


def engine_stderr(engine) -> str:
    return engine.stderr_path.read_text(errors="replace")


@pytest.fixture
def logged_engine(private_endpoint, tmp_path):
    """A real engine whose log goes to a file (engine.stderr_path)."""
    path = tmp_path / "engine.log"
    with open(path, "wb") as stderr:
        engine = start_engine(private_endpoint, tmp_path, stderr=stderr)
    engine.stderr_path = path
    yield engine
    assert engine.stop() == 0


def test_a_healthy_session_keeps_full_coverage_through_every_hostile_case(logged_engine):
    healthy = hostile.RealtimeSession(logged_engine.endpoint)
    try:
        healthy.play(1.0)
        for n, name in enumerate(hostile.HOSTILE):
            errors = hostile.send_case(logged_engine.endpoint, name, 0xBAD00 + n)
            if name in REFUSED:
                assert any(REFUSED[name] in e["message"] for e in errors), (name, errors)
            healthy.play(1.0)
            assert logged_engine.process.poll() is None, f"the engine died of {name!r}"
        assert healthy.blocks > 400 and healthy.coverage == 1.0, (healthy.missed, healthy.blocks)
    finally:
        healthy.close()
    assert "Traceback" not in engine_stderr(logged_engine)


def test_a_flood_is_throttled_while_the_healthy_session_keeps_full_coverage(logged_engine):
    healthy = hostile.RealtimeSession(logged_engine.endpoint)
    spawn = multiprocessing.get_context("spawn")
    try:
        healthy.play(1.0)
        with spawn.Pool(1) as pool:
            flood = pool.apply_async(hostile.flood, (logged_engine.endpoint, 4.0, 4))
            healthy.play(4.5)
            sent = flood.get(30)
        assert sent > 20_000, f"the flood sent only {sent} messages"
        assert healthy.coverage == 1.0, (healthy.missed, healthy.blocks)
    finally:
        healthy.close()
    lines = [line for line in engine_stderr(logged_engine).splitlines() if "refused a message" in line]
    assert len(lines) <= 4 * 5, f"{len(lines)} refusal lines for {sent} refused messages"   # 4 identities, 5 s
    assert re.search(r"dropped \d+ messages unread", engine_stderr(logged_engine)), "the throttling is logged"


def test_a_flood_of_big_frames_holds_little_memory(engine):
    before = hostile.engine_rss_mb(engine.process.pid)
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        flood = pool.apply_async(hostile.big_frames, (engine.endpoint, 3.0, 1.0))   # 4 connections of 1 MiB frames
        peak = before
        while not flood.ready():
            peak = max(peak, hostile.engine_rss_mb(engine.process.pid))
            time.sleep(0.05)
        sent = flood.get(30)
    assert sent > 200, f"only {sent} frames went"
    # 16 queued per connection and 8 MiB read per wake: ~80 MiB, where 1,024 frames a wake held a GiB
    assert peak - before < 150, f"the engine grew by {peak - before:.0f} MB"
    assert engine.process.poll() is None


def test_sessions_are_capped_and_a_freed_slot_can_be_used(engine_factory):
    engine = engine_factory("--max-sessions", "3")
    clients = [Client(engine.endpoint) for _ in range(4)]
    try:
        for client in clients[:3]:
            client.hello(hostile.RATE, 2, generator=const("LD_GENERATOR_LOOP"))
        clients[3].send_raw(hostile.hello(clients[3].instance))
        refusal = clients[3].wait_for("error")
        assert refusal["code"] == ERR["LD_ERR_BUSY"] and "at most 3" in refusal["message"], refusal
        clients[0].bye()
        time.sleep(0.1)
        clients[3].send_raw(hostile.hello(clients[3].instance))
        assert clients[3].wait_for("welcome")["shm_name"]
    finally:
        for client in clients:
            client.close()


def test_a_session_answers_only_the_connection_that_opened_it(engine):
    healthy = hostile.RealtimeSession(engine.endpoint)
    intruder = Client(engine.endpoint)
    try:
        healthy.play(0.5)
        victim = healthy.client.instance
        intruder.send_raw(hostile.transport(victim, pos_beats=12345.0, epoch=9))
        assert intruder.wait_for("error")["code"] == ERR["LD_ERR_UNKNOWN_SESSION"]
        intruder.send_raw(protocol.encode("bye", instance=victim))
        assert "on this connection" in intruder.wait_for("error")["message"]
        intruder.send_raw(hostile.hello(victim))
        assert "has a session on another connection" in intruder.wait_for("error")["message"]
        healthy.play(2.0)
        assert healthy.coverage == 1.0 and (SHM_DIR / healthy.reader.path.name).exists()
    finally:
        healthy.close()
        intruder.close()


def test_each_session_costs_one_descriptor_its_connection_and_no_more(engine):
    before = hostile.engine_fds(engine.process.pid)
    clients = [Client(engine.endpoint) for _ in range(30)]
    try:
        for client in clients:
            client.hello(hostile.RATE, 2, generator=const("LD_GENERATOR_LOOP"))
        assert hostile.engine_fds(engine.process.pid) - before <= 30 + 2, "Python's mmap kept a dup per segment"
    finally:
        for client in clients:
            client.close()


def test_a_taken_segment_name_gets_the_next_one(engine):
    instance = 0x7A4E0001
    planted = SHM_DIR / segment_name(instance, pid=engine.process.pid)[1:]
    planted.write_bytes(b"stale")
    client = Client(engine.endpoint, instance=instance)
    try:
        welcome = client.hello(hostile.RATE, 2, generator=const("LD_GENERATOR_LOOP"))
        assert welcome["shm_name"] == segment_name(instance, pid=engine.process.pid) + "-1"
        client.bye()
        assert engine.process.poll() is None
    finally:
        client.close()
        planted.unlink()


def test_scattered_one_frame_audio_cannot_grow_the_engine_past_its_input_budget(engine_factory):
    engine = engine_factory("--max-input-mb", "64")
    clients = [Client(engine.endpoint) for _ in range(8)]
    try:
        for client in clients:
            client.hello(hostile.RATE, 2, generator=const("LD_GENERATOR_LOOP"))
        time.sleep(0.3)
        before = hostile.engine_rss_mb(engine.process.pid)
        for pos in hostile.sparse_positions(2000):     # 32,000 messages of 1 frame: ~1 GB unbounded
            for client in clients:
                client.send_raw(hostile.audio(client.instance, pos))
        for client in clients:     # a round trip: everything sent before it was handled
            client.send("params", params={99: 1})
            client.wait_for("error", timeout=60)
        grown = hostile.engine_rss_mb(engine.process.pid) - before
        assert grown < 64 + 48, f"the engine grew by {grown:.0f} MB"
    finally:
        for client in clients:
            client.close()


# --- in-process: a bug while handling one session's message ---------------------------------

@pytest.fixture
def served(private_endpoint):
    """An Engine serving in a thread of this process (so a test can plant a bug in it)."""
    engine = Engine(private_endpoint)
    stop = threading.Event()
    thread = threading.Thread(target=engine.serve, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not engine._bound and time.monotonic() < deadline:
        time.sleep(0.01)
    yield engine
    stop.set()
    thread.join(10)


def test_a_failure_handling_one_session_closes_that_session_only(served, monkeypatch):
    healthy = hostile.RealtimeSession(served.endpoint)
    doomed = Client(served.endpoint)
    try:
        doomed.hello(hostile.RATE, 2, generator=const("LD_GENERATOR_LOOP"))
        on_transport = served.scheduler.on_transport

        def buggy(session, transport, now):
            if session.instance == doomed.instance:
                raise ZeroDivisionError("planted bug")
            on_transport(session, transport, now)
        monkeypatch.setattr(served.scheduler, "on_transport", buggy)
        monkeypatch.setattr(server, "QUARANTINE_SECONDS", 1.0)
        healthy.play(0.5)
        doomed.send_raw(hostile.transport(doomed.instance))
        error = doomed.wait_for("error")
        assert error["code"] == ERR["LD_ERR_INTERNAL"] and "ZeroDivisionError: planted bug" in error["message"]
        assert doomed.instance not in served.sessions
        doomed.send_raw(hostile.hello(doomed.instance))
        again = doomed.wait_for("error")
        assert again["code"] == ERR["LD_ERR_INTERNAL"] and re.search(r"may HELLO again [\d.]+ s from now",
                                                                     again["message"])
        healthy.play(1.5)
        assert healthy.coverage == 1.0 and healthy.client.instance in served.sessions
        doomed.send_raw(hostile.hello(doomed.instance))      # the quarantine is over
        assert doomed.wait_for("welcome")["shm_name"]
    finally:
        healthy.close()
        doomed.close()

