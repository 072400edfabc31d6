"""atheris fuzz target: the engine's whole path, bytes -> decode -> session -> plan -> publish.

    .venv/bin/python tests/fuzz/fuzz_engine.py [libFuzzer flags] [CORPUS_DIR ...]
    (seeds: .venv/bin/python -m tests.fuzz.seeds DIR writes DIR/engine/ among others)

An input is a script of frames from up to three plugin connections: records of
[1 byte: connection][2 bytes little-endian: length][frame]. Each frame goes through the
server's handle() (decode, session, transport state); every STEP_EVERY frames and after the
last come steps of the worker (plan, generate with the loop generator, place, publish into
shared memory). A finding is an exception out of the server (its catch-all for bugs
raises here), a session the worker had to quarantine or a generator failure, a published slot
the shim would refuse, or a hang (-timeout).
"""
from __future__ import annotations

import atexit
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
with atheris.instrument_imports(include=["bridge", "engine"]):
    from bridge import server
    from bridge.layout import const
    from engine import generators, worker
    from tests.fuzz.seeds import CONNECTIONS

STEP_EVERY = 4                 # frames between steps of the worker
STEPS_AFTER = 4
SLOT_START_LIMIT = 1 << (const("LD_POS_SAMPLES_BITS") + 1)   # what the shim accepts (timeline.c)


class Finding(Exception):
    """Something the fuzzer must report as a crash."""


def _raise(what):
    def planted(*args, **kwargs):
        exc = next((a for a in args if isinstance(a, BaseException)), None)
        raise Finding(f"{what}: {args[1:] if exc is None else repr(exc)}") from exc
    return planted


def _setup() -> server.Engine:
    logging.disable(logging.CRITICAL)
    directory = tempfile.mkdtemp(prefix="ld-fuzz-", dir="/tmp")
    atexit.register(shutil.rmtree, directory, True)
    for name in list(generators.registered()):
        generators.register(name, generators._loop)       # every generator is the (fast) loop generator
    server.Engine._failed = _raise("the server failed handling a message")
    worker.Worker._quarantine = _raise("the worker quarantined a session")
    worker.Worker._report = _raise("a generator problem")
    engine = server.Engine(f"ipc://{directory}/engine.sock")   # never bound: replies are dropped
    for name in generators.registered():
        engine.scheduler.generators.ready(name, lambda *_: None)
    engine.scheduler.generators.join()
    atexit.register(engine.close)
    return engine


def _frames(data: bytes):
    at = 0
    while at + 3 <= len(data):
        connection, length = data[at] % len(CONNECTIONS), int.from_bytes(data[at + 1:at + 3], "little")
        yield CONNECTIONS[connection], data[at + 3:at + 3 + length]
        at += 3 + length


def _step(engine: server.Engine) -> None:
    w = engine.scheduler._worker
    with engine.scheduler._cond:
        work, _ = w.next_work(time.monotonic())
    if work is not None:
        w._run(*work)


def _check_slots(engine: server.Engine) -> None:
    for session in engine.sessions.values():
        h = session.store._header
        for i in range(h.slot_count):
            slot = h.slots[i]
            if slot.state == const("LD_SLOT_READY") and (slot.frames > h.slot_capacity_frames
                                                          or not -SLOT_START_LIMIT <= slot.start_sample <= SLOT_START_LIMIT):
                raise Finding(f"slot {i}: {slot.frames} frames at {slot.start_sample}, which the shim refuses")


def one_input(engine: server.Engine, data: bytes) -> None:
    try:
        for n, (identity, frame) in enumerate(_frames(data), 1):
            engine.handle(identity, [frame], time.monotonic())
            if n % STEP_EVERY == 0:
                _step(engine)
        for _ in range(STEPS_AFTER):
            _step(engine)
        _check_slots(engine)
    finally:
        for instance in list(engine.sessions):
            engine._close_session(instance, "next input")
        engine._quarantined.clear()


def main() -> None:
    engine = _setup()
    atheris.Setup(sys.argv, lambda data: one_input(engine, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
